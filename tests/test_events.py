"""The telemetry record: its JSON form and its request ids (pure)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
import uuid

from faucet.events import uuid7
from tests.helpers import ROOT, make_event


def test_event_as_json():
    event = make_event(7, ip_addr=ipaddress.ip_address("2001:db8::1"), version=None)
    assert json.loads(event.to_json()) == {
        "request_uuid": "00000000-0000-0000-0000-000000000007",
        "namespace": "faucet",
        "version": None,
        "target": "Worker::1",
        "worker_route": None,
        "worker_id": 1,
        "ip_addr": "2001:db8::1",
        "method": "GET",
        "path": "/echo",
        "query_params": "msg=hi",
        "http_version": "HTTP/1.1",
        "status": 200,
        "user_agent": "test",
        "elapsed": 7,
        "time": "2024-05-01T12:00:00.000007+00:00",
    }


def test_uuid7_ids_carry_the_time_the_version_and_fresh_random_bits():
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(2000)]  # more than one 4 KiB pool of random bytes
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert {(u.version, u.variant) for u in ids} == {(7, uuid.RFC_4122)}
    assert all(before <= u.int >> 80 <= after for u in ids)
    assert ids == sorted(ids, key=lambda u: u.int >> 80)  # time-ordered to the millisecond


def test_a_plugin_imports_the_event_without_the_pipeline():
    code = ("import sys, faucet.events; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('faucet', 'trio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "['faucet', 'faucet.events']"
