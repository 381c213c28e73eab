"""Shared test fixtures: CPU MindSpore context and the real coco128 data where present.

Under ``CI=true`` or ``--require-data`` nothing is skipped silently: missing coco128 data
fails the tests that need it, naming what is missing, and any other run-time skip (a
``pytest.importorskip`` of a missing module, a ``pytest.skip`` for a missing tool) becomes
a failure that carries the skip's reason. Skips declared with ``skip``/``skipif`` markers
are left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COCO128 = Path(os.environ.get("YOLOQAT_COCO128", REPO.parent / "shared" / "data" / "coco128"))
DARKNET_CFG = Path(
    os.environ.get("YOLOQAT_DARKNET_CFG", REPO.parent / "shared" / "data" / "darknet_cfg")
)
STRICT_HELP = (
    "fail instead of skip when test data (coco128) or a dependency is missing "
    "(also on with CI=true)"
)


#: libgomp's thread count, which MindSpore's CPU runtime sizes its thread pools by.
OMP_THREADS = "OMP_NUM_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; not on macOS or Windows
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def share_cores() -> str | None:
    """Give each pytest-xdist worker, and every command it starts, its share of the cores.

    MindSpore's CPU runtime sizes its thread pools by ``OMP_NUM_THREADS`` (all cores when
    unset), so two workers on two cores each run two busy threads per core, and every test
    takes longer than alone (measured on two 2-core machines: the whole suite 706 s unset,
    450 s at 1 on one; 7-12 % less per file pair, run alternately, on the other).
    Set at import of this file, before MindSpore is loaded, and only under pytest-xdist with
    more than one worker; a value the user exported is kept. Returns the value set here.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers < 2 or OMP_THREADS in os.environ:
        return None
    os.environ[OMP_THREADS] = str(max(1, usable_cores() // workers))
    return os.environ[OMP_THREADS]


SHARED = share_cores()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-data", action="store_true", default=False, help=STRICT_HELP)


def strict(config: pytest.Config) -> bool:
    """Whether missing data or dependencies fail (``--require-data`` or ``CI=true``)."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return bool(config.getoption("--require-data")) or ci


def _why_strict(config: pytest.Config) -> str:
    return "--require-data" if config.getoption("--require-data") else "CI=true"


def _fail_skip(report, config: pytest.Config) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"not skipped under {_why_strict(config)}: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    declared = any(item.iter_markers("skip")) or any(item.iter_markers("skipif"))
    runtime_skip = report.skipped and not declared and not hasattr(report, "wasxfail")
    if runtime_skip and strict(item.config):
        _fail_skip(report, item.config)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and strict(collector.config):  # a module-level importorskip
        _fail_skip(report, collector.config)


@pytest.fixture(scope="session")
def coco128(request: pytest.FixtureRequest) -> Path:
    """Path of ../shared/data/coco128 (images/train2017 + annotations/instances_train2017.json)."""
    ann = COCO128 / "annotations" / "instances_train2017.json"
    if not ann.is_file():
        message = f"coco128 not found: {ann} is missing (set YOLOQAT_COCO128 to its folder)"
        if strict(request.config):
            pytest.fail(f"{message}; it is required under {_why_strict(request.config)}", False)
        pytest.skip(message)
    return COCO128


@pytest.fixture(scope="session")
def darknet_cfg(request: pytest.FixtureRequest) -> Path:
    """Path of ../shared/data/darknet_cfg (Darknet's own .cfg files and coco.names)."""
    if not (DARKNET_CFG / "yolov3-tiny.cfg").is_file():
        message = f"Darknet .cfg files not found in {DARKNET_CFG} (set YOLOQAT_DARKNET_CFG)"
        if strict(request.config):
            pytest.fail(f"{message}; they are required under {_why_strict(request.config)}", False)
        pytest.skip(message)
    return DARKNET_CFG


@pytest.fixture(autouse=True, scope="session")
def _mindspore_cpu() -> None:
    """Every test runs MindSpore on CPU as the commands set it up (``init_device``: blocking
    op launch); tests that need GRAPH_MODE set it themselves."""
    os.environ.setdefault("GLOG_v", "3")  # silence MindSpore's C++ INFO/WARNING logs
    import mindspore as ms  # a hard dependency: a broken install is an error, not a skip

    from yoloqat.core.device import init_device

    ms.set_context(mode=ms.PYNATIVE_MODE)
    init_device("CPU")


#: The slowest test files, slowest first (CI's --durations, with the workers sharing the
#: cores): the two pytest-xdist workers take whole files (--dist loadfile) in collection
#: order, so a long file left to the end would run alone while the other worker idles.
SLOW_FIRST = (
    "test_demo.py",
    "test_export.py",
    "test_example_plugin.py",
    "test_faults.py",
    "test_qat_resume.py",
    "test_train.py",
    "test_distributed.py",
    "test_runtimes.py",
    "test_quant_contract.py",
    "test_distributed_save.py",
    "test_ema_resume.py",
    "test_darknet_weights.py",
    "test_darknet_models.py",
    "test_multiscale_train.py",
    "test_sensitivity.py",
    "test_report.py",
    "test_cli_misc.py",
    "test_loss_scale.py",
    "test_train_validation.py",
    "test_benchmark.py",
    "test_darknet_fidelity.py",
    "test_contracts.py",
    "test_model.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the slowest files first (a stable sort: each file's tests keep their order)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
