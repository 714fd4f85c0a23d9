"""How each setting appears on the command line: its flags (the long one, the Rust server's
one-letter form, the Rust aliases), its ``--help`` line with env names and default, and
its topic (the group ``--help`` shows it in, and the commands that take it).

Pure: no argparse here, only the data ``cli`` builds its parser from.
"""

from __future__ import annotations

from typing import Any

import attrs

from faucet.config.app_kinds import KINDS
from faucet.config.settings import (
    CLI_ALIASES,
    ENV_ALIASES,
    SINK_OPTION_FLAG,
    SINK_OPTIONS,
    SINK_OPTIONS_ENV,
    Config,
    TelemetryConfig,
    env_name,
    flag_name,
    setting_keys,
)
from faucet.config.strategy import Strategy

# The Rust server's short flags (clap's first letters in its src/cli.rs).
SHORT_FLAGS = {
    "workers": "-w", "strategy": "-s", "type": "-t", "dir": "-d", "app_dir": "-a",
    "ip_from": "-i", "rscript": "-r", "quarto": "-q", "uv": "-u", "log_file": "-l",
    "max_log_file_size": "-m", "conf": "-c",
}
# After ``start``, -q is --qmd, as in the Rust server; before it (and elsewhere) --quarto.
START_SHORT_FLAGS = {**{k: v for k, v in SHORT_FLAGS.items() if k != "quarto"}, "qmd": "-q"}

