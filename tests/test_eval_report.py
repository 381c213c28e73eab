"""Evaluation reports: the per-class table, P/R at the best F1, the confusion matrix, the
speed of each stage, the pictures, a run folder per evaluation, and the config's eval
thresholds as defaults that flags override.

The numbers are checked against pycocotools itself (real coco128 annotations) and against
small cases worked out by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import cli, tiny_cfg

from yoloqat.core.eval_metrics import confusion_matrix
from yoloqat.core.scoring import DetectionEngine
from yoloqat.engine.evaluate import Subset, evaluate_model, evaluate_source, stage_speed


# -- data ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco(coco128):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco128 / "annotations" / "instances_train2017.json"))


def jittered(coco, seed: int = 0) -> list[dict]:
    """The ground truth as detections: boxes shifted, random scores, a fifth dropped, and
    two lower-scoring false detections of a random class per image."""
    rng = np.random.default_rng(seed)
    dets = []
    for a in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        x, y, w, h = a["bbox"]
        if rng.uniform() < 0.2:
            continue
        box = [x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h), w, h]
        dets.append(det(a["image_id"], a["category_id"], box, float(rng.uniform(0.1, 1))))
    cats = coco.getCatIds()
    for image in coco.loadImgs(coco.getImgIds()):
        for _ in range(2):
            w, h = rng.uniform(10, 100, 2)
            x, y = rng.uniform(0, image["width"] - w), rng.uniform(0, image["height"] - h)
            score = float(rng.uniform(0.01, 0.5))
            dets.append(det(image["id"], int(rng.choice(cats)), [x, y, w, h], score))
    return dets


def hand_coco(images: int, categories: list[str], annotations: list[tuple]):
    """A pycocotools COCO of ``images`` 100 x 100 images; annotations (image, category id,
    [x, y, w, h], iscrowd)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 100, "height": 100} for i in range(1, images + 1)],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": img,
                "category_id": cat,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": crowd,
            }
            for k, (img, cat, box, crowd) in enumerate(annotations)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from yoloqat.data.synth import make_synthetic_coco

    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=4, val=6, size=64, seed=5, num_classes=3)
    return out


def det(image_id: int, category_id: int, box: list[float], score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}


@pytest.fixture(scope="module")
def coco128_result(coco):
    cats = coco.getCatIds()
    engine = DetectionEngine(cats)
    engine.extend(jittered(coco), image_ids=coco.getImgIds())
    names = [c["name"] for c in coco.loadCats(cats)]
    return engine, engine.evaluate(coco, class_names=names, details=True)


# -- the per-class table ------------------------------------------------------------------------
def test_the_per_class_mean_is_the_summary_ap(coco, coco128_result) -> None:
    _engine, result = coco128_result
    rows = result.per_class
    assert 0.2 < result.stats["AP"] < 0.6  # jittered boxes: a real spread of per-class APs
    assert np.mean([r["AP"] for r in rows]) == pytest.approx(result.stats["AP"], rel=1e-12)
    assert np.mean([r["AP50"] for r in rows]) == pytest.approx(result.stats["AP50"], rel=1e-12)
    # the rows are the classes with ground truth, in class order, with their box counts
    counts: dict[int, int] = {}
    images: dict[int, set] = {}
    for a in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
        images.setdefault(a["category_id"], set()).add(a["image_id"])
    assert [r["category_id"] for r in rows] == sorted(counts)
    assert {r["category_id"]: r["instances"] for r in rows} == counts
    assert {r["category_id"]: r["images"] for r in rows} == {c: len(v) for c, v in images.items()}
    assert rows[0]["name"] == "person" and rows[0]["class"] == 0


def test_each_class_ap_is_what_pycocotools_gives_for_that_class_alone(coco, coco128_result):
    from pycocotools.cocoeval import COCOeval

    _engine, result = coco128_result
    dets = jittered(coco)
    rows = {r["category_id"]: r for r in result.per_class}
    for cat in (1, 3, 62):  # person, car, chair
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco, coco.loadRes([dict(d) for d in dets]), "bbox")
            ev.params.catIds = [cat]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert rows[cat]["AP"] == ev.stats[0]
        assert rows[cat]["AP50"] == ev.stats[1]


