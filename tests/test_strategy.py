"""The strategy vocabulary (pure)."""

from faucet.strategy import Strategy


def test_values_are_the_names_users_type():
    assert list(Strategy) == ["round-robin", "ip-hash", "cookie-hash", "least-busy"]


def test_only_the_hash_strategies_are_sticky():
    assert [s for s in Strategy if s.sticky] == [Strategy.IP_HASH, Strategy.COOKIE_HASH]
