"""faucet's settings: frozen attrs classes and the layered loader.

Precedence, lowest to highest: defaults < faucet.toml < ``FAUCET_*`` env < CLI flags.
A setting has one name everywhere: key ``workers`` <-> ``FAUCET_WORKERS`` <-> ``--workers``;
in ``[telemetry]``, key ``namespace`` <-> ``FAUCET_TELEMETRY_NAMESPACE`` <->
``--telemetry-namespace``. Every problem is reported with its key, the bad value, where it
came from and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import attrs
import cattrs
from attrs import field, frozen

from faucet.config.app_kinds import KINDS
from faucet.config.cpus import available_cpus
from faucet.config.log_spec import parse_log_spec
from faucet.config.routes import RouteConfig, normalise_route_tables
from faucet.config.source import problem_line, read_toml
from faucet.config.strategy import Strategy
from faucet.errors import ConfigError
from faucet.redact import redact

IP_FROM = ("client", "x-forwarded-for", "x-real-ip")
SHUTDOWN = ("graceful", "immediate")
LOG_FORMATS = ("text", "json")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
             "on": True, "off": False}
_PREFIXES = "kmgtpe"
_NUMBER = re.compile(r"\d+(\.\d*)?(e[+-]?\d+)?", re.IGNORECASE)
_SIZE_HELP = ("expected a size like 10M, 1.5G or 512Ki (K, M, G, T: powers of 1000; "
              "Ki, Mi, Gi, Ti: powers of 1024)")


def parse_size(text: str | int) -> int:
    """Bytes from ``10M``, ``1.5GB``, ``512Ki`` or a plain number, as the Rust server reads
    them (its ``parse-size`` crate): K, M, G, T, P, E are powers of 1000 and Ki, Mi... powers
    of 1024, in any case; the trailing ``B`` is optional; fractions round to the nearest
    byte; ``_`` and spaces inside the number are ignored."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ValueError(_SIZE_HELP)
    if isinstance(text, int):
        return text
    rest = text.strip()
    if rest[-1:] in ("b", "B"):
        rest = rest[:-1]
    base = 1000
    if rest[-1:] in ("i", "I"):
        rest, base = rest[:-1], 1024
    power = 0
    if rest[-1:] and rest[-1].lower() in _PREFIXES:
        power = _PREFIXES.index(rest[-1].lower()) + 1
        rest = rest[:-1]
    number = rest.replace("_", "").replace(" ", "")
    if not _NUMBER.fullmatch(number):
        raise ValueError(_SIZE_HELP)
    exact = Decimal(number) * base**power
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


class ByteSize(int):
    """A size setting's bytes, parsed once from ``10M`` (faucet.toml, env or a flag) and
    used as a plain int everywhere; it shows as it was written (``--help``, health)."""

    spelling: str

    def __new__(cls, text: str | int) -> ByteSize:
        size = super().__new__(cls, parse_size(text))
        size.spelling = str(text)
        return size

    def __str__(self) -> str:
        return self.spelling


def _one_of(choices: tuple[str, ...]):
    def check(value):
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")

    return check


def _at_least(minimum: float):
    def check(value):
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")

    return check


def _positive(value):
    if value <= 0:
        raise ValueError("must be greater than 0")


def _rate(value):
    if not 0 < value < math.inf:
        raise ValueError("must be a number greater than 0")


def _host_port(value):
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:3838 or 0.0.0.0:80")


def setting(default, check=None):
    """An attrs field whose ``check(value)`` raises ValueError with what is allowed.

    Checks run after structuring (``validate``), so every bad key is reported at once
    instead of only the first one attrs would stop at.
    """
    return field(default=default, metadata={"check": check} if check else {})


def size_setting(default: str | None, least: int = 1):
    """A size setting (``ByteSize``), parsed once however the Config is made."""
    return field(default=_size(default), converter=_size,
                 metadata={"check": _at_least(least)})


def _size(value: str | int | None) -> ByteSize | None:
    return value if value is None or isinstance(value, ByteSize) else ByteSize(value)


