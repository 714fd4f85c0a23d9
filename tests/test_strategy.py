"""The strategy vocabulary (pure)."""

from faucet.config.strategy import Strategy


def test_values_are_the_names_users_type():
    assert list(Strategy) == ["round-robin", "ip-hash", "cookie-hash", "least-busy", "rps"]


def test_only_the_hash_strategies_are_sticky():
    assert [s for s in Strategy if s.sticky] == [Strategy.IP_HASH, Strategy.COOKIE_HASH]


def test_rps_dispatches_from_least_busys_queue_and_only_rps_scales():
    assert [s for s in Strategy if s.queues] == [Strategy.LEAST_BUSY, Strategy.RPS]
    assert [s for s in Strategy if s.scales] == [Strategy.RPS]
