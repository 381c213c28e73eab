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

def strong_head(*, in_channels, in_strides=(8, 16, 32), num_classes: int = 80,
                strength: float = 4.0, width: float = 0.0625):
    """A YOLO head with a setting of its own (default 4.0)."""
    head = yolov3_head(in_channels=in_channels, in_strides=in_strides,
                       num_classes=num_classes, width=width)
    head.strength = strength
    return head

def strong_loss(*, num_classes: int = 80, anchors=None, anchor_masks=None, strides=None,
                weight: float = 1.0, label_smooth: bool = False):
    """The YOLO loss with a setting of its own (default 1.0)."""
    loss = yolov3_loss(num_classes=num_classes, anchors=anchors, anchor_masks=anchor_masks,
                       strides=strides, label_smooth=label_smooth)
    loss.weight = weight
    return loss

def bad_backbone(*, width: float = 1.0):
    """A backbone without out_channels."""
    from mindspore import nn

    class Bad(nn.Cell):
        def construct(self, x):
            return x, x, x

    return Bad()

@hookimpl
def yoloqat_heads():
    return {"fixed_head": fixed_head, "strong_head": strong_head}

@hookimpl
def yoloqat_losses():
    return {"plain_loss": plain_loss, "points_loss": points_loss, "strong_loss": strong_loss}

def picky_backbone(*, depth: int = 1):
    """A backbone that checks its parameter with a ValueError."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return bad_backbone()

@hookimpl
def yoloqat_backbones():
    return {"bad_backbone": bad_backbone, "picky_backbone": picky_backbone}
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


def test_qat_from_a_plugin_head_checkpoint_keeps_its_settings_and_loss(tmp_path: Path) -> None:
    """The float checkpoint of a third-party head (strength 2.0, not its default 4.0) and
    loss (weight 3.0): the QAT recipe started from it (--resume_yolov3) rebuilds exactly
    them, with the recipe's quantizer; a flag or --set still wins."""
    from yoloqat.cli.train import apply_flags, inherit_initial_network
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.engine.checkpoints import save_checkpoint
    from yoloqat.registry import reset_default

    with installed(tmp_path) as reg:
        cfg = load_config("synth_tiny")
        cfg["model"]["num_classes"] = 2
        cfg["model"]["backbone"]["width"] = 0.0625
        cfg["model"]["head"] = {"name": "strong_head", "strength": 2.0}
        cfg["loss"] = {"name": "strong_loss", "weight": 3.0, "label_smooth": True}
        net = pipeline.build_model(cfg, reg)
        ckpt = save_checkpoint(net, tmp_path / "float.ckpt", {"config": cfg})
        qat = load_config("synth_tiny_quant")
        inherit_initial_network(qat, str(ckpt))  # what train --resume_yolov3 does first
        qat = apply_overrides(apply_flags(qat, {"label_smooth": 0}, reg), [])
        assert qat["model"]["head"] == {"name": "strong_head", "strength": 2.0}
        assert qat["loss"] == {"name": "strong_loss", "weight": 3.0, "label_smooth": False}
        assert qat["quantizer"]["name"] == "int8_qat"
        built = pipeline.build_model(qat, reg)
        assert built.head.strength == 2.0 and built.num_classes == 2
        assert pipeline.build_loss(qat, built, reg).weight == 3.0
    reset_default()


def test_config_show_builds_and_fails_where_train_would(tmp_path: Path) -> None:
    from tiny import cli

    from yoloqat.registry import reset_default

    with installed(tmp_path):
        reset_default()  # the CLI's registry sees the installed plugin
        try:
            res = cli("config", "show", "synth_tiny", "--set", "loss={name: points_loss}")
            assert res.returncode == 4, res.stderr
            assert "cannot train the head 'yolov3_head'" in res.stderr
            res = cli(
                "config", "show", "synth_tiny", "--set", "model.backbone={name: bad_backbone}"
            )
            assert res.returncode == 4, res.stderr
            assert "missing attribute 'out_channels'" in res.stderr
            res = cli("config", "show", "synth_tiny", "--set", "model.head={name: fixed_head}")
            assert res.returncode == 0, res.stderr
            assert "3 output(s) at stride 32/16/8, outputs 'yolo'" in " ".join(res.stderr.split())
        finally:
            reset_default()


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
    # the darknet preset reads a Darknet .cfg (a required parameter)
    cfg = (
        "[net]\nwidth=32\nheight=32\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\n"
        "stride=2\npad=1\nactivation=leaky\n[convolutional]\nfilters=16\nsize=1\n"
        "activation=linear\n[yolo]\nmask=0,1\nanchors=5,6, 10,12\nclasses=3\nnum=2\n"
    )
    required = {"darknet": {"cfg": cfg}}
    for kind in ("quantizer", "loss", "scheduler", "family"):
        for comp in reg.components(kind):
            # raises a PluginError if it breaks its contract
            reg.create(kind, comp.name, **required.get(comp.name, {}))
    assert {c.name for c in reg.components("family")} >= {"yolov3", "yolov3_tiny", "darknet"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"), [("int8_qat", {"ema_init": "first_batch"}), ("int8_ptq", {})]
)
def test_bundled_quantizers_pass_check_quantizer(tmp_path: Path, name: str, params) -> None:
    from yoloqat.testing import check_quantizer

    factory = Registry(entry_points=False).get("quantizer", name).factory
    check_quantizer(factory, workdir=tmp_path, **params)
    assert (tmp_path / "model_int8.onnx").is_file()


