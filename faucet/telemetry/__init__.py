"""The recorder (a bounded channel feeding the configured sink) and the PostgreSQL tables.
Imports config and sinks.
"""
