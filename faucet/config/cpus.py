"""How many CPUs this process may use: the default for ``workers``.

The host's count is the wrong answer in a container: with a 2-CPU limit on a 64-core host
it would start 64 R processes fighting over 2 CPUs. The answer is the CPUs in this
process's affinity mask, capped by every CPU quota of its cgroup and the cgroups above it
(v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up, at least 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path


def usable_cpus(affinity: int, cpu_max: Iterable[str] = (),
                cfs: Iterable[tuple[str, str]] = ()) -> int:
    """``affinity`` capped by each quota, given as the files' text: v2 ``cpu.max`` ("150000
    100000", or "max 100000" for none) and v1 (quota, period) pairs (quota -1 for none)."""
    limits = [affinity]
    for text in cpu_max:
        quota, period = text.split()
        if quota != "max":
            limits.append(math.ceil(int(quota) / int(period)))
    for quota, period in cfs:
        if int(quota) > 0:
            limits.append(math.ceil(int(quota) / int(period)))
    return max(1, min(limits))


def available_cpus(root: Path = Path("/sys/fs/cgroup"),
                   proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """``usable_cpus`` for this process, read from ``proc_cgroup`` and the cgroup tree
    mounted at ``root``; with neither (macOS), the affinity or host count alone."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this platform
        affinity = os.cpu_count() or 1
    cpu_max, cfs = [], []
    for line in (_read(proc_cgroup) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:  # cgroup v2; "unified" is where hybrid systems mount it
            for base in (root, root / "unified"):
                cpu_max += filter(None, (_read(d / "cpu.max") for d in _chain(base, path)))
        elif "cpu" in controllers.split(","):
            for base in dict.fromkeys((controllers, "cpu", "cpu,cpuacct")):
                for d in _chain(root / base, path):
                    pair = (_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
                    if all(pair):
                        cfs.append(pair)
    return usable_cpus(affinity, cpu_max, cfs)


def _chain(base: Path, path: str) -> list[Path]:
    """``base/path`` and its ancestors up to ``base``, those that exist. A container often
    sees its own cgroup at ``base`` while /proc names the host's path for it."""
    if not base.is_dir():
        return []
    deepest = base / path.strip("/")
    return [d for d in (deepest, *deepest.parents) if d.is_relative_to(base) and d.is_dir()]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