class SharedHead(nn.Cell):
    """A YOLO-format head whose predictor conv is shared by its three outputs (one conv of
    the network, three Conv nodes in the ONNX graph)."""

    def __init__(self, *, in_channels, in_strides, num_classes: int = 3):
        super().__init__()
        from yoloqat.plugins.yolov3 import ANCHOR_MASKS, ANCHORS
        from yoloqat.plugins.yolov3.decode import YoloPredict

        self.num_classes = num_classes
        self.in_indices = (0, 1, 2)
        self.strides = tuple(reversed(in_strides[:3]))
        self.output_format = "yolo"
        self.loss_params = {"anchors": [list(a) for a in ANCHORS], "anchor_masks": ANCHOR_MASKS}
        self.decode = YoloPredict([np.asarray(ANCHORS, np.float32)[list(m)] for m in ANCHOR_MASKS])
        self.lateral = nn.CellList([nn.Conv2d(c, 8, 1, has_bias=True) for c in in_channels[:3]])
        self.predict = nn.Conv2d(8, 3 * (5 + num_classes), 1, has_bias=True)

    def construct(self, c3, c4, c5):
        return (
            self.predict(self.lateral[2](c5)),
            self.predict(self.lateral[1](c4)),
            self.predict(self.lateral[0](c3)),
        )


@pytest.mark.slow
def test_end_to_end_counts_a_shared_conv_once(tmp_path: Path) -> None:
    from yoloqat.testing import check_plugin_end_to_end

    def shared_head(*, in_channels, in_strides, num_classes: int = 3):
        """A head with one predictor shared by its outputs."""
        return SharedHead(in_channels=in_channels, in_strides=in_strides, num_classes=num_classes)

    report = check_plugin_end_to_end(
        "darknet53", {"width": 0.0625, "blocks": (1, 1, 1, 1, 1)}, head=shared_head
    )
    assert report.convs == 16 + 3 + 3  # backbone, laterals, the predictor once per output
    assert report.int8_convs == report.convs
    assert report.quantized_convs == 16 + 3 + 1


def test_a_factorys_value_error_is_a_config_error_naming_the_component(tmp_path: Path) -> None:
    from yoloqat.core.errors import ConfigError

    with installed(tmp_path) as reg, pytest.raises(ConfigError) as err:
        reg.create("backbone", "picky_backbone", depth=0)
    assert err.value.exit_code == 3
    assert str(err.value) == (
        "backbone 'picky_backbone' (plugin 'yq_fixed') refused its parameters: "
        "ValueError: depth must be >= 1, got 0"
    )


def test_a_family_whose_blocks_the_config_replaces_says_so(monkeypatch) -> None:
    from yoloqat.core import config, events
    from yoloqat.core.config import load_config, resolve_family
    from yoloqat.registry import Registry

    said = []
    monkeypatch.setattr(events, "warn", lambda message, **data: said.append(message))
    monkeypatch.setattr(config, "_WARNED", set())
    cfg = {**load_config("synth_tiny"), "family": "yolov3_tiny"}
    resolved = resolve_family(cfg, Registry(entry_points=False))
    assert resolved["model"]["head"]["name"] == "yolov3_head"  # the config's block wins
    assert any("model.head names 'yolov3_head', not the family's 'yolov3_tiny_head'" in m
               for m in said)  # fmt: skip
    resolve_family(cfg, Registry(entry_points=False))
    assert len(said) == 2  # backbone and head, once each per process
