"""EXIF orientation in training and evaluation data: a photo stored sideways is turned
upright as viewers and annotation tools show it, unless its annotation records the stored
size; either way a warning says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yoloqat.data import imageio


def _photo(path: Path, upright: np.ndarray, orientation: int = 6) -> None:
    """Write ``upright`` as a JPEG stored sideways with EXIF ``orientation`` 6 (or 8)."""
    stored = np.rot90(upright, 1 if orientation == 6 else -1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=95, exif=exif)


def _upright() -> np.ndarray:
    image = np.full((60, 100, 3), 255, np.uint8)  # 100 wide, 60 tall as displayed
    image[10:30, 20:50] = (255, 0, 0)  # a red box near the top left
    return image


def test_read_upright_turns_by_the_tag_and_respects_a_stored_size(tmp_path: Path) -> None:
    _photo(tmp_path / "a.jpg", _upright())
    image, applied = imageio.read_upright(tmp_path / "a.jpg")
    assert applied == 6 and image.shape[:2] == (60, 100)
    red = np.argwhere((image[..., 0] > 200) & (image[..., 1] < 80))
    assert (red.min(0) >= (8, 18)).all() and (red.max(0) <= (32, 52)).all()  # where it was
    assert imageio.image_size(tmp_path / "a.jpg") == (100.0, 60.0)  # displayed size
    # an annotation recording the stored size (60 x 100): its boxes are in the stored layout
    stored, applied = imageio.read_upright(tmp_path / "a.jpg", frame_size=(60, 100))
    assert applied == 0 and stored.shape[:2] == (100, 60)
    same, applied = imageio.read_upright(tmp_path / "a.jpg", frame_size=(100, 60))
    assert applied == 6 and np.array_equal(same, image)
    assert imageio.read_image(tmp_path / "a.jpg").shape[:2] == (100, 60)  # the raw layout


def test_a_coco_dataset_trains_and_scores_in_the_displayed_frame(tmp_path: Path, monkeypatch):
    from yoloqat.core import events
    from yoloqat.plugins.coco import coco

    said = []
    monkeypatch.setattr(events, "warn", lambda message, **data: said.append(message))
    monkeypatch.setattr(imageio, "_SAID", set())
    root = tmp_path / "ds"
    (root / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    _photo(root / "val" / "phone.jpg", _upright())
    _photo(root / "val" / "scan.jpg", _upright())
    ann = {
        "images": [
            {"id": 1, "file_name": "phone.jpg", "width": 100, "height": 60},  # as displayed
            {"id": 2, "file_name": "scan.jpg", "width": 60, "height": 100},  # as stored
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [20, 10, 30, 20],
                "area": 600,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 2,
                "category_id": 1,
                "bbox": [10, 50, 20, 30],
                "area": 600,
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 1, "name": "red"}],
    }
    (root / "annotations" / "instances_val.json").write_text(json.dumps(ann))
    source = coco(data_dir=str(root)).val_source()
    phone = source.load(0)
    assert phone.orig_size == (100, 60) and phone.image.shape[:2] == (60, 100)
    x1, y1, x2, y2 = phone.boxes[0, :4]
    assert phone.image[int((y1 + y2) / 2), int((x1 + x2) / 2), 1] < 80  # the box is on red
    scan = source.load(1)
    assert scan.orig_size == (60, 100)  # left in the stored layout, as annotated
    assert any("turned upright" in m and "phone.jpg" in m for m in said)
    assert any("scan.jpg" in m and "stored (unturned) layout" in m for m in said)
    source.load(0)
    assert len(said) == 2  # once per dataset


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_yolo_dataset_uses_the_displayed_size(tmp_path: Path, orientation: int) -> None:
    from yoloqat.plugins.yolo import yolo

    root = tmp_path / "yolo"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    _photo(root / "images" / "val" / "p.jpg", _upright(), orientation)
    # the red box in normalised coordinates of the displayed (upright) picture
    (root / "labels" / "val" / "p.txt").write_text("0 0.35 0.3333 0.3 0.3333\n")
    source = yolo(
        data_dir=str(root), val="images/val", train="images/val", names=["red"]
    ).val_source()
    sample = source.load(0)
    assert sample.orig_size == (100, 60)
    (ann,) = source.annotations()
    assert (ann.width, ann.height) == (100.0, 60.0)
    np.testing.assert_allclose(ann.boxes[0], [20, 10, 30, 20], atol=0.05)
    np.testing.assert_allclose(sample.boxes[0, :4], [20, 10, 50, 30], atol=0.05)
