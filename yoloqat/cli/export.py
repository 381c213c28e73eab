"""``yoloqat export``: a checkpoint to MINDIR (MindSpore) or ONNX (float or int8 QDQ)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import handle_errors
from yoloqat.cli.train import _opt

FORMATS = ("mindir", "onnx")


def default_output(checkpoint: str, file_format: str, int8: bool, size: int) -> Path:
    """``outputs/export/<checkpoint stem>_<size>[_int8].<format>``."""
    suffix = "_int8" if int8 else ""
    return Path("outputs/export") / f"{Path(checkpoint).stem}_{size}{suffix}.{file_format}"


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
    from yoloqat.core.config import load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import CheckpointError, UsageError
    from yoloqat.core.runtime import init_runtime
    from yoloqat.engine.inference import default_testing_shape, effective_config, load_detector

    fmt = file_format.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {file_format!r} is not valid; expected mindir or onnx")
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    if batch_size < 0 or (batch_size == 0 and fmt != "onnx"):
        raise UsageError(f"--batch_size {batch_size} is not valid; expected >= 1 (0: ONNX only)")
    if output:
        from yoloqat.core.atomic import check_writable

        check_writable(Path(output).parent, "--output folder")
    init_runtime(device_target)
    cfg = load_config(config or "yolov3_darknet53")
    network, _cfg, meta = load_detector(cfg, checkpoint, explicit_config=config is not None)
    if testing_shape is None:
        testing_shape = default_testing_shape(cfg, meta, explicit=config is not None)

    from yoloqat.core.contracts.quantizer import is_quantized

    quantized = is_quantized(network)
    if int8 and not quantized:
        raise CheckpointError(
            f"--int8 needs a quantized (QAT or PTQ) checkpoint; {checkpoint} is a float checkpoint",
            hint="fine-tune it with QAT first (yoloqat train --config "
            "configs/yolov3_darknet53_quant.yaml --resume_yolov3 CKPT), or drop --int8",
        )
    if fmt == "onnx" and quantized and not int8:
        raise UsageError(
            f"{checkpoint} is a QAT (int8) checkpoint: add --int8 to export its int8 QDQ graph"
        )
    path = Path(output) if output else default_output(checkpoint, fmt, int8, testing_shape)
    if fmt == "mindir":
        from yoloqat.deploy.onnx_export import export_mindir

        written = export_mindir(network, path, testing_shape, batch=batch_size)
    else:
        from yoloqat.deploy.onnx_export import export_onnx

        written = export_onnx(
            network,
            path,
            input_size=testing_shape,
            batch=batch_size or None,
            int8=int8,
            opset=opset,
            metadata={
                **onnx_preprocessing(effective_config(cfg, meta, explicit=config is not None)),
                **onnx_class_names(meta),
            },
        )
    kind = "int8 QDQ" if int8 and fmt == "onnx" else ("fake-quant" if quantized else "float")
    typer.echo(f"exported {kind} {fmt.upper()} model ({testing_shape}x{testing_shape})", err=True)
    typer.echo(str(written))


def onnx_preprocessing(config: dict[str, Any]) -> dict[str, str]:
    """The input preprocessing of a model, as ONNX metadata (read back by ``eval --onnx``)."""
    from yoloqat.engine.inference import preprocessing

    prep = preprocessing(config)
    return {"normalize": prep["normalize"], "letterbox": str(prep["letterbox"]).lower()}


def onnx_class_names(meta: dict[str, Any]) -> dict[str, str]:
    """The checkpoint's class names as ONNX metadata (JSON; read back by predict --onnx)."""
    import json

    names = meta.get("class_names")
    return {"class_names": json.dumps(list(names))} if names else {}


def register(app: typer.Typer) -> None:
    app.command("export")(handle_errors(export_command))
