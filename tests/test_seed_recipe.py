"""The bundled seed configs against the seed's constants (docs/seed.md §1.1, §3-§7), and
a checkpoint with the seed's own parameter names loading into a real network (docs/seed.md §6.6).

Every constant below is copied from ``shared/spec/seed_spec.md``, not from the configs.
"""

from __future__ import annotations

import math
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from yoloqat.core.config import apply_overrides, load_config
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine import pipeline
from yoloqat.engine.checkpoints import load_weights, read_checkpoint
from yoloqat.engine.training.optim import effective_lr
from yoloqat.engine.training.trainer import Trainer

# docs/seed.md §1.4
ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198]]
ANCHORS.append([373, 326])
ANCHOR_MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
# docs/seed.md §4.2
MULTI_SCALE = [320, 352, 384, 416, 448, 480, 512, 544, 576, 608]
# docs/seed.md §4.3 (jitter, scale, flip, hue, saturation, value)
AUGMENT = {"jitter": 0.3, "scale": [0.25, 2.0], "flip": 0.5, "hue": 0.1, "saturation": 1.5}
AUGMENT["value"] = 1.5
# docs/seed.md §6.3 (8-device quant recipe) and §6.1
QUANT_RECIPE = {
    "scheduler.name": "cosine_annealing",
    "scheduler.lr": 0.012,
    "scheduler.T_max": 135,
    "scheduler.eta_min": 0.0,
    "scheduler.warmup_epochs": 5,
    "scheduler.warmup": "zero",
    "train.max_epoch": 135,
    "train.per_batch_size": 16,
    "train.momentum": 0.9,
    "train.weight_decay": 0.0005,
    "train.loss_scale": 1024,
    "train.loss_scale_semantics": "seed",
    "train.dynamic_loss_scale": False,
    "train.is_save_on_master": 1,
    "train.seed": 1,
    # docs/seed.md §7.1
    "quantizer.name": "int8_qat",
    "quantizer.num_bits": 8,
    "quantizer.narrow_range": False,
    "quantizer.quant_delay": 0,
    "quantizer.per_channel": [True, False],
    "quantizer.symmetric": [True, False],
    "quantizer.freeze_bn": 10_000_000,
    "quantizer.ema_decay": 0.999,
    "quantizer.ema_init": "fixed",
}
# docs/seed.md §6.4 (S-pcl float scripts)
FLOAT_RECIPE = {
    "scheduler.name": "cosine_annealing",
    "scheduler.lr": 0.1,
    "scheduler.T_max": 320,
    "scheduler.eta_min": 0.0,
    "scheduler.warmup_epochs": 4,
    "scheduler.warmup": "linear",
    "train.max_epoch": 320,
    "train.per_batch_size": 32,
    "train.momentum": 0.9,
    "train.weight_decay": 0.0005,
    "train.loss_scale": 1024,
    "train.loss_scale_semantics": "seed",
    "quantizer.name": "none",
}
# both (docs/seed.md §1, §3, §4, §5)
COMMON = {
    "model.num_classes": 80,
    "model.backbone.name": "darknet53",
    "model.backbone.activation": "relu",
    "model.backbone.width": 1.0,
    "model.head.negative_slope": 0.1,
    "model.head.anchors": ANCHORS,
    "model.head.anchor_masks": ANCHOR_MASKS,
    "loss.name": "yolov3_loss",
    "loss.ignore_threshold": 0.7,
    "loss.label_smooth": False,
    "loss.label_smooth_factor": 0.1,
    "data.multi_scale": MULTI_SCALE,
    "data.resize_rate": 1,
    "data.max_boxes": 50,
    "data.augment": AUGMENT,
    "eval.testing_shape": 416,
    "eval.score_threshold": 0.001,
    "eval.nms_threshold": 0.5,
    "eval.multi_label": False,
    "eval.letterbox": False,
    "dataset.name": "coco2014",
}
# docs/seed.md §1.1: "running <- a * running + (1 - a) * batch", a per snapshot (quant: S-pcl/S-r12)
BN_KEEP = {
    "yolov3_darknet53_quant": {"backbone": 0.9, "head": 0.1},
    "yolov3_darknet53": {"backbone": 0.1, "head": 0.9},
}


def _get(cfg: dict, dotted: str):
    node = cfg
    for key in dotted.split("."):
        assert isinstance(node, dict) and key in node, f"{dotted} is missing"
        node = node[key]
    return node


@pytest.mark.parametrize(
    "name, recipe",
    [("yolov3_darknet53_quant", QUANT_RECIPE), ("yolov3_darknet53", FLOAT_RECIPE)],
)
def test_seed_configs_hold_the_seed_constants(name: str, recipe: dict) -> None:
    cfg = load_config(name)
    for dotted, expected in {**COMMON, **recipe}.items():
        assert _get(cfg, dotted) == expected, f"{name}: {dotted}"
    pipeline.validate(cfg)  # every block builds with these parameters


