"""The ASGI app: routing, admission, HTTP forwarding, the upstream pool, WebSocket relay,
health, and Shiny's sessions (proxy.shiny). Imports pool, http, telemetry, config.
"""
