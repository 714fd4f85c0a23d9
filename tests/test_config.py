"""Config layering and error messages (pure, no processes)."""

from pathlib import Path

import pytest

from faucet.config import env_name, flag_name, load_config, parse_size
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
        "cookie-hash, least-busy",
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
    assert any(line.startswith(f"wokers (from {path}): unknown key; allowed here: host, workers")
               for line in lines)
    assert any(line.startswith("telemetry.namspace") and "namespace" in line for line in lines)


def test_toml_syntax_error_is_a_config_error(tmp_path):
    path = write(tmp_path, "workers = \n")
    (line,) = problems(path)
    assert str(path) in line and "invalid TOML" in line


def test_sizes():
    assert parse_size("10M") == 10 * 1024**2
    assert parse_size("1GB") == 1024**3
    assert parse_size("512") == 512
    with pytest.raises(ValueError):
        parse_size("ten megs")
    assert problems(overrides={"max_log_file_size": "huge"})[0].startswith(
        "max_log_file_size = 'huge' (from --max-log-file-size): expected a size")
