"""Checkpoints: atomic writes, clear errors for missing/truncated/foreign/mismatched files."""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from yoloqat.core.errors import CheckpointError, ConfigError
from yoloqat.engine.checkpoints import (
    load_weights,
    read_checkpoint,
    save_checkpoint,
    weights_only,
)
from yoloqat.engine.models import yolov3_darknet53
from yoloqat.engine.training.optim import build_optimizer, effective_lr, param_groups


def tiny(num_classes: int = 3, width: float = 0.0625):
    return yolov3_darknet53(num_classes=num_classes, width=width)


def test_save_is_atomic_and_roundtrips(tmp_path: Path) -> None:
    net = tiny()
    path = save_checkpoint(net, tmp_path / "a" / "x.ckpt", {"epoch": 2, "quantized": False})
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["x.ckpt"]  # no temporary left over
    params, meta = read_checkpoint(path)
    assert meta["epoch"] == 2 and meta["format"] == "yoloqat-ckpt"
    other = tiny()
    load_weights(other, params, source=path)
    for a, b in zip(net.get_parameters(), other.get_parameters()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


def test_failed_save_leaves_previous_file_intact(tmp_path: Path, monkeypatch) -> None:
    net = tiny()
    path = save_checkpoint(net, tmp_path / "x.ckpt", {"epoch": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        Path(args[1]).write_bytes(b"half-written")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(net, path, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]


def test_missing_empty_truncated_foreign(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.ckpt"):
        read_checkpoint(tmp_path / "nope.ckpt")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    good = save_checkpoint(tiny(), tmp_path / "good.ckpt", {"epoch": 0})
    trunc = tmp_path / "trunc.ckpt"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a MindSpore checkpoint"):
        read_checkpoint(trunc)
    foreign = tmp_path / "foreign.ckpt"
    ms.save_checkpoint(nn.Dense(4, 2), str(foreign))
    params, _ = read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not belong to this network"):
        load_weights(tiny(), params, source=foreign)


def test_other_architecture_names_mismatched_tensors(tmp_path: Path) -> None:
    path = save_checkpoint(tiny(num_classes=3), tmp_path / "c3.ckpt", {})
    params, _ = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*head\..*\(24,.*vs network \(30,"):
        load_weights(tiny(num_classes=5), params, source=path)
    wider = yolov3_darknet53(num_classes=3, width=0.125)
    with pytest.raises(CheckpointError, match=r"backbone\.conv0\.conv\.weight"):
        load_weights(wider, params, source=path)


def test_seed_names_and_optimizer_state_are_mapped() -> None:
    seed = {
        "yolo_network.feature_map.x.weight": 1,
        "moments.yolo_network.a": 2,
        "global_step": 3,
        "learning_rate": 4,
    }
    assert weights_only(seed) == {"feature_map.x.weight": 1}


def test_param_groups_and_effective_lr() -> None:
    net = tiny()
    groups = param_groups(net.trainable_params(), 5e-4)
    decay = {p.name for p in groups[0]["params"]}
    no_decay = {p.name for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    assert all(n.endswith(".weight") for n in decay)
    assert all(n.endswith((".bias", ".gamma", ".beta")) for n in no_decay)
    assert len(decay) + len(no_decay) == len(net.trainable_params())
    lr = np.array([0.012, 0.006], np.float32)
    np.testing.assert_allclose(effective_lr(lr, 1024, "seed"), lr / 1024)
    np.testing.assert_allclose(effective_lr(lr, 1024, "standard"), lr)
    with pytest.raises(ConfigError, match="loss_scale_semantics"):
        effective_lr(lr, 1024, "legacy")
    opt = build_optimizer(net, lr)
    assert isinstance(opt, nn.Momentum)
