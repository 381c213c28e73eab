"""``yoloqat eval``: COCO mAP of a checkpoint (or an exported ONNX model), seed flags included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import typer

from yoloqat.cli.common import RUNTIME_HELP, SET_HELP, handle_errors
from yoloqat.cli.train import DEFAULT_CONFIG, _opt


def eval_command(
    config: Optional[str] = _opt(
        None,
        "config",
        help="Config file or bundled name (default: the checkpoint's own).",
    ),
    pretrained: Optional[str] = _opt(None, "pretrained", help="Checkpoint to evaluate (.ckpt)."),
    onnx: Optional[str] = _opt(
        None, "onnx", help="Evaluate an exported ONNX model instead (with --runtime)."
    ),
    runtime: Optional[str] = _opt(None, "runtime", help=RUNTIME_HELP),
    data_dir: Optional[str] = _opt(
        None,
        "data_dir",
        help="Dataset root for the config's (or checkpoint's) dataset plugin, e.g. the COCO "
        "2014 root of the seed configs. Without a config or checkpoint dataset (--onnx), the "
        "plugin is told from the layout: annotations/instances_*2014.json -> coco2014, "
        "annotations/instances_{train,val}.json -> coco, Annotations/ + JPEGImages/ -> voc, "
        "images/ + labels/ (or a data .yaml) -> yolo.",
    ),
    dataset: Optional[str] = _opt(
        None,
        "dataset",
        help="Dataset plugin for --data_dir (coco2014, coco, yolo, voc or a third-party one), "
        "replacing the config's dataset block; more parameters with --set dataset.KEY=VALUE.",
    ),
    images: Optional[str] = _opt(
        None, "images", help="Any image folder (with --annotations): a generic COCO dataset."
    ),
    annotations: Optional[str] = _opt(
        None, "annotations", help="COCO instances json for --images."
    ),
    testing_shape: Optional[int] = _opt(
        None,
        "testing_shape",
        help="Square input size, a multiple of 32 (default: the ONNX model's size, else the "
        "checkpoint config's eval.testing_shape, else 416).",
    ),
    per_batch_size: int = _opt(1, "per_batch_size", help="Images per batch."),
    ignore_threshold: float = _opt(
        0.001, "ignore_threshold", help="Score threshold (obj x cls), the seed's name."
    ),
    nms_thresh: float = _opt(0.5, "nms_thresh", help="Per-class NMS IoU threshold."),
    multi_label: bool = _opt(
        False, "multi_label", help="Score every class above the threshold, not only the best."
    ),
    letterbox: Optional[bool] = typer.Option(
        None,
        "--letterbox/--no-letterbox",
        help="Letterbox (keep the aspect, pad gray) or the seed's stretch resize (default: "
        "the model's eval.letterbox; an imported Darknet model letterboxes).",
    ),
    num_workers: int = _opt(1, "num_workers", help="Image-decoding worker processes."),
    output: str = _opt("outputs/eval", "output", help="Folder for predict_*.json and eval_*.json."),
    device_target: str = _opt("CPU", "device_target", help="CPU, GPU or Ascend."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Evaluate COCO mAP: prints the seed's 12-line summary and saves it as JSON.

    Data: --images/--annotations, else --dataset/--data_dir, else the config's or checkpoint's.
    """
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import UsageError
    from yoloqat.core.runtime import init_runtime
    from yoloqat.core.schema import check_sections
    from yoloqat.engine.evaluate import evaluate_source
    from yoloqat.engine.inference import (
        MindSporePredictor,
        default_testing_shape,
        load_detector,
    )

    if (pretrained is None) == (onnx is None):
        raise UsageError("give exactly one of --pretrained CKPT or --onnx MODEL")
    if runtime is not None and onnx is None:
        raise UsageError("--runtime runs an exported model: use it with --onnx MODEL")
    dataset_overrides({}, data_dir, images, annotations, dataset)  # clashes fail before loading
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    cfg: dict[str, Any] = {}  # an ONNX model needs no network config
    if config is not None or onnx is None:  # a checkpoint without its config: the seed's net
        cfg = apply_overrides(load_config(config or DEFAULT_CONFIG), set_)
        check_sections(cfg)
    prepare_output(output, "--output")  # before the whole evaluation, not after it
    init_runtime(device_target)
    meta: dict[str, Any] = {}
    if pretrained is not None:
        network, _cfg, meta = load_detector(cfg, pretrained, explicit_config=config is not None)
        predictor: Any = MindSporePredictor(network)
        default_shape = default_testing_shape(cfg, meta, explicit=config is not None)
    else:
        from yoloqat.engine.runtimes import DEFAULT_RUNTIME, open_model

        predictor = open_model(onnx, runtime or DEFAULT_RUNTIME)
        default_shape = int(predictor.input_size or 416)
    if testing_shape is None:
        testing_shape = default_shape
    prep = model_preprocessing(cfg, meta, predictor, explicit=config is not None)
    if letterbox is not None:
        prep["letterbox"] = letterbox
    data = eval_dataset(
        cfg,
        meta,
        explicit=config is not None,
        data_dir=data_dir,
        images=images,
        annotations=annotations,
        overrides=set_,
        dataset=dataset,
    )
    result = evaluate_source(
        predictor,
        data.val_source(),
        data.category_ids,
        testing_shape=testing_shape,
        batch_size=per_batch_size,
        letterbox=prep["letterbox"],
        normalize=prep["normalize"],
        score_threshold=ignore_threshold,
        nms_threshold=nms_thresh,
        multi_label=multi_label,
        num_workers=num_workers,
        output_dir=output,
        defer_write_errors=True,
    )
    typer.echo(result.summary)
    write_error = result.extra.pop("write_error", None)
    if write_error is not None:  # the numbers are printed; saving them failed
        raise write_error
    typer.echo(f"results: {result.extra.get('eval_file')}", err=True)