DESCRIPTIONS = {
    "host": "address to listen on, HOST:PORT",
    "workers": "worker processes (start); default: the CPUs this process may use",
    "strategy": f"{' | '.join(Strategy)}; default: cookie-hash for Shiny, else round-robin",
    "max_rps": "rps: requests per second one worker should take; more start another worker",
    "min_workers": "rps: workers kept running when idle (up to --workers under load); 0 "
                   "scales to zero: the first request starts one",
    "scale_down_after": "rps: seconds the pool must not need a worker before it is stopped",
    "type": f"auto | {' | '.join(KINDS)}",
    "dir": "folder of the app; workers run in it",
    "app_dir": "Shiny app folder, relative to --dir",
    "qmd": "Quarto document (quarto-shiny)",
    "rscript": "Rscript executable",
    "quarto": "quarto executable",
    "uv": "uv executable (fast-api)",
    "ip_from": "client IP from: client | x-forwarded-for | x-real-ip",
    "shutdown": "graceful | immediate",
    "shutdown_timeout": "seconds in-flight requests get on a graceful shutdown",
    "h2c": "serve cleartext HTTP/2 (prior knowledge or Upgrade: h2c), for load balancers "
           "that speak it to backends (true | false)",
    "h2_max_streams": "h2c: requests one HTTP/2 connection may have under way, reset "
                      "ones included; each beyond the first takes a max_connections slot",
    "h2_max_resets": "h2c: streams one HTTP/2 connection may reset before their answer "
                     "(less those it let finish) before it is closed with GOAWAY",
    "shutdown_delay": "seconds faucet keeps serving after SIGTERM while /__faucet__/ready "
                      "already answers 503, so load balancers take it out first",
    "drain_timeout": "seconds Shiny sessions may stay on replaced workers after a reload",
    "watch": "development: reload an app whenever the files in its folder change",
    "max_requests": "replace a worker's process after this many requests (0: never)",
    "max_requests_jitter": "add 0..N requests to max_requests, drawn at each start, so "
                           "workers are not all replaced at once",
    "max_worker_memory": "replace a worker's process once its resident memory passes this: "
                         "500M, 1Gi...; default: never",
    "pid_file": "where faucet writes its pid, for `faucet reload`; default: "
                "faucet-HOST-PORT.pid in the temporary directory",
    "max_message_size": "largest WebSocket message: bytes or 10M, 16Mi...",
    "log_level": "a level (error, warn, info, debug, trace, off) or directives like "
                 "warn,faucet.access=info",
    "log_file": "also write the log to this file",
    "log_stderr": "with --log-file, keep writing to stderr too: true | false",
    "max_log_file_size": "rotate the log file at this size: 10M, 1.5G, 512Mi...",
    "log_file_backups": "rotated log files kept",
    "log_format": "text | json",
    "conf": "router file (router)",
    "worker_wait_timeout": "seconds a request waits for a free worker before 503",
    "response_timeout": "seconds a worker has to start answering before 504",
    "startup_timeout": "seconds a new worker has to accept connections",
    "max_inflight": "least-busy: requests at once per worker",
    "max_queue": "least-busy: requests waiting at most (503 beyond)",
    "sticky_grace": "sticky strategies: seconds to wait for a client's worker to come back",
    "liveness_interval": "seconds between checks that online workers still answer (0: off)",
    "liveness_timeout": "seconds a liveness probe may take",
    "unhealthy_after": "failed checks or response timeouts in a row before a restart",
    "max_connections": "open client connections at most (more wait in the backlog)",
    "keep_alive_timeout": "seconds an idle client connection stays open between requests",
    "head_timeout": "seconds a client has for a whole request head once begun (408)",
    "client_body_timeout": "seconds a request body may pause between reads (408)",
    "send_timeout": "seconds a client may take to accept a response write",
    "max_body_size": "largest request body (413 beyond): 1G, 100M...",
    "proxy_buffer_size": "request bodies and responses up to this are held in memory",
    "max_spool_size": "a longer response spools to a temporary file of at most this size",
    "max_spool_total": "the temporary files of all responses together (beyond it, "
                       "workers are read at their clients' pace)",
    "max_websockets": "open WebSocket sessions at most (503 beyond)",
    "max_websockets_per_client": "open WebSocket sessions one client address may have "
                                 "(503 beyond); default: no limit",
    "websocket_idle_timeout": "seconds a WebSocket without Shiny's heartbeat may carry "
                              "no message before it closes",
    "websocket_memory": "unfinished WebSocket messages of all sessions together (1009)",
    "health_details": "who sees worker pids, ports and error texts in the health "
                      "endpoint: loopback (the client address per --ip-from) | all | none",
    "metrics": "serve /__faucet__/metrics and /__faucet__/dashboard (true | false)",
    "metrics_listen": "HOST:PORT to serve metrics and the dashboard on instead of --host",
    "reconnect_grace": "Shiny: seconds a session waits for its page to reconnect",
    "reconnect_grace_unused": "Shiny: the same for a session whose page never sent a message",
    "reconnect_buffer": "Shiny: what one session buffers for its page: 8M, 1Mi...",
    "reconnect_buffer_total": "Shiny: what all sessions buffer together",
    "heartbeat_interval": "Shiny: seconds between faucet's pings to a page",
    "heartbeat_timeout": "Shiny: seconds of silence after which a page is taken for gone",
    "max_sessions": "Shiny: live sessions per worker (503 page beyond); default: no limit",
    "max_sessions_per_client": "Shiny: live sessions one client address may hold "
                               "(503 beyond); default: no limit",
    "telemetry.postgres_string": "PostgreSQL connection string; enables the postgres sink",
    "telemetry.namespace": "tells faucet instances apart in telemetry",
    "telemetry.version": "your app's version, stored with each event",
    "telemetry.sink": "postgres | stdout | null | a plugin's name",
    SINK_OPTIONS: "an option for the sink, KEY=VALUE; repeat the flag for more",
    "telemetry.sslmode": "disable | allow | prefer | require | verify-ca | verify-full",
    "telemetry.sslcert": "CA certificate file for PostgreSQL",
    "telemetry.queue_size": "events waiting at most; beyond, new ones are dropped and counted",
    "telemetry.batch_size": "events per write",
    "telemetry.flush_interval": "seconds before a partial batch is written",
    "telemetry.flush_timeout": "seconds the final flush gets at shutdown",
    "telemetry.connect_timeout": "seconds (whole, at least 2) to connect to PostgreSQL",
    "telemetry.statement_timeout": "seconds one telemetry write may take in PostgreSQL",
}


