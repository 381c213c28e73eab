"""Bad input: missing paths, unreadable images, odd pixel formats, bad boxes and categories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from yoloqat.core.errors import DataError, RuntimeFailure
from yoloqat.core.events import subscribe
from yoloqat.data.coco import CocoSource
from yoloqat.data.imageio import ImageReadError, read_image
from yoloqat.data.loader import EvalLoader, TrainLoader
from yoloqat.plugins.coco import coco, coco2014
from yoloqat.plugins.yolov3 import ANCHORS


@pytest.fixture
def events():
    seen = []
    unsubscribe = subscribe(seen.append)
    yield seen
    unsubscribe()


def _write_jpeg(path: Path, seed: int, size=(48, 64)) -> None:
    img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def _dataset(root: Path, n: int = 8, anns=None, cats=None) -> Path:
    """n 64x48 JPEGs with one box each (or ``anns``); returns the annotation file."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(1, n + 1):
        _write_jpeg(root / "img" / f"{i}.jpg", i)
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
    if anns is None:
        anns = [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0}
            for i in range(1, n + 1)
        ]
    cats = cats or [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}]
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann


# -- missing paths ---------------------------------------------------------------------------


def test_missing_annotation_file_is_named(tmp_path):
    (tmp_path / "img").mkdir()
    missing = tmp_path / "nope.json"
    with pytest.raises(
        DataError, match=re.escape(f"training annotation file not found: {missing}")
    ):
        coco(train_images=str(tmp_path / "img"), train_annotations=str(missing))


def test_missing_image_folder_is_named(tmp_path):
    ann = _dataset(tmp_path)
    missing = tmp_path / "elsewhere"
    with pytest.raises(DataError, match=re.escape(f"validation image folder not found: {missing}")):
        coco(val_images=str(missing), val_annotations=str(ann))


def test_coco2014_names_the_missing_paths(tmp_path):
    with pytest.raises(
        DataError, match=re.escape(f"coco2014 data_dir not found: {tmp_path / 'x'}")
    ):
        coco2014(data_dir=str(tmp_path / "x"))
    with pytest.raises(DataError, match=r"training image folder not found: .*train2014"):
        coco2014(data_dir=str(tmp_path))
    # only the validation split present: fine until the training split is asked for
    (tmp_path / "val2014").mkdir()
    (tmp_path / "annotations").mkdir()
    ann = _dataset(tmp_path / "tmp")
    (tmp_path / "annotations" / "instances_val2014.json").write_text(ann.read_text())
    ds = coco2014(data_dir=str(tmp_path))
    assert ds.num_classes == 2
    with pytest.raises(DataError, match=r"training image folder not found: .*train2014"):
        ds.train_source()
    # half a split is an error at build time, naming the missing half
    (tmp_path / "train2014").mkdir()
    with pytest.raises(DataError, match=r"annotation file not found: .*instances_train2014\.json"):
        coco2014(data_dir=str(tmp_path))


def test_not_json_is_a_data_error(tmp_path):
    (tmp_path / "img").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    ds = coco(train_images=str(tmp_path / "img"), train_annotations=str(bad))
    with pytest.raises(DataError, match=r"not valid JSON: .*bad\.json"):
        ds.train_source()


# -- unreadable images during training --------------------------------------------------------


