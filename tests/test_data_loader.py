"""Multi-scale schedule, distributed sampler and the MindSpore loaders (docs/seed.md §4.1, §4.2)."""

from __future__ import annotations

import numpy as np
import pytest

from yoloqat.core.errors import ConfigError
from yoloqat.data import MULTI_SCALE
from yoloqat.data.loader import EvalLoader, TrainLoader
from yoloqat.data.multiscale import shape_for_step, shape_schedule
from yoloqat.data.sampler import DistributedSampler
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.plugins.coco import coco
from yoloqat.plugins.yolov3 import yolov3_loss

SMALL = (64, 96, 128)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=22, val=5, size=64, seed=4, num_classes=3)
    return coco(data_dir=str(out))


def _loader(source, **kw):
    builder = yolov3_loss(num_classes=3).build_targets  # a family's host-side targets
    args = dict(batch_size=4, target_builder=builder, multi_scale=SMALL, seed=5)
    args.update(kw)
    return TrainLoader(source, **args)


def test_shape_sequence_same_on_every_rank_and_seeded():
    a = shape_schedule(200, epoch=3, seed=1)
    b = shape_schedule(200, epoch=3, seed=1)
    assert (a == b).all()
    assert set(a.tolist()) == set(MULTI_SCALE)  # all 10 sizes get drawn
    assert not (shape_schedule(200, epoch=3, seed=2) == a).all()
    assert not (shape_schedule(200, epoch=4, seed=1) == a).all()


def test_ranks_of_a_loader_agree_on_shapes(synth):
    src = synth.train_source()
    r0 = _loader(src, rank=0, group_size=2, batch_size=2)
    r1 = _loader(src, rank=1, group_size=2, batch_size=2)
    other = _loader(src, rank=0, group_size=2, batch_size=2, seed=6)
    steps = r0.steps_per_epoch
    assert steps == r1.steps_per_epoch == 11 // 2
    s0 = [r0.shape(2, s) for s in range(steps)]
    assert s0 == [r1.shape(2, s) for s in range(steps)]
    long0 = [r0.shape(e, s) for e in range(5) for s in range(steps)]
    assert long0 != [other.shape(e, s) for e in range(5) for s in range(steps)]


def test_resize_rate_and_fixed_shape():
    seq = shape_schedule(60, epoch=0, seed=9, resize_rate=10)
    assert all(len(set(seq[i : i + 10])) == 1 for i in range(0, 60, 10))
    assert len(set(seq.tolist())) > 1
    assert set(shape_schedule(30, epoch=0, training_shape=416).tolist()) == {416}
    assert shape_for_step(0, epoch=0, training_shape=320) == 320


def test_sampler_shards_pad_and_reshuffle():
    samplers = [DistributedSampler(10, num_shards=4, shard_id=r, seed=1) for r in range(4)]
    assert {len(s) for s in samplers} == {3}
    shards = [s.indices(0) for s in samplers]
    merged = np.concatenate(shards)
    assert sorted(set(merged.tolist())) == list(range(10)) and len(merged) == 12
    order = samplers[0].order(0)
    for r, s in enumerate(samplers):
        assert (order[s.positions()] == shards[r]).all()
        assert (s.order(0) == order).all()  # identical on every rank
    assert not (samplers[0].order(1) == order).all()
    with pytest.raises(ConfigError, match="shard_id"):
        DistributedSampler(10, num_shards=2, shard_id=2)


def _collect(loader, epoch, start=0):
    """Each batch's arrays; the builder's extras as ``extra0``, ``extra1``, ..."""
    out = []
    for b in loader.epoch(epoch, start_step=start):
        row = {k: np.copy(v) for k, v in b.items() if k not in ("extras", "inputs")}
        row.update({f"extra{i}": np.copy(e) for i, e in enumerate(b["extras"])})
        out.append(row)
    return out


def test_resume_reproduces_batches_and_workers_do_not_matter(synth):
    src = synth.train_source()
    one = _loader(src, num_workers=1)
    full = _collect(one, epoch=1)
    assert len(full) == one.steps_per_epoch == 22 // 4
    assert one.stats["images"] == len(full) * 4
    resumed = _collect(one, epoch=1, start=3)
    assert [b["step"] for b in resumed] == [3, 4]
    two = _loader(src, num_workers=2)
    parallel = _collect(two, epoch=1)
    for a, b in zip(full[3:], resumed):
        keys = ("image", "gt_boxes", "gt_labels", "gt_valid", "image_ids")
        for key in (*keys, *(f"extra{i}" for i in range(6))):
            np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(full, parallel):
        assert a["shape"] == b["shape"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["gt_boxes"], b["gt_boxes"])
    shapes = [b["shape"] for b in full]
    assert shapes == [one.shape(1, s) for s in range(len(full))]
    for b in full:
        assert b["image"].shape == (4, 3, b["shape"], b["shape"])
        assert b["extra0"].shape[1] == b["shape"] // 32  # y_true of the stride-32 output
    assert not np.array_equal(_collect(one, epoch=2)[0]["image"], full[0]["image"])


def test_padded_ground_truth_and_boxes_over_max_boxes(synth, monkeypatch):
    from yoloqat.core import events

    warnings = []
    monkeypatch.setattr(events, "emit", lambda kind, **data: warnings.append((kind, data)))
    monkeypatch.setattr("yoloqat.data.loader.warn", lambda msg, **data: warnings.append(msg))
    loader = _loader(synth.train_source(), max_boxes=2, target_builder=None)
    batches = _collect(loader, epoch=0)
    for b in batches:
        assert b["gt_boxes"].shape == (4, 2, 4) and b["gt_labels"].dtype == np.int32
        assert set(np.unique(b["gt_valid"]).tolist()) <= {0.0, 1.0}
        valid = b["gt_valid"] > 0
        assert (b["gt_boxes"][valid][:, 2:] > b["gt_boxes"][valid][:, :2]).all()
        assert (b["gt_boxes"][~valid] == 0).all() and (b["gt_labels"][~valid] == 0).all()
        assert "extra0" not in b  # no builder: assignment is the loss's business
    src = synth.train_source()
    index = {int(i): k for k, i in enumerate(src.image_ids)}
    counts = [len(src.load(index[int(i)]).boxes) for b in batches for i in b["image_ids"]]
    over = sum(c > 2 for c in counts)
    assert over > 0  # the synthetic images have up to 4 shapes
    st = loader.stats
    assert st["images_over_max_boxes"] == over
    assert st["boxes_over_max_boxes"] == sum(max(c - 2, 0) for c in counts)
    said = [w for w in warnings if isinstance(w, str) and "data.max_boxes=2" in w]
    assert len(said) == 1 and f"{over} image(s)" in said[0]


def test_batch_too_large_is_a_config_error(synth):
    with pytest.raises(ConfigError, match="no full batch"):
        _loader(synth.train_source(), batch_size=64)


def test_eval_loader_letterbox(synth):
    loader = EvalLoader(synth.val_source(), batch_size=2, testing_shape=96, letterbox=True)
    batches = list(loader)
    assert [len(b["image"]) for b in batches] == [2, 2, 1]  # no remainder dropped at eval
    params = np.concatenate([b["letterbox"] for b in batches])
    np.testing.assert_allclose(params, [[1.5, 0, 0]] * 5)  # 64 px squares fill 96 exactly
    assert sorted(np.concatenate([b["image_id"] for b in batches]).tolist()) == [1, 2, 3, 4, 5]
