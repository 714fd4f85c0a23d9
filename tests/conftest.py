"""Shared fixtures: PostgreSQL (tests/pg.py)."""

pytest_plugins = ["tests.pg"]