def _break_images(root: Path) -> dict[str, Path]:
    img = root / "img"
    broken = {
        "corrupt": img / "2.jpg",
        "truncated": img / "3.jpg",
        "empty": img / "4.jpg",
        "missing": img / "5.jpg",
    }
    broken["corrupt"].write_bytes(b"this is not an image at all" * 10)
    data = broken["truncated"].read_bytes()
    broken["truncated"].write_bytes(data[: len(data) // 2])
    broken["empty"].write_bytes(b"")
    broken["missing"].unlink()
    return broken


def test_read_image_reasons(tmp_path):
    _dataset(tmp_path, n=5)
    broken = _break_images(tmp_path)
    for what, path in broken.items():
        expected = {
            "corrupt": "corrupt",
            "truncated": "truncated",
            "empty": "empty",
            "missing": "not found",
        }[what]
        with pytest.raises(ImageReadError, match=f"{expected}.*{path.name}"):
            read_image(path)
    assert read_image(tmp_path / "img" / "1.jpg").shape == (48, 64, 3)


def test_unreadable_images_are_skipped_and_counted(tmp_path, events):
    ann = _dataset(tmp_path, n=8)
    broken = _break_images(tmp_path)
    src = coco(train_images=str(tmp_path / "img"), train_annotations=str(ann)).train_source()
    loader = TrainLoader(
        src, batch_size=2, anchors=ANCHORS, num_classes=2, multi_scale=(64,), seed=0
    )
    batches = list(loader.epoch(0))
    assert len(batches) == 4  # the run goes on with full batches
    assert loader.stats["images"] == 8
    assert loader.stats["skipped_images"] == 4
    assert sorted(loader.stats["skipped_files"]) == sorted(str(p) for p in broken.values())
    warnings = [e.data["message"] for e in events if e.kind == "warning"]
    assert len(warnings) == 4
    assert any("truncated" in w and "3.jpg" in w for w in warnings)
    assert any("empty" in w and "4.jpg" in w for w in warnings)
    # the readable images stood in for the broken ones
    ids = np.concatenate([b["image_ids"] for b in batches])
    assert set(ids.tolist()) <= {1, 6, 7, 8}
    # evaluation skips them too
    val = coco(val_images=str(tmp_path / "img"), val_annotations=str(ann)).val_source()
    ev = EvalLoader(val, batch_size=3, testing_shape=64)
    seen = np.concatenate([b["image_id"] for b in ev]).tolist()
    assert sorted(seen) == [1, 6, 7, 8]
    assert ev.stats["skipped_images"] == 4
    # the source contract: load() raises the reason, naming the file
    with pytest.raises(ImageReadError, match=r"2\.jpg"):
        val.load(1)


def test_a_run_of_unreadable_images_is_a_runtime_failure(tmp_path):
    ann = _dataset(tmp_path, n=12)
    for p in (tmp_path / "img").glob("*.jpg"):
        p.write_bytes(b"junk")
    src = coco(train_images=str(tmp_path / "img"), train_annotations=str(ann)).train_source()
    loader = TrainLoader(src, batch_size=2, anchors=ANCHORS, num_classes=2, multi_scale=(64,))
    with pytest.raises(RuntimeFailure, match=r"9 unreadable images in a row: .*\.jpg"):
        list(loader.epoch(0))


# -- pixel formats ----------------------------------------------------------------------------


def test_pixel_formats_become_rgb8(tmp_path):
    gray = (np.arange(48 * 64) % 251).astype(np.uint8).reshape(48, 64)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (48, 64, 3) and (out == gray[..., None]).all()

    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 7
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (48, 64, 3) and (out == (200, 100, 50)).all()

    pal = Image.fromarray((np.arange(48 * 64) % 3).astype(np.uint8).reshape(48, 64), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 255, 0]

    deep = np.zeros((48, 64, 3), np.uint16)
    deep[..., 0] = 65535  # blue in OpenCV's BGR order
    deep[..., 2] = 257 * 10
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    out = read_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out[0, 0].tolist() == [10, 0, 255]


def test_exif_orientation_is_not_applied(tmp_path):
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, :50] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert cv2.imread(str(tmp_path / "rot.jpg")).shape[:2] == (100, 40)  # OpenCV would rotate
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 100, 3) and out[:, :40].mean() > 200  # stored orientation


# -- annotations ------------------------------------------------------------------------------


