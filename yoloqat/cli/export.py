"""``yoloqat export``: a checkpoint to MINDIR (MindSpore) or ONNX (float or int8 QDQ)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import handle_errors
from yoloqat.cli.train import _opt
from yoloqat.engine.export import DEFAULT_FOLDER, FORMATS, default_output  # noqa: F401


def export_command(
    checkpoint: str = _opt(..., "checkpoint", "ckpt_file", help="Trained checkpoint (.ckpt)."),
    file_format: str = _opt("onnx", "format", "file_format", help="mindir or onnx."),
    int8: bool = _opt(
        False, "int8", help="ONNX: write the int8 QDQ graph (needs a QAT checkpoint)."
    ),
    testing_shape: Optional[int] = _opt(
        None,
        "testing_shape",
        help="Square input size, a multiple of 32 (default: the checkpoint config's "
        "eval.testing_shape, else 416).",
    ),
    batch_size: int = _opt(
        1, "batch_size", help="Fixed batch size; 0 = dynamic batch (ONNX only)."
    ),
    output: Optional[str] = _opt(
        None, "output", "file_name", help="Output file (default: outputs/export/...)."
    ),
    config: Optional[str] = _opt(
        None, "config", help="Config (default: the one stored in the checkpoint)."
    ),
    opset: int = _opt(17, "opset", help="ONNX opset (13-21)."),
    device_target: str = _opt("CPU", "device_target", help="CPU, GPU or Ascend."),
) -> None:
    """Export a checkpoint for deployment: MindSpore MINDIR, or ONNX for ONNX Runtime."""
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.config import load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import UsageError
    from yoloqat.engine.model import load

    fmt = file_format.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {file_format!r} is not valid; expected mindir or onnx")
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    if batch_size < 0 or (batch_size == 0 and fmt != "onnx"):
        raise UsageError(f"--batch_size {batch_size} is not valid; expected >= 1 (0: ONNX only)")
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
    )
    from yoloqat.core.contracts.quantizer import is_quantized

    quantized = is_quantized(model.network)
    kind = "int8 QDQ" if quantized and fmt == "onnx" else ("fake-quant" if quantized else "float")
    typer.echo(f"exported {kind} {fmt.upper()} model ({size}x{size})", err=True)
    typer.echo(str(written))


def onnx_preprocessing(config: dict[str, Any]) -> dict[str, str]:
    """The input preprocessing of a model, as ONNX metadata (read back by ``eval --onnx``)."""
    from yoloqat.engine.export import model_metadata

    meta = model_metadata(config, {})
    return {"normalize": meta["normalize"], "letterbox": meta["letterbox"]}


def register(app: typer.Typer) -> None:
    app.command("export")(handle_errors(export_command))
