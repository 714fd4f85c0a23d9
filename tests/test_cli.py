"""The command line as a user runs it: exit codes, messages, signals, no leftovers."""

import os
import subprocess

from faucet.config.settings import load_config
from faucet.sinks import open_sink
from tests.helpers import (
    PLUMBER,
    run_to_exit,
)
from tests.pg import query


def test_bad_values_exit_2_naming_each_key():
    result = run_to_exit("start", "--workers", "0", "--strategy", "fastest",
                         "--dir", str(PLUMBER))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "faucet: workers = 0 (from --workers): must be at least 1",
        "faucet: strategy = 'fastest' (from --strategy): expected one of: round-robin, "
        "ip-hash, cookie-hash, least-busy, rps",
    ]


def test_options_before_or_after_the_subcommand_and_env():
    before = run_to_exit("--workers", "0", "start", "--dir", str(PLUMBER))
    env = run_to_exit("start", "--dir", str(PLUMBER), env={"FAUCET_WORKERS": "-1"})
    assert before.returncode == env.returncode == 2
    assert "workers = 0 (from --workers)" in before.stderr
    assert "workers = -1 (from FAUCET_WORKERS)" in env.stderr


def test_unknown_key_in_faucet_toml(tmp_path):
    (tmp_path / "faucet.toml").write_text("workerz = 3\n")
    result = run_to_exit("start", "--config", str(tmp_path / "faucet.toml"))
    assert result.returncode == 2
    assert "workerz" in result.stderr and "unknown key" in result.stderr


def test_missing_dir_and_undetectable_app(tmp_path):
    missing = run_to_exit("start", "--dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    undetectable = run_to_exit("start", "--dir", str(tmp_path))
    assert undetectable.returncode == 2
    assert "cannot detect the app type" in undetectable.stderr and "--type" in undetectable.stderr


def test_missing_rscript_is_a_start_up_error():
    result = run_to_exit("start", "--dir", str(PLUMBER), "--rscript", "/nonexistent/Rscript")
    assert result.returncode == 2
    assert "rscript = '/nonexistent/Rscript': not found" in result.stderr
    assert "Traceback" not in result.stderr








def test_rscript_subcommand_passes_the_exit_code_on():
    result = run_to_exit("rscript", "-e", "cat('hi from R\\n'); quit(status = 3)")
    assert result.returncode == 3
    assert result.stdout == "hi from R\n"


def test_python_dash_m_and_help():
    result = subprocess.run(["faucet", "--help"], capture_output=True, text=True,
                            env={**os.environ, "PATH": os.path.dirname(os.sys.executable)
                                 + ":" + os.environ["PATH"]})
    assert result.returncode == 0 and "router" in result.stdout




def test_telemetry_init_creates_the_table(pg_empty_dsn):
    result = run_to_exit("telemetry", "init", "--telemetry-postgres-string", pg_empty_dsn)
    assert result.returncode == 0, result.stderr
    # It says what it did (it used to print nothing), and again finds what it made.
    assert [line.split(" in ")[0] for line in result.stdout.splitlines()] == [
        "faucet telemetry init: faucet_http_events: created",
        "faucet telemetry init: faucet_log_events: created"]
    again = run_to_exit("telemetry", "init", "--telemetry-postgres-string", pg_empty_dsn)
    assert "faucet_http_events: found, left as it was" in again.stdout
    columns = query(pg_empty_dsn, "SELECT column_name FROM information_schema.columns "
                                  "WHERE table_name = 'faucet_http_events' "
                                  "AND table_schema = current_schema() ORDER BY ordinal_position")
    assert [c for (c,) in columns][:3] == ["request_uuid", "namespace", "version"]
    assert len(columns) == 15
    missing = run_to_exit("telemetry", "init")
    assert missing.returncode == 2 and "telemetry.postgres_string: required" in missing.stderr


def test_log_file_in_a_missing_folder_is_created(tmp_path):
    """Was a FileNotFoundError traceback, then an AttributeError at exit, status 1."""
    log_file = tmp_path / "nodir" / "deeper" / "faucet.log"
    result = run_to_exit("start", "--dir", str(tmp_path / "nope"), "--log-file", str(log_file))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert log_file.parent.is_dir()


def test_log_file_that_cannot_be_written_is_one_line_naming_the_setting(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = run_to_exit("start", "--dir", str(PLUMBER),
                         env={"FAUCET_LOG_FILE": str(tmp_path / "a-file" / "faucet.log")})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"faucet: log_file = '{tmp_path}/a-file/faucet.log' (from FAUCET_LOG_FILE): cannot "
        "write there: File exists; choose a path faucet's user may write (its folder is "
        "created when missing)"]


def test_uv_beside_faucets_python_is_found_without_path():
    """`.venv/bin/faucet uv` after `.ci/setup example`: uv is in .venv/bin, not on PATH."""
    result = run_to_exit("uv", "--version", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uv ")


def test_missing_app_dir_is_named_in_start_mode_as_in_router_mode():
    result = run_to_exit("start", "--dir", str(PLUMBER), "--app-dir", "app")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"faucet: app_dir = 'app': directory not found: {PLUMBER / 'app'} (relative to --dir)"]


def test_sink_option_flag_reaches_the_plugin_and_its_error_says_where(tmp_path):
    missing = run_to_exit("start", "--dir", str(PLUMBER), "--telemetry-sink", "jsonfile")
    assert missing.returncode == 2
    assert "--telemetry-sink-option KEY=VALUE" in missing.stderr
    assert "FAUCET_TELEMETRY_SINK_OPTIONS" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_sink_option_flag_reaches_the_plugin(tmp_path):
    events = tmp_path / "events.jsonl"
    config = load_config(None, {}, {"telemetry.sink": "jsonfile",
                                    "telemetry.sink_options": [f"path={events}"]})
    sink = await open_sink(config.telemetry)
    await sink.aclose()
    assert events.exists()


def test_config_show_names_where_each_value_came_from(tmp_path):
    (tmp_path / "faucet.toml").write_text('workers = 2\n[telemetry]\nnamespace = "file"\n')
    result = run_to_exit("config", "show", "--config", str(tmp_path / "faucet.toml"),
                         "--strategy", "least-busy",
                         env={"FAUCET_TELEMETRY_POSTGRES_STRING": "postgresql://u:pw@h/db"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"workers = 2  # {tmp_path / 'faucet.toml'}" in lines
    assert 'strategy = "least-busy"  # --strategy' in lines
    assert 'host = "127.0.0.1:3838"  # default' in lines
    assert 'namespace = "file"  # ' + str(tmp_path / "faucet.toml") in lines
    assert "pw" not in result.stdout
    assert ('postgres_string = "postgresql://u:***@h/db"  '
            '# FAUCET_TELEMETRY_POSTGRES_STRING') in lines


def test_config_example_prints_every_key():
    result = run_to_exit("config", "example")
    assert result.returncode == 0 and result.stdout == (PLUMBER.parent.parent /
                                                        "faucet.example.toml").read_text()
