"""Config layering and error messages (pure, no processes)."""

from pathlib import Path

import pytest

from faucet.config.settings import env_name, env_warnings, flag_name, load_config, parse_size
from faucet.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "faucet.toml"
    path.write_text(text)
    return path


def problems(path=None, environ=None, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {}, overrides or {})
    return info.value.problems


def test_defaults_match_the_rust_server():
    config = load_config(None, {}, {})
    assert config.host == "127.0.0.1:3838"
    assert config.workers >= 1
    assert config.type == "auto" and config.ip_from == "client"
    assert config.shutdown == "graceful"
    assert config.telemetry.namespace == "faucet" and config.telemetry.version is None
    assert not config.telemetry.enabled


def test_precedence_file_then_env_then_cli(tmp_path):
    path = write(tmp_path, 'workers = 2\nstrategy = "ip-hash"\nhost = "0.0.0.0:80"\n'
                           '[telemetry]\nnamespace = "from-file"\n')
    config = load_config(path, {"FAUCET_WORKERS": "3", "FAUCET_TELEMETRY_NAMESPACE": "env"},
                         {"workers": "4"})
    assert config.workers == 4  # CLI beats env beats file
    assert config.strategy == "ip-hash"  # file beats default
    assert config.host == "0.0.0.0:80"
    assert config.telemetry.namespace == "env"


def test_one_name_in_three_places():
    assert env_name("telemetry.postgres_string") == "FAUCET_TELEMETRY_POSTGRES_STRING"
    assert flag_name("telemetry.postgres_string") == "--telemetry-postgres-string"
    assert env_name("ip_from") == "FAUCET_IP_FROM" and flag_name("ip_from") == "--ip-from"


def test_rust_aliases():
    config = load_config(None, {"FAUCET_PG_CON_STRING": "postgresql://x@h/db",
                                "FAUCET_LOG": "debug"}, {})
    assert config.telemetry.postgres_string == "postgresql://x@h/db"
    assert config.log_level == "debug"
    assert config.telemetry.sink_name == "postgres"


def test_empty_env_values_are_unset():
    assert load_config(None, {"FAUCET_WORKERS": ""}, {}).workers >= 1


def test_every_bad_value_is_reported_with_key_value_source_and_allowed():
    lines = problems(environ={"FAUCET_WORKERS": "0"},
                     overrides={"strategy": "fastest", "telemetry.sslmode": "maybe"})
    assert lines == [
        "workers = 0 (from FAUCET_WORKERS): must be at least 1",
        "strategy = 'fastest' (from --strategy): expected one of: round-robin, ip-hash, "
        "cookie-hash, least-busy, rps",
        "telemetry.sslmode = 'maybe' (from --telemetry-sslmode): expected one of: disable, "
        "allow, prefer, require, verify-ca, verify-full",
    ]


def test_type_errors_name_the_key(tmp_path):
    assert problems(overrides={"workers": "many"}) == [
        "workers = 'many' (from --workers): expected a number"]
    path = write(tmp_path, "workers = 2.5\n")
    assert problems(path) == [f"workers = 2.5 (from {path}): expected an integer"]


def test_unknown_keys_are_errors_listing_the_allowed_ones(tmp_path):
    path = write(tmp_path, "wokers = 2\n[telemetry]\nnamspace = 'x'\n")
    lines = problems(path)
    assert any(line.startswith(f"wokers (from {path}): unknown key; did you mean workers? "
                               "allowed here: host, workers") for line in lines)
    assert any(line.startswith("telemetry.namspace") and "namespace" in line for line in lines)


def test_toml_syntax_error_is_a_config_error(tmp_path):
    path = write(tmp_path, "workers = \n")
    (line,) = problems(path)
    assert str(path) in line and "invalid TOML" in line


@pytest.mark.parametrize(("text", "size"), [
    ("10M", 10_000_000), ("1.5G", 1_500_000_000), ("1GB", 1_000_000_000), ("512", 512),
    ("512Ki", 524_288), ("10MiB", 10 * 1024**2), ("1 kib", 1024), ("5gb", 5_000_000_000),
    ("0.2 MiB", 209_715), ("2.5B", 3), ("1_000k", 1_000_000), ("14.2e+8", 1_420_000_000),
])
def test_sizes_read_as_the_rust_server_reads_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["ten megs", "", "M", "-1M", "1.5.2K", "10 M B x"])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="expected a size like 10M"):
        parse_size(text)


def test_size_settings_take_units_from_every_source(tmp_path):
    path = write(tmp_path, "max_message_size = \"64Ki\"\n")
    config = load_config(path, {"FAUCET_MAX_LOG_FILE_SIZE": "1.5G"}, {})
    assert (config.max_message_size, config.max_log_file_size) == (65_536, 1_500_000_000)
    assert load_config(None, {"FAUCET_MAX_MESSAGE_SIZE": "10M"}, {}).max_message_size == 10**7
    assert problems(overrides={"max_log_file_size": "huge"})[0].startswith(
        "max_log_file_size = 'huge' (from --max-log-file-size): expected a size")
    assert problems(path=write(tmp_path, "max_message_size = 1.5\n"))[0].startswith(
        f"max_message_size = 1.5 (from {tmp_path / 'faucet.toml'}): expected a size")


@pytest.mark.parametrize("value", ["warn", "WARN", "trace", "off", "faucet=debug,hypercorn=warn"])
def test_faucet_log_takes_env_logger_syntax(value):
    assert load_config(None, {"FAUCET_LOG": value}, {}).log_level == value


def test_bad_log_spec_names_the_variable_and_what_is_allowed():
    (line,) = problems(environ={"FAUCET_LOG": "faucet=loud"})
    assert line.startswith("log_level = 'faucet=loud' (from FAUCET_LOG): unknown level 'loud' "
                           "for faucet; expected a level (off, error, warn, info, debug, trace")


