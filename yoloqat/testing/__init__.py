"""Conformance checks a plugin's own tests call (as pytest ships ``pytester``).

Each ``check_*`` builds a component from its factory at toy size on CPU, checks it against
its kind's contract (:mod:`yoloqat.core.contracts`) and exercises it; a failure is an
``AssertionError`` (or the contract's :class:`~yoloqat.core.errors.PluginError`) saying
what failed. Each returns the built component (or a report) for further checks::

    from yoloqat.testing import check_backbone, check_plugin_end_to_end
    from my_plugin import my_backbone

    def test_backbone_conforms():
        check_backbone(my_backbone, width=0.25)

    def test_quantizes_exports_and_evaluates(tmp_path):
        report = check_plugin_end_to_end(my_backbone, {"width": 0.25}, workdir=tmp_path)
        assert report.int8_convs == report.convs
"""

from yoloqat.testing.components import (
    TOY_IN_CHANNELS,
    TOY_IN_STRIDES,
    build_head,
    check_backbone,
    check_callback,
    check_data_source,
    check_dataset,
    check_factory,
    check_head,
    check_loss,
    check_runtime,
    check_scheduler,
    random_batch,
    toy_ground_truth,
)
from yoloqat.testing.end_to_end import (
    MATCH_ATOL,
    EndToEndReport,
    check_plugin_end_to_end,
    check_quantizer,
    count_int8_conv_weights,
    count_int8_convs,
    max_onnx_difference,
    onnx_differences,
)

__all__ = [
    "MATCH_ATOL",
    "TOY_IN_CHANNELS",
    "TOY_IN_STRIDES",
    "EndToEndReport",
    "build_head",
    "check_backbone",
    "check_callback",
    "check_data_source",
    "check_dataset",
    "check_factory",
    "check_head",
    "check_loss",
    "check_plugin_end_to_end",
    "check_quantizer",
    "check_runtime",
    "check_scheduler",
    "count_int8_conv_weights",
    "count_int8_convs",
    "max_onnx_difference",
    "onnx_differences",
    "random_batch",
    "toy_ground_truth",
]
