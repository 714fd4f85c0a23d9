"""Sticky and least-busy dispatch with real Plumber workers."""

import ipaddress
import os
import signal
import uuid

import pytest
import trio
import trio.testing

from faucet.pool.sticky import LB_COOKIE, cookie_key, ip_key, sticky_index
from tests.helpers import config_for, run_faucet


async def worker_of(client, **kwargs) -> str:
    response = await client.get("/worker", **kwargs)
    assert response.status_code == 200
    return response.json()["worker"][0]


def cookie_worker(response, workers: int) -> str:
    """The worker (1-based, as text) a response's FAUCET_LB_COOKIE points to."""
    value = uuid.UUID(response.cookies[LB_COOKIE])
    return str(sticky_index(cookie_key(value), workers) + 1)


async def test_cookie_hash_keeps_a_client_on_one_worker():
    async with run_faucet(config_for(workers=3, strategy="cookie-hash")) as faucet, \
            faucet.client() as client:
        first = await client.get("/worker")
        home = first.json()["worker"][0]
        assert cookie_worker(first, 3) == home
        assert {await worker_of(client) for _ in range(20)} == {home}
        # The cookie, not the address, decides: a cookie for another worker goes there.
        other = str(int(home) % 3 + 1)
        foreign = next(v for v in (uuid.uuid4() for _ in range(1000))
                       if str(sticky_index(cookie_key(v), 3) + 1) == other)
        async with faucet.client(cookies={LB_COOKIE: str(foreign)}) as returning:
            assert await worker_of(returning) == other


async def test_concurrent_first_requests_each_get_the_cookie_of_the_worker_that_served_them():
    """Without a cookie a request is placed by load (not by address: behind a proxy every
    browser has the same one), and its Set-Cookie names the worker that served it."""
    async with run_faucet(config_for(workers=3, strategy="cookie-hash")) as faucet:
        responses = []

        async def first_request():
            async with faucet.client() as client:  # no cookie yet
                responses.append(await client.get("/worker"))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(first_request)
        served = [r.json()["worker"][0] for r in responses]
        assert [str(cookie_worker(r, 3)) for r in responses] == served
        assert len(set(served)) == 3  # spread over the workers


async def test_ip_hash_maps_each_forwarded_address_consistently():
    config = config_for(workers=3, strategy="ip-hash", ip_from="x-forwarded-for")
    async with run_faucet(config) as faucet, faucet.client() as client:
        seen = set()
        for n in range(1, 11):
            address = f"203.0.113.{n}"
            expected = str(sticky_index(ip_key(ipaddress.ip_address(address)), 3) + 1)
            # the trusted proxy appended ``address``; the client wrote the entry before it
            headers = {"x-forwarded-for": f"198.51.100.7, {address}"}
            assert {await worker_of(client, headers=headers) for _ in range(3)} == {expected}
            seen.add(expected)
        assert len(seen) > 1


@pytest.mark.parametrize(("headers", "explanation"), [
    ({}, "missing X-Forwarded-For header (faucet runs with --ip-from x-forwarded-for)"),
    ({"x-forwarded-for": "not-an-ip"},
     "X-Forwarded-For header 'not-an-ip' is not an IP address"),
])
async def test_ip_from_header_missing_or_malformed_gives_400(headers, explanation):
    config = config_for(workers=1, strategy="ip-hash", ip_from="x-forwarded-for")
    async with run_faucet(config) as faucet, faucet.client() as client:
        response = await client.get("/worker", headers=headers)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/plain")
        assert explanation in response.text


async def test_killed_sticky_worker_moves_the_client_after_the_grace():
    config = config_for(workers=2, strategy="cookie-hash", sticky_grace=0.2)
    async with run_faucet(config) as faucet, faucet.client() as client:
        home = await worker_of(client)
        victim = faucet.backends()[int(home) - 1]
        os.kill(victim.pid, signal.SIGKILL)
        with trio.fail_after(10):
            while victim.online:
                await faucet.proxy_mounts[0].dispatcher.wait_changed()
        start = trio.current_time()
        moved = await client.get("/worker")
        assert trio.current_time() - start >= 0.2  # the grace was given
        new_home = moved.json()["worker"][0]
        assert new_home != home and cookie_worker(moved, 2) == new_home
        with trio.fail_after(30):
            await faucet.wait_online()
        # The new cookie keeps the client there once its old worker is back.
        assert {await worker_of(client) for _ in range(5)} == {new_home}


@pytest.mark.parametrize(("strategy", "fast"), [("least-busy", True), ("round-robin", False)])
async def test_least_busy_sends_a_fast_request_past_a_busy_worker(strategy, fast):
    async with run_faucet(config_for(workers=2, strategy=strategy)) as faucet, \
            faucet.client() as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.get, "/sleep?s=3")
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the sleep holds a worker
        await client.get("/echo")  # round-robin: the idle worker's turn
        start = trio.current_time()
        assert (await client.get("/echo")).status_code == 200
        took = trio.current_time() - start
        assert took < 0.5 if fast else took > 1.5
        nursery.cancel_scope.cancel()  # no need to wait out the sleep
