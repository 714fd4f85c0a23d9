"""A Shiny app is never run with a non-sticky strategy: it is made sticky, with a warning."""

import logging

import attrs
import pytest

from faucet.config.app_kinds import strategy_for
from faucet.config.settings import load_config
from faucet.config.strategy import Strategy
from faucet.lifecycle.plan import plan_router, plan_start
from tests.helpers import PLUMBER, SHINY, config_for

S = Strategy


@pytest.mark.parametrize(("kind", "chosen", "expected", "warned"), [
    ("shiny", S.ROUND_ROBIN, S.COOKIE_HASH, True),
    ("shiny", S.LEAST_BUSY, S.COOKIE_HASH, True),
    ("quarto-shiny", S.ROUND_ROBIN, S.COOKIE_HASH, True),
    ("shiny", S.IP_HASH, S.IP_HASH, False),
    ("shiny", None, S.COOKIE_HASH, False),
    ("plumber", S.LEAST_BUSY, S.LEAST_BUSY, False),
    ("plumber", None, S.ROUND_ROBIN, False),
])
def test_strategy_for(kind, chosen, expected, warned):
    strategy, warning = strategy_for(kind, chosen, "strategy")
    assert strategy == expected and bool(warning) == warned


def test_start_makes_shiny_sticky_and_says_so(caplog):
    config = attrs.evolve(config_for(dir=str(SHINY)), strategy="round-robin")
    with caplog.at_level(logging.WARNING, logger="faucet"):
        (app,) = plan_start(config).apps
    assert app.strategy == S.COOKIE_HASH
    assert caplog.messages == [
        "strategy = 'round-robin' is not sticky, but a shiny session must stay on its worker "
        "process: using cookie-hash instead"]


def test_router_names_the_route(tmp_path, caplog):
    conf = tmp_path / "faucet.toml"
    conf.write_text(
        f'[[route]]\nroute = "/api/"\nserver_type = "plumber"\nworkdir = "{PLUMBER}"\n'
        f'strategy = "least-busy"\nworkers = 1\n'
        f'[[route]]\nroute = "/"\nserver_type = "shiny"\nworkdir = "{SHINY}"\n'
        f'strategy = "least-busy"\nworkers = 1\n')
    config = load_config(conf, {}, {})
    with caplog.at_level(logging.WARNING, logger="faucet"):
        apps = plan_router(config, config.route).apps
    assert [app.strategy for app in apps] == [S.LEAST_BUSY, S.COOKIE_HASH]
    assert caplog.messages == [
        "route[1].strategy = 'least-busy' is not sticky, but a shiny session must stay on its "
        "worker process: using cookie-hash instead"]
