"""The app kinds beyond R: fast-api (``uv run fastapi run``) and quarto-shiny (``quarto
serve``, played by a stand-in script since Quarto is not packaged here), plus ``faucet uv``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers import run_to_exit

# Answers every GET with what faucet started it with: argv, cwd and FAUCET_WORKER_ID.






def test_quarto_shiny_without_qmd_is_a_start_up_error(tmp_path: Path):
    result = run_to_exit("start", "--type", "quarto-shiny", "--dir", str(tmp_path),
                         "--quarto", sys.executable)
    assert result.returncode == 2
    assert "qmd: required for --type quarto-shiny" in result.stderr
    assert "Traceback" not in result.stderr


def test_uv_subcommand_passes_the_exit_code_on(uv_bin: str):
    code = "import sys; print('hi from uv'); sys.exit(3)"
    result = run_to_exit("uv", "run", "--no-project", "python", "-c", code,
                         env={"FAUCET_UV": uv_bin})
    assert result.returncode == 3
    assert result.stdout == "hi from uv\n"


def test_uv_subcommand_without_uv_exits_2():
    result = run_to_exit("--uv", "/nonexistent/uv", "uv", "--version")
    assert result.returncode == 2
    assert "uv = '/nonexistent/uv': not found" in result.stderr
    assert "Traceback" not in result.stderr


# Run in the example's own environment: its app, called as uvicorn would call it, with the
# header faucet's router sends (tests/e2e/test_router_e2e.py checks that faucet sends it).


