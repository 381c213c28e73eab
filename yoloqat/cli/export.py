"""``yoloqat export``: a checkpoint to ONNX (float or int8 QDQ), OpenVINO IR or MINDIR, with
the NMS in the graph on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import check_inputs, handle_errors, opt
from yoloqat.engine.export import (  # noqa: F401
    DEFAULT_FOLDER,
    FORMATS,
    check_format,
    default_output,
)


def export_command(
    checkpoint: str = opt(..., "checkpoint", "ckpt_file", help="Trained checkpoint (.ckpt)."),
    file_format: str = opt(
        "onnx", "format", "file_format", help="onnx, openvino (IR: .xml + .bin) or mindir."
    ),
    int8: bool = opt(
        False,
        "int8",
        help="ONNX/OpenVINO: write the int8 (QDQ) graph (needs a QAT or PTQ checkpoint).",
    ),
    nms: bool = opt(
        False,
        "nms",
        help="ONNX/OpenVINO: per-class NMS in the graph, one output detections "
        "[N, max_det, 6] (x1, y1, x2, y2 input pixels, score, class).",
    ),
    conf: float = opt(0.25, "conf", help="With --nms: the score threshold baked in."),
    iou: float = opt(0.5, "iou", help="With --nms: the NMS IoU threshold baked in."),
    max_det: int = opt(300, "max_det", help="With --nms: detections per image (rows)."),
    testing_shape: Optional[int] = opt(
        None,
        "testing_shape",
        help="Square input size, a multiple of 32 (default: the checkpoint config's "
        "eval.testing_shape, else 416).",
    ),
    batch_size: int = opt(
        1, "batch_size", help="Fixed batch size; 0 = dynamic batch (ONNX, OpenVINO)."
    ),
    output: Optional[str] = opt(
        None, "output", "file_name", help="Output file (default: outputs/export/...)."
    ),
    config: Optional[str] = opt(
        None, "config", help="Config (default: the one stored in the checkpoint)."
    ),
    opset: int = opt(17, "opset", help="ONNX opset (13-21)."),
    device_target: str = opt("CPU", "device_target", help="CPU, GPU or Ascend."),
) -> None:
    """Export a checkpoint for deployment: ONNX (ONNX Runtime, OpenVINO), OpenVINO IR or
    MindSpore MINDIR; with --nms the model outputs final detections."""
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.config import load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import UsageError
    from yoloqat.deploy.nms import NmsSettings
    from yoloqat.engine.model import load

    fmt = check_format(file_format, nms)
    check_inputs(checkpoint=checkpoint, config=config)
    if nms:
        NmsSettings(conf=conf, iou=iou, max_det=max_det)  # bad values fail before loading
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    if batch_size < 0 or (batch_size == 0 and fmt == "mindir"):
        raise UsageError(
            f"--batch_size {batch_size} is not valid; expected >= 1 (0: ONNX and OpenVINO)"
        )
    # before loading anything: the folder of --output, or of the default name
    prepare_output(Path(output).parent if output else DEFAULT_FOLDER, "--output folder")
    model = load(checkpoint, config=load_config(config) if config else None, device=device_target)
    size = testing_shape or model.input_size
    written = model.export(
        output,
        format=fmt,
        int8=True if int8 else None,
        imgsz=size,
        batch=batch_size or None,
        opset=opset,
        nms=nms,
        conf=conf,
        iou=iou,
        max_det=max_det,
    )
    from yoloqat.core.contracts.quantizer import is_quantized

    quantized = is_quantized(model.network)
    kinds = {"onnx": "int8 QDQ", "openvino": "int8", "mindir": "fake-quant"}
    kind = kinds[fmt] if quantized else "float"
    name = {"onnx": "ONNX", "openvino": "OpenVINO IR", "mindir": "MINDIR"}[fmt]
    with_nms = f", NMS in the graph (conf {conf}, iou {iou}, max_det {max_det})" if nms else ""
    typer.echo(f"exported {kind} {name} model ({size}x{size}{with_nms})", err=True)
    typer.echo(str(written))


def onnx_preprocessing(config: dict[str, Any]) -> dict[str, str]:
    """The input preprocessing of a model, as ONNX metadata (read back by ``eval --onnx``)."""
    from yoloqat.engine.export import model_metadata

    meta = model_metadata(config, {})
    return {"normalize": meta["normalize"], "letterbox": meta["letterbox"]}


def register(app: typer.Typer) -> None:
    app.command("export")(handle_errors(export_command))
