"""``yoloqat demo``: the whole flow on a fresh machine, with no data to download.

Synthetic dataset -> float training -> int8 QAT fine-tuning -> evaluation of both ->
int8 ONNX export evaluated with ONNX Runtime -> pictures of detections and a float vs
int8 report (AP, size, latency).
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import typer

from yoloqat.cli.common import handle_errors, opt
from yoloqat.core.atomic import prepare_output, write_json


def _stage(title: str) -> None:
    from yoloqat.cli.render import err_console

    err_console.rule(f"[bold]{title}")


#: config keys the demo sets itself (its flags and its folders): not for ``--set``
OWN_KEYS = {
    "dataset": "the demo makes its own synthetic dataset",
    "train.ckpt_path": "use --output",
    "train.max_epoch": "use --epochs / --qat_epochs",
    "scheduler.T_max": "use --epochs / --qat_epochs",
    "train.resume_yolov3": "the QAT stage starts from the float stage's checkpoint",
    "quantizer": "the demo compares int8_qat with int8_ptq",
}
#: family -> its (float, QAT) demo configs (the synthetic data, 128 px, the demo's epochs).
DEMO_FAMILIES: dict[str, tuple[str, str]] = {
    "yolov3": ("synth_tiny", "synth_tiny_quant"),
    "yolov3_tiny": ("synth_yolov3_tiny", "synth_yolov3_tiny_quant"),
    "yolov8": ("synth_yolov8", "synth_yolov8_quant"),
}
DEMO_CONFIGS = DEMO_FAMILIES["yolov3"]


def demo_configs(family: str) -> tuple[str, str]:
    """The (float, QAT) configs of ``family``'s demo; a usage error naming the families."""
    from yoloqat.core.config import bundled_configs
    from yoloqat.core.errors import UsageError

    found = DEMO_FAMILIES.get(family)
    if found is None or not set(found) <= set(bundled_configs()):
        have = [f for f, c in DEMO_FAMILIES.items() if set(c) <= set(bundled_configs())]
        raise UsageError(f"--family {family!r} has no demo; families: {', '.join(have)}")
    return found


def _config(config: str, overrides: list[str]) -> dict[str, Any]:
    from yoloqat.core.config import apply_overrides, load_config

    return apply_overrides(load_config(config), overrides)


def _train(config: str, overrides: list[str]) -> Any:
    from yoloqat.engine.training.trainer import Trainer

    cfg = _config(config, overrides)
    return cfg, Trainer(cfg).run()


def check_user_overrides(overrides: list[str], configs: tuple[str, str] = DEMO_CONFIGS) -> None:
    """Refuse ``--set`` keys the demo owns, check both stages' configs with the rest applied
    and, when a model key changed, build the network once (its parameters' values): before
    any work, so a typo costs nothing."""
    from yoloqat.core.config import check_config
    from yoloqat.core.errors import UsageError
    from yoloqat.registry import default_registry

    for item in overrides:
        key = item.split("=", 1)[0].strip()
        for own, why in OWN_KEYS.items():
            if key == own or key.startswith(own + "."):
                raise UsageError(f"--set {key} is not valid for the demo: {why}")
    reg = default_registry()
    for config in configs:
        check_config(_config(config, overrides), reg)
    if any(item.split("=", 1)[0].strip().startswith("model") for item in overrides):
        from yoloqat.engine.pipeline import build_model

        build_model(_config(configs[0], overrides))  # parameter values, e.g. blocks