def model_preprocessing(
    cfg: dict[str, Any], meta: dict[str, Any], predictor: Any, *, explicit: bool
) -> dict[str, Any]:
    """The input preprocessing of the model evaluated: normalisation and resize.

    An ONNX model's own metadata (``normalize``, ``letterbox``, written by ``export``) wins;
    else the checkpoint's stored config (or the explicit ``--config``).
    """
    from yoloqat.engine.inference import effective_config, preprocessing

    prep = preprocessing(effective_config(cfg, meta, explicit=explicit))
    stored = getattr(predictor, "metadata", None) or {}
    if stored.get("normalize"):
        prep["normalize"] = str(stored["normalize"])
    if stored.get("letterbox") in ("true", "false"):
        prep["letterbox"] = stored["letterbox"] == "true"
    return prep


def dataset_overrides(
    cfg: dict[str, Any],
    data_dir: Optional[str],
    images: Optional[str],
    annotations: Optional[str],
    dataset: Optional[str] = None,
) -> dict[str, Any]:
    """Point the config's dataset at ``--data_dir`` / ``--dataset`` or ``--images/--annotations``.

    ``--images/--annotations`` switch to a generic COCO-format validation set. ``--dataset``
    names the plugin (its block replaced, or kept when it names the same plugin) and
    ``--data_dir`` sets its ``data_dir``. ``--data_dir`` alone sets ``dataset.data_dir`` of
    the config's dataset (with no dataset block, :func:`eval_dataset` tells the plugin from
    the folder layout).
    """
    from yoloqat.core.errors import UsageError

    if (images is None) != (annotations is None):
        raise UsageError("--images and --annotations go together")
    if images is not None:
        if data_dir is not None or dataset is not None:
            raise UsageError("give --data_dir/--dataset or --images/--annotations, not both")
        cfg["dataset"] = {"name": "coco", "val_images": images, "val_annotations": annotations}
        return cfg
    block = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else None
    if dataset is not None:
        block = dict(block) if block and block.get("name") == dataset else {"name": dataset}
    if block is not None and data_dir is not None:
        block = {**block, "data_dir": data_dir}
    if block is not None:
        cfg["dataset"] = block
    return cfg


def eval_dataset(
    cfg: dict[str, Any],
    meta: dict[str, Any],
    *,
    explicit: bool,
    data_dir: Optional[str],
    images: Optional[str],
    annotations: Optional[str],
    overrides: Sequence[str] = (),
    dataset: Optional[str] = None,
) -> Any:
    """The dataset to evaluate on, built.

    Its config: without an explicit ``--config``, the one stored in the checkpoint (so a
    checkpoint evaluates on the data it was trained for, ``--data_dir`` pointing elsewhere);
    else ``cfg``. Then the dataset flags and ``--set`` overrides. With no dataset block
    at all (an ONNX model without ``--config``), ``--data_dir``'s layout names the plugin.
    """
    import copy

    from yoloqat.core.config import apply_overrides
    from yoloqat.core.errors import UsageError
    from yoloqat.data.layout import detect_dataset
    from yoloqat.engine.inference import effective_config
    from yoloqat.engine.pipeline import build_dataset

    base = copy.deepcopy(effective_config(cfg, meta, explicit=explicit))
    base = dataset_overrides(base, data_dir, images, annotations, dataset)
    if not isinstance(base.get("dataset"), dict) and data_dir is not None:
        detected = detect_dataset(data_dir)
        if detected is None:
            raise UsageError(
                f"cannot tell the dataset layout of --data_dir {data_dir}",
                hint="name the plugin with --dataset (coco2014, coco, yolo, voc, ...)",
            )
        base["dataset"] = detected
    base = apply_overrides(base, list(overrides))
    if not isinstance(base.get("dataset"), dict):
        raise UsageError(
            "no dataset to evaluate on",
            hint="give --data_dir DIR (and --dataset NAME) or --images/--annotations",
        )
    return build_dataset(base)


def register(app: typer.Typer) -> None:
    app.command("eval")(handle_errors(eval_command))
