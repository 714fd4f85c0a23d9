"""Shiny sessions that survive network blips: placement, the session host, the reconnect
script.
"""
