"""Shared test fixtures: CPU MindSpore context and the real coco128 data where present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COCO128 = Path(os.environ.get("YOLOQAT_COCO128", REPO.parent / "shared" / "data" / "coco128"))


@pytest.fixture(scope="session")
def coco128() -> Path:
    """Path of ../shared/data/coco128 (images/train2017 + annotations/instances_train2017.json)."""
    ann = COCO128 / "annotations" / "instances_train2017.json"
    if not ann.is_file():
        pytest.skip(f"coco128 not found at {COCO128} (set YOLOQAT_COCO128 to its folder)")
    return COCO128


@pytest.fixture(autouse=True, scope="session")
def _mindspore_cpu() -> None:
    """Every test runs MindSpore on CPU; tests that need GRAPH_MODE set it themselves."""
    os.environ.setdefault("GLOG_v", "3")  # silence MindSpore's C++ INFO/WARNING logs
    try:
        import mindspore as ms
    except ImportError:  # pragma: no cover - mindspore is a hard dependency
        return
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_device("CPU")
