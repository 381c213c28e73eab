"""Component contracts: bundled components conform; violations name plugin, kind, member."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from mindspore import nn
from test_registry import make_dist

from yoloqat.core.contracts import PROTOCOLS, check_component, members
from yoloqat.core.errors import PluginError
from yoloqat.engine import pipeline
from yoloqat.plugins.darknet53 import darknet53
from yoloqat.plugins.schedulers import cosine_annealing, exponential
from yoloqat.plugins.yolov3 import yolov3_head, yolov3_loss
from yoloqat.registry import Registry
from yoloqat.testing import check_backbone, check_head, check_loss, check_scheduler


class NoChannels(nn.Cell):
    def construct(self, x):
        return x, x, x


class NoStrides(NoChannels):
    out_channels = (8, 16, 32)


class MismatchedStrides(NoStrides):
    strides = (8, 16)


class OldHead(nn.Cell):
    """A head of the 0.1 contract: anchors, no strides, no decode."""

    num_classes = 3
    anchors = ((1, 2), (3, 4), (5, 6))
    anchor_masks = ((0,), (1,), (2,))

    def construct(self, c3, c4, c5):
        return c5, c4, c3


class Decode(nn.Cell):
    def construct(self, outputs, h, w):
        return outputs[0], outputs[0]


class BadStrides(OldHead):
    strides = (32, 15)
    output_format = "yolo"

    def __init__(self) -> None:
        super().__init__()
        self.decode = Decode()


class ParamDecode(BadStrides):
    strides = (32, 16, 8)

    def __init__(self) -> None:
        super().__init__()
        self.decode = nn.Dense(2, 2)


class Schedule:
    def per_step(self, steps_per_epoch):
        return [0.1] * steps_per_epoch


class HalfQuantizer:
    def apply(self, network):
        return network

    def summary(self, network):
        return None

    def set_fake_quant(self, network, enabled, patterns=("*",)):
        return 0

    def eval_gates(self, network):
        return None


class NotALoss:
    def construct(self, *args):
        return 0.0


class OldLoss(nn.Cell):
    """A loss of the 0.1 contract: nine tensors, no accepts."""

    def construct(self, out_l, out_m, out_s, y_l, y_m, y_s, g_l, g_m, g_s):
        return out_l.sum()


class StringAccepts(OldLoss):
    accepts = "yolo"

    def construct(self, outputs, gt_boxes, gt_labels, gt_valid, *extras):
        return outputs[0].sum()


@pytest.mark.parametrize(
    ("kind", "obj", "problem"),
    [
        ("backbone", NoChannels(), "missing attribute 'out_channels'"),
        ("backbone", NoStrides(), "missing attribute 'strides'"),
        ("backbone", MismatchedStrides(), "'strides' has 2 entries but 'out_channels' has 3"),
        ("backbone", {"depth": 2}, "it is a dict, not a mindspore.nn.Cell"),
        ("head", OldHead(), "missing attribute 'strides'; missing attribute 'output_format'"),
        ("head", OldHead(), "missing attribute 'decode'"),
        ("head", BadStrides(), "'strides' must be one power of two per output"),
        ("head", ParamDecode(), "'decode' must have no parameters"),
        ("quantizer", HalfQuantizer(), "missing method 'export_plan'"),
        ("loss", NotALoss(), "not a mindspore.nn.Cell"),
        ("loss", OldLoss(), "missing attribute 'accepts'"),
        ("loss", StringAccepts(), "'accepts' must be a tuple of head output formats"),
        ("family", {"head": {"name": "x"}}, "missing block 'backbone'"),
        ("scheduler", Schedule(), "'per_step' does not take 2 positional argument(s)"),
        ("scheduler", object(), "missing method 'per_step'"),
    ],
)
def test_violations_name_plugin_kind_component_and_member(kind, obj, problem) -> None:
    with pytest.raises(PluginError) as err:
        check_component(kind, obj, plugin="acme", name="thing")
    msg = str(err.value)
    assert f"{kind} 'thing' from plugin 'acme' breaks the {kind} contract" in msg
    assert problem in msg
    assert err.value.exit_code == 4
    assert PROTOCOLS[kind].__name__ in (err.value.hint or "")


def test_members_come_from_the_protocols() -> None:
    assert members("backbone") == {
        "out_channels": "attribute",
        "strides": "attribute",
        "construct": "method",
    }
    assert set(members("head")) == {
        "num_classes",
        "strides",
        "output_format",
        "decode",
        "in_indices",
        "loss_params",
        "construct",
    }
    assert members("loss") == {
        "accepts": "attribute",
        "build_targets": "method",
        "construct": "method",
    }
    assert set(members("quantizer")) == {
        "apply",
        "summary",
        "set_fake_quant",
        "eval_gates",
        "export_plan",
    }
    assert members("scheduler") == {"per_step": "method"}
    assert "val_source" in members("dataset")
    assert set(members("family")) == {"backbone", "head", "loss", "data", "eval"}


def test_bundled_components_conform() -> None:
    from yoloqat.plugins.darknet_tiny import darknet_tiny
    from yoloqat.plugins.yolov3 import yolov3_tiny_head

    backbone = check_backbone(darknet53, width=0.0625)
    head = check_head(
        yolov3_head, in_channels=tuple(backbone.out_channels), in_strides=backbone.strides
    )
    assert head.strides == (32, 16, 8) and head.in_indices == (0, 1, 2)
    check_loss(
        yolov3_loss, head=head, in_channels=backbone.out_channels, in_strides=backbone.strides
    )
    tiny = check_backbone(darknet_tiny, width=0.0625)
    assert tiny.strides == (16, 32)
    head = check_head(yolov3_tiny_head, in_channels=tiny.out_channels, in_strides=tiny.strides)
    assert head.strides == (32, 16) and head.in_indices == (0, 1)
    check_loss(yolov3_loss, head=head, in_channels=tiny.out_channels, in_strides=tiny.strides)
    check_scheduler(cosine_annealing, T_max=3, warmup_epochs=1)
    check_scheduler(exponential, lr_epochs=[1, 2])


class LevelsHead(nn.Cell):
    """A YOLO-format head of plain cells with any number of outputs: one 1x1 conv per
    backbone map it reads (the toy backbone's maps at strides 4, 8, 16, 32)."""

    def __init__(self, *, in_channels, in_strides, num_classes: int = 3, levels: int = 1):
        super().__init__()
        from yoloqat.plugins.yolov3.decode import YoloPredict

        self.num_classes = num_classes
        self.in_indices = tuple(range(len(in_channels) - levels, len(in_channels)))
        self.strides = tuple(in_strides[i] for i in reversed(self.in_indices))
        self.output_format = "yolo"
        anchors = [[4.0 * (k + 1), 5.0 * (k + 1)] for k in range(2 * levels)]
        masks = [[2 * i, 2 * i + 1] for i in reversed(range(levels))]
        self.loss_params = {"anchors": anchors, "anchor_masks": masks}
        self.decode = YoloPredict([np.asarray(anchors)[m] for m in masks])
        self.convs = nn.CellList(
            [
                nn.Conv2d(in_channels[i], 2 * (5 + num_classes), 1, has_bias=True)
                for i in reversed(self.in_indices)
            ]
        )

    def construct(self, *features):
        n = len(features)
        outs = ()
        for i in range(n):
            outs = outs + (self.convs[i](features[n - 1 - i]),)  # noqa: RUF005
        return outs


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_heads_with_any_number_of_outputs_check_and_train_a_step(levels: int) -> None:
    def factory(*, in_channels, in_strides, num_classes: int = 3, levels: int = 1):
        """A YOLO-format head with ``levels`` outputs."""
        return LevelsHead(
            in_channels=in_channels, in_strides=in_strides, num_classes=num_classes, levels=levels
        )

    head = check_head(factory, levels=levels)
    assert len(head.strides) == levels and head.strides[0] == 32
    loss = check_loss(yolov3_loss, head=head)  # one value-and-gradient step: finite, non-zero
    assert loss.num_levels == levels and loss.strides == head.strides


FIXED = '''
from yoloqat import hookimpl
from yoloqat.plugins.yolov3 import yolov3_head
from yoloqat.plugins.yolov3 import yolov3_loss

def fixed_head(*, width: float = 0.0625):
    """A head for a fixed backbone: it takes neither in_channels nor num_classes."""
    return yolov3_head(in_channels=(16, 32, 64), num_classes=2, width=width)

def plain_loss(*, ignore_threshold: float = 0.7):
    """A loss with its own classes and anchors: nothing injected."""
    return yolov3_loss(num_classes=2, ignore_threshold=ignore_threshold)

class OtherFormatLoss(yolov3_loss().__class__.__mro__[1]):  # an nn.Cell
    accepts = ("points",)

    def construct(self, outputs, gt_boxes, gt_labels, gt_valid, *extras):
        return outputs[0].sum()

def points_loss():
    """A loss for another output format."""
    return OtherFormatLoss()

def bad_backbone(*, width: float = 1.0):
    """A backbone without out_channels."""
    from mindspore import nn

    class Bad(nn.Cell):
        def construct(self, x):
            return x, x, x

    return Bad()

@hookimpl
def yoloqat_heads():
    return {"fixed_head": fixed_head}

@hookimpl
def yoloqat_losses():
    return {"plain_loss": plain_loss, "points_loss": points_loss}

@hookimpl
def yoloqat_backbones():
    return {"bad_backbone": bad_backbone}
'''


@contextmanager
def installed(tmp_path: Path):
    make_dist(tmp_path, "yoloqat-fixed", "yq_fixed", FIXED)
    sys.path.insert(0, str(tmp_path))
    try:
        yield Registry()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("yq_fixed", None)


def test_injected_values_only_for_factories_that_declare_them(tmp_path: Path) -> None:
    with installed(tmp_path) as reg:
        cfg = {
            "model": {
                "num_classes": 2,
                "backbone": {"name": "darknet53", "width": 0.0625},  # C3-C5: 16, 32, 64
                "head": {"name": "fixed_head"},
            },
            "loss": {"name": "plain_loss"},
        }
        net = pipeline.build_model(cfg, reg)
        assert net.num_classes == 2
        loss = pipeline.build_loss(cfg, net, reg)
        assert isinstance(loss, nn.Cell)


def test_a_head_and_a_loss_of_different_formats_are_a_plugin_error(tmp_path: Path) -> None:
    with installed(tmp_path) as reg:
        cfg = {
            "model": {
                "num_classes": 2,
                "backbone": {"name": "darknet53", "width": 0.0625},
                "head": {"name": "fixed_head"},
            },
            "loss": {"name": "points_loss"},
        }
        net = pipeline.build_model(cfg, reg)
        with pytest.raises(PluginError) as err:
            pipeline.build_loss(cfg, net, reg)
    msg = str(err.value)
    assert "loss 'points_loss' (plugin 'yq_fixed') cannot train the head 'fixed_head'" in msg
    assert "the head's outputs are 'yolo', the loss accepts 'points'" in msg
    assert err.value.exit_code == 4


def test_registry_checks_what_it_builds(tmp_path: Path) -> None:
    want = r"backbone 'bad_backbone' from plugin 'yq_fixed'.*missing attribute 'out_channels'"
    with installed(tmp_path) as reg, pytest.raises(PluginError, match=want):
        reg.create("backbone", "bad_backbone")


def test_bundled_datasets_pass_check_dataset(tmp_path: Path) -> None:
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.plugins.coco import coco
    from yoloqat.testing import check_dataset

    make_synthetic_coco(tmp_path, train=2, val=2, size=64, seed=1, num_classes=2)
    dataset = check_dataset(coco, data_dir=str(tmp_path))
    assert dataset.num_classes == 2


def test_bundled_components_pass_the_registry_checks() -> None:
    reg = Registry(entry_points=False)
    for kind in ("quantizer", "loss", "scheduler", "family"):
        for comp in reg.components(kind):
            reg.create(kind, comp.name)  # raises a PluginError if it breaks its contract
    assert {c.name for c in reg.components("family")} >= {"yolov3", "yolov3_tiny"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"), [("int8_qat", {"ema_init": "first_batch"}), ("int8_ptq", {})]
)
def test_bundled_quantizers_pass_check_quantizer(tmp_path: Path, name: str, params) -> None:
    from yoloqat.testing import check_quantizer

    factory = Registry(entry_points=False).get("quantizer", name).factory
    check_quantizer(factory, workdir=tmp_path, **params)
    assert (tmp_path / "model_int8.onnx").is_file()
