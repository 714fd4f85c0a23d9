"""The fleet (issue 17 item 5): two faucet instances sharing one PostgreSQL table behind
a real HAProxy (Debian's package) that checks /__faucet__/ready, reuses its keep-alive
connections and retries only failed connects. A rolling restart of both under load fails
no request, and every answered request is exactly one row (tests/fleet.py runs it; so
does bench/fleet)."""

import shutil

import pytest

from tests.fleet import rolling_restart_under_load

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="needs haproxy (.ci/setup test installs it)")


def test_a_rolling_restart_behind_haproxy_fails_no_request_and_records_each_once(
        tmp_path, pg_dsn):
    outcome = rolling_restart_under_load(tmp_path, pg_dsn, clients=4, limit=20_000)
    report = "\n".join(outcome.log)
    print(report)  # shown with -rP: when each step happened, and the requests by then
    print(f"{outcome.sent} sent, {len(outcome.failures)} failed, {outcome.rows} rows")
    assert outcome.failures == [], report
    assert outcome.answered == outcome.sent >= outcome.during_restart > 0, report
    assert outcome.answered_once == outcome.answered == outcome.rows, report
