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
STRICT_HELP = (
    "fail instead of skip when test data (coco128) or a dependency is missing "
    "(also on with CI=true)"
)


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


@pytest.fixture(autouse=True, scope="session")
def _mindspore_cpu() -> None:
    """Every test runs MindSpore on CPU as the commands set it up (``init_runtime``: blocking
    op launch); tests that need GRAPH_MODE set it themselves."""
    os.environ.setdefault("GLOG_v", "3")  # silence MindSpore's C++ INFO/WARNING logs
    import mindspore as ms  # a hard dependency: a broken install is an error, not a skip

    from yoloqat.core.runtime import init_runtime

    ms.set_context(mode=ms.PYNATIVE_MODE)
    init_runtime("CPU")


#: The slowest test files (CI's --durations), run first: the two pytest-xdist workers take
#: files in collection order, so a long file left to the end would run alone.
SLOW_FIRST = (
    "test_demo.py",
    "test_qat_resume.py",
    "test_example_plugin.py",
    "test_export.py",
    "test_faults.py",
    "test_train.py",
    "test_runtimes.py",
    "test_distributed.py",
    "test_ema_resume.py",
    "test_quant_contract.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the slowest files first (a stable sort: each file's tests keep their order)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
