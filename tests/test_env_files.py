""".Renviron / .env read as the Rust server's dotenv crate reads them (pure and on files)."""

import pytest

from faucet.config.env_files import load_env_files, parse_env_file


def values(text, environ=None):
    parsed, problems = parse_env_file(text, environ or {})
    assert problems == []
    return parsed


def test_plain_quoted_exported_and_commented_lines():
    assert values(
        "# a comment\n"
        "\n"
        "PLAIN=1\n"
        "  SPACED  =  2  \n"
        "export EXPORTED=3\n"
        "SINGLE='fo ur $NOT'\n"
        'DOUBLE="fi ve \\"q\\" \\\\ \\n"\n'
        "ESCAPED=s\\ ix\n"
        "EMPTY=\n"
        "COMMENT_ONLY=   # nothing\n"
        "TRAILING=value   # note\n"
        "HASH=a#b\n"
        "MIXED='a'\"b\"c\n"
        "dotted.key=ok\n"
    ) == {
        "PLAIN": "1", "SPACED": "2", "EXPORTED": "3", "SINGLE": "fo ur $NOT",
        "DOUBLE": 'fi ve "q" \\ \n', "ESCAPED": "s ix", "EMPTY": "", "COMMENT_ONLY": "",
        "TRAILING": "value", "HASH": "a#b", "MIXED": "abc", "dotted.key": "ok",
    }


def test_references_take_the_environment_first_then_earlier_lines():
    assert values(
        "USER=file\n"
        "A=$USER-${HOME}\n"
        "B=\"${USER}x $MISSING.\"\n"
        "C=$USER_suffix\n"
        "D=\\$USER\n",
        {"HOME": "/home/u"},
    ) == {"USER": "file", "A": "file-/home/u", "B": "filex .", "C": "file_suffix",
          "D": "$USER"}
    assert values("USER=file\nA=$USER\n", {"USER": "env"})["A"] == "env"


@pytest.mark.parametrize(("line", "problem"), [
    ("KEY=two words", "a value with spaces needs quotes"),
    ('KEY="open', 'no closing "'),
    ("KEY='open", "no closing '"),
    ("KEY=h\\8u", "unknown escape \\8"),
    ("KEY=${OPEN", "no closing } after ${"),
    ("=value", "expected KEY=value with KEY made of letters, digits, _ and ."),
    ("just words", "expected just=value"),
])
def test_unreadable_lines_are_reported_and_skipped(line, problem):
    parsed, problems = parse_env_file(f"BEFORE=1\n{line}\nAFTER=2\n", {})
    assert parsed == {"BEFORE": "1", "AFTER": "2"}
    assert problems == [(2, problem)]


def test_real_environment_wins_and_renviron_wins_over_env(tmp_path):
    (tmp_path / ".Renviron").write_text("SHARED=renviron\nONLY_R=r\n")
    (tmp_path / ".env").write_text("SHARED=env\nSET=env\nONLY_ENV=${ONLY_R}+e\nbad line\n")
    environ = {"SET": "real"}
    warnings = load_env_files(tmp_path, environ)
    assert environ == {"SET": "real", "SHARED": "renviron", "ONLY_R": "r", "ONLY_ENV": "r+e"}
    assert warnings == [f"{tmp_path / '.env'}:4: expected bad=value; line skipped"]


def test_no_files_no_change(tmp_path):
    environ = {"A": "1"}
    assert load_env_files(tmp_path, environ) == [] and environ == {"A": "1"}
