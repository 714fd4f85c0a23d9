"""The ``[[route]]`` tables: Rust spellings, paths against the file, every problem at once."""

from pathlib import Path

import pytest

from faucet.config.routes import RouteConfig, load_routes, normalise_route_tables
from faucet.config.strategy import Strategy
from faucet.errors import ConfigError
from tests.helpers import ROOT


@pytest.fixture
def conf(tmp_path: Path):
    """Write a frouter.toml in a directory holding the app folders ``api`` and ``app``."""
    (tmp_path / "api").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "doc.qmd").write_text("")
    path = tmp_path / "frouter.toml"

    def write(text: str) -> Path:
        path.write_text(text)
        return path

    return write


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_routes(path)
    return caught.value.problems


GOOD = """
[[route]]
route = "/api/"
server_type = "Plumber"
workers = 2
strategy = "RoundRobin"
workdir = "api"

[[route]]
route = "/doc/"
server_type = "QuartoShiny"
workers = 1
strategy = "ip_hash"
workdir = "./app"
qmd = "doc.qmd"

[[route]]
route = "/"
server_type = "shiny"
workers = 1
app_dir = "app"
"""


def test_rust_spellings_normalised_and_workdir_relative_to_file(conf, tmp_path, monkeypatch):
    path = conf(GOOD)
    monkeypatch.chdir(tmp_path / "api")  # the cwd must not matter
    api, doc, root = load_routes(path)
    assert api == RouteConfig(
        route="/api/",
        server_type="plumber",
        workers=2,
        strategy="round-robin",
        workdir=str(tmp_path / "api"),
    )
    assert (doc.server_type, doc.strategy, doc.workdir, doc.qmd) == (
        "quarto-shiny",
        "ip-hash",
        str(tmp_path / "app"),
        "doc.qmd",
    )
    assert (root.workdir, root.app_dir, root.strategy) == (str(tmp_path), "app", None)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("fast-api", "fast-api"), ("FastAPI", "fast-api"), ("quarto_shiny", "quarto-shiny")],
)
def test_server_type_aliases(conf, spelling, canonical):
    qmd = '\nqmd = "app/doc.qmd"' if canonical == "quarto-shiny" else ""
    path = conf(f'[[route]]\nroute = "/"\nserver_type = "{spelling}"\nworkers = 1{qmd}')
    assert load_routes(path)[0].server_type == canonical


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("round_robin", Strategy.ROUND_ROBIN), ("IpHash", Strategy.IP_HASH),
        ("cookie_hash", Strategy.COOKIE_HASH), ("CookieHash", Strategy.COOKIE_HASH),
        ("least-busy", Strategy.LEAST_BUSY), ("least_busy", Strategy.LEAST_BUSY),
        ("LeastBusy", Strategy.LEAST_BUSY),
    ],
)
def test_strategy_spellings(conf, spelling, canonical):
    path = conf(f'[[route]]\nroute = "/"\nserver_type = "plumber"\nworkers = 1\n'
                f'strategy = "{spelling}"')
    assert load_routes(path)[0].strategy is canonical


def test_toml_syntax_error_names_the_line(conf):
    (line,) = problems(conf('[[route]]\nroute = "/api/\n'))
    assert "invalid TOML" in line and "line 2" in line


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('route = "/"\nworkers = 1', "route[0].server_type (from {}): required key is missing"),
        (
            'route = "/"\nserver_type = "shiny"\nworkers = 1\nport = 1',
            "route[0].port (from {}): unknown key; allowed here: route, server_type, workers",
        ),
        (
            'route = "/"\nserver_type = "django"\nworkers = 1',
            "route[0].server_type = 'django' (from {}): expected one of: plumber, shiny, "
            "quarto-shiny, fast-api",
        ),
        ('route = "/"\nserver_type = "shiny"\nworkers = 0', "route[0].workers = 0 (from {}): must"),
        (
            'route = "/"\nserver_type = "shiny"\nworkers = "2"',
            "route[0].workers = '2' (from {}): expected an integer",
        ),
        (
            'route = "/"\nserver_type = "shiny"\nworkers = true',
            "route[0].workers = True (from {}): expected an integer",
        ),
        (
            'route = "api/"\nserver_type = "shiny"\nworkers = 1',
            "route[0].route = 'api/' (from {}): must start with '/'",
        ),
        (
            'route = "/"\nserver_type = "plumber"\nworkers = 1\nstrategy = "rps"',
            "route[0].max_rps (from {}): required with strategy = 'rps'",
        ),
        (
            'route = "/"\nserver_type = "plumber"\nworkers = 2\nmax_rps = 0',
            "route[0].max_rps = 0 (from {}): must be a number greater than 0",
        ),
        (
            'route = "/"\nserver_type = "plumber"\nworkers = 2\nmax_rps = nan',
            "route[0].max_rps = nan (from {}): must be a number greater than 0",
        ),
        (
            'route = "/"\nserver_type = "plumber"\nworkers = 2\nmax_rps = "10"',
            "route[0].max_rps = '10' (from {}): expected a number",
        ),
        (
            'route = "/"\nserver_type = "plumber"\nworkers = 2\nmin_workers = 3',
            "route[0].min_workers = 3 (from {}): must be at most workers (2)",
        ),
        (
            'route = "/"\nserver_type = "shiny"\nworkers = 1\nstrategy = "sticky"',
            "route[0].strategy = 'sticky' (from {}): expected one of: round-robin, ip-hash, "
            "cookie-hash, least-busy, rps",
        ),
        (
            'route = "/"\nserver_type = "quarto-shiny"\nworkers = 1',
            "route[0].qmd (from {}): required when server_type is quarto-shiny",
        ),
        (
            'route = "/"\nserver_type = "shiny"\nworkers = 1\napp_dir = "nope"',
            "route[0].app_dir = 'nope' (from {}): directory not found: ",
        ),
    ],
)
def test_bad_table_names_index_and_key(conf, table, expected):
    path = conf(f"[[route]]\n{table}\n")
    (line,) = problems(path)
    assert line.startswith(expected.format(path))


