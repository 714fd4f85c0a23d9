"""faucet.example.toml documents every setting and is itself a valid config."""

import re

import pytest

from faucet.config.settings import env_name, flag_name, load_config, setting_keys
from tests.helpers import ROOT

EXAMPLE = (ROOT / "faucet.example.toml").read_text()


@pytest.mark.parametrize("key", setting_keys())
def test_every_setting_is_documented_with_its_env_var_and_flag(key):
    assert re.search(rf"^# {key.split('.')[-1]} = ", EXAMPLE, re.M)
    assert env_name(key) in EXAMPLE
    assert flag_name(key) in EXAMPLE


def test_uncommented_example_is_a_valid_config(tmp_path, monkeypatch):
    lines = []
    for line in EXAMPLE.splitlines():
        if re.match(r"^# (\[|[a-z_]+ = )", line) and "<" not in line:
            line = line[2:]
        lines.append(line)
    path = tmp_path / "faucet.toml"
    path.write_text("\n".join(lines))
    (tmp_path / "examples" / "plumber").mkdir(parents=True)
    config = load_config(path, {}, {})
    assert config.telemetry.namespace == "faucet"
    assert config.route[0].route == "/api/"