def test_quant_recipe_learning_rates() -> None:
    """Zero warmup for 5 epochs, cosine per epoch, the README log's values (docs/seed.md §6.2),
    and the effective rate lr / 1024 of the seed's loss-scale semantics (docs/seed.md §6.1)."""
    cfg = load_config("yolov3_darknet53_quant")
    spe = 7  # steps per epoch do not change the per-epoch staircase
    lr = pipeline.build_scheduler(cfg).per_step(spe, cfg["train"]["max_epoch"])
    assert len(lr) == 135 * spe
    per_epoch = lr[::spe]
    assert (lr[: 5 * spe] == 0).all()
    assert per_epoch[5] == pytest.approx(0.012 * (1 + math.cos(math.pi * 5 / 135)) / 2, rel=1e-6)
    assert per_epoch[133] == pytest.approx(6.497e-6, rel=1e-3)  # the README's 8p log
    assert per_epoch[134] == pytest.approx(1.6246e-6, rel=1e-3)
    for e in range(135):  # a staircase: constant within an epoch
        assert (lr[e * spe : (e + 1) * spe] == lr[e * spe]).all()
    eff = effective_lr(lr, cfg["train"]["loss_scale"], cfg["train"]["loss_scale_semantics"])
    assert eff[5 * spe] == pytest.approx(per_epoch[5] / 1024, rel=1e-6)
    assert float(eff.max()) == pytest.approx(0.012 / 1024 * 0.99661, rel=1e-4)


@pytest.mark.parametrize("name", ["yolov3_darknet53_quant", "yolov3_darknet53"])
def test_bn_running_statistics_follow_the_seed(name: str) -> None:
    """Feed each BN a batch of known mean: the running mean moves by (1 - a) of it."""
    cfg = apply_overrides(
        load_config(name), ["model.backbone.width=0.0625", "model.head.width=0.0625"]
    )
    net = pipeline.build_model(cfg)
    quantizer = pipeline.build_quantizer(cfg)
    if quantizer is not None:
        net = quantizer.apply(net)  # the BN cells live on inside the quantized layers
    cells = {
        "backbone": net.backbone.layer3[2].conv1.bn,
        "head": net.head.backblock1.conv4.bn,
    }
    for part, bn in cells.items():
        channels = bn.moving_mean.shape[0]
        x = np.random.default_rng(0).normal(3.0, 2.0, (4, channels, 5, 5)).astype(np.float32)
        bn.moving_mean.set_data(Tensor(np.zeros(channels, np.float32)))
        bn.set_train(True)
        bn(Tensor(x))
        bn.set_train(False)
        keep = BN_KEEP[name][part]
        expected = (1 - keep) * x.mean(axis=(0, 2, 3))
        np.testing.assert_allclose(bn.moving_mean.asnumpy(), expected, rtol=1e-4, err_msg=part)


def test_quantizer_observers_follow_the_seed() -> None:
    """Activation observers: EMA decay 0.999 from +-6 around LeakyReLU and after adds,
    batch range after ReLU; weights per channel, symmetric (docs/seed.md §7.1-7.2)."""
    from yoloqat.plugins.int8_qat.quantizer import quantized_layers

    cfg = apply_overrides(
        load_config("yolov3_darknet53_quant"),
        ["model.backbone.width=0.0625", "model.head.width=0.0625"],
    )
    net = pipeline.build_quantizer(cfg).apply(pipeline.build_model(cfg))
    layers = dict(quantized_layers(net))
    add = layers["backbone.layer2.0.add"].act_quant
    leaky = layers["head.backblock0.conv0"]
    relu = layers["backbone.conv0"].act_quant
    for fq in (add, leaky.act_quant, leaky.act_quant_before):
        assert fq.ema and fq.ema_decay == 0.999 and not fq.symmetric
        assert float(fq.min_value.asnumpy()[0]) == -6.0 and float(fq.max_value.asnumpy()[0]) == 6.0
    assert not relu.ema and not relu.symmetric
    weights = layers["backbone.conv0"].weight_quant
    assert weights.per_channel and weights.symmetric and weights.num_bits == 8
    assert weights.min_value.shape == (layers["backbone.conv0"].conv.weight.shape[0],)
    # one EMA step on the residual add: 0.999 * (+-6) + 0.001 * batch range
    x = np.random.default_rng(1).normal(0, 1, (2, 8, 4, 4)).astype(np.float32)
    y = np.random.default_rng(2).normal(0, 1, (2, 8, 4, 4)).astype(np.float32)
    cell = layers["backbone.layer2.0.add"]
    cell.set_train(True)
    cell(Tensor(x), Tensor(y))
    cell.set_train(False)
    s = x + y
    assert float(add.min_value.asnumpy()[0]) == pytest.approx(0.999 * -6 + 0.001 * s.min(), 1e-5)
    assert float(add.max_value.asnumpy()[0]) == pytest.approx(0.999 * 6 + 0.001 * s.max(), 1e-5)


