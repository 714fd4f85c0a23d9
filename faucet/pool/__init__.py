"""Worker state and where requests go: one state machine per worker, balancing, dispatch,
liveness rules, autoscaling. Imports config and http.
"""
