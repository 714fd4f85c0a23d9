"""Sans-IO HTTP: HTTP/1.1 framing, header rules, ASGI helpers, the WebSocket budget.
Imports only the leaves.
"""