def test_bad_boxes_dropped_or_clipped_and_counted(tmp_path, events):
    def ann(i, bbox, img=1):
        return {"id": i, "image_id": img, "category_id": 1, "bbox": bbox, "iscrowd": 0}

    anns = [
        ann(1, [5, 5, 20, 20]),  # good
        ann(2, [5, 5, 0, 20]),  # zero width -> dropped
        ann(3, [5, 5, -3, 20]),  # negative -> dropped
        ann(4, [5, 5, float("nan"), 20]),  # NaN -> dropped
        ann(5, [100, 5, 20, 20]),  # entirely outside (image is 64 wide) -> dropped
        ann(6, [50, 40, 30, 30]),  # sticks out -> clipped to (50, 40, 64, 48)
        ann(7, [-4, 2, 10, 10], img=2),  # sticks out left -> clipped
    ]
    path = _dataset(tmp_path, n=2, anns=anns)
    src = CocoSource(tmp_path / "img", path, training=True)
    assert src.bad_boxes == {"dropped": 4, "clipped": 2}
    np.testing.assert_allclose(src.boxes(0)[:, :4], [[5, 5, 25, 25], [50, 40, 64, 48]])
    np.testing.assert_allclose(src.boxes(1)[:, :4], [[0, 2, 6, 12]])
    warning = next(e for e in events if e.kind == "warning")
    assert "4 boxes" in warning.data["message"] and "2 clipped" in warning.data["message"]
    loader = TrainLoader(src, batch_size=2, anchors=ANCHORS, num_classes=2, multi_scale=(64,))
    list(loader.epoch(0))
    assert loader.stats["bad_boxes_dropped"] == 4 and loader.stats["bad_boxes_clipped"] == 2


def test_unknown_category_names_the_annotation(tmp_path):
    anns = [{"id": 77, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5], "iscrowd": 0}]
    path = _dataset(tmp_path, n=1, anns=anns)
    with pytest.raises(DataError, match=r"annotation id 77 .* category_id 9, which is not in"):
        CocoSource(tmp_path / "img", path)


@pytest.mark.parametrize("bbox", [None, [1, 2, 3], ["1", 2, 3, 4]])
def test_malformed_bbox_names_the_annotation(tmp_path, bbox):
    ann = {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0}
    if bbox is not None:
        ann["bbox"] = bbox
    path = _dataset(tmp_path, n=1, anns=[ann])
    with pytest.raises(DataError, match=r"annotation id 12 .* no valid 'bbox'"):
        CocoSource(tmp_path / "img", path)


def test_image_without_file_name_is_named(tmp_path):
    path = _dataset(tmp_path, n=2)
    data = json.loads(path.read_text())
    del data["images"][1]["file_name"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image id 2 .* has no 'file_name'"):
        CocoSource(tmp_path / "img", path)


def test_training_filter_and_crowd_rule(tmp_path):
    def ann(i, img, bbox, crowd=0):
        return {"id": i, "image_id": img, "category_id": 3, "bbox": bbox, "iscrowd": crowd}

    anns = [
        ann(1, 1, [5, 5, 10, 10]),  # kept
        ann(2, 2, [5, 5, 1, 30]),  # only a box of width 1 -> image dropped
        ann(3, 3, [5, 5, 10, 10], crowd=1),  # only crowd -> kept (rule counts crowd), no boxes
        ann(4, 4, [5, 5, 0.5, 0.5]),  # tiny, and a crowd box -> kept thanks to the crowd box
        ann(5, 4, [1, 1, 30, 30], crowd=1),
    ]  # image 5: no annotation -> dropped
    path = _dataset(tmp_path, n=5, anns=anns)
    train = CocoSource(tmp_path / "img", path, training=True)
    assert train.image_ids.tolist() == [1, 3, 4] and train.filtered_out == 2
    assert len(train.boxes(1)) == 0  # the crowd box is removed
    np.testing.assert_allclose(train.boxes(2), [[5, 5, 5.5, 5.5, 1]])  # class index of id 3
    val = CocoSource(tmp_path / "img", path, training=False)
    assert len(val) == 5
    loader = TrainLoader(train, batch_size=3, anchors=ANCHORS, num_classes=2, multi_scale=(64,))
    (batch,) = list(loader.epoch(0))  # images without boxes still make a batch
    assert batch["image"].shape == (3, 3, 64, 64)
