"""Component contracts: bundled components conform; violations name plugin, kind, member."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from mindspore import nn
from test_registry import make_dist

from yoloqat.core.contracts import PROTOCOLS, check_component, members
from yoloqat.core.errors import PluginError
from yoloqat.engine import pipeline
from yoloqat.plugins.darknet53 import darknet53
from yoloqat.plugins.schedulers import cosine_annealing, exponential
from yoloqat.plugins.yolov3_head import yolov3_head
from yoloqat.plugins.yolov3_loss import yolov3_loss
from yoloqat.registry import Registry
from yoloqat.testing import check_backbone, check_head, check_loss, check_scheduler


class NoChannels(nn.Cell):
    def construct(self, x):
        return x, x, x


class TwoChannels(NoChannels):
    out_channels = (8, 16)


class HeadWithoutAnchors(nn.Cell):
    num_classes = 3
    anchor_masks = ((0,), (1,), (2,))

    def construct(self, c3, c4, c5):
        return c5, c4, c3


class BadMasks(HeadWithoutAnchors):
    anchors = ((1, 2), (3, 4), (5, 6))
    anchor_masks = ((0,), (1,))


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


@pytest.mark.parametrize(
    ("kind", "obj", "problem"),
    [
        ("backbone", NoChannels(), "missing attribute 'out_channels'"),
        ("backbone", TwoChannels(), "'out_channels' must be three positive ints"),
        ("backbone", {"depth": 2}, "it is a dict, not a mindspore.nn.Cell"),
        ("head", HeadWithoutAnchors(), "missing attribute 'anchors'"),
        ("head", BadMasks(), "'anchor_masks' must be 3 equal-size groups"),
        ("quantizer", HalfQuantizer(), "missing method 'export_plan'"),
        ("loss", NotALoss(), "not a mindspore.nn.Cell"),
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
    assert members("backbone") == {"out_channels": "attribute", "construct": "method"}
    assert set(members("head")) == {"num_classes", "anchors", "anchor_masks", "construct"}
    assert set(members("quantizer")) == {
        "apply",
        "summary",
        "set_fake_quant",
        "eval_gates",
        "export_plan",
    }
    assert members("scheduler") == {"per_step": "method"}
    assert "val_source" in members("dataset")


def test_bundled_components_conform() -> None:
    backbone = check_backbone(darknet53, width=0.0625)
    check_head(yolov3_head, in_channels=tuple(backbone.out_channels), width=0.0625)
    check_loss(yolov3_loss)
    check_scheduler(cosine_annealing, T_max=3, warmup_epochs=1)
    check_scheduler(exponential, lr_epochs=[1, 2])


FIXED = '''
from yoloqat import hookimpl
from yoloqat.plugins.yolov3_head import yolov3_head
from yoloqat.plugins.yolov3_loss import yolov3_loss

def fixed_head(*, width: float = 0.0625):
    """A head for a fixed backbone: it takes neither in_channels nor num_classes."""
    return yolov3_head(in_channels=(16, 32, 64), num_classes=2, width=width)

def plain_loss(*, ignore_threshold: float = 0.7):
    """A loss with its own classes and anchors: nothing injected."""
    return yolov3_loss(num_classes=2, ignore_threshold=ignore_threshold)

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
    return {"plain_loss": plain_loss}

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
    for kind in ("quantizer", "loss", "scheduler"):
        for comp in reg.components(kind):
            reg.create(kind, comp.name)  # raises a PluginError if it breaks its contract


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"), [("int8_qat", {"ema_init": "first_batch"}), ("int8_ptq", {})]
)
def test_bundled_quantizers_pass_check_quantizer(tmp_path: Path, name: str, params) -> None:
    from yoloqat.testing import check_quantizer

    factory = Registry(entry_points=False).get("quantizer", name).factory
    check_quantizer(factory, workdir=tmp_path, **params)
    assert (tmp_path / "model_int8.onnx").is_file()
