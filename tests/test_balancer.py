"""Balancing decisions and client-IP extraction (pure)."""

import ipaddress
import uuid

import pytest

from faucet.http.client_ip import BadClientIp, client_ip
from faucet.pool.backend import Backend
from faucet.pool.balancer import least_busy, next_online
from faucet.pool.sticky import StickyCookie, cookie_for_index, cookie_key, ip_key, sticky_index
from tests.helpers import make_backends, set_online


def pool(*online: bool) -> list[Backend]:
    backends = make_backends(len(online))
    for backend, on in zip(backends, online, strict=True):
        set_online(backend, on)
    return backends


def test_next_online_skips_offline_and_wraps():
    backends = pool(True, False, True)
    assert next_online(backends, 1).worker_id == 3
    assert next_online(backends, 3).worker_id == 1
    assert next_online(pool(False, False), 0) is None


def test_least_busy_prefers_idle_and_respects_the_limit():
    backends = pool(True, True, True)
    backends[0].lease(slow=True)
    assert least_busy(backends, 0, limit=1).worker_id == 2
    assert least_busy(backends, 2, limit=1).worker_id == 3
    backends[1].lease(slow=True)
    backends[2].lease(slow=True)
    assert least_busy(backends, 0, limit=1) is None
    assert least_busy(backends, 0, limit=2).worker_id == 1


def test_hashes_are_stable_across_processes():
    # Literal values: Python's own hash() is salted per process, ours must not be, so a
    # client keeps its worker when faucet restarts with the same worker count.
    assert ip_key(ipaddress.ip_address("10.1.2.3")) == 0x43063F00F3964801
    assert cookie_key(uuid.UUID("12345678-1234-5678-1234-567812345678")) == 0x7B5565E0BA913CCF


def test_cookie_for_index_lands_on_that_worker():
    for count in (1, 2, 3, 7):
        for index in range(count):
            assert sticky_index(cookie_key(cookie_for_index(index, count)), count) == index


def test_cookie_round_trip():
    value = uuid.uuid4()
    cookie = StickyCookie()
    header = cookie.set_header(value)
    assert header.endswith(b"; Path=/; HttpOnly; SameSite=Lax")
    assert cookie.read(b"a=1; " + header.split(b";")[0] + b"; b=2") == value
    assert cookie.read(b"FAUCET_LB_COOKIE=not-a-uuid") is None
    assert cookie.read(b"other=1") is None and cookie.read(None) is None


def test_client_ip_modes():
    assert str(client_ip("127.0.0.1", "client", None, None)) == "127.0.0.1"
    # the rightmost entry is the trusted proxy's; the client wrote the ones left of it
    assert str(client_ip("10.0.0.1", "x-forwarded-for", b"203.0.113.9, 10.0.0.5", None)) \
        == "10.0.0.5"
    assert str(client_ip("10.0.0.1", "x-real-ip", None, b" 2001:db8::1 ")) == "2001:db8::1"
    with pytest.raises(BadClientIp, match="missing X-Forwarded-For header"):
        client_ip("10.0.0.1", "x-forwarded-for", None, None)
    with pytest.raises(BadClientIp, match="'bogus' is not an IP address"):
        client_ip("10.0.0.1", "x-real-ip", None, b"bogus")
