"""FAUCET_LOG / log_level in env_logger's syntax, read as Python levels (pure)."""

import logging
import re

import pytest

from faucet.config.log_spec import OFF, LogSpec, parse_log_spec


@pytest.mark.parametrize(("text", "level"), [
    ("error", logging.ERROR), ("WARN", logging.WARNING), ("Info", logging.INFO),
    ("debug", logging.DEBUG), ("trace", logging.DEBUG), ("OFF", OFF),
    ("warning", logging.WARNING), (" warn ", logging.WARNING),
])
def test_bare_levels_in_any_case(text, level):
    assert parse_log_spec(text) == LogSpec(level)


def test_directives_name_loggers_and_a_bare_level_is_the_default():
    assert parse_log_spec("faucet=debug, hypercorn=WARN,info") == LogSpec(
        logging.INFO, (("faucet", logging.DEBUG), ("hypercorn", logging.WARNING)))


def test_directives_alone_switch_everything_else_off_like_env_logger():
    assert parse_log_spec("faucet.access=info") == LogSpec(OFF, (("faucet.access", 20),))


def test_a_target_with_no_level_means_every_level():
    assert parse_log_spec("warn,mylib=") == LogSpec(logging.WARNING, (("mylib", logging.DEBUG),))


def test_a_filter_after_the_slash():
    spec = parse_log_spec("info/time(d)? out")
    assert spec.default == logging.INFO and spec.pattern.search("request timed out")


@pytest.mark.parametrize(("text", "message"), [
    ("inof", "'inof' is not a level (for every level of the logger inof, write inof=trace)"),
    ("", "expected a level"),
    ("faucet=loud", "unknown level 'loud' for faucet"),
    ("=debug", "'=debug' names no target"),
    ("info/(", "not a regular expression"),
])
def test_bad_specs_say_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_log_spec(text)
