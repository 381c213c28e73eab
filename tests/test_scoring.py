"""Evaluation engine: candidates, NMS and pycocotools on the real coco128 annotations."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from yoloqat.core.errors import DataError
from yoloqat.core.scoring import STAT_NAMES, DetectionEngine, nms

C = 80


@pytest.fixture(scope="module")
def coco(coco128):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco128 / "annotations" / "instances_train2017.json"))


def gt_detections(coco, image_ids=None):
    ids = image_ids if image_ids is not None else coco.getImgIds()
    anns = coco.loadAnns(coco.getAnnIds(imgIds=ids, iscrowd=False))
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in anns
    ]


def reference_nms(boxes, scores, classes, thr):
    """The classic per-class greedy loop (one kept box per iteration)."""
    keep = []
    for c in np.unique(classes):
        idx = np.nonzero(classes == c)[0]
        x1, y1 = boxes[idx, 0], boxes[idx, 1]
        x2, y2 = x1 + boxes[idx, 2], y1 + boxes[idx, 3]
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = np.argsort(-scores[idx], kind="stable")
        while order.size:
            i = order[0]
            keep.append(idx[i])
            rest = order[1:]
            w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
            h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            order = rest[iou <= thr]
    return np.asarray(sorted(keep))


def run_cocoeval(coco, dets):
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    return ev.stats, out.getvalue().rstrip("\n")


def test_ground_truth_as_detections_gives_ap_one(coco) -> None:
    engine = DetectionEngine(coco.getCatIds())
    engine.extend(gt_detections(coco))
    assert len(engine.image_ids) == 126  # two coco128 images have no annotation
    engine.extend([], image_ids=coco.getImgIds())
    result = engine.evaluate(coco)
    assert result.num_images == 128
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert result.stats[name] == pytest.approx(1.0), name
    assert result.ap == pytest.approx(1.0)


def test_summary_and_stats_equal_pycocotools(coco) -> None:
    rng = np.random.default_rng(0)
    dets = gt_detections(coco)
    for d in dets:  # jitter boxes, random scores, some false positives
        x, y, w, h = d["bbox"]
        d["bbox"] = [x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h), w, h]
        d["score"] = float(rng.uniform(0.01, 1))
    dets = [d for d in dets if rng.uniform() > 0.2]
    engine = DetectionEngine(coco.getCatIds())
    engine.extend([dict(d) for d in dets])
    result = engine.evaluate(coco, image_ids=coco.getImgIds())
    stats, summary = run_cocoeval(coco, [dict(d) for d in dets])
    np.testing.assert_array_equal([result.stats[n] for n in STAT_NAMES], stats)
    assert result.summary == summary
    assert len(result.summary.splitlines()) == 12
    assert 0.1 < result.ap < 0.95
    payload = json.loads(result.to_json())
    assert list(payload["stats"]) == list(STAT_NAMES)
    assert payload["num_detections"] == len(dets)


def decoded(outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """YOLO-style per-output arrays [B, H, W, A, 5 + C] (box, objectness, class
    probabilities) as the decode's (boxes [B, M, 4], scores [B, M, C] = obj x class)."""
    flat = np.concatenate([o.reshape(o.shape[0], -1, o.shape[-1]) for o in outs], axis=1)
    return flat[..., :4], flat[..., 4:5] * flat[..., 5:]


def test_no_detections_gives_zero(coco) -> None:
    engine = DetectionEngine(coco.getCatIds())
    result = engine.evaluate(coco)
    assert result.num_detections == 0
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0
    assert len(result.summary.splitlines()) == 12
    # Through the decoded path: objectness 0 everywhere yields no candidate.
    outs = [np.zeros((2, g, g, 3, 5 + C), np.float32) for g in (2, 4, 8)]
    ids = coco.getImgIds()[:2]
    engine.add_batch(decoded(outs), ids, [[640, 480], [640, 480]])
    assert engine.results() == []
    result = engine.evaluate(coco)
    assert result.num_images == 2 and result.stats["AP"] == 0.0


def _separable_images(coco):
    """Images where no two same-class GT boxes overlap with IoU > 0.5 (NMS keeps them all)."""
    chosen = []
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        if not anns:
            continue
        boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64)
        cls = np.asarray([a["category_id"] for a in anns])
        if len(reference_nms(boxes, np.ones(len(anns)), cls, 0.5)) == len(anns):
            chosen.append(image_id)
    return chosen