def validate(obj: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(key, value, message)`` for every setting of ``obj`` that fails its check."""
    problems = []
    for attribute in attrs.fields(type(obj)):
        value = getattr(obj, attribute.name)
        key = f"{prefix}{attribute.name}"
        check = attribute.metadata.get("check")
        if check is not None and value is not None:
            try:
                check(value)
            except ValueError as exc:
                problems.append((key, value, str(exc)))
        if attrs.has(type(value)):
            problems += validate(value, key + ".")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if attrs.has(type(item)):
                    problems += validate(item, f"{key}[{index}].")
    return problems


@frozen
class TelemetryConfig:
    """The ``[telemetry]`` table. Off unless a connection string or a sink is given."""

    postgres_string: str | None = None
    namespace: str = "faucet"
    version: str | None = None
    # None: ``postgres`` when a connection string is set, else ``null``.
    sink: str | None = None
    sslmode: str | None = setting(None, _one_of(SSL_MODES))
    sslcert: str | None = None
    queue_size: int = setting(100_000, _at_least(1))
    batch_size: int = setting(5_000, _at_least(1))
    flush_interval: float = setting(1.0, _positive)
    flush_timeout: float = setting(10.0, _positive)
    # postgres sink: seconds to get a connection (libpq counts whole seconds, at least 2)
    # and to run one statement; a call silent for both together is abandoned as hung.
    connect_timeout: int = setting(5, _at_least(2))
    statement_timeout: float = setting(10.0, _positive)
    sink_options: dict[str, Any] = field(factory=dict)

    @property
    def sink_name(self) -> str:
        if self.sink:
            return self.sink
        return "postgres" if self.postgres_string else "null"

    @property
    def enabled(self) -> bool:
        return self.sink_name != "null"


@frozen
class Config:
    """Everything ``faucet start`` / ``faucet router`` need; see faucet.example.toml."""

    host: str = setting("127.0.0.1:3838", _host_port)
    # Default: the CPUs this process may use (affinity and cgroup quota), as the Rust server.
    workers: int = setting(attrs.Factory(available_cpus), _at_least(1))
    # None: the app kind's default (app_kinds.KINDS): sticky for Shiny, else round-robin.
    strategy: str | None = setting(None, _one_of(tuple(Strategy)))
    # rps: the pool runs between min_workers and workers: a worker for every max_rps
    # requests per second (more while requests queue); one the pool has not needed for
    # scale_down_after seconds stops.
    max_rps: float | None = setting(None, _rate)
    min_workers: int = setting(1, _at_least(0))
    scale_down_after: float = setting(30.0, _at_least(0))
    type: str = setting("auto", _one_of(("auto", *KINDS)))
    dir: str = "."
    app_dir: str | None = None
    qmd: str | None = None
    rscript: str = "Rscript"
    quarto: str = "quarto"
    uv: str = "uv"
    ip_from: str = setting("client", _one_of(IP_FROM))
    shutdown: str = setting("graceful", _one_of(SHUTDOWN))
    shutdown_timeout: float = setting(30.0, _at_least(0))
    # On SIGTERM, seconds faucet keeps serving while readiness already fails (Kubernetes).
    shutdown_delay: float = setting(0.0, _at_least(0))
    # Reloads (docs/deploy.md): how long a replaced generation's Shiny sessions may go on,
    # and where a running faucet writes its pid for `faucet reload` ("": derived from host).
    drain_timeout: float = setting(3600.0, _at_least(0))
    pid_file: str = ""
    # Development: reload an app once its folder's files change and then stay unchanged
    # for a moment (docs/deploy.md).
    watch: bool = False
    # Recycling (docs/workers.md): a worker's process is replaced after max_requests
    # requests (0: never), plus 0..max_requests_jitter drawn at each start, or once its
    # resident memory passes max_worker_memory (none: never).
    max_requests: int = setting(0, _at_least(0))
    max_requests_jitter: int = setting(0, _at_least(0))
    max_worker_memory: ByteSize | None = size_setting(None)
    # WebSocket messages, each way (1009 above it); hypercorn's own default.
    max_message_size: ByteSize = size_setting("16Mi")
    # A level or env_logger directives: "warn", "faucet=debug,hypercorn=warn" (log_spec).
    log_level: str = setting("info", parse_log_spec)
    log_file: str | None = None
    # With log_file, also write every line to stderr (as the Rust server does).
    log_stderr: bool = True
    max_log_file_size: ByteSize | None = size_setting(None)
    log_file_backups: int = setting(5, _at_least(0))
    log_format: str = setting("text", _one_of(LOG_FORMATS))
    conf: str = "frouter.toml"
    worker_wait_timeout: float = setting(30.0, _at_least(0))
    response_timeout: float = setting(300.0, _positive)
    startup_timeout: float = setting(60.0, _positive)
    max_inflight: int = setting(1, _at_least(1))
    max_queue: int = setting(1024, _at_least(1))
    sticky_grace: float = setting(3.0, _at_least(0))
    # The edge: what one client may hold (README "Limits").
    max_connections: int = setting(4096, _at_least(1))
    # Cleartext HTTP/2, for load balancers that speak it to backends (browsers never do);
    # off, as nginx has it, so HTTP/2's surface is open only to those who need it.
    h2c: bool = False
    # With h2c: requests one HTTP/2 connection may have under way (reset ones included),
    # and streams it may reset before their answer (net of those it let finish) before
    # it gets GOAWAY: rapid reset, CVE-2023-44487.
    h2_max_streams: int = setting(100, _at_least(1))
    h2_max_resets: int = setting(100, _at_least(0))
    # Seconds an idle client connection stays open between requests: set it above a load
    # balancer's idle timeout, so faucet is never the end that closes a pooled connection.
    keep_alive_timeout: float = setting(5.0, _positive)
    head_timeout: float = setting(10.0, _positive)
    client_body_timeout: float = setting(60.0, _positive)
    send_timeout: float = setting(60.0, _positive)
    max_body_size: ByteSize = size_setting("1G", least=0)
    proxy_buffer_size: ByteSize = size_setting("1M", least=0)
    max_spool_size: ByteSize = size_setting("1G", least=0)
    max_spool_total: ByteSize = size_setting("4G", least=0)
    max_websockets: int = setting(1024, _at_least(1))
    # What one client address (as ip_from finds it) may hold (None: no limit), and how
    # long a WebSocket without the reconnect script's heartbeat may carry no message.
    max_websockets_per_client: int | None = setting(None, _at_least(1))
    websocket_idle_timeout: float = setting(60.0, _positive)
    websocket_memory: ByteSize = size_setting("64M")
    health_details: str = setting("loopback", _one_of(("loopback", "all", "none")))
    # /__faucet__/metrics (Prometheus) and /__faucet__/dashboard (docs/insight.md): shown
    # to whom health_details allows, or to everyone reaching metrics_listen when that
    # separate address is set (they are then not on the main port).
    metrics: bool = True
    metrics_listen: str | None = setting(None, _host_port)
    # Hung workers (docs/workers.md): checked this often (0: never), probes answered
    # within liveness_timeout, restarted after unhealthy_after failures in a row.
    liveness_interval: float = setting(10.0, _at_least(0))
    liveness_timeout: float = setting(5.0, _positive)
    unhealthy_after: int = setting(2, _at_least(1))
    # Shiny sessions (docs/shiny.md): how long one waits for its client to come back,
    # what it may buffer meanwhile (each, and all together), the heartbeat that finds
    # clients gone silent, and how many one worker holds (None: no limit).
    reconnect_grace: float = setting(60.0, _at_least(0))
    # ... and one whose page never sent a message (Shiny's init): abandoned at once.
    reconnect_grace_unused: float = setting(10.0, _at_least(0))
    reconnect_buffer: ByteSize = size_setting("8M")
    reconnect_buffer_total: ByteSize = size_setting("256M")
    heartbeat_interval: float = setting(5.0, _positive)
    heartbeat_timeout: float = setting(20.0, _positive)
    max_sessions: int | None = setting(None, _at_least(1))
    max_sessions_per_client: int | None = setting(None, _at_least(1))
    telemetry: TelemetryConfig = field(factory=TelemetryConfig)
    route: list[RouteConfig] = field(factory=list)


# Names users of the Rust server already type, mapped to our keys (dotted for tables).
ENV_ALIASES = {
    "FAUCET_LOG": "log_level",
    "FAUCET_ROUTER_CONF": "conf",
    "FAUCET_TELEMETRY_POSTGRES_SSLMODE": "telemetry.sslmode",
    "FAUCET_TELEMETRY_POSTGRES_SSLCERT": "telemetry.sslcert",
    "FAUCET_PG_CON_STRING": "telemetry.postgres_string",
    "FAUCET_PG_SSLMODE": "telemetry.sslmode",
    "FAUCET_PG_SSLCERT": "telemetry.sslcert",
}
# FAUCET_* names that are no setting but are not mistakes either: FAUCET_CONFIG chooses
# faucet.toml, faucet gives each worker its FAUCET_WORKER_ID, and the Rust server's install
# instructions set FAUCET_VERSION.
OTHER_ENV = frozenset({"FAUCET_CONFIG", "FAUCET_WORKER_ID", "FAUCET_VERSION"})
CLI_ALIASES = {
    "--pg-con-string": "telemetry.postgres_string",
    "--pg-sslmode": "telemetry.sslmode",
    "--pg-sslcert": "telemetry.sslcert",
}
CONFIG_ENV = "FAUCET_CONFIG"
# The sink's options: a table in faucet.toml, pairs in the environment and on the command
# line (one flag per option), merged key by key in the usual order.
SINK_OPTIONS = "telemetry.sink_options"
SINK_OPTIONS_ENV = "FAUCET_TELEMETRY_SINK_OPTIONS"
SINK_OPTION_FLAG = "--telemetry-sink-option"
SINK_OPTIONS_HOWTO = (f"set sink options with {SINK_OPTION_FLAG} KEY=VALUE (repeatable), "
                      f"{SINK_OPTIONS_ENV}='KEY=VALUE,KEY=VALUE' (or a JSON object), "
                      "or a [telemetry.sink_options] table in faucet.toml")
# Keys only faucet.toml can set (tables and lists).
_FILE_ONLY = {"telemetry", "route", "telemetry.sink_options"}


def setting_keys() -> list[str]:
    """Every scalar setting as a dotted key: ``workers``, ``telemetry.namespace``..."""
    keys = [a.name for a in attrs.fields(Config) if a.name not in _FILE_ONLY]
    keys += [
        f"telemetry.{a.name}"
        for a in attrs.fields(TelemetryConfig)
        if f"telemetry.{a.name}" not in _FILE_ONLY
    ]
    return keys


def env_name(key: str) -> str:
    return "FAUCET_" + key.replace(".", "_").upper()


def flag_name(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def strict_int(value, _type):
        # bool is an int in Python; "4" from env/CLI is fine, 4.5 is not.
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError("expected an integer")
        return int(value)

    def strict_float(value, _type):
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)

    def strict_bool(value, _type):
        # bool("false") is True: only real booleans and their usual spellings count.
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        raise ValueError("expected true or false")

    def strict_str(value, _type):
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value

    conv.register_structure_hook(int, strict_int)
    conv.register_structure_hook(ByteSize, lambda value, _type: ByteSize(value))
    conv.register_structure_hook(float, strict_float)
    conv.register_structure_hook(bool, strict_bool)
    conv.register_structure_hook(str, strict_str)
    return conv


CONVERTER = _converter()


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _get(tree: Mapping, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted key -> value for every ``FAUCET_*`` variable that names a setting."""
    names = {env_name(key): key for key in setting_keys()} | ENV_ALIASES
    return {names[k]: v for k, v in environ.items() if k in names and v != ""}


def parse_sink_options(text: str) -> dict[str, Any]:
    """``FAUCET_TELEMETRY_SINK_OPTIONS``: ``key=value`` pairs separated by commas, or a
    JSON object (for values with commas, or numbers and booleans)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return dict(sink_option(part) for part in stripped.split(",") if part.strip())
    try:
        options = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON object: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError("expected a JSON object")
    return options


def sink_option(text: str) -> tuple[str, str]:
    """One ``key=value`` of ``--telemetry-sink-option`` (the value may hold ``=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError("expected KEY=VALUE, for example path=/var/log/faucet/events.jsonl")
    return key.strip(), value


def _merge_sink_options(merged: dict, origin: dict[str, str], environ: Mapping[str, str],
                        flag_values: list[str] | None) -> list[str]:
    """Lay the environment's and the flags' sink options over faucet.toml's table, key by
    key; a problem line for each that cannot be read."""
    layers = []
    if environ.get(SINK_OPTIONS_ENV):
        layers.append((SINK_OPTIONS_ENV, environ[SINK_OPTIONS_ENV], parse_sink_options))
    layers += [(SINK_OPTION_FLAG, text, lambda one: dict([sink_option(one)]))
               for text in flag_values or ()]
    problems = []
    for source, text, parse in layers:
        try:
            options = parse(text)
        except ValueError as exc:
            problems.append(redact(problem_line(SINK_OPTIONS, repr(text), str(exc), source)))
            continue
        table = merged.setdefault("telemetry", {})
        if isinstance(table, dict) and isinstance(table.setdefault("sink_options", {}), dict):
            table["sink_options"].update(options)
            origin.update({f"{SINK_OPTIONS}.{key}": source for key in options})
    return problems


def env_warnings(environ: Mapping[str, str]) -> list[str]:
    """A line for each ``FAUCET_*`` variable faucet ignores; a misspelt one gets the
    closest setting's name."""
    settings = {env_name(key) for key in setting_keys()} | set(ENV_ALIASES) | {SINK_OPTIONS_ENV}
    lines = []
    for name in sorted(environ):
        if not name.startswith("FAUCET_") or name in settings or name in OTHER_ENV:
            continue
        # Compared without the prefix every name shares, which would make all look close.
        close = difflib.get_close_matches(
            name.removeprefix("FAUCET_"), [known.removeprefix("FAUCET_") for known in settings],
            n=1)
        hint = f"did you mean FAUCET_{close[0]}?" if close else "faucet --help lists them"
        lines.append(f"{name} is not a faucet setting and is ignored; {hint}")
    return lines


def config_path(environ: Mapping[str, str], cli_path: str | None) -> Path | None:
    """``--config`` > ``FAUCET_CONFIG`` > ``./faucet.toml`` when it exists."""
    chosen = cli_path or environ.get(CONFIG_ENV)
    if chosen:
        return Path(chosen)
    default = Path("faucet.toml")
    return default if default.is_file() else None


@frozen
class Loaded:
    """What the layers made: the config (a setting with a problem keeps its default), where
    each key set came from (``origin``: the file, the variable or the flag; a key absent
    is the default), every problem, and the keys that have one (``bad``), so that checks
    depending on them can be skipped instead of reporting a consequence."""

    config: Config
    origin: dict[str, str]
    problems: list[str]
    bad: frozenset[str]


def load_config(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> Config:
    """Merge the layers and validate; raises ConfigError listing every problem.

    ``overrides`` maps dotted keys to CLI values.
    """
    loaded = load_settings(path, environ, overrides)
    if loaded.problems:
        raise ConfigError(loaded.problems)
    return loaded.config


def load_settings(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> Loaded:
    """Merge the layers and check them all: unknown keys, types and values are reported
    together, in one run (a key with a problem is left at its default to check the rest)."""
    merged: dict = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    if path is not None:
        try:
            merged = read_toml(path)
        except ConfigError as exc:
            problems += exc.problems
        for key in _leaf_keys(merged):
            origin[key] = str(path)
    overrides = dict(overrides)
    options_problem = _merge_sink_options(merged, origin, environ,
                                          overrides.pop(SINK_OPTIONS, None))
    for key, value in env_overrides(environ).items():
        _set(merged, key, value)
        origin[key] = _env_label(key, environ)
    for key, value in overrides.items():
        _set(merged, key, value)
        origin[key] = flag_name(key)
    raw_routes = merged.pop("route", [])
    bad = set()
    unknown, bad_found = _unknown_keys(merged, origin)
    problems += unknown + options_problem
    bad |= bad_found
    config, type_problems, bad_types = _structure(merged, origin)
    problems += type_problems
    bad |= bad_types
    checked = validate(config)
    problems += [_line(key, repr(value), message, origin) for key, value, message in checked]
    bad |= {key for key, _, _ in checked}
    if not bad & {"heartbeat_timeout", "heartbeat_interval"} and (
            config.heartbeat_timeout <= config.heartbeat_interval):
        problems.append(_line("heartbeat_timeout", repr(config.heartbeat_timeout),
                              f"must be greater than heartbeat_interval "
                              f"({config.heartbeat_interval:g})", origin))
    problems += [_line(key, shown, message, origin)
                 for key, shown, message in _scaling(config, origin)]
    try:
        base_dir = path.parent if path is not None else Path(".")
        routes = normalise_route_tables(raw_routes, base_dir, str(path)) if raw_routes else []
        config = attrs.evolve(config, route=routes)
    except ConfigError as exc:
        problems += exc.problems
        bad.add("route")
    return Loaded(config, origin, problems, frozenset(bad))


def _structure(merged: dict, origin: Mapping[str, str]
               ) -> tuple[Config, list[str], set[str]]:
    """The Config from ``merged``; a value cattrs cannot structure is reported and dropped
    (so it keeps its default) and the rest is structured again."""
    problems: list[str] = []
    bad: set[str] = set()
    while True:
        try:
            return CONVERTER.structure(merged, Config), problems, bad
        except Exception as exc:  # cattrs raises ClassValidationError (an ExceptionGroup)
            found = _describe(exc, merged, origin)
            dropped = [key for key, _ in found if _drop(merged, key)]
            if not dropped:
                raise
            problems += [line for _, line in found]
            bad.update(dropped)


def _drop(tree: dict, dotted: str) -> bool:
    """Remove ``dotted`` (``telemetry.queue_size``) from ``tree``; whether it was there."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return False
    return tree.pop(leaf, _ABSENT) is not _ABSENT


_ABSENT = object()


def _scaling(config: Config, origin: Mapping[str, str]) -> list[tuple[str, str | None, str]]:
    """The rps settings that only make sense together."""
    problems = []
    if config.strategy == Strategy.RPS and config.max_rps is None:
        problems.append(("max_rps", None, f"required with strategy = 'rps' (from "
                                          f"{origin['strategy']}): the requests per second "
                                          "one worker should take, e.g. 10"))
    if config.min_workers == 0 and config.strategy != Strategy.RPS:
        problems.append(("min_workers", "0", "0 (scale to zero) needs strategy = 'rps'; "
                                             "other strategies keep every worker running"))
    if 1 <= config.workers < config.min_workers:
        problems.append(("min_workers", repr(config.min_workers),
                         f"must be at most workers ({config.workers})"))
    return problems


def _line(key: str, shown_value: str | None, message: str, origin: Mapping[str, str]) -> str:
    """A problem line, masked: a connection string may be the bad value, whatever the key."""
    source = origin.get(key) or origin.get(key.split("[")[0], "")
    return redact(problem_line(key, shown_value, message, source))


def _env_label(key: str, environ: Mapping[str, str]) -> str:
    for name, aliased in ENV_ALIASES.items():
        if aliased == key and name in environ:
            return name
    return env_name(key)


def _leaf_keys(tree: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted in ("telemetry",):
            keys += _leaf_keys(value, dotted + ".")
        else:
            keys.append(dotted)
    return keys


def _format_exception(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required key is missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return "unknown key(s): " + ", ".join(sorted(exc.extra_fields))
    if isinstance(exc, ValueError) and "invalid literal" in str(exc):
        return "expected a number"
    return str(exc)


def _describe(exc: BaseException, merged: Mapping, origin: Mapping[str, str]
              ) -> list[tuple[str, str]]:
    """``(key, line)`` per problem, the line ``key = value (from SOURCE): what is allowed``."""
    found = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format_exception):
        message, _, where = line.rpartition(" @ ")
        key = where.removeprefix("$").lstrip(".")
        try:
            shown = repr(_get(merged, key))
        except (KeyError, TypeError):
            shown = None
        found.append((key, _line(key, shown, message, origin)))
    return found


def _unknown_keys(merged: dict, origin: Mapping[str, str]) -> tuple[list[str], set[str]]:
    """A line for each key no setting has (removed from ``merged``), with the closest
    known key when there is one, and those keys."""
    lines, bad = [], set()
    for table, cls in (("", Config), ("telemetry", TelemetryConfig)):
        tree = merged.get(table) if table else merged
        if not isinstance(tree, dict):
            continue
        allowed = [a.name for a in attrs.fields(cls)]
        for name in [name for name in tree if name not in allowed]:
            del tree[name]
            key = f"{table}.{name}" if table else name
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            lines.append(_line(key, None, f"unknown key; {hint}allowed here: "
                                          f"{', '.join(allowed)}", origin))
            bad.add(key)
    return lines, bad
