"""``yoloqat calibrate``: post-training int8 quantization of a float checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from yoloqat.cli.common import SET_HELP, handle_errors, opt


def calibrate(
    checkpoint: str = opt(..., "checkpoint", help="Float checkpoint (.ckpt) to quantize."),
    output: Optional[Path] = opt(
        None, "output", help="Quantized checkpoint to write (default: CHECKPOINT_ptq.ckpt)."
    ),
    config: Optional[str] = opt(None, "config", help="Config (default: the checkpoint's own)."),
    quantizer: str = opt("int8_ptq", "quantizer", help="Post-training quantizer plugin."),
    method: Optional[str] = opt(
        None, "method", help="Range method of int8_ptq: minmax or percentile (default)."
    ),
    images: int = opt(64, "images", help="Training images to calibrate on."),
    data_dir: Optional[str] = opt(None, "data_dir", help="Dataset root (overrides the config)."),
    testing_shape: Optional[int] = opt(
        None, "testing_shape", help="Input size (default: the config's eval.testing_shape)."
    ),
    batch_size: int = opt(8, "batch_size", help="Calibration batch size."),
    device_target: str = opt("CPU", "device_target", help="CPU, GPU or Ascend."),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Post-training quantization: calibrate int8 ranges on training images, no training.

    Writes a quantized checkpoint that eval, export --int8 and quant-report
    (--ptq_checkpoint) use like a QAT checkpoint.
    """
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.config import apply_overrides, load_config, read
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.device import init_device
    from yoloqat.core.errors import UsageError
    from yoloqat.engine.calibrate import calibrate_checkpoint
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.engine.evaluate import dataset_overrides
    from yoloqat.engine.inference import effective_config

    if images < 1:
        raise UsageError(f"--images {images} is not valid; expected an integer >= 1")
    if batch_size < 1:
        raise UsageError(f"--batch_size {batch_size} is not valid; expected an integer >= 1")
    init_device(device_target)
    _, meta = read_checkpoint(checkpoint)
    cfg = effective_config(load_config(config or "yolov3_darknet53"), meta, explicit=bool(config))
    block: dict = {"name": quantizer}
    if method is not None:
        block["method"] = method
    cfg["quantizer"] = block
    cfg = dataset_overrides(cfg, data_dir, None, None)
    cfg = apply_overrides(cfg, overrides)
    if testing_shape is None:
        testing_shape = int(read(cfg, "eval.testing_shape"))
    check_input_shape(testing_shape, testing_shape)
    out = output or Path(checkpoint).with_name(f"{Path(checkpoint).stem}_ptq.ckpt")
    prepare_output(out.parent, "--output")  # before the calibration, not after it
    result = calibrate_checkpoint(
        cfg, checkpoint, out, images=images, testing_shape=testing_shape, batch_size=batch_size
    )
    typer.echo(
        f"calibrated {quantizer} on {result['images']} images: "
        f"{result['quantized_convs']}/{result['total_convs']} convs int8",
        err=True,
    )
    typer.echo(result["checkpoint"])


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` command."""
    app.command("calibrate")(handle_errors(calibrate))
