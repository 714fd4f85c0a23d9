"""``.Renviron`` and ``.env`` in the working directory, loaded at start-up as the Rust
server loads them: each ``KEY=value`` becomes an environment variable unless the real
environment already has it (so it wins, and ``.Renviron``, read first, wins over ``.env``);
workers inherit them, and ``FAUCET_*`` ones configure faucet.

The syntax is the Rust ``dotenv`` crate's: ``KEY=value``, an optional ``export``, ``#``
comments, ``'literal'`` and ``"escaped"`` quotes (``\\n``, ``\\"``, ``\\\\``, ``\\$``,
``\\ ``), ``$NAME`` and ``${NAME}`` taken from the environment or earlier lines (empty when
unset; not inside single quotes), unquoted values ending at whitespace. A line it cannot
read is skipped with a warning instead of ending the file silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

FILES = (".Renviron", ".env")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_ESCAPES = {"n": "\n", "\\": "\\", "'": "'", '"': '"', "$": "$", " ": " "}


def parse_env_file(text: str, environ: Mapping[str, str]
                   ) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The file's variables in order, and (line number, problem) for lines skipped."""
    values: dict[str, str] = {}
    problems = []

    def lookup(name: str) -> str:
        return environ.get(name, values.get(name, ""))

    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed = _line(line, lookup)
        except ValueError as exc:
            problems.append((number, str(exc)))
        else:
            if parsed is not None:
                values[parsed[0]] = parsed[1]
    return values, problems


def load_env_files(directory: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Add the variables of ``directory``'s env files that ``environ`` lacks; a warning
    line for each file that cannot be read and each line skipped."""
    warnings = []
    for name in FILES:
        path = directory / name
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(f"{path}: not loaded: {exc}")
            continue
        values, problems = parse_env_file(text, environ)
        warnings += [f"{path}:{number}: {problem}; line skipped" for number, problem in problems]
        for key, value in values.items():
            environ.setdefault(key, value)
    return warnings


def _line(line: str, lookup: Callable[[str], str]) -> tuple[str, str] | None:
    rest = line.strip()
    if not rest or rest.startswith("#"):
        return None
    key, rest = _key(rest)
    if key == "export" and not rest.lstrip().startswith("="):
        key, rest = _key(rest.lstrip())
    rest = rest.lstrip()
    if not rest.startswith("="):
        raise ValueError(f"expected {key}=value")
    rest = rest[1:].lstrip()
    return key, "" if rest.startswith("#") else _value(rest, lookup)


def _key(text: str) -> tuple[str, str]:
    match = _KEY.match(text)
    if match is None:
        raise ValueError("expected KEY=value with KEY made of letters, digits, _ and .")
    return match.group(), text[match.end():]


def _value(text: str, lookup: Callable[[str], str]) -> str:
    out = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
        elif char == "\\":
            if text[index:index + 1] not in _ESCAPES:
                raise ValueError(f"unknown escape \\{text[index:index + 1]}")
            out.append(_ESCAPES[text[index]])
            index += 1
        elif char == "$":
            name, index = _reference(text, index)
            out.append(lookup(name))
        elif quote == '"':
            if char == '"':
                quote = ""
            else:
                out.append(char)
        elif char in "'\"":
            quote = char
        elif char in " \t":
            tail = text[index:].lstrip(" \t")
            if tail and not tail.startswith("#"):
                raise ValueError("a value with spaces needs quotes")
            break
        else:
            out.append(char)
    if quote:
        raise ValueError(f"no closing {quote}")
    return "".join(out)


def _reference(text: str, index: int) -> tuple[str, int]:
    """The name after a ``$`` at ``index`` (``NAME`` or ``{NAME}``) and where it ends."""
    if text[index:index + 1] == "{":
        end = text.find("}", index)
        if end < 0:
            raise ValueError("no closing } after ${")
        return text[index + 1:end], end + 1
    end = index
    while end < len(text) and text[end].isalnum():
        end += 1
    return text[index:end], end
