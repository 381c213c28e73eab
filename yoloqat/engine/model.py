"""The Python API: a detector ready to use, whatever file it comes from.

::

    import yoloqat

    model = yoloqat.load("outputs/RUN/ckpt_0/best.ckpt")    # or "model_int8.onnx"
    for result in model.predict("photos/", conf=0.3):
        print(result.source, result.class_names, result.boxes)  # xyxy pixels
        result.save(f"out/{result.name}.jpg")
    stats = model.val(data_dir="coco128")                    # pycocotools' numbers
    path = model.export("model_int8.onnx")                   # int8 QDQ for a QAT checkpoint

A checkpoint runs on MindSpore, rebuilt from the config it stores (any family, any plugin);
an exported file runs on a runtime (``onnxruntime`` by default, ``openvino``, or a plugin's)
with the class names and preprocessing its metadata records. The commands ``predict``,
``eval`` and ``export`` call this API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloqat.core.errors import UsageError
from yoloqat.engine.results import Result


@dataclass
class Model:
    """A loaded detector (see :func:`load`).

    ``names`` its class names; ``input_size`` the square input it runs at by default;
    ``normalize``/``letterbox`` its input preprocessing; ``kind`` "checkpoint" or
    "exported"; ``predictor`` the callable on a float32 ``[B, 3, S, S]`` batch returning
    ``[boxes, scores]`` (a MindSpore network or a runtime); for a checkpoint ``network``,
    ``config`` and ``meta`` (what the checkpoint stores).
    """

    predictor: Any
    path: Path
    kind: str
    names: list[str]
    input_size: int
    normalize: str = "imagenet"
    letterbox: bool = False
    network: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Model({str(self.path)!r}, {self.kind}, {len(self.names)} classes, "
            f"{self.input_size} px, normalize={self.normalize}, letterbox={self.letterbox}"
            + (", NMS in the graph" if self.nms is not None else "")
            + ")"
        )

    # -- predict ---------------------------------------------------------------------------
    def predict(
        self,
        source: Any,
        *,
        conf: float = 0.25,
        iou: float = 0.5,
        classes: Sequence[int | str] | None = None,
        max_det: int = 300,
        imgsz: int | None = None,
        recursive: bool = False,
        max_frames: int | None = None,
        stream: bool = False,
        save_dir: str | Path | None = None,
        save: bool = True,
        save_txt: bool = False,
        save_conf: bool = False,
        save_crop: bool = False,
        hide_labels: bool = False,
        hide_conf: bool = False,
        line_width: int | None = None,
        on_skip: Any = None,
    ) -> list[Result] | Iterator[Result]:
        """Detect objects in ``source``: an image, a folder (``recursive`` for its
        sub-folders), a glob, a video file, a camera index, an http(s) URL, or a list of
        them. Returns a :class:`~yoloqat.engine.results.Result` per image or frame (a
        generator with ``stream=True``, for long videos and cameras).

        ``conf`` score threshold, ``iou`` NMS threshold, ``classes`` ids or names to keep,
        ``max_det`` detections per image, ``imgsz`` the input size (default: the model's).
        With ``save_dir``, writes there: pictures (``<name>.jpg``) and an annotated video per
        video or camera (``<name>.mp4``) unless ``save=False``; with ``save_txt`` YOLO label
        files (``labels/``; ``save_conf`` adds the score); with ``save_crop`` a file per box
        (``crops/<class>/``).
        ``on_skip(source, reason)`` is told of unreadable images, which are skipped (else an
        unreadable image is an error).
        """
        from yoloqat.core.detector import check_input_shape
        from yoloqat.engine.predict import ImageDetector, check_thresholds
        from yoloqat.engine.sources import frames, resolve

        check_thresholds(conf, iou, max_det)
        self._note_nms(conf=conf, iou=iou, max_det=max_det)
        size = int(imgsz or self.input_size)
        check_input_shape(size, size, getattr(self.network, "input_multiple", 32))
        wanted = self._class_ids(classes)
        items = resolve(source, recursive=recursive)
        detector = ImageDetector(
            self.predictor, input_size=size, normalize=self.normalize, letterbox=self.letterbox
        )
        writer = _Writer(
            save_dir, save, save_txt, save_conf, save_crop, line_width, hide_labels, hide_conf
        )
        options = {"conf": conf, "iou": iou, "classes": wanted, "max_det": max_det}
        skip = None if on_skip is None else (lambda item, reason: on_skip(item.ref, reason))

        def run() -> Iterator[Result]:
            failed = True
            try:
                for frame in frames(items, max_frames=max_frames, on_error=skip):
                    (boxes, scores, class_ids), speed = detector(frame.image, **options)
                    result = Result(
                        source=frame.source,
                        name=frame.name,
                        image=frame.image,
                        boxes=boxes,
                        scores=scores,
                        class_ids=class_ids,
                        names=self.names,
                        frame=frame.frame,
                        stream=frame.stream,
                        exif_orientation=frame.exif_orientation,
                        speed=speed,
                    )
                    writer.add(result, frame.fps)
                    yield result
                failed = False
            except GeneratorExit:  # the caller stopped early: what was written is complete
                failed = False
                raise
            finally:
                writer.close(discard=failed)

        return run() if stream else list(run())

    @property
    def nms(self) -> dict[str, Any] | None:
        """The thresholds (``conf``, ``iou``, ``max_det``) of an exported model with its NMS
        in the graph (``export --nms``); None for any other model."""
        from yoloqat.engine.predict import nms_settings

        return nms_settings(self.meta) if self.kind == "exported" else None

    def _note_nms(self, **options: Any) -> None:
        """Warn of the options an in-graph NMS cannot honour (the thresholds are baked in)."""
        settings = self.nms
        if settings is None:
            return
        from yoloqat.core import events
        from yoloqat.engine.predict import nms_notes

        for note in nms_notes(settings, **options):
            events.warn(f"{self.path.name}: {note}")

    def _class_ids(self, classes: Sequence[int | str] | None) -> list[int] | None:
        if classes is None:
            return None
        out = []
        for c in classes:
            if isinstance(c, str) and not c.isdigit():
                if c not in self.names:
                    from yoloqat.core.errors import ConfigError
                    from yoloqat.registry import suggest

                    more = " ..." if len(self.names) > 20 else ""
                    raise ConfigError(
                        f"--classes: no class named {c!r}.{suggest(c, self.names)} "
                        f"Classes: {', '.join(self.names[:20])}{more}"
                    )
                out.append(self.names.index(c))
            else:
                index = int(c)
                if not 0 <= index < len(self.names):
                    from yoloqat.core.errors import ConfigError

                    raise ConfigError(
                        f"--classes: class id {index} is out of range 0..{len(self.names) - 1}"
                    )
                out.append(index)
        return out

    # -- val ---------------------------------------------------------------------------------
    def val(self, **options: Any) -> Any:
        """Evaluate on a dataset with pycocotools (:func:`yoloqat.engine.evaluate.evaluate_model`;
        e.g. ``val(data_dir="coco128")``, ``val(images=DIR, annotations=JSON)``; by default
        the checkpoint's own validation split). Returns the
        :class:`~yoloqat.core.scoring.EvalResult`."""
        from yoloqat.engine.evaluate import evaluate_model

        settings = self.nms
        if settings is not None:  # what the graph dropped cannot count
            self._note_nms(
                conf=options.get("conf") or 0.001,  # eval's default for an exported model
                iou=options.get("iou") or settings.get("iou", 0.5),
                max_det=settings.get("max_det", 300),
            )
        return evaluate_model(self, **options)

    # -- benchmark ---------------------------------------------------------------------------
    def benchmark(self, **options: Any) -> dict[str, Any]:
        """Export this checkpoint every way and measure each row (``yoloqat benchmark``:
        :func:`yoloqat.engine.benchmark_run.benchmark_model`; e.g.
        ``benchmark(formats=["onnx"], runtimes=["onnxruntime"], accuracy=False)``). Returns
        the result: ``rows`` (format, precision, runtime, size, AP, AP50, ms/img, img/s,
        speed-up, status), ``fastest`` and the machine; the files go to ``output``."""
        from yoloqat.engine.benchmark_run import benchmark_model

        if self.kind != "checkpoint":
            raise UsageError(f"{self.path} is an exported model; benchmark its checkpoint")
        result, _files = benchmark_model(self.path, **options)
        return result

    # -- export ------------------------------------------------------------------------------
    def export(
        self,
        path: str | Path | None = None,
        *,
        format: str = "onnx",
        int8: bool | None = None,
        imgsz: int | None = None,
        batch: int | None = 1,
        opset: int = 17,
        nms: bool = False,
        conf: float = 0.25,
        iou: float = 0.5,
        max_det: int = 300,
    ) -> Path:
        """Write the checkpoint's network for deployment: ONNX (float or int8 QDQ), OpenVINO
        IR (``format="openvino"``: ``.xml`` + ``.bin``, float or int8) or MINDIR; ``int8``
        defaults to whether the network is quantized. ``nms`` (ONNX, OpenVINO) puts the
        per-class NMS in the graph with ``conf``, ``iou`` and ``max_det`` baked in: one output
        ``detections [N, max_det, 6]`` (``x1, y1, x2, y2`` pixels of the input, score,
        class). Returns the file (the ``.xml`` for OpenVINO)."""
        from yoloqat.deploy.nms import NmsSettings
        from yoloqat.engine.export import check_format, default_output, export_network

        if self.kind != "checkpoint":
            raise UsageError(f"{self.path} is an exported model already; export a checkpoint")
        fmt = check_format(format, nms)
        settings = NmsSettings(conf=conf, iou=iou, max_det=max_det) if nms else None
        size = int(imgsz or self.input_size)
        from yoloqat.core.contracts.quantizer import is_quantized

        quantized = is_quantized(self.network) if int8 is None else bool(int8)
        target = Path(path) if path else default_output(self.path, fmt, quantized, size, nms)
        return export_network(
            self.network,
            target,
            file_format=fmt,
            int8=int8,
            input_size=size,
            batch=batch,
            opset=opset,
            config=self.config,
            meta=self.meta,
            source=str(self.path),
            nms=settings,
        )


class _Writer:
    """Writes what ``predict`` produces into ``save_dir`` (nothing without one)."""

    def __init__(
        self,
        folder: str | Path | None,
        save: bool,
        save_txt: bool,
        save_conf: bool,
        save_crop: bool,
        line_width: int | None,
        hide_labels: bool,
        hide_conf: bool,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.save, self.save_txt, self.save_conf = save, save_txt, save_conf
        self.save_crop = save_crop
        self.plot: dict[str, Any] = {
            "line_width": line_width,
            "hide_labels": hide_labels,
            "hide_conf": hide_conf,
        }
        self.videos: dict[str, Any] = {}
        self.written: list[Path] = []
        import contextlib

        self.files = contextlib.ExitStack()  # the videos' atomic temporaries

    def add(self, result: Result, fps: float | None) -> None:
        if self.folder is None:
            return
        if self.save:
            picture = result.plot(**self.plot)
            if result.stream is not None:
                self._video_frame(result.stream, picture, fps)
            else:
                from yoloqat.engine.results import write_image

                self.written.append(write_image(self.folder / f"{result.name}.jpg", picture))
        if self.save_txt:
            result.save_txt(self.folder / "labels" / f"{result.name}.txt", save_conf=self.save_conf)
        if self.save_crop:
            result.save_crop(self.folder / "crops")

    def _video_frame(self, stream: str, picture: Any, fps: float | None) -> None:
        import cv2

        writer = self.videos.get(stream)
        assert self.folder is not None  # add() writes nothing without a folder
        if writer is None:
            from yoloqat.core.atomic import atomic_path

            path = self.folder / f"{stream}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.files.enter_context(atomic_path(path))
            h, w = picture.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            writer = cv2.VideoWriter(str(tmp), fourcc, float(fps or 25.0), (w, h))
            self.videos[stream] = writer
            self.written.append(path)
        writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    def close(self, discard: bool = False) -> None:
        """Finish the videos: published under their names, or removed with ``discard``."""
        for handle in self.videos.values():
            handle.release()
        self.videos = {}
        if discard:
            error = RuntimeError("prediction stopped")
            self.files.__exit__(type(error), error, None)  # removes the temporaries
        else:
            self.files.close()  # publishes each finished video atomically


def load(
    path: str | Path,
    *,
    runtime: str | None = None,
    config: str | Path | dict[str, Any] | None = None,
    threads: int | None = None,
    device: str = "CPU",
    exported: bool | None = None,
) -> Model:
    """A :class:`Model` from a checkpoint (``.ckpt``: MindSpore on ``device``, its stored
    config unless ``config`` is given) or an exported model (``.onnx``: on ``runtime``,
    ``onnxruntime`` by default; OpenVINO IR ``.xml``: on ``openvino`` by default; with
    ``threads``). An exported model with its NMS in the graph (``export --nms``) is
    recognised by its metadata: its detections are mapped to the image and filtered only.
    ``exported=True`` opens ``path`` as an exported model whatever its name (``--onnx``)."""
    from yoloqat.core.errors import CheckpointError

    path = Path(path)
    if exported is None:
        exported = path.suffix.lower() in EXPORTED_SUFFIXES or runtime is not None
    if not path.exists():
        raise CheckpointError(f"{'model file' if exported else 'checkpoint'} not found: {path}")
    if exported:
        return _load_exported(path, runtime, threads)
    return _load_checkpoint(path, config, device)


#: The files :func:`load` opens with a runtime, and the runtime each opens with by default.
EXPORTED_SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino"}


def _load_exported(path: Path, runtime: str | None, threads: int | None) -> Model:
    from yoloqat.engine.predict import InGraphNms, nms_settings
    from yoloqat.engine.runtimes import DEFAULT_RUNTIME, open_model

    default = EXPORTED_SUFFIXES.get(path.suffix.lower(), DEFAULT_RUNTIME)
    model = open_model(path, runtime or default, threads=threads)
    meta = model.metadata
    names = json.loads(meta["class_names"]) if meta.get("class_names") else None
    if not names:
        names = [str(i) for i in range(int(meta.get("num_classes", 80)))]
    predictor: Any = model
    if nms_settings(meta) is not None:
        predictor = InGraphNms(model, len(names))
    return Model(
        predictor=predictor,
        path=path,
        kind="exported",
        names=[str(n) for n in names],
        input_size=int(model.input_size),
        normalize=str(meta.get("normalize") or "imagenet"),
        letterbox=meta.get("letterbox") == "true",
        meta=dict(meta),
    )


def _load_checkpoint(path: Path, config: Any, device: str) -> Model:
    from yoloqat.core.config import load_config
    from yoloqat.core.device import init_device
    from yoloqat.engine.inference import (
        MindSporePredictor,
        default_testing_shape,
        effective_config,
        load_detector,
        preprocessing,
    )

    init_device(device)
    explicit = config is not None
    cfg = config if isinstance(config, dict) else load_config(config or "yolov3_darknet53")
    network, _cfg, meta = load_detector(cfg, path, explicit_config=explicit)
    resolved = effective_config(cfg, meta, explicit=explicit)
    prep = preprocessing(resolved)
    names = meta.get("class_names") or [str(i) for i in range(network.num_classes)]
    return Model(
        predictor=MindSporePredictor(network),
        path=path,
        kind="checkpoint",
        names=[str(n) for n in names],
        input_size=default_testing_shape(cfg, meta, explicit=explicit),
        normalize=prep["normalize"],
        letterbox=prep["letterbox"],
        network=network,
        config=resolved,
        meta=meta,
    )
