"""Property tests of the training augmentation (docs/seed.md §4.3) and the eval transforms (§5)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from yoloqat.data import MEAN, STD
from yoloqat.data.augment import (
    apply_hsv,
    augment,
    normalize,
    placement_candidates,
    transform_boxes,
)
from yoloqat.data.eval_transforms import eval_interpolation, letterbox, preprocess_eval, stretch


def _random_boxes(rng, iw, ih, k):
    xy = rng.uniform(0, [iw, ih], (k, 2))
    wh = rng.uniform(0.5, [iw / 2, ih / 2], (k, 2))
    x2y2 = np.minimum(xy + wh, [iw, ih])
    return np.concatenate([xy, x2y2, rng.integers(0, 80, (k, 1))], axis=1).astype(np.float32)


@pytest.mark.parametrize("size", [(320, 320), (416, 416), (608, 608), (96, 64)])
def test_boxes_inside_canvas_and_larger_than_one_pixel(size):
    rng = np.random.default_rng(7)
    for trial in range(60):
        iw, ih = (int(v) for v in rng.integers(40, 700, 2))
        image = rng.integers(0, 255, (ih, iw, 3), dtype=np.uint8)
        boxes = _random_boxes(rng, iw, ih, int(rng.integers(0, 80)))
        canvas, out = augment(image, boxes, size, np.random.default_rng(trial))
        assert canvas.shape == (size[1], size[0], 3) and canvas.dtype == np.uint8
        assert out.dtype == np.float32 and out.shape[1] == 5 and len(out) <= 50
        assert (out[:, 0] >= 0).all() and (out[:, 1] >= 0).all()
        assert (out[:, 2] <= size[0]).all() and (out[:, 3] <= size[1]).all()
        assert (out[:, 2] - out[:, 0] > 1).all() and (out[:, 3] - out[:, 1] > 1).all()
        assert set(out[:, 4].tolist()) <= set(boxes[:, 4].tolist())


def test_augment_is_a_function_of_the_generator_seed():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    boxes = _random_boxes(rng, 300, 200, 5)
    a = augment(image, boxes, (320, 320), np.random.default_rng(11))
    b = augment(image, boxes, (320, 320), np.random.default_rng(11))
    c = augment(image, boxes, (320, 320), np.random.default_rng(12))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (a[0] == c[0]).all()


def test_boxes_follow_the_pixels_including_flips():
    """A black box on the left of a red image: after any augmentation the output box must
    cover black pixels, and mirrored outputs (box right of the red part) must occur."""
    ih, iw = 120, 200
    image = np.zeros((ih, iw, 3), np.uint8)
    image[:, :] = (255, 0, 0)
    image[30:90, 20:80] = 0
    boxes = np.array([[20, 30, 80, 90, 3]], np.float32)
    flips = []
    for seed in range(60):
        canvas, out = augment(image, boxes, (320, 320), np.random.default_rng(seed))
        assert len(out) <= 1
        if not len(out):
            continue
        x1, y1, x2, y2 = out[0, :4]
        if min(x2 - x1, y2 - y1) < 8:
            continue
        inner = canvas[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
        assert inner.max(axis=2).mean() < 30, f"seed {seed}: box does not cover the object"
        hsv = cv2.cvtColor(canvas, cv2.COLOR_RGB2HSV)
        red = np.argwhere((hsv[..., 1] > 150) & (hsv[..., 2] > 80))
        if len(red):
            flips.append(red[:, 1].mean() < (x1 + x2) / 2)
    assert any(flips) and not all(flips)


def test_transform_boxes_flip_mirrors_x():
    boxes = np.array([[10, 20, 50, 60]], np.float64)
    place = np.array([5, 7, 200, 100])
    plain = transform_boxes(boxes, (100, 100), place, (320, 320), False)
    mirrored = transform_boxes(boxes, (100, 100), place, (320, 320), True)
    np.testing.assert_allclose(plain, [[25, 27, 105, 67]])
    np.testing.assert_allclose(mirrored, [[320 - 105, 27, 320 - 25, 67]])


def test_at_most_50_boxes():
    rng = np.random.default_rng(1)
    image = np.full((400, 400, 3), 200, np.uint8)
    xy = rng.uniform(0, 300, (120, 2))
    boxes = np.concatenate([xy, xy + 60, np.zeros((120, 1))], 1).astype(np.float32)
    for seed in range(10):
        _, out = augment(image, boxes, (416, 416), np.random.default_rng(seed))
        assert 0 < len(out) <= 50


def test_image_without_boxes_is_still_augmented():
    image = np.full((50, 60, 3), 90, np.uint8)
    canvas, out = augment(image, np.zeros((0, 5)), (128, 128), np.random.default_rng(0))
    assert canvas.shape == (128, 128, 3) and out.shape == (0, 5)


def test_placement_candidates_follow_the_recipe():
    w, h = 416, 320
    cand = placement_candidates(np.random.default_rng(3), w, h, trials=2000)
    assert cand.shape == (2001, 4)
    assert cand[-1].tolist() == [0, 0, w, h]
    dx, dy, nw, nh = cand[:-1].T
    ar = nw / nh
    # aspect within (W/H)·[0.7/1.3, 1.3/0.7] (up to integer rounding)
    assert ar.min() > (w / h) * 0.7 / 1.3 * 0.97 and ar.max() < (w / h) * 1.3 / 0.7 * 1.03
    # tall placements have nh = scale·H, wide ones nw = scale·W, with scale in [0.25, 2]
    tall, wide = ar < 0.98, ar > 1.02
    for side, full in ((nh[tall], h), (nw[wide], w)):
        assert side.min() >= int(0.25 * full) and side.max() <= 2 * full
        assert side.min() < 0.3 * full and side.max() > 1.9 * full  # the whole range is used
    # offsets between 0 and W - nw (either sign)
    assert (np.minimum(0, w - nw) <= dx).all() and (dx <= np.maximum(0, w - nw)).all()
    assert (np.minimum(0, h - nh) <= dy).all() and (dy <= np.maximum(0, h - nh)).all()


def _hsv_reference(image, dh, s, v):
    x = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL) / 255.0
    x[..., 0] += dh
    x[..., 0][x[..., 0] > 1] -= 1
    x[..., 0][x[..., 0] < 0] += 1
    x[..., 1] *= s
    x[..., 2] *= v
    x = np.clip(x, 0, 1)
    return cv2.cvtColor((x * 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


@pytest.mark.parametrize("dh,s,v", [(0.07, 1.4, 0.8), (-0.09, 0.7, 1.45), (0.0, 1.0, 1.0)])
def test_hsv_lookup_tables_equal_the_float_computation(dh, s, v):
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(apply_hsv(image, dh, s, v), _hsv_reference(image, dh, s, v))


def test_normalize_is_imagenet_mean_std_chw():
    image = np.random.default_rng(0).integers(0, 256, (2, 10, 12, 3), dtype=np.uint8)
    expect = (image / 255.0 - np.array(MEAN)) / np.array(STD)
    got = normalize(image)
    assert got.shape == (2, 3, 10, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got, expect.transpose(0, 3, 1, 2), atol=1e-5)
    np.testing.assert_array_equal(normalize(image[0]), got[0])


def test_eval_interpolation_rule():
    assert eval_interpolation((300, 200), (416, 416)) == cv2.INTER_CUBIC
    assert eval_interpolation((640, 480), (416, 416)) == cv2.INTER_NEAREST
    assert eval_interpolation((640, 300), (416, 416)) == cv2.INTER_LINEAR
    assert eval_interpolation((416, 500), (416, 416)) == cv2.INTER_LINEAR


def test_stretch_and_letterbox():
    image = np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    assert stretch(image, (416, 416)).shape == (416, 416, 3)
    canvas, (scale, px, py) = letterbox(image, (416, 416))
    assert canvas.shape == (416, 416, 3)
    assert scale == pytest.approx(416 / 200) and px == 0 and py == (416 - 208) // 2
    assert (canvas[: int(py)] == 128).all() and (canvas[int(py) + 208 :] == 128).all()
    x, params = preprocess_eval(image, 320)
    assert x.shape == (3, 320, 320) and x.dtype == np.float32
    assert params.tolist() == [1.0, 0.0, 0.0]
