"""``faucet router --conf FILE`` with a bad route file: exit 2, naming the route and the
key."""

from __future__ import annotations

import pytest

from tests.helpers import (
    run_to_exit,
)

BAD_FILES = {
    "toml syntax": ('[[route]]\nroute = "/api/\n', "{conf}: invalid TOML: "),
    "missing field": ('[[route]]\nroute = "/api/"\nserver_type = "plumber"\n',
                      "route[0].workers (from {conf}): required key is missing"),
    "duplicate route": (
        '[[route]]\nroute = "/api/"\nserver_type = "plumber"\nworkers = 1\n' * 2,
        "route[1].route = '/api/' (from {conf}): duplicate of route[0]"),
    "unknown server_type": (
        '[[route]]\nroute = "/api/"\nserver_type = "django"\nworkers = 1\n',
        "route[0].server_type = 'django' (from {conf}): expected one of: plumber, shiny, "),
    "missing workdir": (
        '[[route]]\nroute = "/api/"\nserver_type = "plumber"\nworkers = 1\nworkdir = "gone"\n',
        "route[0].workdir = 'gone' (from {conf}): directory not found: {dir}/gone"),
}


@pytest.mark.parametrize(("text", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_router_file_exits_2_naming_route_and_key(tmp_path, text, expected):
    conf = tmp_path / "frouter.toml"
    conf.write_text(text)
    result = run_to_exit("router", "--conf", str(conf))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"faucet: {expected.format(conf=conf, dir=tmp_path)}")
