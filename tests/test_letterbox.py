"""Letterbox evaluation end to end, against boxes computed by hand.

Two images, one wide (100 x 50) and one tall (40 x 80), each hold one red rectangle on
white. The product's eval loader letterboxes them to 64 x 64 (``data/eval_transforms.py``);
a "perfect detector" finds the red pixels in exactly the array the loader produced and
reports their box in the letterboxed input's normalised coordinates; the evaluation maps it
back to the original image (``engine/evaluate.py``). The hand arithmetic:

- wide: scale = min(64/100, 64/50) = 0.64, resized to 64 x 32, pad (0, 16);
- tall: scale = min(64/40, 64/80) = 0.8, resized to 32 x 64, pad (16, 0).

A box found to within one input pixel must come back to within ``1 / scale`` original
pixels of the annotation, and AP is then 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yoloqat.data.eval_transforms import letterbox
from yoloqat.data.loader import EvalLoader
from yoloqat.engine.evaluate import evaluate_source
from yoloqat.plugins.coco import coco

SIZE = 64
#: file name -> (width, height, red box [x, y, w, h], hand-computed (scale, pad_x, pad_y))
IMAGES = {
    "wide.png": (100, 50, [20, 10, 40, 20], (0.64, 0, 16)),
    "tall.png": (40, 80, [10, 20, 20, 40], (0.8, 16, 0)),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("letterbox")
    (root / "val").mkdir()
    images, annotations = [], []
    for i, (name, (w, h, box, _)) in enumerate(IMAGES.items(), start=1):
        img = np.full((h, w, 3), 255, np.uint8)
        x, y, bw, bh = box
        img[y : y + bh, x : x + bw] = (0, 0, 255)  # BGR red
        cv2.imwrite(str(root / "val" / name), img)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        annotations.append(
            {"id": i, "image_id": i, "category_id": 1, "bbox": box, "area": bw * bh, "iscrowd": 0}
        )
    ann = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "r"}]}
    (root / "instances_val.json").write_text(json.dumps(ann))
    return root


def _dataset(data: Path):
    return coco(val_images=str(data / "val"), val_annotations=str(data / "instances_val.json"))


def find_red(images: np.ndarray) -> list[np.ndarray]:
    """A detector that is right by construction: the red pixels' box in each input.

    Works on the normalised network input (ImageNet mean/std): red has R - G of about 4.3,
    white and the gray padding about -0.2, so 2 splits them at half intensity.
    """
    boxes = np.zeros((len(images), 1, 4), np.float32)  # one candidate, normalised
    scores = np.ones((len(images), 1, 1), np.float32)  # of the one class, score 1
    for b, img in enumerate(images):
        rows, cols = np.nonzero(img[0] - img[1] > 2.0)
        x0, x1, y0, y1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        size_h, size_w = img.shape[1:]
        boxes[b, 0] = [
            (x0 + x1) / 2 / size_w,
            (y0 + y1) / 2 / size_h,
            (x1 - x0) / size_w,
            (y1 - y0) / size_h,
        ]
    return [boxes, scores]


def test_letterbox_parameters_match_the_hand_arithmetic(data: Path) -> None:
    for name, (w, h, _, (scale, pad_x, pad_y)) in IMAGES.items():
        image = cv2.cvtColor(cv2.imread(str(data / "val" / name)), cv2.COLOR_BGR2RGB)
        canvas, params = letterbox(image, (SIZE, SIZE))
        assert canvas.shape == (SIZE, SIZE, 3)
        np.testing.assert_allclose(params, [scale, pad_x, pad_y], rtol=1e-6)
        nw, nh = round(w * scale), round(h * scale)
        inside = canvas[pad_y : pad_y + nh, pad_x : pad_x + nw]
        assert (inside.reshape(-1, 3).max(axis=0) == 255).all()  # the image is there
        padding = np.ones((SIZE, SIZE), bool)
        padding[pad_y : pad_y + nh, pad_x : pad_x + nw] = False
        assert padding.any() and (canvas[padding] == canvas[padding][0]).all()  # flat gray
    loader = EvalLoader(
        _dataset(data).val_source(), batch_size=2, testing_shape=SIZE, letterbox=True
    )
    batch = next(iter(loader))
    expected = {i + 1: v[3] for i, v in enumerate(IMAGES.values())}
    for image_id, params in zip(batch["image_id"], batch["letterbox"]):
        np.testing.assert_allclose(params, expected[int(image_id)], rtol=1e-6)


@pytest.mark.parametrize("use_letterbox", [True, False])
def test_evaluation_maps_boxes_back_to_the_original_image(
    data: Path, tmp_path: Path, use_letterbox: bool
) -> None:
    dataset = _dataset(data)
    result = evaluate_source(
        find_red,
        dataset.val_source(),
        dataset.category_ids,
        testing_shape=SIZE,
        batch_size=2,
        letterbox=use_letterbox,
        output_dir=tmp_path,
    )
    detections = json.loads(Path(result.extra["results_file"]).read_text())
    assert sorted(d["image_id"] for d in detections) == [1, 2]
    for det in detections:
        w, h, box, (scale, _, _) = list(IMAGES.values())[det["image_id"] - 1]
        # one input pixel is 1/scale original pixels (letterbox), or w/64, h/64 (stretch)
        tol = [1 / scale] * 4 if use_letterbox else [w / SIZE, h / SIZE] * 2
        err = np.abs(np.asarray(det["bbox"]) - box)
        assert (err <= np.asarray(tol) + 1e-6).all(), (det["image_id"], det["bbox"], box)
    assert result.stats["AP50"] == pytest.approx(1.0)
    assert result.extra["letterbox"] is use_letterbox
