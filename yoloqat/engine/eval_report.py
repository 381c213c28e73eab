"""The files and text of an evaluation report: a run folder per evaluation, pictures, lines.

Every evaluation that writes gets a new folder ``<output>/<YYYY-mm-dd_HH_MM_SS>`` (the
seed's ``outputs/<time>/``; ``_2``, ``_3`` ... when taken: the folder is created with an
exclusive ``mkdir``, so two evaluations started in the same second never share one) with:

- ``predictions.json``: the detections in COCO result form (what pycocotools scored);
- ``pr_curve.png``: precision-recall at IoU 0.5 per class and their mean, beside F1 (per
  class and mean), mean precision and mean recall against the score threshold, the best-F1
  threshold marked;
- ``confusion_matrix.png``: at IoU 0.5 and the best-F1 score threshold, with background;
- ``eval.json``: everything (header, 12 numbers and summary, per-class table, best F1,
  speed, confusion matrix counts, curves, the files), written last: a folder with an
  ``eval.json`` is complete. A write that fails removes what this evaluation wrote.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.atomic import atomic_path, unique_folder, write_json, write_text
from yoloqat.core.scoring import EvalResult

#: Classes shown with their own colour and legend entry in ``pr_curve.png`` (more: gray).
LEGEND_CLASSES = 20
#: Labels of a confusion matrix whose cells still get their counts written in.
ANNOTATE_CELLS = 30


def timestamp() -> str:
    """The name of a run folder started now: ``YYYY-mm-dd_HH_MM_SS``."""
    return _dt.datetime.now().strftime("%Y-%m-%d_%H_%M_%S")


def run_folder(parent: str | Path, stamp: str | None = None) -> Path:
    """A new folder for one evaluation's files inside ``parent``, named ``stamp`` (default:
    now), ``stamp_2``, ``stamp_3`` ... when taken (see the module doc)."""
    return unique_folder(parent, stamp or timestamp(), "--output")


def write_report(
    result: EvalResult, engine: Any, parent: str | Path, *, stamp: str | None = None
) -> Path:
    """Write ``result`` (and ``engine``'s detections) into a new run folder in ``parent``
    named by ``stamp`` (the evaluation's start, :func:`timestamp`; default: now); return
    the folder. Sets ``result.extra["folder"]``, ``["results_file"]``,
    ``["eval_file"]`` and ``["files"]``. On a failure (full disk) the files written so far
    are removed with the folder, and the error (a WriteFailure) is raised."""
    import json

    folder = run_folder(parent, stamp)
    written: list[Path] = []
    try:
        written.append(write_text(folder / "predictions.json", json.dumps(engine.results())))
        if result.curves is not None:
            written.append(plot_pr_curve(result, folder / "pr_curve.png"))
        if result.confusion is not None:
            written.append(plot_confusion_matrix(result, folder / "confusion_matrix.png"))
        result.extra.update(
            folder=str(folder),
            results_file=str(folder / "predictions.json"),
            eval_file=str(folder / "eval.json"),
            files=[p.name for p in [*written, folder / "eval.json"]],
        )
        write_json(folder / "eval.json", result.to_dict())
    except BaseException:
        for key in ("folder", "results_file", "eval_file", "files"):
            result.extra.pop(key, None)
        for path in written:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something else wrote there
            folder.rmdir()
        raise
    return folder


# -- pictures ---------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(result: EvalResult) -> str:
    model = (result.extra.get("model") or {}).get("name")
    size = result.extra.get("testing_shape")
    parts = [p for p in (model, f"{result.num_images} images", size and f"{size} px") if p]
    return ", ".join(str(p) for p in parts)


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def plot_pr_curve(result: EvalResult, path: str | Path) -> Path:
    """Left: precision against recall at IoU 0.5 for each class (pycocotools' interpolated
    curve: its mean height is the class's AP50) and their mean, the best-F1 point marked.
    Right: F1 against the score threshold per class, the mean F1, precision and recall, and
    the best-F1 threshold with the P and R the table reports."""
    plt = _pyplot()
    curves = result.curves or {}
    names: list[str] = list(curves.get("names", []))
    rows = {r["name"]: r for r in result.per_class}
    recall = np.asarray(curves.get("recall", np.linspace(0, 1, 101)))
    conf = np.asarray(curves.get("confidence", np.linspace(0, 1, 1001)))
    few = len(names) <= LEGEND_CLASSES
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, (ax_pr, ax_f1) = plt.subplots(1, 2, figsize=(13, 5.6), dpi=110)
    for i, name in enumerate(names):
        if few:
            style = {"lw": 1.0, "alpha": 0.85, "color": colours(i % colours.N)}
        else:  # many classes: a gray crowd behind the mean
            style = {"lw": 0.6, "alpha": 0.35, "color": "0.55"}
        label = f"{name} {rows[name]['AP50']:.3f}" if few else None
        ax_pr.plot(recall, curves["precision"][name], label=label, **style)
        ax_f1.plot(conf, curves["F1"][i], **style)
    if names:
        mean_pr = np.mean([curves["precision"][n] for n in names], axis=0)
        ap50 = result.stats["AP50"]
        ax_pr.plot(recall, mean_pr, color="tab:blue", lw=3, label=f"all classes {ap50:.3f} AP50")
        mean = {k: np.asarray(curves[k]).mean(axis=0) for k in ("P", "R", "F1")}
        ax_f1.plot(conf, mean["F1"], color="tab:blue", lw=3, label="F1, all classes")
        ax_f1.plot(conf, mean["P"], color="0.15", lw=1.4, ls="--", label="precision, all classes")
        ax_f1.plot(conf, mean["R"], color="0.15", lw=1.4, ls=":", label="recall, all classes")
    best = result.best_f1
    if best and names:
        # P and R at the threshold are marked here, not on the precision-recall panel: means
        # over the classes at one threshold are not a point of the mean curve (precision
        # averaged at one recall), and can lie above it
        marker = {"ms": 9, "mfc": "white", "mec": "tab:red", "mew": 2.2}
        label = (
            f"best F1 {best['F1']:.2f} at score {best['conf']:.3f}\n"
            f"(P {best['P']:.2f}, R {best['R']:.2f}: the table's)"
        )
        ax_f1.axvline(best["conf"], color="tab:red", ls="--", lw=1.2)
        ax_f1.plot(best["conf"], best["F1"], "o", label=label, **marker)
        for key in ("P", "R"):
            ax_f1.plot(best["conf"], best[key], "o", ms=6, mfc="tab:red", mec="tab:red")
    if not names:
        for ax in (ax_pr, ax_f1):
            message = "no ground truth among the images evaluated"
            ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax_pr.set_title("precision-recall at IoU 0.5 (legend: AP50)", fontsize=10)
    ax_f1.set(
        xlabel="score threshold", ylabel="F1 (precision, recall)", xlim=(0, 1), ylim=(0, 1.02)
    )
    ax_f1.set_title("F1, precision and recall against the score threshold (IoU 0.5)", fontsize=10)
    for ax in (ax_pr, ax_f1):
        ax.grid(alpha=0.3)
        ax.set_aspect("auto")
    if names:
        outside = len(names) > 8 and few
        where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {}
        ax_pr.legend(fontsize=7, **(where or {"loc": "lower left"}))
        ax_f1.legend(fontsize=8, loc="upper right")
    fig.suptitle(_title(result), fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_confusion_matrix(result: EvalResult, path: str | Path) -> Path:
    """The confusion matrix: columns the true class (each sums to 1: where that class's
    objects went), rows the predicted class, background last; the counts written in.
    Classes with neither a box nor a detection above the threshold are left out."""
    plt = _pyplot()
    conf = result.confusion or {}
    counts = np.asarray(conf.get("counts", np.zeros((1, 1))), dtype=np.int64)
    labels = list(conf.get("labels", ["background"]))
    used = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
    used[-1] = True  # background stays
    counts, labels = counts[np.ix_(used, used)], [n for n, u in zip(labels, used) if u]
    fractions = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    n = len(labels)
    side = min(max(6.0, 0.22 * n + 3.0), 20.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
    ticks = np.arange(n)
    font = 9 if n <= ANNOTATE_CELLS else 6
    big = 9 if n <= ANNOTATE_CELLS else 13  # titles of a large figure
    ax.set_xticks(ticks, labels, rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels, fontsize=font)
    ax.set_xlabel("true class", fontsize=big)
    ax.set_ylabel("predicted class", fontsize=big)
    if n <= ANNOTATE_CELLS:
        for (row, col), value in np.ndenumerate(counts):
            if value:
                colour = "white" if fractions[row, col] > 0.55 else "black"
                size = 8 if n <= 15 else 6
                ax.text(col, row, str(value), ha="center", va="center", fontsize=size, color=colour)
    ax.axhline(n - 1.5, color="0.6", lw=0.8)
    ax.axvline(n - 1.5, color="0.6", lw=0.8)
    threshold = float(conf.get("conf", 0.25))
    best = result.best_f1
    why = " (best F1, as P and R in the table)" if best and threshold == best["conf"] else ""
    ax.set_title(
        f"confusion matrix at IoU {conf.get('iou', 0.5)}, score >= {threshold:.3g}{why}\n"
        f"{_title(result)}; background row: missed, background column: false detections",
        fontsize=big,
    )
    fig.tight_layout()
    return _save(fig, Path(path))


# -- text ---------------------------------------------------------------------------------------
def header_lines(result: EvalResult) -> list[str]:
    """``model``, ``data``, ``input`` lines: what was evaluated, on what, at which settings."""
    extra = result.extra
    model = extra.get("model") or {}
    data = extra.get("data") or {}
    lines = []
    if model:
        what = ", ".join(
            str(p)
            for p in (
                model.get("kind"),
                model.get("runtime"),
                model.get("quantized") and "int8 (quantized)",
                f"{model['classes']} classes" if model.get("classes") is not None else None,
            )
            if p
        )
        lines.append(
            f"model   {model.get('path') or model.get('name', '?')}"
            + (f" ({what})" if what else "")
        )
    images = f"{result.num_images} images"
    instances = sum(int(r["instances"]) for r in result.per_class)
    where = data.get("location")
    name = data.get("name")
    described = f"{name}: {where}" if name and where else (name or where or "")
    prefix = f"{described}, " if described else ""
    lines.append(f"data    {prefix}{images}, {instances} boxes of {len(result.per_class)} classes")
    if "testing_shape" in extra:
        resize = "letterbox" if extra.get("letterbox") else "stretch"
        label = "multi-label" if extra.get("multi_label") else "single label"
        lines.append(
            f"input   {extra['testing_shape']} px, {resize} resize, {extra.get('normalize')} "
            f"normalisation; score >= {extra.get('score_threshold'):g}, NMS IoU "
            f"{extra.get('nms_threshold'):g}, {label}"
        )
    return lines


#: Columns of the per-class table: (heading, key, format).
COLUMNS = (
    ("class", "name", "{}"),
    ("images", "images", "{}"),
    ("instances", "instances", "{}"),
    ("P", "P", "{:.3f}"),
    ("R", "R", "{:.3f}"),
    ("AP50", "AP50", "{:.3f}"),
    ("AP", "AP", "{:.3f}"),
)


def table_rows(result: EvalResult) -> list[list[str]]:
    """The per-class table as text cells: an ``all`` row (images evaluated, every box,
    mean P and R at the best-F1 threshold, the summary AP50 and AP), then one per class."""
    best = result.best_f1 or {}
    total = {
        "name": "all",
        "images": result.num_images,
        "instances": sum(int(r["instances"]) for r in result.per_class),
        "P": best.get("P"),
        "R": best.get("R"),
        "AP50": result.stats["AP50"],
        "AP": result.stats["AP"],
    }
    return [
        [_cell(row.get(key), fmt) for _, key, fmt in COLUMNS] for row in (total, *result.per_class)
    ]


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def table_title(result: EvalResult) -> str:
    """What the P and R columns mean."""
    best = result.best_f1
    if not best:
        return "per class"
    return f"per class: P and R at score >= {best['conf']:.3f}, the best mean F1 ({best['F1']:.3f})"


def table_text(result: EvalResult) -> str:
    """The per-class table as aligned plain text (for logs and the Python API)."""
    rows = [[h for h, _, _ in COLUMNS], *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [table_title(result)]
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def speed_line(result: EvalResult) -> str:
    """``speed   0.8 ms preprocess, 5.1 ms inference, 0.4 ms postprocess per image ...``."""
    speed = result.speed
    if not speed:
        return ""
    stages = ", ".join(
        f"{speed[k]:.1f} ms {k}" for k in ("preprocess", "inference", "postprocess") if k in speed
    )
    size = result.extra.get("testing_shape")
    line = f"speed   {stages} per image" + (f" at {size} px" if size else "")
    notes = []
    if speed.get("batch"):
        notes.append(f"batch {int(speed['batch'])}")
    if speed.get("warmup_ms"):
        notes.append(f"first batch left out: {speed['warmup_ms']:.0f} ms with warm-up")
    if speed.get("cocoeval_s") is not None:
        notes.append(f"pycocotools {speed['cocoeval_s']:.1f} s")
    return line + (f" ({'; '.join(notes)})" if notes else "")


def report_text(result: EvalResult) -> str:
    """Everything a terminal shows after the 12-line summary, as plain text."""
    parts = ["\n".join(header_lines(result)), table_text(result)]
    line = speed_line(result)
    if line:
        parts.append(line)
    return "\n\n".join(parts)