# The --help groups, in order: title -> its settings. Every setting is in one group
# (tests/test_cli_help.py holds that), and each command shows the groups it uses.
GROUPS: dict[str, tuple[str, ...]] = {
    "app (start)": ("dir", "type", "app_dir", "qmd", "workers", "strategy", "max_rps",
                    "min_workers"),
    "routes (router)": ("conf",),
    "server": ("host", "ip_from", "shutdown", "shutdown_timeout", "shutdown_delay",
               "health_details",
               "metrics", "metrics_listen"),
    "reloads": ("pid_file", "drain_timeout", "watch"),
    "runtimes": ("rscript", "quarto", "uv"),
    "workers": ("startup_timeout", "worker_wait_timeout", "response_timeout", "max_inflight",
                "max_queue", "sticky_grace", "scale_down_after", "liveness_interval",
                "liveness_timeout", "unhealthy_after", "max_requests", "max_requests_jitter",
                "max_worker_memory"),
    "proxy limits": ("max_connections", "h2c", "h2_max_streams", "h2_max_resets",
                     "keep_alive_timeout", "head_timeout", "client_body_timeout",
                     "send_timeout",
                     "max_body_size", "proxy_buffer_size", "max_spool_size", "max_spool_total",
                     "max_websockets",
                     "max_websockets_per_client", "websocket_idle_timeout", "websocket_memory",
                     "max_message_size"),
    "Shiny sessions": ("reconnect_grace", "reconnect_grace_unused", "reconnect_buffer",
                       "reconnect_buffer_total", "heartbeat_interval", "heartbeat_timeout",
                       "max_sessions", "max_sessions_per_client"),
    "telemetry": ("telemetry.sink", SINK_OPTIONS, "telemetry.namespace", "telemetry.version",
                  "telemetry.queue_size", "telemetry.batch_size", "telemetry.flush_interval",
                  "telemetry.flush_timeout", "telemetry.statement_timeout"),
    "telemetry database": ("telemetry.postgres_string", "telemetry.sslmode",
                           "telemetry.sslcert", "telemetry.connect_timeout"),
    "logging": ("log_level", "log_format", "log_file", "log_stderr", "max_log_file_size",
                "log_file_backups"),
}
_SERVING = ("server", "reloads", "runtimes", "workers", "proxy limits", "Shiny sessions",
            "telemetry", "telemetry database", "logging")
# The groups each command that takes settings shows.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "start": ("app (start)", *_SERVING),
    "router": ("routes (router)", *_SERVING),
    "telemetry init": ("telemetry database",),
    "report": ("telemetry database", "telemetry"),
    "reload": ("server", "reloads"),
    "config show": tuple(GROUPS),
}


def command_keys(command: str) -> list[str]:
    """The settings ``command`` takes on its command line, in --help order."""
    return [key for group in COMMAND_GROUPS[command] for key in GROUPS[group]]


def every_key() -> list[str]:
    """Every setting a flag can set: the scalar ones and the sink's options."""
    return [*setting_keys(), SINK_OPTIONS]


def flags(key: str, short: dict[str, str]) -> list[str]:
    """The flags for ``key``: its short form from ``short`` (if any), the long one, then
    the Rust server's other spellings (``--pg-con-string``)."""
    if key == SINK_OPTIONS:
        return [SINK_OPTION_FLAG]
    aliases = [flag for flag, aliased in CLI_ALIASES.items() if aliased == key]
    return [*filter(None, [short.get(key)]), flag_name(key), *aliases]


def help_line(key: str) -> str:
    """``DESCRIPTION [env: FAUCET_X, FAUCET_Y] [default: D]``, escaped for argparse."""
    if key == SINK_OPTIONS:
        return (f"{DESCRIPTIONS[key]} [env: {SINK_OPTIONS_ENV}=KEY=VALUE,KEY=VALUE or a JSON "
                "object] [faucet.toml: [telemetry.sink_options]]")
    names = [env_name(key), *(name for name, aliased in ENV_ALIASES.items() if aliased == key)]
    parts = [DESCRIPTIONS.get(key, ""), f"[env: {', '.join(names)}]",
             f"[default: {_shown(default_value(key))}]"]
    return " ".join(filter(None, parts)).replace("%", "%%")


def default_value(key: str) -> Any:
    """What ``key`` is when nothing sets it (factories are called: workers on this machine)."""
    cls, name = (TelemetryConfig, key.removeprefix("telemetry.")) if key.startswith(
        "telemetry.") else (Config, key)
    default = attrs.fields_dict(cls)[name].default
    return default.factory() if isinstance(default, attrs.Factory) else default


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
