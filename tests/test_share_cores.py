"""The suite's pytest-xdist workers run MindSpore on their share of the cores
(``conftest.share_cores``): the thread count is in place before MindSpore loads."""

from __future__ import annotations

import ctypes
import os

from conftest import OMP_THREADS, SHARED, usable_cores


def test_mindspore_runs_on_the_workers_share_of_the_cores() -> None:
    import mindspore  # noqa: F401  (loads libgomp, which reads the variable once, at load)

    cores = usable_cores()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if SHARED is not None:  # conftest set it: the workers' share
        assert os.environ[OMP_THREADS] == SHARED == str(max(1, cores // workers))
    expected = int(os.environ.get(OMP_THREADS) or cores)
    # libgomp as MindSpore loaded it: too late a variable leaves it at all cores
    assert ctypes.CDLL("libgomp.so.1").omp_get_max_threads() == expected
