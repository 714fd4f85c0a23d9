"""The deployment recipes in examples/deploy agree with faucet: their command lines parse
with faucet's own parser and carry no problem, the Kubernetes probes name faucet's
endpoints, and the image installs with the set-up script CI runs. (No Docker engine or
cluster runs here: what is pinned is what can drift.)"""

import json
import re
import shlex

from faucet.cli import parse
from faucet.proxy.health import HEALTH_PATH, READY_PATH
from tests.helpers import ROOT

DEPLOY = ROOT / "examples" / "deploy"


def settings_of(argv: list[str]):
    args, loaded = parse(argv, {})
    assert loaded.problems == [], loaded.problems
    return args, loaded.config


def test_the_image_installs_with_ci_setup_and_runs_a_valid_command():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert ".ci/setup example" in dockerfile
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    args, config = settings_of(cmd)
    assert (args.command, config.host, config.shutdown_delay) == ("start", "0.0.0.0:3838", 5)


def test_the_systemd_unit_reloads_with_sighup_and_starts_a_valid_router():
    unit = (DEPLOY / "faucet.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    args, config = settings_of(exec_start[1:])
    assert args.command == "router" and config.pid_file == "/run/faucet/faucet.pid"


def test_the_kubernetes_probes_name_faucets_endpoints_and_the_grace_covers_shutdown():
    manifest = (DEPLOY / "kubernetes.yaml").read_text()
    probes = dict(re.findall(r"(readinessProbe|livenessProbe):\s*\n\s*httpGet: \{path: (\S+),",
                             manifest))
    assert probes == {"readinessProbe": READY_PATH, "livenessProbe": HEALTH_PATH}
    args = json.loads(re.search(r"args: (\[[^\]]*\])", manifest, re.S).group(1))
    _, config = settings_of(args)
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", manifest).group(1))
    assert grace > config.shutdown_delay + config.shutdown_timeout
