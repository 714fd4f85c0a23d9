"""Requests through faucet to real Plumber workers."""

import os
import resource
import signal
import uuid
from collections import Counter

import trio
import trio.testing

from tests.helpers import config_for, never_listening_rscript, run_faucet

MB = 1024 * 1024


async def test_get_with_query_and_forwarded_headers():
    async with run_faucet(config_for()) as faucet, faucet.client() as client:
        response = await client.get("/echo", params={"msg": "hé llo"})
        assert response.status_code == 200
        assert response.json() == {"msg": ["hé llo"]}
        assert len(response.headers.get_list("date")) == 1

        response = await client.get("/headers", headers={
            "Connection": "keep-alive, X-Secret", "X-Secret": "hop", "TE": "trailers",
            "X-Forwarded-For": "203.0.113.7", "X-Custom": "end-to-end"})
        seen = {k: v[0] for k, v in response.json().items()}
        assert seen["x-custom"] == "end-to-end"
        assert "x-secret" not in seen and "te" not in seen
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == faucet.url.removeprefix("http://")
        assert uuid.UUID(seen["faucet-request-uuid"]).version == 7


async def test_post_json():
    async with run_faucet(config_for(workers=1)) as faucet, faucet.client() as client:
        response = await client.post("/json", json={"name": "faucet", "n": [1, 2]})
        assert response.status_code == 200
        assert response.json()["received"] == {"name": ["faucet"], "n": [1, 2]}


async def test_50_mb_up_and_down_are_streamed():
    async def body():
        chunk = b"x" * MB
        for _ in range(50):
            yield chunk

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async with run_faucet(config_for(workers=1)) as faucet, faucet.client() as client:
        before = peak_mb()
        # chunked (no Content-Length) and with Content-Length
        response = await client.post("/upload", content=body(),
                                     headers={"content-type": "application/octet-stream"})
        assert response.json() == {"bytes": [50 * MB]}
        response = await client.post("/upload", content=b"y" * (50 * MB),
                                     headers={"content-type": "application/octet-stream"})
        assert response.json() == {"bytes": [50 * MB]}
        received = 0
        async with client.stream("GET", "/download", params={"mb": 50},
                                 headers={"accept-encoding": "identity"}) as stream:
            assert stream.status_code == 200
            async for chunk in stream.aiter_raw():
                received += len(chunk)
        assert received == 50 * MB
        # The test's own 50 MB literal is the only full copy this process may hold.
        assert peak_mb() - before < 50 + 30


async def test_round_robin_spreads_requests_evenly():
    async with run_faucet(config_for(workers=2)) as faucet, faucet.client() as client:
        seen = Counter()
        for _ in range(20):
            seen[(await client.get("/worker")).json()["worker"][0]] += 1
        assert seen == {"1": 10, "2": 10}


async def test_killed_worker_is_restarted_while_traffic_continues():
    async with run_faucet(config_for(workers=2)) as faucet, faucet.client() as client:
        victim = faucet.backends()[0]
        old_pid = victim.pid
        statuses = Counter()
        flowing, restarted = trio.Event(), trio.Event()

        async def traffic():
            """50 requests a second from before the kill until 20 after the restart."""
            after_restart = 0
            while after_restart < 20:
                statuses[(await client.get("/echo", params={"msg": "x"})).status_code] += 1
                after_restart += restarted.is_set()
                if statuses.total() == 10:
                    flowing.set()
                await trio.sleep(0.02)  # the pace of the traffic, not a synchronisation

        async with trio.open_nursery() as nursery:
            nursery.start_soon(traffic)
            await flowing.wait()
            os.kill(old_pid, signal.SIGKILL)
            with trio.fail_after(30):
                await faucet.wait_until(lambda: victim.online and victim.pid != old_pid)
            restarted.set()
        assert victim.restarts == 1
        # At most the one request in flight on the killed worker fails, and with a 502.
        assert statuses.total() - statuses[200] <= 1 and set(statuses) <= {200, 502}
        assert (await client.get("/worker")).status_code == 200


async def test_no_worker_online_gives_503_after_the_deadline(tmp_path):
    config = config_for(workers=1, rscript=never_listening_rscript(tmp_path),
                        worker_wait_timeout=0.5)
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        start = trio.current_time()
        response = await client.get("/echo")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert trio.current_time() - start >= 0.5
        health = await client.get("/__faucet__/health")
        assert health.status_code == 503 and health.json()["online"] == 0


async def test_slow_worker_gives_504():
    async with run_faucet(config_for(workers=1, response_timeout=0.5)) as faucet, \
            faucet.client() as client:
        response = await client.get("/sleep", params={"s": 3})
        assert response.status_code == 504
        assert "did not answer within 0.5s" in response.text


async def test_worker_dying_mid_request_gives_502():
    async with run_faucet(config_for(workers=1)) as faucet, faucet.client() as client:
        async with trio.open_nursery() as nursery:
            result = {}

            async def slow():
                result["response"] = await client.get("/sleep", params={"s": 5})

            nursery.start_soon(slow)
            # Once every task here waits, the request has gone to the worker (faucet runs
            # in this process); from then on its loss can only be a 502.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert faucet.backends()[0].inflight == 1
            os.kill(faucet.backends()[0].pid, signal.SIGKILL)
        assert result["response"].status_code == 502


async def test_health_reports_workers():
    async with run_faucet(config_for(workers=2)) as faucet, faucet.client() as client:
        response = await client.get("/__faucet__/health")
        assert response.status_code == 200
        body = response.json()
        assert body["online"] == 2
        assert [w["target"] for w in body["workers"]] == ["Worker::1", "Worker::2"]
