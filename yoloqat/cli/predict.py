"""``yoloqat predict``: detections on images, folders, globs, videos, cameras and URLs.

A thin layer over :meth:`yoloqat.engine.model.Model.predict`: each run writes into a new
folder (``outputs/predict``, ``outputs/predict_2``, ...): pictures with labelled boxes, an
annotated video per video or camera, ``results.json`` (every image's and frame's
detections) and, when asked, YOLO label files and crops; the screen gets a short summary
(``--json`` prints the results to stdout instead).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import RUNTIME_HELP, check_inputs, handle_errors, opt


def _classes(text: Optional[str]) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def predict(
    sources: list[str] = typer.Argument(
        ...,
        help="Images, folders, globs ('imgs/*.jpg'), video files, a camera index (0) or "
        "http(s) URLs; several allowed.",
        show_default=False,
    ),
    checkpoint: Optional[str] = opt(None, "checkpoint", help="Trained checkpoint (.ckpt)."),
    onnx: Optional[str] = opt(
        None, "onnx", help="An exported model (ONNX, or OpenVINO IR .xml) instead of a checkpoint."
    ),
    runtime: Optional[str] = opt(None, "runtime", help=RUNTIME_HELP),
    config: Optional[str] = opt(
        None, "config", help="Config (default: the one stored in the checkpoint)."
    ),
    conf: float = opt(0.25, "conf", "score_threshold", help="Score threshold."),
    iou: float = opt(0.5, "iou", "nms_thresh", help="Per-class NMS IoU threshold."),
    classes: Optional[str] = opt(
        None, "classes", help="Keep only these classes: ids or names, comma separated."
    ),
    max_det: int = opt(300, "max_det", help="At most this many detections per image."),
    testing_shape: Optional[int] = opt(
        None,
        "testing_shape",
        "imgsz",
        help="Square input size, a multiple of 32 (default: the model's).",
    ),
    recursive: bool = opt(False, "recursive", help="Read the folders' sub-folders too."),
    max_frames: Optional[int] = opt(
        None, "max_frames", help="At most this many frames per video or camera."
    ),
    output: Path = opt(
        Path("outputs/predict"),
        "output",
        help="Run folder; when it exists, _2, _3, ... is appended (a new one per run).",
    ),
    save: bool = typer.Option(
        True, "--save/--no-save", help="Write pictures and videos with labelled boxes."
    ),
    save_txt: bool = opt(False, "save_txt", help="Write YOLO label files (labels/<name>.txt)."),
    save_conf: bool = opt(False, "save_conf", help="With --save_txt: add each box's score."),
    save_crop: bool = opt(False, "save_crop", help="Write each box as an image (crops/)."),
    hide_labels: bool = opt(False, "hide_labels", help="Draw boxes without labels."),
    hide_conf: bool = opt(False, "hide_conf", help="Draw labels without the score."),
    line_width: Optional[int] = opt(
        None, "line_width", help="Box line width in pixels (default: sized to the image)."
    ),
    as_json: bool = opt(False, "json", help="Print the results as JSON on stdout."),
    device_target: str = opt("CPU", "device_target", help="CPU, GPU or Ascend."),
) -> None:
    """Detect objects in images, videos, camera streams or URLs."""
    from yoloqat.core import events
    from yoloqat.core.atomic import prepare_output, unique_folder, write_json
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import DataError, UsageError
    from yoloqat.engine.model import load
    from yoloqat.engine.predict import check_thresholds
    from yoloqat.engine.sources import resolve

    if (checkpoint is None) == (onnx is None):
        raise UsageError("give exactly one of --checkpoint CKPT or --onnx MODEL")
    if runtime is not None and onnx is None:
        raise UsageError("--runtime runs an exported model: use it with --onnx MODEL")
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    check_thresholds(conf, iou, max_det)
    try:  # a source that names nothing fails before loading
        resolve(sources, recursive=recursive)
    except DataError as exc:  # named on the command line: a usage error (exit 2)
        raise UsageError(exc.message, hint=exc.hint) from None
    check_inputs(checkpoint=checkpoint, onnx=onnx)
    prepare_output(output.parent, "--output", run_folders=True)
    model = (
        load(onnx, runtime=runtime, exported=True)
        if onnx is not None
        else load(checkpoint, config=config, device=device_target)  # type: ignore[arg-type]  # one of the two is given (checked above)
    )
    folder = unique_folder(output.parent, output.name, "--output")
    skipped: list[str] = []

    def skip(source: str, reason: str) -> None:
        events.warn(f"skipped: {reason}")
        skipped.append(source)

    results = model.predict(
        sources,
        conf=conf,
        iou=iou,
        classes=_classes(classes),
        max_det=max_det,
        imgsz=testing_shape,
        recursive=recursive,
        max_frames=max_frames,
        stream=True,
        save_dir=folder,
        save=save,
        save_txt=save_txt,
        save_conf=save_conf,
        save_crop=save_crop,
        hide_labels=hide_labels,
        hide_conf=hide_conf,
        line_width=line_width,
        on_skip=skip,
    )
    counts: Counter[str] = Counter()
    speeds: Counter[str] = Counter()
    records, rotated, streams = [], 0, set()
    for result in events.track(results, "predict"):
        records.append(result.to_dict())
        counts.update(result.class_names)
        if len(records) > 1:  # the first image pays for the graph's compile and warm-up
            speeds.update(result.speed)
        else:
            first = dict(result.speed)
        rotated += result.exif_orientation != 1
        if result.stream is not None:
            streams.add(result.stream)
    if not records:
        if len(skipped) == 1:
            raise DataError(f"{skipped[0]} is not a readable image; nothing to predict")
        if skipped:
            raise DataError(
                f"none of the {len(skipped)} image(s) could be read; nothing to predict"
            )
        raise DataError("the source(s) gave no image or frame; nothing to predict")
    write_json(folder / "results.json", records)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    summary(
        records,
        counts,
        speeds if len(records) > 1 else Counter(first),
        rotated,
        streams,
        skipped,
        folder,
        model,
        warmup_ms=sum(first.values()) if len(records) > 1 else 0.0,
    )


def summary(
    records: list[dict[str, Any]],
    counts: Counter,
    speeds: Counter,
    rotated: int,
    streams: set[str],
    skipped: list[str],
    folder: Path,
    model: Any,
    warmup_ms: float = 0.0,
) -> None:
    """The short report on stderr: what was read, what was found, how fast, where it went."""
    n = len(records)
    frames = sum(1 for r in records if "frame" in r)
    what = f"{n - frames} image(s)"
    if frames:
        what += f", {frames} frame(s) of {len(streams)} video/camera stream(s)"
    found = ", ".join(f"{name} {k}" for name, k in counts.most_common(8))
    more = " ..." if len(counts) > 8 else ""
    timed = n - 1 if warmup_ms else n
    speed = ", ".join(
        f"{speeds[k] / timed:.1f} ms {k}" for k in ("preprocess", "inference", "postprocess")
    )
    if warmup_ms:
        speed += f" (first image left out: {warmup_ms:.0f} ms with compile and warm-up)"
    lines = [
        f"{what}: {sum(counts.values())} detection(s)" + (f" ({found}{more})" if found else ""),
        f"speed per image at {model.input_size} px: {speed}",
    ]
    if rotated:
        lines.append(
            f"{rotated} image(s) turned upright by their EXIF orientation (boxes are in the "
            "displayed frame)"
        )
    if skipped:
        lines.append(f"{len(skipped)} unreadable image(s) skipped")
    lines.append(f"results: {folder / 'results.json'} (pictures and videos in {folder})")
    for line in lines:
        typer.echo(line, err=True)


def register(app: typer.Typer) -> None:
    app.command("predict")(handle_errors(predict))
