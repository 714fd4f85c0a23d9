"""The layer rule (docs/design.md), read from the imports: each package of faucet imports
only the layers below it, and a sink plugin needs nothing but ``faucet.sinks``."""

import ast
from pathlib import Path

import faucet.sinks
from tests.helpers import ROOT

PACKAGE = ROOT / "faucet"
BASE = {"errors", "events", "redact", "ratelimit"}  # leaves: they import nothing of faucet
# Each layer, and the layers it may import besides itself and the leaves.
MAY_IMPORT = {
    "config": set(),
    "http": set(),
    "logs": {"config"},
    "sinks": {"config"},
    "pool": {"config", "http", "logs"},
    "edge": {"config", "http"},
    "workers": {"pool", "config", "logs"},
    "telemetry": {"sinks", "config", "logs"},
    "proxy": {"pool", "http", "telemetry", "config", "logs"},
    "lifecycle": {"proxy", "workers", "pool", "telemetry", "config", "http", "logs"},
}
TOP = {"app", "cli", "__main__", "__init__"}  # anything


def layer(module: str) -> str:
    """``faucet.pool.backend`` -> ``pool``; ``faucet.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def faucet_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``faucet...`` module ``path`` imports, with the names it takes from it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "faucet" or node.module.startswith("faucet."):
                found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names
                      if alias.name.startswith("faucet.")]
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_every_package_imports_only_the_layers_below_it():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer(module_name(path))
        if own in TOP:
            continue
        allowed = {own} | (set() if own in BASE else BASE | MAY_IMPORT[own])
        for module, names in faucet_imports(path):
            targets = ([f"{module}.{name}" for name in names] if module == "faucet"
                       else [module])
            broken += [f"{module_name(path)} imports {target}" for target in targets
                       if layer(target) not in allowed]
    assert broken == []


def test_every_module_belongs_to_a_declared_layer():
    layers = {layer(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert layers <= TOP | BASE | MAY_IMPORT.keys()


def test_the_example_sink_plugin_uses_only_the_declared_plugin_api():
    plugin = ROOT / "examples" / "sink-plugin"
    used = [(module, name) for path in plugin.rglob("*.py")
            for module, names in faucet_imports(path) for name in names or ["*"]]
    assert used, "the example plugin imports nothing of faucet"
    assert all(module == "faucet.sinks" for module, _ in used), used
    assert {name for _, name in used} <= set(faucet.sinks.__all__)
    for name in faucet.sinks.__all__:
        assert getattr(faucet.sinks, name) is not None
