"""``yoloqat predict``: detections on images as JSON, plus pictures with labelled boxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import RUNTIME_HELP, handle_errors
from yoloqat.cli.train import _opt

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def collect_images(source: Path) -> list[Path]:
    """``source`` itself, or the images directly inside the folder ``source`` (sorted)."""
    from yoloqat.core.errors import DataError

    if source.exists() and not source.is_dir():  # a file, or a device/pipe read_image refuses
        from yoloqat.data.imageio import ImageReadError, read_image

        try:  # before the network is built: a lone file that is no image is an error
            read_image(source)
        except ImageReadError as exc:
            raise DataError(
                f"{source} is not a readable image: {exc}",
                hint=f"supported formats: {', '.join(sorted(IMAGE_SUFFIXES))}",
            ) from None
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
        return files
    raise DataError(f"image or folder not found: {source}")


def draw_detections(image: Any, detections: list[dict[str, Any]]) -> Any:
    """Draw labelled boxes on an RGB uint8 image (returns a BGR copy for cv2.imwrite)."""
    import cv2
    import numpy as np

    out = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    for det in detections:
        x, y, w, h = (round(float(v)) for v in det["bbox"])
        hue = (det["class_index"] * 47) % 180
        colour = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        label = f"{det['class_name']} {det['score']:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(y - th - base - 2, 0)
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(
            out,
            label,
            (x + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out


def predict_images(
    predictor: Any,
    files: list[Path],
    *,
    class_names: list[str],
    testing_shape: int,
    score_threshold: float,
    nms_threshold: float,
    output: Path | None,
    letterbox: bool = False,
    normalize: str = "imagenet",
) -> list[dict[str, Any]]:
    """Run ``predictor`` on ``files``; write annotated copies into ``output`` if given.

    ``letterbox``/``normalize``: the model's input preprocessing (its config's).
    """
    import cv2

    from yoloqat.core import events
    from yoloqat.core.atomic import atomic_path
    from yoloqat.core.errors import DataError, RuntimeFailure
    from yoloqat.core.evaluation import DetectionEngine
    from yoloqat.data.eval_transforms import preprocess_eval
    from yoloqat.data.imageio import ImageReadError, read_image
    from yoloqat.engine.evaluate import letterbox_transform

    engine = DetectionEngine(
        list(range(len(class_names))), score_threshold=score_threshold, nms_threshold=nms_threshold
    )
    report = []
    unreadable: list[str] = []
    for i, path in enumerate(events.track(files, "predict")):
        try:
            image = read_image(path)
        except ImageReadError as exc:
            events.warn(f"skipped: {exc}")
            unreadable.append(str(exc))
            continue
        tensor, params = preprocess_eval(
            image, testing_shape, use_letterbox=letterbox, normalize_mode=normalize
        )
        engine.reset()
        transforms = [letterbox_transform(params, testing_shape)] if letterbox else None
        engine.add_batch(
            predictor(tensor[None]),
            [i],
            [[image.shape[1], image.shape[0]]],
            box_transforms=transforms,
        )
        dets = [
            {
                "bbox": [round(v, 2) for v in d["bbox"]],
                "score": round(d["score"], 4),
                "class_index": int(d["category_id"]),
                "class_name": class_names[int(d["category_id"])],
            }
            for d in sorted(engine.results(), key=lambda d: -d["score"])
        ]
        entry = {
            "image": str(path),
            "width": image.shape[1],
            "height": image.shape[0],
            "detections": dets,
        }
        if output is not None:
            out_file = output / f"{path.stem}_pred.jpg"
            with atomic_path(out_file) as tmp:
                if not cv2.imwrite(str(tmp), draw_detections(image, dets)):
                    raise RuntimeFailure(f"could not write {out_file} (OpenCV refused it)")
            entry["drawn"] = str(out_file)
        report.append(entry)
    if files and not report:
        what = unreadable[0] if len(files) == 1 else f"none of the {len(files)} files"
        raise DataError(
            f"no image could be read: {what}",
            hint=f"supported formats: {', '.join(sorted(IMAGE_SUFFIXES))}",
        )
    return report


def predict(
    source: Path = typer.Argument(..., help="An image, or a folder of images."),
    checkpoint: Optional[str] = _opt(None, "checkpoint", help="Trained checkpoint (.ckpt)."),
    onnx: Optional[str] = _opt(
        None, "onnx", help="An exported ONNX model instead of a checkpoint (with --runtime)."
    ),
    runtime: Optional[str] = _opt(None, "runtime", help=RUNTIME_HELP),
    config: Optional[str] = _opt(
        None, "config", help="Config (default: the one stored in the checkpoint)."
    ),
    output: Optional[Path] = _opt(
        Path("outputs/predict"), "output", help="Folder for drawn images and detections.json."
    ),
    testing_shape: Optional[int] = _opt(
        None,
        "testing_shape",
        help="Square input size, a multiple of 32 (default: the ONNX model's size, else the "
        "checkpoint config's eval.testing_shape, else 416).",
    ),
    score_threshold: float = _opt(
        0.3, "score_threshold", help="Keep detections scoring at least this."
    ),
    nms_thresh: float = _opt(0.5, "nms_thresh", help="Per-class NMS IoU threshold."),
    device_target: str = _opt("CPU", "device_target", help="CPU, GPU or Ascend."),
) -> None:
    """Detect objects in images: JSON to stdout, labelled pictures to --output."""
    from yoloqat.core.atomic import prepare_output, write_text
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import UsageError

    if (checkpoint is None) == (onnx is None):
        raise UsageError("give exactly one of --checkpoint CKPT or --onnx MODEL")
    if runtime is not None and onnx is None:
        raise UsageError("--runtime runs an exported model: use it with --onnx MODEL")
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    files = collect_images(source)
    if output is not None:
        prepare_output(output, "--output")
    if onnx is not None:
        predictor, names, default_shape, prep = _onnx_predictor(onnx, runtime)
    else:
        predictor, names, default_shape, prep = _checkpoint_predictor(
            checkpoint, config, device_target, testing_shape
        )
    report = predict_images(
        predictor,
        files,
        class_names=list(names),
        testing_shape=testing_shape or default_shape,
        score_threshold=score_threshold,
        nms_threshold=nms_thresh,
        output=output,
        **prep,
    )
    text = json.dumps(report, indent=2)
    if output is not None:
        write_text(output / "detections.json", text)
        typer.echo(f"wrote {len(report)} image(s) and detections.json to {output}", err=True)
    typer.echo(text)


def _onnx_predictor(
    onnx: str, runtime: Optional[str]
) -> tuple[Any, list[str], int, dict[str, Any]]:
    """The runtime over an exported model, its class names (metadata ``class_names`` as
    JSON, else ``"0"``, ``"1"``, ...), the size it was exported for and its preprocessing
    (metadata ``normalize``/``letterbox``, written by ``export``)."""
    from yoloqat.cli.evaluate import model_preprocessing
    from yoloqat.engine.runtimes import DEFAULT_RUNTIME, open_model

    model = open_model(onnx, runtime or DEFAULT_RUNTIME)
    meta = model.metadata
    names = json.loads(meta["class_names"]) if "class_names" in meta else None
    if not names:
        names = [str(i) for i in range(int(meta.get("num_classes", 80)))]
    prep = model_preprocessing({}, {}, model, explicit=False)
    return model, list(names), model.input_size, prep


def _checkpoint_predictor(
    checkpoint: str, config: Optional[str], device_target: str, testing_shape: Optional[int]
) -> tuple[Any, list[str], int, dict[str, Any]]:
    """A MindSpore predictor over a checkpoint, its class names, default input size and
    preprocessing (its config's)."""
    from yoloqat.core.config import load_config
    from yoloqat.core.runtime import init_runtime
    from yoloqat.engine.inference import (
        MindSporePredictor,
        default_testing_shape,
        effective_config,
        load_detector,
        preprocessing,
    )

    init_runtime(device_target)
    cfg = load_config(config or "yolov3_darknet53")
    network, _cfg, meta = load_detector(cfg, checkpoint, explicit_config=config is not None)
    shape = testing_shape or default_testing_shape(cfg, meta, explicit=config is not None)
    names = meta.get("class_names") or [str(i) for i in range(network.num_classes)]
    prep = preprocessing(effective_config(cfg, meta, explicit=config is not None))
    return MindSporePredictor(network), list(names), shape, prep


def register(app: typer.Typer) -> None:
    app.command("predict")(handle_errors(predict))
