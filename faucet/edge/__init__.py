"""The front door: the HTTP/1.1 connection loop, the hand-off to hypercorn for upgrades and
HTTP/2, open-file limits. Imports http and config.
"""