def test_precision_and_recall_at_the_best_f1_by_hand() -> None:
    """Four objects; detections scoring 0.9 (hit), 0.8 (hit), 0.7 (miss), 0.6 (hit), 0.3
    (miss). Keeping those >= c: F1 0.4 above 0.8, 0.67 in (0.7, 0.8], 0.57 in (0.6, 0.7],
    0.75 in (0.3, 0.6] (P 3/4, R 3/4), 0.67 below."""
    boxes = [[0, 0, 10, 10], [20, 20, 10, 10], [40, 40, 10, 10], [60, 60, 10, 10]]
    coco = hand_coco(1, ["a"], [(1, 1, b, 0) for b in boxes])
    engine = DetectionEngine([1])
    dets = [
        det(1, 1, boxes[0], 0.9),
        det(1, 1, boxes[1], 0.8),
        det(1, 1, [80, 0, 10, 10], 0.7),
        det(1, 1, boxes[2], 0.6),
        det(1, 1, [0, 80, 10, 10], 0.3),
    ]
    engine.extend(dets)
    result = engine.evaluate(coco, class_names=["a"], details=True)
    best = result.best_f1
    assert 0.3 < best["conf"] <= 0.6
    assert (best["P"], best["R"], best["F1"]) == pytest.approx((0.75, 0.75, 0.75))
    (row,) = result.per_class
    assert (row["P"], row["R"], row["F1"]) == pytest.approx((0.75, 0.75, 0.75))
    # a run's own score threshold is the lowest the best-F1 threshold can be
    strict = DetectionEngine([1], score_threshold=0.65)
    strict.extend(dets)
    best = strict.evaluate(coco, details=True).best_f1
    assert 0.7 < best["conf"] <= 0.8 and (best["P"], best["R"]) == pytest.approx((1, 0.5))
    curves = result.curves
    at = {round(c, 3): i for i, c in enumerate(curves["confidence"])}
    for conf, (p, r) in {
        0.85: (1, 0.25),
        0.75: (1, 0.5),
        0.65: (2 / 3, 0.5),
        0.2: (0.6, 0.75),
        0.95: (1, 0),
    }.items():
        assert curves["P"][0, at[conf]] == pytest.approx(p), conf
        assert curves["R"][0, at[conf]] == pytest.approx(r), conf


def test_confusion_matrix_by_hand() -> None:
    """Rows predicted, columns true, background last: a hit, a box of b called a, a
    duplicate, a missed c, a false b, a detection in a crowd region (not counted) and one
    below the threshold (not counted)."""
    coco = hand_coco(
        1,
        ["a", "b", "c"],
        [
            (1, 1, [0, 0, 10, 10], 0),
            (1, 2, [20, 20, 10, 10], 0),
            (1, 3, [40, 40, 10, 10], 0),
            (1, 1, [70, 70, 30, 30], 1),
        ],
    )
    dets = [
        det(1, 1, [0, 0, 10, 10], 0.9),  # a on a
        det(1, 1, [1, 0, 10, 10], 0.85),  # a again on a: a false detection
        det(1, 1, [20, 20, 10, 10], 0.8),  # a on b
        det(1, 2, [0, 60, 10, 10], 0.7),  # b on nothing
        det(1, 3, [75, 75, 10, 10], 0.6),  # c inside the crowd region: ignored
        det(1, 3, [40, 40, 10, 10], 0.1),  # c on c, below the threshold: c is missed
    ]
    matrix = confusion_matrix(dets, coco, [1], [1, 2, 3], conf=0.25, iou=0.5)
    np.testing.assert_array_equal(
        matrix,
        [[1, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]],
    )


def test_confusion_matrix_columns_count_every_object(coco, coco128_result) -> None:
    _engine, result = coco128_result
    conf = result.confusion
    assert conf["conf"] == result.best_f1["conf"] > 0.1  # the operating point of the table
    counts = np.asarray(conf["counts"])
    assert counts.shape == (81, 81) and conf["labels"][-1] == "background"
    index = {c: i for i, c in enumerate(coco.getCatIds())}
    per_column = {r["category_id"]: r["instances"] for r in result.per_class}
    for cat, instances in per_column.items():
        assert counts[:, index[cat]].sum() == instances  # each box lands in one cell
    # jittered boxes of the right class: mostly on the diagonal, some background
    assert np.trace(counts[:-1, :-1]) > 0.9 * counts[:-1, :-1].sum()
    assert np.trace(counts[:-1, :-1]) > counts[-1].sum() > 0 and counts[:, -1].sum() > 0


