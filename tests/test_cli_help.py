"""``faucet --help`` and its commands' help, read by a newcomer: short on top, grouped by
topic, each command only its own options, a close match for a typo (in-process, quick)."""

import pytest

from faucet.cli import build_parser, main
from faucet.config.flags import COMMAND_GROUPS, GROUPS, command_keys, every_key
from faucet.config.settings import env_name, flag_name


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_top_level_help_is_short_with_examples_and_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and len(out.splitlines()) < 45  # was 257 lines
    assert "examples:" in out and "faucet start --dir" in out
    for command in ("start", "router", "rscript", "uv", "telemetry", "config", "docs"):
        assert f"    {command} " in out
    assert "--max-body-size" not in out and "--telemetry-namespace" not in out


def test_every_setting_is_in_one_group_and_some_command_shows_it():
    grouped = [key for keys in GROUPS.values() for key in keys]
    assert sorted(grouped) == sorted(every_key())
    shown = {key for command in COMMAND_GROUPS for key in command_keys(command)}
    assert shown == set(every_key())


def test_start_help_groups_options_by_topic_with_env_and_default(capsys):
    code, out, _ = run(capsys, "start", "--help")
    assert code == 0 and out.startswith("usage: faucet start [OPTIONS]")
    assert "examples:" in out.split("options:")[0]
    for title in ("app (start):", "workers:", "proxy limits:", "Shiny sessions:",
                  "telemetry:", "logging:"):
        assert f"\n{title}\n" in out
    flat = " ".join(out.split())
    assert "--workers WORKERS" in flat and f"[env: {env_name('workers')}]" in flat
    assert "[default: 16Mi]" in flat  # max_message_size
    assert "--telemetry-sink-option KEY=VALUE" in flat


@pytest.mark.parametrize(("argv", "absent", "present"), [
    (("telemetry", "init"), ["--workers", "--max-body-size", "--log-file"],
     ["--telemetry-postgres-string", "--timescale"]),
    (("router",), ["--workers", "--dir", "--app-dir"], ["--conf", "--uv"]),
    (("config", "example"), ["--workers"], []),
])
def test_each_command_shows_only_its_own_options(capsys, argv, absent, present):
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    for flag in absent:
        assert flag not in out
    for flag in present:
        assert flag in out


def test_a_typo_gets_a_close_match_in_two_lines_not_the_usage(capsys):
    code, out, err = run(capsys, "start", "--hlep")
    assert code == 2 and out == ""
    assert err.splitlines() == ["faucet start: unknown option --hlep; did you mean --help?",
                                "Run 'faucet start --help' for its options."]
    _, _, err = run(capsys, "start", "--wokers=2")
    assert "unknown option --wokers; did you mean --workers?" in err
    _, _, err = run(capsys, "strat")
    assert "did you mean start?" in err and len(err.splitlines()) == 2
    _, _, err = run(capsys, "start", "--workers")
    assert err.startswith("faucet start: argument -w/--workers: expected one argument")


def test_options_still_go_before_the_command():
    args, _ = build_parser().parse_known_args(["--workers", "3", "start", "--dir", "x"])
    assert (args.workers, args.dir) == ("3", "x")


def test_flags_are_the_settings_names():
    """--help's flags are the one name of DESIGN.md: key workers <-> --workers."""
    parser = build_parser()
    options = set(parser._option_string_actions)
    assert {flag_name(key) for key in every_key() if key != "telemetry.sink_options"} <= options
