"""The plugin's own tests: yoloqat's conformance helpers, at toy size on CPU.

Run from this folder after ``pip install -e .``: ``python -m pytest tests``.
"""

from __future__ import annotations

import pytest
from yoloqat_example_plugin import constant, mobile_lite

from yoloqat.core.errors import ConfigError
from yoloqat.testing import (
    check_backbone,
    check_plugin_end_to_end,
    check_scheduler,
)


def test_backbone_conforms() -> None:
    backbone = check_backbone(mobile_lite, width=0.25, depth=2)
    assert tuple(backbone.out_channels) == (8, 16, 32)


def test_scheduler_conforms() -> None:
    check_scheduler(constant, lr=0.01, warmup_epochs=1)


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"backbone\.depth"):
        mobile_lite(depth=-1)
    with pytest.raises(ConfigError, match=r"scheduler\.lr"):
        constant(lr=0)


def test_quantizes_exports_and_evaluates(tmp_path) -> None:
    """int8_qat quantizes every conv, the int8 ONNX file has them all, and ONNX Runtime
    agrees with the fake-quant network (measured here: every output value within 1e-5,
    max 1.2e-7)."""
    report = check_plugin_end_to_end(mobile_lite, {"width": 0.25}, workdir=tmp_path)
    assert report.int8_convs == report.convs == report.quantized_convs