# -- files ----------------------------------------------------------------------------------------
def test_the_report_files(coco128_result, tmp_path) -> None:
    from PIL import Image

    from yoloqat.engine.eval_report import report_text, write_report

    engine, result = coco128_result
    folder = write_report(result, engine, tmp_path / "eval")
    assert folder.parent == tmp_path / "eval"
    assert sorted(p.name for p in folder.iterdir()) == [
        "confusion_matrix.png",
        "eval.json",
        "pr_curve.png",
        "predictions.json",
    ]
    saved = json.loads((folder / "eval.json").read_text())
    assert saved["stats"] == result.stats and saved["summary"] == result.summary
    assert saved["per_class"] == result.per_class
    assert saved["best_f1"]["conf"] == pytest.approx(result.best_f1["conf"])
    assert np.asarray(saved["confusion_matrix"]["counts"]).sum() > 0
    curves = saved["curves"]
    assert len(curves["recall"]) == 101 and len(curves["confidence"]) == 101
    assert set(curves["precision"]) == {r["name"] for r in result.per_class}
    assert saved["folder"] == str(folder) and saved["results_file"].endswith("predictions.json")
    assert len(json.loads((folder / "predictions.json").read_text())) == result.num_detections
    for name in ("pr_curve.png", "confusion_matrix.png"):
        picture = np.asarray(Image.open(folder / name).convert("L"), dtype=np.float64)
        assert min(picture.shape) > 400 and picture.std() > 10, name  # drawn, not blank
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries
    text = report_text(result).splitlines()  # the lines the command prints, as plain text
    assert text[0] == "data    128 images, 929 boxes of 71 classes"
    assert text[2].startswith("per class: P and R at score >= ")
    assert text[3].split() == ["class", "images", "instances", "P", "R", "AP50", "AP"]
    assert text[4].split()[:3] == ["all", "128", "929"] and text[5].split()[0] == "person"
    assert len(text) == 5 + 71


def test_a_failed_write_leaves_no_folder(coco128_result, tmp_path, monkeypatch) -> None:
    from yoloqat.core.atomic import WriteFailure
    from yoloqat.engine import eval_report

    engine, result = coco128_result

    def full_disk(path, data, **kwargs):
        raise WriteFailure(f"could not write {path}: No space left on device")

    monkeypatch.setattr(eval_report, "write_json", full_disk)  # eval.json, written last
    with pytest.raises(WriteFailure, match="No space left"):
        eval_report.write_report(result, engine, tmp_path / "eval")
    assert list((tmp_path / "eval").iterdir()) == []
    assert "folder" not in result.extra


class RandomDetector:
    """Boxes anywhere, scores spread over [0, 1]: thresholds change what is kept. Sleeps
    ``delay`` seconds a call (the inference the report times)."""

    def __init__(self, num_classes: int, delay: float = 0.0, candidates: int = 50) -> None:
        self.num_classes, self.delay, self.candidates = num_classes, delay, candidates
        self.rng = np.random.default_rng(0)

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        time.sleep(self.delay)
        n = len(images)
        centres = self.rng.uniform(0.2, 0.8, (n, self.candidates, 2))
        sizes = self.rng.uniform(0.05, 0.4, (n, self.candidates, 2))
        boxes = np.concatenate([centres, sizes], axis=2).astype(np.float32)
        scores = np.zeros((n, self.candidates, self.num_classes), np.float32)
        classes = self.rng.integers(0, self.num_classes, (n, self.candidates))
        rows = np.arange(self.candidates)
        for b in range(n):  # one class per candidate, its score anywhere in [0, 1]
            scores[b, rows, classes[b]] = self.rng.uniform(0, 1, self.candidates)
        return [boxes, scores]


@pytest.fixture(scope="module")
def coco128_val(coco128):
    from yoloqat.plugins.coco import coco as coco_dataset

    data = coco_dataset(
        val_images=str(coco128 / "images" / "train2017"),
        val_annotations=str(coco128 / "annotations" / "instances_train2017.json"),
    )
    return data