def _seed_name(name: str) -> str:
    """Our parameter name -> the seed float checkpoint's (docs/seed.md §1.1, §6.6; the seed's
    ``YoloWithLossCell.yolo_network = YOLOV3DarkNet53``, whose ``feature_map = YOLOv3(...)``
    holds ``backbone`` (DarkNet) and ``backblock0..2``, ``conv1``, ``conv2``; every conv+BN
    is ``SequentialCell[Conv2d, BatchNorm2d, act]``, the output convs plain ``Conv2d``)."""
    part, rest = name.split(".", 1)
    rest = rest.replace(".conv.weight", ".0.weight").replace(".bn.", ".1.")
    prefix = "backbone." if part == "backbone" else ""
    return f"yolo_network.feature_map.{prefix}{rest}"


def _seed_checkpoint(network, path: Path) -> dict[str, np.ndarray]:
    """Random weights under the seed's names, plus the optimizer state its files hold."""
    rng = np.random.default_rng(0)
    values = {
        _seed_name(p.name): rng.normal(0.5, 0.1, p.shape).astype(np.float32)
        for p in network.get_parameters()
    }
    extra = {f"moments.{n}": np.zeros_like(v) for n, v in values.items() if "moving_" not in n}
    extra.update(
        global_step=np.array([7], np.int32),
        learning_rate=np.array([0.012], np.float32),
        momentum=np.array([0.9], np.float32),
    )
    items = [{"name": n, "data": Tensor(v)} for n, v in {**values, **extra}.items()]
    ms.save_checkpoint(items, str(path))
    return values


def test_seed_parameter_names_are_the_seeds() -> None:
    net = pipeline.build_model(load_config("yolov3_darknet53"))
    names = {_seed_name(p.name) for p in net.get_parameters()}
    for known in (  # as the seed's yolo.py / darknet.py build them
        "yolo_network.feature_map.backbone.conv0.0.weight",
        "yolo_network.feature_map.backbone.layer5.3.conv2.1.moving_variance",
        "yolo_network.feature_map.backblock0.conv5.1.gamma",
        "yolo_network.feature_map.backblock2.conv6.bias",
        "yolo_network.feature_map.conv2.0.weight",
    ):
        assert known in names, known
    trainable = sum(int(np.prod(p.shape)) for p in net.trainable_params())
    assert trainable == 61_949_149  # docs/seed.md §1.5: the same tensors the seed's files hold


@pytest.mark.parametrize("name", ["yolov3_darknet53", "yolov3_darknet53_quant"])
def test_a_seed_checkpoint_loads_into_the_network(name: str, tmp_path: Path) -> None:
    """``--resume_yolov3 SEED.ckpt``: through the Trainer (float, or float then quantized)."""
    data = tmp_path / "data"
    make_synthetic_coco(data, train=4, val=1, size=64, seed=2, num_classes=3)
    cfg = apply_overrides(
        load_config(name),
        [
            "model.num_classes=3",
            "model.backbone.width=0.0625",
            "model.head.width=0.0625",
            "dataset.name=coco",
            f"dataset.data_dir={data}",
            "data.training_shape=64",
            "data.num_workers=1",
            "train.per_batch_size=2",
            f"train.ckpt_path={tmp_path}",
        ],
    )
    seed_ckpt = tmp_path / "seed.ckpt"
    expected = _seed_checkpoint(pipeline.build_model(cfg), seed_ckpt)
    trainer = Trainer(
        apply_overrides(cfg, [f"train.resume_yolov3={seed_ckpt}"]), run_dir=tmp_path / "run"
    )
    trainer._build()
    got = {_seed_name(p.name): p.asnumpy() for p in trainer.network.get_parameters()}
    for seed_name, value in expected.items():
        np.testing.assert_array_equal(got[seed_name], value, err_msg=seed_name)
    # and the seed's recipe reaches the train step: lr / 1024 with the static scale 1024
    assert float(trainer.step_cell.loss_scale.asnumpy()) == 1024.0
    np.testing.assert_allclose(trainer.lr, trainer.base_lr / 1024, rtol=1e-6)
    # plain loading (eval / export path) takes the seed's names too
    params, _ = read_checkpoint(seed_ckpt)
    fresh = pipeline.build_model(cfg)
    load_weights(fresh, params, source=seed_ckpt)
    for p in fresh.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), expected[_seed_name(p.name)], err_msg=p.name)
