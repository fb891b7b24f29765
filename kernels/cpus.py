"""The CPUs this process may really use: its affinity mask (``taskset``), bounded by its cgroup CPU quota (a
container's ``--cpus``), rather than the host's core count that ``os.cpu_count``, Numba and OpenMP report."""
import math
import os

#: Where the cgroup file systems are mounted (tests point it at a fake tree).
CGROUP_ROOT = "/sys/fs/cgroup"
#: The process's cgroup membership (tests point it at a fake file).
PROC_CGROUP = "/proc/self/cgroup"


def _read(path):
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _memberships():
    """``{controller: path}`` from /proc/self/cgroup ("" for the v2 unified hierarchy)."""
    out = {}
    for line in (_read(PROC_CGROUP) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                out[controller] = parts[2]
    return out


def _ancestors(path):
    """``path`` and each of its parents up to the hierarchy's root, deepest first."""
    path = path.strip("/")
    while True:
        yield path
        if not path:
            return
        path = os.path.dirname(path)


def cgroup_cpu_limit():
    """The CPU quota of this process's cgroup as a number of CPUs (``1.5`` for ``--cpus 1.5``), or ``None``.

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
    (-1: no quota). The tightest quota on the path from the process's cgroup to the root counts; inside a
    container the root is the container's own.
    """
    groups, limits = _memberships(), []
    if "" in groups:
        for path in _ancestors(groups[""]):
            fields = (_read(os.path.join(CGROUP_ROOT, path, "cpu.max")) or "").split()
            if len(fields) == 2 and fields[0] != "max":
                limits.append(int(fields[0]) / int(fields[1]))
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if "cpu" not in groups:
            break
        for path in _ancestors(groups["cpu"]):
            base = os.path.join(CGROUP_ROOT, mount, path)
            quota = _read(os.path.join(base, "cpu.cfs_quota_us"))
            period = _read(os.path.join(base, "cpu.cfs_period_us"))
            if quota and period and quota.lstrip("-").isdigit() and int(quota) > 0 and int(period) > 0:
                limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def available_cpus():
    """The CPUs this process may use: its affinity mask (``taskset``), bounded by its cgroup CPU quota rounded up
    (a quota of 1.5 CPUs lets two threads share them)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)