def test_two_evaluations_started_in_the_same_second_keep_both(
    coco128_val, tmp_path, monkeypatch
) -> None:
    """The issue's complaint: two evals into one --output in the same second wrote the same
    eval_<time>.json and one result was lost. Each now gets its own folder."""
    import datetime

    from yoloqat.engine import eval_report

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(eval_report._dt, "datetime", Frozen)
    source = Subset(coco128_val.val_source(), 4)
    start = threading.Barrier(2)
    results: dict[float, object] = {}

    def run(conf: float) -> None:
        start.wait()
        results[conf] = evaluate_source(
            RandomDetector(80),
            source,
            coco128_val.category_ids,
            testing_shape=64,
            score_threshold=conf,
            output_dir=tmp_path,
            class_names=coco128_val.class_names,
        )

    threads = [threading.Thread(target=run, args=(c,)) for c in (0.05, 0.5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-01-02_03_04_05",
        "2026-01-02_03_04_05_2",
    ]
    saved = {}
    for folder in tmp_path.iterdir():
        report = json.loads((folder / "eval.json").read_text())
        saved[report["score_threshold"]] = report
        scores = [d["score"] for d in json.loads((folder / "predictions.json").read_text())]
        assert scores and min(scores) >= report["score_threshold"]
    assert set(saved) == {0.05, 0.5}  # both results kept
    for conf, result in results.items():
        assert saved[conf]["stats"] == result.stats
        assert saved[conf]["num_detections"] == result.num_detections
    assert results[0.05].num_detections > results[0.5].num_detections


def test_speed_of_each_stage(coco128_val) -> None:
    source = Subset(coco128_val.val_source(), 6)
    result = evaluate_source(
        RandomDetector(80, delay=0.02),
        source,
        coco128_val.category_ids,
        testing_shape=64,
        batch_size=2,
    )
    speed = result.speed
    assert speed["inference"] >= 10.0  # 20 ms a batch of two, at least
    assert speed["preprocess"] > 0 and speed["postprocess"] > 0
    assert speed["batch"] == 2 and speed["warmup_ms"] >= 20.0
    assert result.per_class and result.curves is None  # no details without a report
    # the first batch (compile, warm-up) is left out when there are more
    timed = stage_speed([(2, 1.0, 5.0, 0.5), (2, 0.002, 0.010, 0.004), (1, 0.001, 0.005, 0.002)], 2)
    assert timed["preprocess"] == pytest.approx(1.0)
    assert timed["inference"] == pytest.approx(5.0)
    assert timed["postprocess"] == pytest.approx(2.0)
    assert timed["warmup_ms"] == pytest.approx(6500.0)
    assert "warmup_ms" not in stage_speed([(3, 0.003, 0.03, 0.006)], 4)


# -- thresholds: the config's eval section, then flags ---------------------------------------------
def fake_model(config: dict, names: list[str]):
    from yoloqat.engine.model import Model

    return Model(
        predictor=RandomDetector(len(names)),
        path=Path("fake.ckpt"),
        kind="checkpoint",
        names=names,
        input_size=64,
        config=config,
        meta={"config": config},
    )


def test_config_thresholds_are_evals_defaults_and_flags_override(synth, tmp_path) -> None:
    names = ["circle", "square", "triangle"]
    config = {"eval": {"score_threshold": 0.3, "nms_threshold": 0.6, "multi_label": True}}
    data = {"data_dir": str(synth)}

    def scores(result) -> list[float]:
        return [d["score"] for d in json.loads(Path(result.extra["results_file"]).read_text())]

    own = evaluate_model(fake_model(config, names), output=tmp_path / "a", **data)
    assert (own.extra["score_threshold"], own.extra["nms_threshold"]) == (0.3, 0.6)
    assert own.extra["multi_label"] is True
    assert min(scores(own)) >= 0.3
    flagged = evaluate_model(
        fake_model(config, names),
        conf=0.6,
        iou=0.4,
        multi_label=False,
        output=tmp_path / "b",
        **data,
    )
    assert (flagged.extra["score_threshold"], flagged.extra["nms_threshold"]) == (0.6, 0.4)
    assert flagged.extra["multi_label"] is False and min(scores(flagged)) >= 0.6
    assert flagged.num_detections < own.num_detections
    by_set = evaluate_model(
        fake_model(config, names), overrides=["eval.score_threshold=0.45"], **data
    )
    assert by_set.extra["score_threshold"] == 0.45
    seed = evaluate_model(fake_model({}, names), **data)
    assert (seed.extra["score_threshold"], seed.extra["nms_threshold"]) == (0.001, 0.5)
    assert seed.extra["multi_label"] is False


def saved_best(out: Path) -> float:
    (folder,) = out.iterdir()
    return json.loads((folder / "eval.json").read_text())["best_f1"]["conf"]


# -- the command ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(synth, tmp_path_factory) -> tuple[Path, Path]:
    """An untrained tiny checkpoint whose stored config sets eval.score_threshold 0.2, and
    its synthetic data."""
    import mindspore as ms

    from yoloqat.core.config import apply_overrides
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import save_checkpoint

    root = tmp_path_factory.mktemp("evalreport")
    cfg = tiny_cfg(synth, root)
    cfg = apply_overrides(cfg, ["eval.testing_shape=64", "eval.score_threshold=0.2"])
    ms.set_seed(2)
    net = pipeline.build_model(cfg)
    meta = {"quantized": False, "config": cfg, "class_names": ["circle", "square", "triangle"]}
    return save_checkpoint(net, root / "tiny.ckpt", meta), synth


def test_eval_command_prints_the_report_and_uses_the_config_threshold(checkpoint, tmp_path):
    ckpt, _data = checkpoint
    out = tmp_path / "ev"
    res = cli("eval", "--pretrained", str(ckpt), "--output", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert sum(ln.startswith(" Average") for ln in lines[:12]) == 12  # the seed's summary first
    text = res.stdout
    assert f"model   {ckpt} (checkpoint, MindSpore, 3 classes)" in text
    assert "data    coco: " in text and "instances_val.json, 6 images" in text
    assert "input   64 px, stretch resize, imagenet normalisation; score >= 0.2," in text
    best = float(text.split("per class: P and R at score >= ")[1].split(",")[0])
    assert 0.2 <= best == pytest.approx(saved_best(out), abs=5e-4)
    for heading in ("class", "images", "instances", "P", "R", "AP50", "AP"):
        assert heading in text
    table = [ln for ln in lines if ln.startswith("│")]
    assert table[0].split("│")[1].strip() == "all"
    assert {ln.split("│")[1].strip() for ln in table[1:]} <= {"circle", "square", "triangle"}
    speed = next(ln for ln in lines if ln.startswith("speed"))
    assert "ms preprocess" in speed and "ms inference" in speed and "ms postprocess" in speed
    (folder,) = out.iterdir()
    assert (
        f"results: {folder} (predictions.json, pr_curve.png, confusion_matrix.png, "
        "eval.json)" in " ".join(res.stderr.split())
    )
    saved = json.loads((folder / "eval.json").read_text())
    assert saved["score_threshold"] == 0.2  # the checkpoint config's eval.score_threshold
    assert saved["model"]["kind"] == "checkpoint" and saved["model"]["classes"] == 3
    assert saved["num_images"] == 6 and saved["testing_shape"] == 64
    assert set(saved["speed"]) >= {"preprocess", "inference", "postprocess"}
    scores = [d["score"] for d in json.loads((folder / "predictions.json").read_text())]
    assert all(s >= 0.2 for s in scores)

    # the seed's flag spellings and the new ones override it; a second run, a second folder
    res = cli(
        "eval",
        "--pretrained",
        str(ckpt),
        "--output",
        str(out),
        "--ignore_threshold",
        "0.3",
        "--nms_thresh",
        "0.45",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    res = cli(
        "eval", "--pretrained", str(ckpt), "--output", str(out), "--conf", "0.35", "--iou", "0.55"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    runs = [json.loads((f / "eval.json").read_text()) for f in sorted(out.iterdir())]
    assert len(runs) == 3
    got = sorted((r["score_threshold"], r["nms_threshold"]) for r in runs)
    assert got == [(0.2, 0.5), (0.3, 0.45), (0.35, 0.55)]


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--ignore_threshold", "1.5", "--conf/--ignore_threshold 1.5 is not valid"),
        ("--conf", "-0.1", "--conf/--ignore_threshold -0.1 is not valid"),
        ("--nms_thresh", "0", "--iou/--nms_thresh 0.0 is not valid"),
    ],
)
def test_a_wrong_threshold_fails_before_loading(tmp_path, flag, value, message) -> None:
    res = cli("eval", "--pretrained", str(tmp_path / "missing.ckpt"), flag, value)
    assert res.returncode == 3 and message in res.stderr, res.stderr
