"""Thread pools: BLAS holders share one limit, restored by the last one out; every pool is sized to the CPUs this
process may use (affinity, cgroup quota), respects OMP/NUMBA_NUM_THREADS and never runs more than the CPUs."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot uses)
from threadpoolctl import threadpool_info

from dropcore.kernels import cpus, threads
from dropcore.kernels.threads import blas_single_thread


def blas_threads():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})


def test_nested_holders_restore_on_last_exit():
    before = blas_threads()
    with blas_single_thread():
        assert blas_threads() == [1]
        with blas_single_thread():
            assert blas_threads() == [1]
        assert blas_threads() == [1]  # the outer holder still needs one thread
    assert blas_threads() == before


# --- how many threads: the CPUs this process may use ------------------------------------------------------------

PROBE = ("import json, warnings, numpy as np; warnings.simplefilter('error', RuntimeWarning); import dropcore; "
         "from dropcore.kernels import cpus; import numba; from dropcore.kernels import cython_ops as cy; "
         "m = dropcore.Sequential([dropcore.layers.Input((4,)), dropcore.layers.Dense(2)]); m.predict(np.ones((1, 4)));"
         "print(json.dumps({'cpus': cpus.available_cpus(), 'threads': dropcore.get_num_threads(), "
         "'numba': numba.config.NUMBA_NUM_THREADS, 'openmp': cy._ew.get_max_threads()}))")


def _env(**asked):
    """This environment without thread counts (dropcore set NUMBA_NUM_THREADS here), plus ``asked``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    return dict(env, **asked)


def _probe(env=None, prefix=(), probe=PROBE):
    """What a fresh process sees: its available CPUs, dropcore's count, Numba's pool, the Cython kernels' cap."""
    out = subprocess.run([*prefix, sys.executable, "-c", probe], env=_env(**(env or {})), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_by_default_every_pool_is_sized_to_the_available_cpus():
    seen, _ = _probe()
    cpus = len(os.sched_getaffinity(0))
    assert seen == {"cpus": cpus, "threads": cpus, "numba": cpus, "openmp": cpus}


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_an_affinity_mask_sizes_the_pools():
    seen, _ = _probe(prefix=("taskset", "-c", "0"))
    assert seen == {"cpus": 1, "threads": 1, "numba": 1, "openmp": 1}


def test_omp_and_numba_num_threads_are_respected_below_the_cpus():
    seen, _ = _probe({"OMP_NUM_THREADS": "1"})
    assert seen["threads"] == 1 and seen["openmp"] == 1
    seen, _ = _probe({"NUMBA_NUM_THREADS": "1"})
    assert seen["threads"] == 1 and seen["numba"] == 1


def test_more_threads_than_cpus_are_capped_and_said():
    cpus = len(os.sched_getaffinity(0))
    seen, err = _probe({"OMP_NUM_THREADS": str(cpus * 4)}, probe=PROBE.replace("'error'", "'always'"))
    assert seen["openmp"] == seen["threads"] == cpus
    assert f"OMP_NUM_THREADS asks for {cpus * 4} threads, but this process may use {cpus} CPUs" in err


def _fake_cgroup(tmp_path, monkeypatch, membership, files):
    tmp_path = tmp_path / str(len(list(tmp_path.iterdir())))  # a new tree each call
    tmp_path.mkdir()
    (tmp_path / "proc").write_text(membership)
    for rel, text in files.items():
        path = tmp_path / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(cpus, "PROC_CGROUP", str(tmp_path / "proc"))
    monkeypatch.setattr(cpus, "CGROUP_ROOT", str(tmp_path / "fs"))


def test_a_cgroup_v2_quota_limits_the_cpus(tmp_path, monkeypatch):
    """The tightest cpu.max on the way up counts; 1.5 CPUs lets two threads run."""
    _fake_cgroup(tmp_path, monkeypatch, "0::/pod/app\n", {"pod/cpu.max": "150000 100000\n",
                                                          "pod/app/cpu.max": "max 100000\n", "cpu.max": "max 100000"})
    assert cpus.cgroup_cpu_limit() == 1.5
    assert cpus.available_cpus() == min(2, len(os.sched_getaffinity(0)))
    _fake_cgroup(tmp_path, monkeypatch, "0::/pod/app\n", {"pod/app/cpu.max": "max 100000\n"})
    assert cpus.cgroup_cpu_limit() is None


def test_a_cgroup_v1_quota_limits_the_cpus(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
                 {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
                  "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cpus.cgroup_cpu_limit() == 0.5
    assert cpus.available_cpus() == 1
    _fake_cgroup(tmp_path, monkeypatch, "4:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                                                               "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cpus.cgroup_cpu_limit() is None


def test_set_num_threads_is_process_wide_and_checked():
    import dropcore
    from dropcore.kernels import cython_ops as cy

    before = dropcore.get_num_threads()
    # what a region started from this thread may use now: the cap, or less where this thread's own OpenMP count is
    # lower (it is per thread, and shared with every library on the same OpenMP runtime: after the Dask scoring
    # tests it reads 1 on the main thread)
    regions = cy._ew.get_max_threads()
    try:
        assert dropcore.set_num_threads(1) == before
        assert dropcore.get_num_threads() == 1 and cy._ew.get_max_threads() == 1
        with pytest.raises(ValueError, match=r"Invalid value for `n`: expected a positive int. Received: n=0"):
            dropcore.set_num_threads(0)
    finally:
        dropcore.set_num_threads(before)
    assert dropcore.get_num_threads() == before and cy._ew.get_max_threads() == regions


def test_a_predictor_capped_at_one_thread_gives_the_same_answers():
    import dropcore

    dropcore.set_random_seed(0)
    model = dropcore.Sequential([dropcore.layers.Input((9, 9, 3)), dropcore.layers.Conv2D(16, 3, activation="relu"),
                                 dropcore.layers.Flatten(), dropcore.layers.Dense(4)])
    x = np.random.default_rng(0).standard_normal((64, 9, 9, 3)).astype(np.float32)
    one = dropcore.Predictor(model, threads=1)
    np.testing.assert_array_equal(one.predict(x), dropcore.Predictor(model).predict(x))
    with pytest.raises(ValueError, match=r"Predictor: Invalid value for `threads`"):
        dropcore.Predictor(model, threads=0)
