"""faucet report without a database: the window and its options, path normalisation,
exact percentiles from counts, sparklines, and the text, JSON and HTML drawn from a
report dict."""

import datetime
import io
import random
import uuid

import pytest

from faucet.errors import ConfigError
from faucet.telemetry.report_html import render_html
from faucet.telemetry.report_render import WIDTH, render_text, sparkline, to_json
from faucet.telemetry.report_sections import build_report, group_endpoints
from faucet.telemetry.report_spec import (
    ReportSpec,
    Window,
    bucket_starts,
    choose_bucket,
    make_window,
    normalise_path,
    parse_since,
)
from faucet.telemetry.report_stats import percentile_cont, percentiles

UTC = datetime.UTC
NOW = datetime.datetime(2024, 5, 2, 12, 0, tzinfo=UTC)


def brute_percentile(values, fraction):
    """percentile_cont as the SQL standard defines it, over the values themselves."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@pytest.mark.parametrize(("path", "expected"), [
    ("/users/42", "/users/:id"),
    ("/users/42/orders/7", "/users/:id/orders/:id"),
    ("/1/2/3", "/:id/:id/:id"),
    ("/v2/items", "/v2/items"),
    ("/items/42abc", "/items/42abc"),
    ("/report.csv", "/report.csv"),
    ("/orders/9f1c2d3e-0000-4abc-8def-0123456789AB/items",
     "/orders/:uuid/items"),
    ("/o/9f1c2d3e-0000-4abc-8def-0123456789ab-x", "/o/9f1c2d3e-0000-4abc-8def-0123456789ab-x"),
    ("/", "/"),
])
def test_normalise_path(path, expected):
    assert normalise_path(path) == expected


def test_percentiles_from_counts_match_the_definition():
    rng = random.Random(7)
    for size in (1, 2, 3, 10, 99, 1000):
        values = [rng.choice([0, 1, 2, 5, 17, 40, 41, 900]) for _ in range(size)]
        counts = {}
        for value in values:
            counts[value] = counts.get(value, 0) + 1
        for fraction in (0, 0.5, 0.9, 0.95, 0.99, 1):
            assert percentile_cont(counts, fraction) == pytest.approx(
                brute_percentile(values, fraction), abs=1e-9)
    assert percentiles({}, (0.5, 0.95)) == [None, None]


def test_since_and_from_to():
    assert parse_since("90s") == 90 and parse_since("24h") == 86400 and parse_since("2w") == 1209600
    window = make_window(None, None, None, NOW)
    assert window.end == NOW and window.seconds == 86400
    window = make_window(None, "2024-05-01", "2024-05-01T06:00", NOW)
    assert window.start == datetime.datetime(2024, 5, 1, tzinfo=UTC) and window.seconds == 21600
    assert make_window(None, "2024-05-02T10:00:00+02:00", None, NOW).seconds == 4 * 3600


@pytest.mark.parametrize(("since", "start", "end", "named"), [
    ("1y", None, None, "--since = '1y'"),
    ("0h", None, None, "--since = '0h'"),
    ("1h", "2024-05-01", None, "--since cannot be combined"),
    (None, "yesterday", None, "--from = 'yesterday'"),
    (None, "2024-05-02", "2024-05-01", "--from = '2024-05-02T00:00:00Z'"),
])
def test_bad_windows_name_the_option(since, start, end, named):
    with pytest.raises(ConfigError) as info:
        make_window(since, start, end, NOW)
    assert named in str(info.value)


def test_buckets_cover_the_window_aligned():
    assert choose_bucket(3600) == 60 and choose_bucket(86400) == 1800
    window = Window(datetime.datetime(2024, 5, 1, 10, 7, tzinfo=UTC),
                    datetime.datetime(2024, 5, 1, 11, 7, tzinfo=UTC))
    starts = bucket_starts(window, 600)
    assert starts[0] == datetime.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert starts[-1] == datetime.datetime(2024, 5, 1, 11, 0, tzinfo=UTC) and len(starts) == 7


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([None, 0, 0]) == " ▁▁"
    assert sparkline([1, 8] * 100, width=50) == "█" * 50
    assert len(sparkline(list(range(500)))) == 60


def sample_report(crashes=True):
    """A report from hand-made histogram rows: what report_query would have read."""
    spec = ReportSpec(Window(NOW - datetime.timedelta(hours=1), NOW), namespace="shop")
    at = NOW - datetime.timedelta(minutes=30)
    main = [
        {"route": None, "worker_id": 1, "version": "1.0", "status": 200, "elapsed": 10, "n": 8,
         "first_start": at, "last_end": at + datetime.timedelta(minutes=10)},
        {"route": None, "worker_id": 1, "version": "1.0", "status": 500, "elapsed": 900, "n": 1,
         "first_start": at, "last_end": at},
        {"route": None, "worker_id": None, "version": "1.1", "status": 503, "elapsed": 5000,
         "n": 1, "first_start": at, "last_end": at},
        {"route": None, "worker_id": 2, "version": "1.1", "status": 101, "elapsed": 60_000,
         "n": 2, "first_start": at, "last_end": at},
    ]
    long_path = "/very/" + "long/" * 40 + str(uuid.uuid4())
    endpoints = [
        {"route": None, "method": "GET", "path": "/users/1", "elapsed": 10, "n": 4, "e5": 0},
        {"route": None, "method": "GET", "path": "/users/2", "elapsed": 10, "n": 4, "e5": 0},
        {"route": None, "method": "GET", "path": long_path, "elapsed": 900, "n": 1, "e5": 1},
        {"route": None, "method": "GET", "path": "/<script>", "elapsed": 5000, "n": 1, "e5": 1},
    ]
    over_time = [{"start": bucket_starts(spec.window, 60)[30], "ws": False, "elapsed": 10,
                  "n": 8, "e5": 0}]
    log_events = None
    if crashes:
        log_events = {"crashes": [
            {"time": at, "route": None, "worker_id": 1, "returncode": -9, "uptime_seconds": 61.0,
             "exit_status": "killed by SIGKILL", "last_stderr": "Killed", "requests_before": 9,
             "errors_5xx_before": 1, "slowest_path": long_path, "slowest_ms": 900}],
            "lifecycle": [{"route": None, "worker_id": 1, "exits": 1, "restarts": 1},
                          {"route": None, "worker_id": 3, "exits": 2, "restarts": 2}]}
    return build_report(spec, {
        "main": main, "endpoints": group_endpoints(endpoints), "over_time": over_time,
        "log_events": log_events,
        "capacity": {"peak_concurrency": 2, "peak_at": at}, "usage": {"distinct_clients": 3},
        "timescaledb": None})


def test_sections_from_counts():
    report = sample_report()
    health = report["health"]
    assert health["requests"] == 10 and health["errors_5xx"] == 2
    assert health["gateway_5xx"] == {"502": 0, "503": 1, "504": 0}
    assert health["no_worker_5xx"] == 1 and health["app_5xx"] == 1
    assert health["p50_ms"] == 10 and health["max_ms"] == 5000  # the 101 rows are not here
    assert health["apdex"] == 0.8 and health["worker_exits"] == 3
    assert [(e["path"], e["calls"]) for e in report["endpoints"]][:1] == [("/<script>", 1)]
    assert ("/users/:id", 8) in [(e["path"], e["calls"]) for e in report["endpoints"]]
    assert report["slowest"] == []  # nothing with 20 calls
    workers = {(w["worker_id"]): w for w in report["workers"]}
    assert workers[1]["requests"] == 9 and workers[1]["exits"] == 1
    assert workers[3]["requests"] == 0 and workers[3]["restarts"] == 2  # exited, never served
    assert report["sessions"] == {"count": 2, "p50_seconds": 60.0, "p90_seconds": 60.0,
                                  "session_hours": pytest.approx(2 / 60)}
    assert [v["version"] for v in report["versions"]] == ["1.0", "1.1"]


def test_text_fits_100_columns_and_says_what_is_missing():
    for crashes in (True, False):
        out = io.StringIO()
        render_text(sample_report(crashes), out.write, color=False)
        text = out.getvalue()
        assert max(len(line) for line in text.splitlines()) <= WIDTH
        assert "\x1b[" not in text
        assert ("no faucet_log_events table" in text) is not crashes
    out = io.StringIO()
    render_text(sample_report(), out.write, color=True)
    assert "\x1b[1mHealth" in out.getvalue()


def test_json_has_the_contract_keys():
    data = to_json(sample_report())
    assert {"requests", "errors_5xx", "error_rate", "p50_ms", "p95_ms", "p99_ms",
            "worker_exits"} <= data["health"].keys()
    assert {"route", "method", "path", "calls", "total_ms", "p95_ms", "errors_5xx"} <= \
        data["endpoints"][0].keys()
    assert {"route", "worker_id", "requests", "busy_seconds", "errors_5xx", "exits"} <= \
        data["workers"][0].keys()
    assert {"time", "route", "worker_id", "returncode", "requests_before",
            "errors_5xx_before"} <= data["crashes"][0].keys()
    assert data["capacity"]["peak_at"].endswith("Z") and data["sessions"]["count"] == 2
    assert to_json(sample_report(crashes=False))["crashes"] is None


def test_html_is_self_contained_and_escapes_paths():
    page = render_html(sample_report())
    assert "<script>" not in page.split("<body>")[1].split('<script type="application/json"')[0]
    assert "&lt;script&gt;" in page
    assert 'src="' not in page and "<link" not in page  # nothing loaded from elsewhere
    assert "uPlot" in page