def demo(
    output: Path = opt(
        Path("yoloqat_demo"), "output", help="Folder for everything the demo writes."
    ),
    epochs: int = opt(20, "epochs", help="Float training epochs."),
    qat_epochs: int = opt(
        3, "qat_epochs", help="QAT fine-tuning epochs (the first at learning rate 0)."
    ),
    train_images: int = opt(1000, "train_images", help="Synthetic training images."),
    val_images: int = opt(200, "val_images", help="Synthetic validation images."),
    seed: int = opt(0, "seed", help="Seed of the synthetic dataset."),
    family: str = opt(
        "yolov3",
        "family",
        help="Detector family: yolov3 (1/8-width DarkNet-53), yolov3_tiny or yolov8 "
        "(`yoloqat list family`).",
    ),
    force: bool = opt(False, "force", help="Delete an existing output folder first."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Override a value of both training stages' configs (for yolov3: synth_tiny, "
        "synth_tiny_quant), e.g. model.backbone.activation=leaky (repeatable).",
    ),
) -> None:
    """Run the whole flow on synthetic data: train, QAT, evaluate, export int8, report."""
    from yoloqat.cli.quant_report import render_table
    from yoloqat.cli.render import out_console
    from yoloqat.core.device import init_device
    from yoloqat.core.errors import UsageError
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.engine.calibrate import calibrate_checkpoint
    from yoloqat.engine.export import model_metadata
    from yoloqat.engine.inference import load_detector, preprocessing
    from yoloqat.engine.model import load
    from yoloqat.engine.pipeline import build_dataset
    from yoloqat.engine.report import compare_models

    for flag, value in (
        ("epochs", epochs),
        ("qat_epochs", qat_epochs),
        ("train_images", train_images),
        ("val_images", val_images),
    ):
        if value < 1:
            raise UsageError(f"--{flag} {value} is not valid; expected an integer >= 1")
    float_config, quant_config = demo_configs(family)
    check_user_overrides(set_, (float_config, quant_config))
    start = time.perf_counter()
    if output.exists() and any(output.iterdir()):
        if not force:
            raise UsageError(
                f"{output} already exists and is not empty",
                hint="pass --force to replace it, or --output elsewhere",
            )
        shutil.rmtree(output)
    prepare_output(output, "--output")  # before 8 minutes of work, not after
    init_device("CPU")
    data = output / "data"
    _stage("1/5 synthetic dataset")
    make_synthetic_coco(data, train=train_images, val=val_images, size=128, seed=seed)

    _stage(f"2/5 float training ({epochs} epochs)")
    base = [f"dataset.data_dir={data}", "train.keep_checkpoints=1", *set_]
    float_cfg, float_run = _train(
        float_config,
        [
            *base,
            f"train.ckpt_path={output / 'float'}",
            f"train.max_epoch={epochs}",
            f"scheduler.T_max={epochs}",
        ],
    )
    float_ckpt = float_run.checkpoints[-1]

    _stage(f"3/5 int8 QAT fine-tuning ({qat_epochs} epochs)")
    qat_cfg, qat_run = _train(
        quant_config,
        [
            *base,
            f"train.ckpt_path={output / 'qat'}",
            f"train.max_epoch={qat_epochs}",
            f"scheduler.T_max={qat_epochs}",
            f"train.resume_yolov3={float_ckpt}",
        ],
    )
    qat_ckpt = qat_run.checkpoints[-1]

    _stage("4/5 evaluation: float, fake-quant, int8 ONNX (QAT and post-training)")
    dataset = build_dataset(float_cfg)
    float_net, _, _ = load_detector(float_cfg, float_ckpt)
    qat_net, qat_used, qat_meta = load_detector(qat_cfg, qat_ckpt)
    ptq_cfg = copy.deepcopy(float_cfg)
    ptq_cfg["quantizer"] = {"name": "int8_ptq"}
    ptq = calibrate_checkpoint(
        ptq_cfg, float_ckpt, output / "ptq" / "ptq.ckpt", images=64, testing_shape=128
    )
    ptq_net, _, _ = load_detector(ptq_cfg, ptq["checkpoint"])
    report = compare_models(
        float_net,
        qat_net,
        dataset,
        testing_shape=128,
        output_dir=output / "report",
        float_checkpoint=float_ckpt,
        qat_checkpoint=qat_ckpt,
        ptq_net=ptq_net,
        ptq_checkpoint=ptq["checkpoint"],
        preprocess=preprocessing(qat_used),
        metadata=model_metadata(qat_used, qat_meta),  # the ONNX files describe themselves
    )

    _stage("5/5 pictures of detections")
    source = dataset.val_source()
    files = [str(source.image_path(i)) for i in range(min(8, len(source)))]
    for name, model in (
        ("float", load(float_ckpt)),
        ("int8", load(report["files"]["int8_onnx"])),
    ):
        pics = output / "predictions" / name
        results = model.predict(files, conf=0.3, iou=0.5, save_dir=pics)
        write_json(pics / "results.json", [r.to_dict() for r in results])

    report["minutes"] = round((time.perf_counter() - start) / 60, 2)
    report["family"] = family
    report["configs"] = [float_config, quant_config]
    report["checkpoints"] = {
        "float": str(float_ckpt),
        "qat": str(qat_ckpt),
        "ptq": ptq["checkpoint"],
    }
    write_json(output / "report" / "report.json", report)
    out_console.print(render_table(report))
    diff = report["int8_vs_float_AP50"]
    verdict = "within" if abs(diff) <= 0.01 else "NOT within"
    typer.echo(
        f"int8 AP50 - float AP50: {diff:+.4f} ({verdict} 1 point); int8 is "
        f"{speed_words(report['int8_speedup_vs_onnx_float'])} than float ONNX and "
        f"{report['int8_size_ratio']:.2f}x its size"
    )
    typer.echo(
        f"post-training int8 (int8_ptq, 64 calibration images) AP50 - float AP50: "
        f"{report['ptq_int8_vs_float_AP50']:+.4f}; QAT int8 - PTQ int8: "
        f"{-report['ptq_int8_vs_qat_int8_AP50']:+.4f}"
    )
    typer.echo(
        f"done in {report['minutes']} min. Outputs in {output}/: report/report.json, "
        "report/int8.onnx, predictions/float, predictions/int8, float/ and qat/ runs"
    )


def speed_words(speedup: float) -> str:
    """``2.56x faster`` for a speed-up above 1, ``2.56x slower`` below (a speed-up of
    0.39 is 2.56 times the time, not "0.39x faster")."""
    if speedup >= 1:
        return f"{speedup:.2f}x faster"
    return f"{1 / max(speedup, 1e-9):.2f}x slower"


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo))