def test_missing_workdir_shows_resolved_path(conf, tmp_path):
    path = conf('[[route]]\nroute = "/"\nserver_type = "shiny"\nworkers = 1\nworkdir = "../gone"')
    (line,) = problems(path)
    assert line == (
        f"route[0].workdir = '../gone' (from {path}): "
        f"directory not found: {tmp_path.parent / 'gone'}"
    )


def test_every_problem_is_reported_at_once(conf):
    path = conf(
        '[[route]]\nroute = "/"\nworkers = 0\n'
        '[[route]]\nroute = "/a/"\nserver_type = "shiny"\nworkers = 1\nextra = 1\n'
        '[[route]]\nroute = "/b/"\nserver_type = "shiny"\nworkers = 1\n'
        '[[route]]\nroute = "/b/"\nserver_type = "shiny"\nworkers = 1\n'
    )
    assert [line.split(" ")[0] for line in problems(path)] == [
        "route[0].server_type",
        "route[0].workers",
        "route[1].extra",
        "route[1].route",  # route[0] = "/" takes every path, whatever else is wrong with it
        "route[2].route",
        "route[3].route",
    ]


def test_the_mistakes_docs_router_md_lists_come_in_one_run(tmp_path, monkeypatch):
    """docs/router.md's example output, line for line, from one run over a file that has
    all four mistakes (a bad value, an unknown type, a missing workdir, a shadowed route)."""
    text = (ROOT / "docs" / "router.md").read_text()
    block = text.split("### Mistakes are reported, all at once")[1].split("```")[1]
    documented = block.strip().splitlines()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plumber").mkdir()
    table = '[[route]]\nroute = "{}"\nserver_type = "{}"\nworkers = {}\nworkdir = "{}"\n'
    Path("frouter.toml").write_text("".join(table.format(*row) for row in [
        ("/api/", "plumber", 1, "apps/x"), ("/b/", "plumber", 0, "plumber"),
        ("/c/", "django", 1, "plumber"), ("/api/v2/", "plumber", 1, "plumber")]))
    shown = [line.replace(str(tmp_path), "/srv") for line in problems(Path("frouter.toml"))]
    assert shown == documented


def test_duplicate_and_shadowed_routes(conf):
    table = '[[route]]\nroute = "{}"\nserver_type = "plumber"\nworkers = 1\n'
    path = conf("".join(table.format(r) for r in ["/api/", "/api/", "/api/v2/", "/api", "/"]))
    lines = problems(path)
    assert lines[0] == f"route[1].route = '/api/' (from {path}): duplicate of route[0]"
    assert lines[1].startswith(f"route[2].route = '/api/v2/' (from {path}): never reached: ")
    assert lines[2].startswith(f"route[3].route = '/api' (from {path}): never reached: ")
    assert len(lines) == 3


@pytest.mark.parametrize("text", ["", "route = []\n"])
def test_no_routes(conf, text):
    path = conf(text)
    assert problems(path)[-1] == f"{path}: no [[route]] tables; router mode needs at least one"


def test_unknown_top_level_key(conf):
    path = conf('host = "0.0.0.0:80"\n' + GOOD)
    assert problems(path) == [f"host (from {path}): unknown key; allowed here: route"]


def test_missing_file(tmp_path):
    (line,) = problems(tmp_path / "frouter.toml")
    assert line.startswith("cannot read config file")


def test_normalise_for_faucet_toml(tmp_path):
    raw = [{"route": "/", "server_type": "Shiny", "workers": 3}]
    (route,) = normalise_route_tables(raw, tmp_path, "faucet.toml")
    assert (route.server_type, route.workdir) == ("shiny", str(tmp_path))
    assert normalise_route_tables([], tmp_path, "faucet.toml") == []
    with pytest.raises(ConfigError) as caught:
        normalise_route_tables({"route": "/"}, tmp_path, "faucet.toml")
    assert caught.value.problems == [
        "route = {'route': '/'} (from faucet.toml): expected [[route]] tables"
    ]


def test_example_file_loads():
    example = Path(__file__).parent.parent / "examples" / "frouter.toml"
    routes = load_routes(example)
    assert [(r.route, r.server_type, Path(r.workdir).name) for r in routes] == [
        ("/api/", "plumber", "plumber"), ("/shiny/", "shiny", "shiny"),
        ("/py/", "fast-api", "fastapi")]