def test_decoded_outputs_of_ground_truth_give_ap_one(coco) -> None:
    cat_ids = coco.getCatIds()
    image_ids = _separable_images(coco)[:40]
    assert len(image_ids) >= 20
    engine = DetectionEngine(cat_ids)
    expected = []
    for image_id in image_ids:
        info = coco.loadImgs(image_id)[0]
        w, h = info["width"], info["height"]
        outs = [np.zeros((1, g, g, 3, 5 + C), np.float32) for g in (2, 4, 8)]
        flat = outs[2].reshape(-1, 5 + C)  # a view: fill the stride-8 slots in order
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        for k, a in enumerate(anns):
            x, y, bw, bh = a["bbox"]
            flat[k, :4] = ((x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h)
            flat[k, 4] = 1.0
            flat[k, 5 + cat_ids.index(a["category_id"])] = 1.0
            expected.append((image_id, a["category_id"], a["bbox"]))
        engine.add_batch(decoded(outs), [image_id], [(w, h)])
    dets = engine.results()
    assert len(dets) == len(expected)
    for image_id, cat, box in expected:  # each GT comes back, in original pixels
        same = [d["bbox"] for d in dets if (d["image_id"], d["category_id"]) == (image_id, cat)]
        assert np.abs(np.asarray(same) - box).max(axis=1).min() < 0.05
    assert all(isinstance(v, float) for d in dets for v in d["bbox"])
    result = engine.evaluate(coco)
    assert result.num_images == len(image_ids)
    assert result.stats["AP"] == pytest.approx(1.0)
    assert result.stats["AP75"] == pytest.approx(1.0)


@pytest.mark.parametrize("block", [512, 7])
def test_nms_matches_reference_loop(block) -> None:
    rng = np.random.default_rng(3)
    n = 400
    centres = rng.uniform(0, 200, (12, 2))[rng.integers(0, 12, n)]  # clusters: many overlaps
    wh = rng.uniform(10, 60, (n, 2))
    boxes = np.concatenate([centres + rng.normal(0, 8, (n, 2)) - wh / 2, wh], axis=1)
    scores = rng.uniform(0, 1, n)
    classes = rng.integers(0, 4, n)
    ref = reference_nms(boxes, scores, classes, 0.5)
    got = np.sort(nms(boxes, scores, classes, 0.5, max_block=block))
    assert 20 < len(ref) < n - 50  # the case really suppresses, and keeps several
    np.testing.assert_array_equal(got, ref)
    assert len(nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))) == 0


def _one_box_outputs(obj, cls_probs, box=(0.5, 0.5, 0.2, 0.4)):
    outs = [np.zeros((1, g, g, 3, 5 + len(cls_probs)), np.float32) for g in (2, 4, 8)]
    outs[1][0, 1, 2, 0, :5] = (*box, obj)
    outs[1][0, 1, 2, 0, 5:] = cls_probs
    return decoded(outs)


def test_single_versus_multi_label() -> None:
    probs = [0.8, 0.5, 0.0005]  # class 2's score 0.9 * 0.0005 < 0.001
    single = DetectionEngine([1, 5, 9])
    single.add_batch(_one_box_outputs(0.9, probs), [7], [(100, 50)])
    dets = single.results()
    assert len(dets) == 1
    assert dets[0]["category_id"] == 1 and dets[0]["score"] == pytest.approx(0.72, rel=1e-6)
    assert dets[0]["bbox"] == pytest.approx([40.0, 15.0, 20.0, 20.0], rel=1e-6)
    assert dets[0]["image_id"] == 7
    multi = DetectionEngine([1, 5, 9], multi_label=True)
    multi.add_batch(_one_box_outputs(0.9, probs), [7], [(100, 50)])
    dets = sorted(multi.results(), key=lambda d: -d["score"])
    assert [d["category_id"] for d in dets] == [1, 5]  # same box, two classes: NMS keeps both
    assert [d["score"] for d in dets] == pytest.approx([0.72, 0.45], rel=1e-6)
    # Below the score threshold nothing comes out, in either mode.
    for engine in (DetectionEngine([1, 5, 9]), DetectionEngine([1, 5, 9], multi_label=True)):
        engine.add_batch(_one_box_outputs(0.001, probs), [7], [(100, 50)])
        assert engine.results() == []


def test_clamp_and_box_transform(tmp_path) -> None:
    engine = DetectionEngine([3])
    # Centre 0.05, width 1.2 of a 100 x 50 image: left clamped to 0, width to 100.
    engine.add_batch(_one_box_outputs(1.0, [1.0], box=(0.05, 0.5, 1.2, 0.4)), [1], [(100, 50)])
    assert engine.results()[0]["bbox"] == pytest.approx([0.0, 15.0, 100.0, 20.0])

    # A letterbox inverse: a 100 x 50 image placed at scale 0.5 with 25 px top padding in 50x50.
    def unletterbox(norm):
        pix = norm * 50.0
        return np.stack(
            [pix[:, 0] / 0.5, (pix[:, 1] - 12.5) / 0.5, pix[:, 2] / 0.5, pix[:, 3] / 0.5], 1
        )

    engine.reset()
    engine.add_batch(
        _one_box_outputs(1.0, [1.0], box=(0.5, 0.5, 0.2, 0.2)),
        [2],
        [(100, 50)],
        box_transforms=[unletterbox],
    )
    det = engine.results()[0]
    assert det["bbox"] == pytest.approx([40.0, 15.0, 20.0, 20.0])
    path = engine.write_json(tmp_path / "out" / "predict.json")
    assert json.loads(path.read_text()) == engine.results()


def test_bad_inputs(coco) -> None:
    engine = DetectionEngine([1, 2])
    with pytest.raises(DataError, match="scores 3 classes but the dataset has 2 categories"):
        engine.add_batch(_one_box_outputs(1.0, [1.0, 0.0, 0.0]), [1], [(10, 10)])
    # a model of another output layout (e.g. a file exported before 0.2: three 5-D arrays)
    old = [np.zeros((1, g, g, 3, 7), np.float32) for g in (2, 4, 8)]
    with pytest.raises(DataError, match=r"outputs have shapes \[1, 2, 2, 3, 7\] and") as err:
        engine.add_batch(old, [1], [(10, 10)])
    assert "expected boxes [1, M, 4] and scores [1, M, C]" in str(err.value)
    with pytest.raises(DataError, match="gave 1 output"):
        engine.add_batch([np.zeros((1, 8, 4), np.float32)], [1], [(10, 10)])
    engine = DetectionEngine(coco.getCatIds())
    engine.extend([{"image_id": -5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(DataError, match="not in the annotation file"):
        engine.evaluate(coco)
    with pytest.raises(DataError, match="bbox"):
        engine.extend([{"image_id": 1, "category_id": 1, "score": 1.0}])
