"""The default worker count: CPUs this process may use, not the host's (no real /sys)."""

import os

import attrs
import pytest

from faucet.config.cpus import available_cpus, usable_cpus
from faucet.config.settings import Config, load_config


@pytest.mark.parametrize(("affinity", "cpu_max", "cfs", "expected"), [
    (64, ["200000 100000"], [], 2),          # a 2-CPU container on a 64-core host
    (64, ["150000 100000"], [], 2),          # 1.5 CPUs: rounded up
    (64, ["50000 100000"], [], 1),           # half a CPU: still one worker
    (4, ["max 100000"], [], 4),              # no quota
    (3, ["800000 100000"], [], 3),           # the affinity mask is tighter
    (64, ["max 100000", "300000 100000", "400000 100000"], [], 3),  # the tightest ancestor
    (64, [], [("200000", "100000")], 2),     # cgroup v1
    (64, [], [("-1", "100000")], 64),        # v1, no quota
    (16, [], [], 16),
])
def test_usable_cpus(affinity, cpu_max, cfs, expected):
    assert usable_cpus(affinity, cpu_max, cfs) == expected


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v2_quota_of_this_cgroup_or_an_ancestor(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    write(proc, "0::/kubepods/pod1/container")
    write(root / "kubepods" / "cpu.max", "max 100000")
    write(root / "kubepods" / "pod1" / "cpu.max", "50000 100000")
    write(root / "kubepods" / "pod1" / "container" / "cpu.max", "max 100000")
    assert available_cpus(root, proc) == 1


def test_container_seeing_its_own_cgroup_at_the_root(tmp_path):
    """Without a cgroup namespace /proc names the host's path, which is not mounted here."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    write(proc, "0::/system.slice/docker-abc.scope")
    write(root / "cpu.max", "100000 100000")
    assert available_cpus(root, proc) == 1


def test_cgroup_v1(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "100000")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert available_cpus(root, proc) == 1


def test_no_cgroup_files_falls_back_to_the_affinity_mask(tmp_path):
    assert available_cpus(tmp_path / "none", tmp_path / "none") == len(os.sched_getaffinity(0))


def test_workers_default_is_what_this_process_may_use():
    assert attrs.fields(Config).workers.default.factory is available_cpus
    assert load_config(None, {}, {}).workers == available_cpus()


def test_hybrid_hierarchy_mounts_v2_under_unified(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    write(proc, "1:cpu:/\n0::/")
    write(root / "cpu" / "cpu.cfs_quota_us", "-1")
    write(root / "cpu" / "cpu.cfs_period_us", "100000")
    write(root / "unified" / "cpu.max", "100000 100000")
    assert available_cpus(root, proc) == 1
