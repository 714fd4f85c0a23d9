"""The app-kind table (pure)."""

from faucet.config.app_kinds import KINDS
from faucet.config.strategy import Strategy


def test_shiny_kinds_default_to_a_sticky_strategy():
    assert {name: kind.default_strategy for name, kind in KINDS.items()} == {
        "plumber": Strategy.ROUND_ROBIN,
        "shiny": Strategy.COOKIE_HASH,
        "quarto-shiny": Strategy.COOKIE_HASH,
        "fast-api": Strategy.ROUND_ROBIN,
    }


def test_each_kind_names_the_setting_of_its_executable():
    assert {name: kind.runtime.key for name, kind in KINDS.items()} == {
        "plumber": "rscript", "shiny": "rscript", "quarto-shiny": "quarto", "fast-api": "uv"}


def test_argv_templates_use_only_the_documented_fields():
    for kind in KINDS.values():
        for part in kind.argv:
            part.format(exe="", port=0, app_dir="", qmd="")  # KeyError on anything else


def test_only_quarto_needs_a_document_and_only_r_apps_are_detected():
    assert [name for name, kind in KINDS.items() if kind.needs_qmd] == ["quarto-shiny"]
    assert [name for name, kind in KINDS.items() if kind.detected_by] == ["plumber", "shiny"]
