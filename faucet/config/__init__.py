"""Settings and where they come from (faucet.toml, FAUCET_* env, flags, .env files),
routes, app kinds and strategies. Imports only the leaves (errors, redact).
"""
