"""The COCO plugins and loaders on real data: ../shared/data/coco128 (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yoloqat.core.errors import DataError
from yoloqat.data.loader import EvalLoader, TrainLoader
from yoloqat.plugins.coco import coco, coco2014, yoloqat_datasets
from yoloqat.plugins.yolov3 import ANCHORS

ANN = "annotations/instances_train2017.json"
IMAGES = "images/train2017"


@pytest.fixture(scope="module")
def dataset(coco128: Path):
    return coco(
        data_dir=str(coco128),
        train_images=IMAGES,
        train_annotations=ANN,
        val_images=IMAGES,
        val_annotations=ANN,
    )


@pytest.fixture(scope="module")
def raw(coco128: Path) -> dict:
    return json.loads((coco128 / ANN).read_text())


def test_hook_lists_both_plugins():
    factories = yoloqat_datasets()
    assert factories == {"coco2014": coco2014, "coco": coco}


def test_all_128_images_load_as_rgb8(dataset, raw):
    val = dataset.val_source()
    assert len(val) == 128
    sizes = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    for i in range(len(val)):
        sample = val.load(i)
        assert sample is not None
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3
        assert sample.image.shape[2] == 3
        h, w = sample.image.shape[:2]
        assert (w, h) == sample.orig_size == sizes[sample.image_id]


def test_grayscale_image_becomes_three_channels(dataset, coco128):
    path = coco128 / IMAGES / "000000000086.jpg"
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert stored.ndim == 2  # the file really is single-channel
    val = dataset.val_source()
    i = int(np.flatnonzero(val.image_ids == 86)[0])
    image = val.load(i).image
    assert image.shape == (*stored.shape, 3)
    assert (image[..., 0] == stored).all() and (image[..., 2] == stored).all()


def test_images_without_objects_follow_the_filter_rule(dataset):
    train, val = dataset.train_source(), dataset.val_source()
    assert len(train) == 126 and train.filtered_out == 2
    for empty_id in (250, 508):
        assert empty_id not in set(train.image_ids.tolist())
        i = int(np.flatnonzero(val.image_ids == empty_id)[0])
        assert len(val.boxes(i)) == 0  # kept at eval, with no boxes


def test_boxes_back_to_coco_xywh_equal_the_json(dataset, raw):
    train = dataset.train_source()
    assert train.bad_boxes == {"dropped": 0, "clipped": 0}
    expected: dict[int, list] = {}
    for a in raw["annotations"]:
        if not a["iscrowd"]:
            expected.setdefault(a["image_id"], []).append([*a["bbox"], a["category_id"]])
    total = 0
    for i in range(len(train)):
        boxes = train.boxes(i)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)
        cats = dataset.to_category_ids(boxes[:, 4].astype(int))
        got = np.concatenate([xywh, cats[:, None]], axis=1)
        want = np.array(expected[int(train.image_ids[i])], np.float64)
        np.testing.assert_allclose(got, want, atol=2e-3)
        total += len(boxes)
    assert total == 929  # the 10 crowd boxes are removed


def test_category_mapping_matches_classes_tsv(dataset, coco128):
    rows = [line.split("\t") for line in (coco128 / "classes.tsv").read_text().splitlines()]
    rows = [r for r in rows if r[0].isdigit()]
    ids = [int(r[1]) for r in rows]
    assert dataset.category_ids == ids
    assert dataset.num_classes == 80
    assert dataset.class_names == (coco128 / "coco.names").read_text().split("\n")[:80]
    np.testing.assert_array_equal(dataset.to_class_index(ids), np.arange(80))
    np.testing.assert_array_equal(dataset.to_category_ids(np.arange(80)), ids)


def test_val_source_exposes_pycocotools(dataset, coco128):
    val = dataset.val_source()
    assert Path(val.annotation_file) == coco128 / ANN
    assert len(val.coco.getImgIds()) == 128


def test_train_loader_batches(dataset):
    train = dataset.train_source()
    loader = TrainLoader(
        train, batch_size=4, anchors=ANCHORS, num_classes=80, training_shape=320, seed=3
    )
    assert loader.steps_per_epoch == 126 // 4
    it = loader.epoch(0)
    batch = next(it)
    it.close()  # stop early: the pipeline must shut down cleanly
    assert batch["image"].shape == (4, 3, 320, 320) and batch["image"].dtype == np.float32
    assert batch["shape"] == 320
    assert batch["y_true_l"].shape == (4, 10, 10, 3, 85)
    assert batch["y_true_m"].shape == (4, 20, 20, 3, 85)
    assert batch["y_true_s"].shape == (4, 40, 40, 3, 85)
    for k in ("gt_l", "gt_m", "gt_s"):
        assert batch[k].shape == (4, 50, 4)
    n_boxes = int((batch["boxes"][..., 2] > batch["boxes"][..., 0]).sum())
    n_obj = sum(int(batch[f"y_true_{s}"][..., 4].sum()) for s in "lms")
    assert 0 < n_obj <= n_boxes
    assert set(batch["image_ids"].tolist()) <= set(train.image_ids.tolist())


def test_eval_loader_stretch_keeps_ids_and_sizes(dataset, raw):
    sizes = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    loader = EvalLoader(dataset.val_source(), batch_size=16, testing_shape=320)
    seen = []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 320, 320)
        for image_id, size in zip(batch["image_id"], batch["orig_size"]):
            assert tuple(size) == sizes[int(image_id)]
            seen.append(int(image_id))
    assert sorted(seen) == sorted(sizes)
    assert loader.stats["images"] == 128 and loader.stats["skipped_images"] == 0


def test_coco2014_layout(coco128: Path, tmp_path: Path):
    """coco128 arranged as the seed's COCO 2014 folders (links, no copies)."""
    (tmp_path / "annotations").mkdir()
    for split in ("train", "val"):
        (tmp_path / f"{split}2014").symlink_to(coco128 / IMAGES)
        (tmp_path / "annotations" / f"instances_{split}2014.json").symlink_to(coco128 / ANN)
    ds = coco2014(data_dir=str(tmp_path))
    assert len(ds.train_source()) == 126 and len(ds.val_source()) == 128
    assert ds.num_classes == 80 and ds.class_names[0] == "person"
    with pytest.raises(DataError, match="unknown category id"):
        ds.to_class_index([12])  # one of COCO's 10 unused ids