def test_booleans_from_text_are_strict():
    assert load_config(None, {"FAUCET_LOG_STDERR": "false"}, {}).log_stderr is False
    assert load_config(None, {}, {"log_stderr": "Yes"}).log_stderr is True
    assert problems(environ={"FAUCET_LOG_STDERR": "nope"}) == [
        "log_stderr = 'nope' (from FAUCET_LOG_STDERR): expected true or false"]


def test_every_rust_env_name_is_read():
    """The Rust server's src/cli.rs names, each with a value that is not our default."""
    rust_env = {
        "FAUCET_HOST": "0.0.0.0:80", "FAUCET_IP_FROM": "x-real-ip", "FAUCET_RSCRIPT": "/r",
        "FAUCET_QUARTO": "/q", "FAUCET_UV": "/uv", "FAUCET_LOG_FILE": "f.log",
        "FAUCET_MAX_LOG_FILE_SIZE": "1M", "FAUCET_SHUTDOWN": "immediate",
        "FAUCET_MAX_MESSAGE_SIZE": "2M", "FAUCET_TELEMETRY_POSTGRES_STRING": "postgresql://h/d",
        "FAUCET_TELEMETRY_POSTGRES_SSLCERT": "/ca.pem",
        "FAUCET_TELEMETRY_POSTGRES_SSLMODE": "verify-full",
        "FAUCET_TELEMETRY_NAMESPACE": "ns", "FAUCET_TELEMETRY_VERSION": "v1",
        "FAUCET_WORKERS": "7", "FAUCET_STRATEGY": "ip-hash", "FAUCET_TYPE": "shiny",
        "FAUCET_DIR": "/app", "FAUCET_APP_DIR": "sub", "FAUCET_QMD": "doc.qmd",
        "FAUCET_ROUTER_CONF": "routes.toml", "FAUCET_LOG": "debug", "FAUCET_MAX_RPS": "2.5",
    }
    c = load_config(None, rust_env, {})
    t = c.telemetry
    assert (c.host, c.ip_from, c.rscript, c.quarto, c.uv, c.log_file) == (
        "0.0.0.0:80", "x-real-ip", "/r", "/q", "/uv", "f.log")
    assert (c.max_log_file_size, c.shutdown, c.max_message_size) == (10**6, "immediate", 2 * 10**6)
    assert (t.postgres_string, t.sslcert, t.sslmode, t.namespace, t.version) == (
        "postgresql://h/d", "/ca.pem", "verify-full", "ns", "v1")
    assert (c.workers, c.strategy, c.type, c.dir, c.app_dir, c.qmd, c.conf, c.log_level) == (
        7, "ip-hash", "shiny", "/app", "sub", "doc.qmd", "routes.toml", "debug")
    assert c.max_rps == 2.5
    assert env_warnings(rust_env | {"FAUCET_CONFIG": "x", "FAUCET_WORKER_ID": "1"}) == []


def test_ignored_faucet_variables_are_named_with_the_closest_setting():
    assert env_warnings({"FAUCET_WOKERS": "2", "FAUCET_TELEMETRY_POSTGRES_SSLMOD": "require",
                         "FAUCET_ZZZ": "1", "FAUCETEER": "x", "PATH": "/bin"}) == [
        "FAUCET_TELEMETRY_POSTGRES_SSLMOD is not a faucet setting and is ignored; did you mean "
        "FAUCET_TELEMETRY_POSTGRES_SSLMODE?",
        "FAUCET_WOKERS is not a faucet setting and is ignored; did you mean FAUCET_WORKERS?",
        "FAUCET_ZZZ is not a faucet setting and is ignored; faucet --help lists them",
    ]



def test_unknown_keys_type_and_value_errors_come_in_one_run(tmp_path):
    """An unknown key used to be reported alone, and the values only on the next run."""
    path = write(tmp_path, 'workerz = 3\nworkers = 0\nhost = 5\nstrategy = "fastest"\n'
                           '[telemetry]\nqueue_size = "lots"\nbatch_size = 0\n'
                           '[[route]]\nroute = "api"\nserver_type = "plumber"\nworkers = 1\n')
    keys = sorted(line.split(" ")[0] for line in problems(path))
    assert keys == ["host", "route[0].route", "strategy", "telemetry.batch_size",
                    "telemetry.queue_size", "workers", "workerz"]


def test_sink_options_from_env_and_flags_merge_over_the_file(tmp_path):
    path = write(tmp_path, '[telemetry.sink_options]\npath = "file.jsonl"\nlevel = 1\n')
    config = load_config(path, {"FAUCET_TELEMETRY_SINK_OPTIONS": "path=env.jsonl,mode=a"},
                         {"telemetry.sink_options": ["mode=w", "url=http://h/?a=b"]})
    assert config.telemetry.sink_options == {"path": "env.jsonl", "level": 1, "mode": "w",
                                             "url": "http://h/?a=b"}
    as_json = load_config(None, {"FAUCET_TELEMETRY_SINK_OPTIONS": '{"path": "a,b", "n": 2}'}, {})
    assert as_json.telemetry.sink_options == {"path": "a,b", "n": 2}
    assert env_warnings({"FAUCET_TELEMETRY_SINK_OPTIONS": "x=1"}) == []
    assert problems(environ={"FAUCET_TELEMETRY_SINK_OPTIONS": "path"}) == [
        "telemetry.sink_options = 'path' (from FAUCET_TELEMETRY_SINK_OPTIONS): expected "
        "KEY=VALUE, for example path=/var/log/faucet/events.jsonl"]
