"""Training and evaluation loaders on ``mindspore.dataset.GeneratorDataset``.

Workers (processes when ``num_workers > 1``) read and augment single samples; MindSpore
batches them with ``drop_remainder``; the main process pads each batch's ground truth to
``max_boxes`` rows and, when the loss builds its targets on the host, runs its builder
(vectorised over the batch, as the seed's quant ``train.py`` did after batching), and
yields NumPy dicts. Nothing here knows a detector family. A sample's randomness is keyed
by (seed, epoch, position in the epoch's global order) and a batch's size by (seed, epoch,
step), so batches do not depend on the worker count, and ``epoch(e, start_step=s)``
reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from yoloqat.core.contracts.dataset import DataSource, Sample, UnreadableImageError
from yoloqat.core.errors import ConfigError, RuntimeFailure
from yoloqat.core.events import warn
from yoloqat.data import MULTI_SCALE
from yoloqat.data.augment import augment, check_normalize, normalize
from yoloqat.data.eval_transforms import preprocess_eval
from yoloqat.data.multiscale import check_shapes, shape_for_step
from yoloqat.data.sampler import DistributedSampler

#: A loss's host-side target builder: ``(gt_boxes, gt_labels, gt_valid, (H, W)) -> arrays``
#: (:meth:`yoloqat.core.contracts.Loss.build_targets`).
TargetBuilder = Callable[[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]], tuple]

#: An unreadable image is replaced by the next dataset image; this many in a row are an error.
MAX_SUBSTITUTES = 8
#: Columns of a training sample's ``info`` row: bad boxes dropped, clipped, images skipped
#: (then their indices), and the boxes beyond ``max_boxes`` left out of the image's targets.
_INFO_LEN = 5 + MAX_SUBSTITUTES
_INFO_OVER = _INFO_LEN - 1
_TRAIN_COLUMNS = ["image", "boxes", "image_id", "info"]
_EVAL_COLUMNS = ["image", "image_id", "orig_size", "letterbox", "valid"]


#: Augmentation strengths a config may set under ``data.augment`` (defaults: the seed's).
AUGMENT_DEFAULTS: dict[str, Any] = {
    "jitter": 0.3,
    "scale": (0.25, 2.0),
    "flip": 0.5,
    "hue": 0.1,
    "saturation": 1.5,
    "value": 1.5,
}


def check_augment(augment: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``data.augment`` and fill in the seed's defaults."""
    out = dict(AUGMENT_DEFAULTS)
    for key, value in (augment or {}).items():
        if key not in AUGMENT_DEFAULTS:
            raise ConfigError(
                f"data.augment.{key} is not an augmentation option; expected one of "
                f"{', '.join(AUGMENT_DEFAULTS)}"
            )
        out[key] = value
    lo_hi = out["scale"]
    if (
        not isinstance(lo_hi, (list, tuple))
        or len(lo_hi) != 2
        or not 0 < float(lo_hi[0]) <= float(lo_hi[1])
    ):
        raise ConfigError(f"data.augment.scale={lo_hi!r} must be [low, high] with 0 < low <= high")
    out["scale"] = (float(lo_hi[0]), float(lo_hi[1]))
    for key in ("jitter", "flip", "hue"):
        if not 0 <= float(out[key]) <= 1:
            raise ConfigError(f"data.augment.{key}={out[key]!r} must be in [0, 1]")
    for key in ("saturation", "value"):
        if float(out[key]) < 1:
            raise ConfigError(f"data.augment.{key}={out[key]!r} must be >= 1")
    return out


def try_load(source: DataSource, index: int) -> tuple[Sample | None, str | None]:
    """``source.load(index)`` as (sample, None), or (None, reason) for an unreadable image."""
    try:
        return source.load(index), None
    except UnreadableImageError as exc:
        return None, str(exc)


class _TrainSamples:
    """Random-access sample source handed to GeneratorDataset (picklable)."""

    def __init__(self, source: DataSource, plan: dict[str, Any]) -> None:
        self.source = source
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan["indices"])

    def __getitem__(self, q: int) -> tuple[np.ndarray | np.generic, ...]:
        p = self.plan
        idx, size = int(p["indices"][q]), int(p["shapes"][q])
        rng = np.random.default_rng([p["seed"], p["epoch"], int(p["positions"][q])])
        skipped: list[int] = []
        sample, _ = try_load(self.source, idx)
        while sample is None and len(skipped) <= MAX_SUBSTITUTES:
            skipped.append(idx)
            idx = (idx + 1) % len(self.source)
            sample, _ = try_load(self.source, idx)
        info = np.full(_INFO_LEN, -1, np.int64)
        info[2] = len(skipped)
        info[3 : 3 + len(skipped)] = skipped
        info[_INFO_OVER] = 0
        padded = np.zeros((p["max_boxes"], 5), np.float32)
        if sample is None:  # give up; the main process raises a RuntimeFailure naming them
            info[0:2] = 0
            image = np.zeros((3, size, size), np.float32)
            return image, padded, np.int64(-1), info
        canvas, boxes = augment(
            sample.image, sample.boxes, (size, size), rng, max_boxes=p["max_boxes"], **p["augment"]
        )
        padded[: len(boxes)] = boxes
        info[0:2] = getattr(sample, "bad_boxes", (0, 0))
        info[_INFO_OVER] = max(0, len(sample.boxes) - p["max_boxes"])
        return normalize(canvas, p["normalize"]), padded, np.int64(sample.image_id), info


class _EvalSamples:
    """Random-access eval source: unreadable images come back with ``valid = 0``."""

    def __init__(
        self, source: DataSource, size: int, use_letterbox: bool, normalize_mode: str = "imagenet"
    ) -> None:
        self.source, self.size, self.use_letterbox = source, size, use_letterbox
        self.normalize_mode = normalize_mode

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[np.ndarray | np.generic, ...]:
        sample, _ = try_load(self.source, int(i))
        if sample is None:
            image = np.zeros((3, self.size, self.size), np.float32)
            return (
                image,
                np.int64(0),
                np.zeros(2, np.int64),
                np.array([1, 0, 0], np.float32),
                np.int64(i + 1) * -1,
            )
        image, params = preprocess_eval(
            sample.image,
            self.size,
            use_letterbox=self.use_letterbox,
            normalize_mode=self.normalize_mode,
        )
        return (
            image,
            np.int64(sample.image_id),
            np.array(sample.orig_size, np.int64),
            params,
            np.int64(1),
        )


def _iterate(
    samples: Any, columns: list[str], batch_size: int, num_workers: int, drop_remainder: bool
) -> Generator[tuple[np.ndarray, ...], None, None]:
    import mindspore.dataset as ds

    dataset = ds.GeneratorDataset(
        samples,
        column_names=columns,
        shuffle=False,
        num_parallel_workers=max(1, int(num_workers)),
        python_multiprocessing=num_workers > 1,
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    it = dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
    try:
        yield from it
    finally:
        it.stop()


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class TrainLoader:
    """Augmented, multi-scale training batches for one rank (docs/seed.md §4).

    ``epoch(e, start_step)`` yields dicts: ``image`` float32 [B,3,S,S]; the ground truth
    padded to ``max_boxes`` rows: ``gt_boxes`` float32 [B,M,4] (x1, y1, x2, y2 in canvas
    pixels), ``gt_labels`` int32 [B,M] and ``gt_valid`` float32 [B,M] (1 = a box);
    ``extras``: what ``target_builder`` made of them (empty without one); ``inputs``: the
    train step's arrays ``[image, gt_boxes, gt_labels, gt_valid, *extras]``; ``shape`` (S);
    ``image_ids`` [B]; ``step``. ``stats`` holds the counters of the current epoch:
    ``images`` delivered, ``skipped_images`` / ``skipped_files`` (distinct unreadable files;
    each sample that hit one was replaced by the next readable dataset image and a warning
    emitted), ``bad_boxes_dropped`` / ``bad_boxes_clipped`` (annotation boxes of the
    delivered images that were invalid or outside the image) and ``images_over_max_boxes``
    / ``boxes_over_max_boxes`` (images with more than ``max_boxes`` boxes, a random
    ``max_boxes`` of which were kept, as the seed did; warned about once per epoch).
    ``normalize``: "imagenet" (the seed's input) or "unit" (RGB/255, Darknet's), as
    ``data.normalize``.
    """

    def __init__(
        self,
        source: DataSource,
        *,
        batch_size: int,
        target_builder: TargetBuilder | None = None,
        max_boxes: int = 50,
        multi_scale: Sequence[int] = MULTI_SCALE,
        training_shape: int | None = None,
        resize_rate: int = 1,
        seed: int = 1,
        num_workers: int = 1,
        rank: int = 0,
        group_size: int = 1,
        augment: Mapping[str, Any] | None = None,
        normalize: str = "imagenet",
    ) -> None:
        self.source = source
        self.augment = check_augment(augment)
        self.normalize = check_normalize(normalize)
        self.batch_size = _check_positive("batch_size", batch_size)
        self.target_builder = target_builder
        self.max_boxes = _check_positive("max_boxes", max_boxes)
        self.multi_scale = check_shapes(multi_scale)
        if training_shape:
            check_shapes([training_shape])
        self.training_shape = int(training_shape) if training_shape else None
        self.resize_rate = _check_positive("resize_rate", resize_rate)
        self.seed = int(seed) & 0xFFFFFFFF
        self.num_workers = _check_positive("num_workers", num_workers)
        self.sampler = DistributedSampler(
            len(source), num_shards=group_size, shard_id=rank, shuffle=True, seed=self.seed
        )
        self.steps_per_epoch = len(self.sampler) // self.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"batch_size {batch_size} x {group_size} rank(s) is larger than the "
                f"{len(source)} training images: no full batch"
            )
        self.stats: dict[str, Any] = {}

    @property
    def sizes(self) -> tuple[int, ...]:
        """The training sizes batches can have: ``training_shape``, else ``multi_scale``."""
        return (self.training_shape,) if self.training_shape else tuple(self.multi_scale)

    def shape(self, epoch: int, step: int) -> int:
        """Training size of batch ``step`` of ``epoch`` (identical on every rank)."""
        return shape_for_step(
            step,
            epoch=epoch,
            seed=self.seed,
            shapes=self.multi_scale,
            resize_rate=self.resize_rate,
            training_shape=self.training_shape,
        )

    def plan(self, epoch: int, start_step: int = 0) -> dict[str, Any]:
        """Per-sample dataset index, global position and size for the rest of ``epoch``."""
        n = self.steps_per_epoch * self.batch_size
        first = start_step * self.batch_size
        shapes = np.repeat(
            [self.shape(epoch, s) for s in range(start_step, self.steps_per_epoch)],
            self.batch_size,
        )
        return {
            "indices": self.sampler.indices(epoch)[first:n],
            "positions": self.sampler.positions()[first:n],
            "shapes": shapes,
            "epoch": int(epoch),
            "seed": self.seed,
            "max_boxes": self.max_boxes,
            "augment": self.augment,
            "normalize": self.normalize,
        }

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, Any]]:
        """Batches of ``epoch`` from ``start_step`` on (resets :attr:`stats`)."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ConfigError(f"start_step must be in 0..{self.steps_per_epoch}, got {start_step}")
        self.stats = {
            "images": 0,
            "skipped_images": 0,
            "skipped_files": [],
            "bad_boxes_dropped": 0,
            "bad_boxes_clipped": 0,
            "images_over_max_boxes": 0,
            "boxes_over_max_boxes": 0,
        }
        if start_step == self.steps_per_epoch:
            return
        samples = _TrainSamples(self.source, self.plan(epoch, start_step))
        with contextlib.closing(
            _iterate(samples, _TRAIN_COLUMNS, self.batch_size, self.num_workers, True)
        ) as rows:
            for step, (image, boxes, image_ids, info) in enumerate(rows, start=start_step):
                self._count(info, image_ids)
                yield self.make_batch(image, boxes, image_ids, step)
        self._warn_over_max()

    def make_batch(
        self, image: np.ndarray, boxes: np.ndarray, image_ids: np.ndarray, step: int = 0
    ) -> dict[str, Any]:
        """The batch dict of augmented ``image`` [B,3,S,S] and ``boxes`` [B,M,5] (x1, y1, x2,
        y2, class; zero rows = padding): the padded ground truth and the builder's extras."""
        size = (int(image.shape[-2]), int(image.shape[-1]))
        gt_boxes = np.ascontiguousarray(boxes[..., :4], np.float32)
        gt_labels = boxes[..., 4].astype(np.int32)
        gt_valid = (boxes[..., 2] > boxes[..., 0]).astype(np.float32)
        extras: tuple = ()
        if self.target_builder is not None:
            extras = tuple(self.target_builder(gt_boxes, gt_labels, gt_valid, size))
        return {
            "image": image,
            "gt_boxes": gt_boxes,
            "gt_labels": gt_labels,
            "gt_valid": gt_valid,
            "extras": extras,
            "inputs": [image, gt_boxes, gt_labels, gt_valid, *extras],
            "image_ids": image_ids,
            "shape": size[1],
            "step": step,
        }

    def _warn_over_max(self) -> None:
        st = self.stats
        if st.get("images_over_max_boxes"):
            warn(
                f"{st['images_over_max_boxes']} image(s) of this epoch had more than "
                f"data.max_boxes={self.max_boxes} boxes: {st['boxes_over_max_boxes']} box(es) "
                "were left out of their targets (a random max_boxes of each image kept); "
                f"raise data.max_boxes above {self.max_boxes} to train on every box"
            )

    def _count(self, info: np.ndarray, image_ids: np.ndarray) -> None:
        if (image_ids < 0).any():
            row = info[int(np.flatnonzero(image_ids < 0)[0])]
            paths = [str(self.source.image_path(int(i))) for i in row[3 : 3 + row[2]]]
            raise RuntimeFailure(
                f"{len(paths)} unreadable images in a row: {paths[0]} ... {paths[-1]}",
                hint="check the image folder (missing, empty or corrupt files)",
            )
        st = self.stats
        st["images"] += len(info)
        st["bad_boxes_dropped"] += int(info[:, 0].sum())
        st["bad_boxes_clipped"] += int(info[:, 1].sum())
        over = info[:, _INFO_OVER]
        st["images_over_max_boxes"] += int((over > 0).sum())
        st["boxes_over_max_boxes"] += int(over[over > 0].sum())
        for row in info[info[:, 2] > 0]:
            for idx in row[3 : 3 + row[2]]:
                path = str(self.source.image_path(int(idx)))
                if path in st["skipped_files"]:
                    continue  # counted once per epoch, even when retried as a substitute
                st["skipped_images"] += 1
                st["skipped_files"].append(path)
                _, reason = try_load(self.source, int(idx))
                warn(f"skipped unreadable image: {reason or path}", path=path)


class EvalLoader:
    """Evaluation batches (docs/seed.md §5): dicts with ``image`` float32 [B,3,S,S],
    ``image_id`` [B], ``orig_size`` [B,2] (w, h) and, with ``letterbox``, ``letterbox``
    [B,3] (scale, pad_x, pad_y). Unreadable images are skipped with a warning and counted in
    ``stats``.
    ``normalize``: "imagenet" or "unit" (RGB/255), as ``data.normalize``."""

    def __init__(
        self,
        source: DataSource,
        *,
        batch_size: int = 1,
        testing_shape: int = 416,
        letterbox: bool = False,
        num_workers: int = 1,
        normalize: str = "imagenet",
    ) -> None:
        self.source = source
        self.batch_size = _check_positive("batch_size", batch_size)
        self.testing_shape = check_shapes([testing_shape])[0]
        self.letterbox = bool(letterbox)
        self.normalize = check_normalize(normalize)
        self.num_workers = _check_positive("num_workers", num_workers)
        self.stats: dict[str, Any] = {"images": 0, "skipped_images": 0, "skipped_files": []}

    def __len__(self) -> int:
        return -(-len(self.source) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.stats = {"images": 0, "skipped_images": 0, "skipped_files": []}
        samples = _EvalSamples(self.source, self.testing_shape, self.letterbox, self.normalize)
        with contextlib.closing(
            _iterate(samples, _EVAL_COLUMNS, self.batch_size, self.num_workers, False)
        ) as rows:
            for image, image_id, orig_size, params, valid in rows:
                ok = valid > 0
                for code in valid[~ok]:
                    path = str(self.source.image_path(int(-code - 1)))
                    self.stats["skipped_images"] += 1
                    self.stats["skipped_files"].append(path)
                    _, reason = try_load(self.source, int(-code - 1))
                    warn(f"skipped unreadable image: {reason or path}", path=path)
                if not ok.any():
                    continue
                self.stats["images"] += int(ok.sum())
                batch = {"image": image[ok], "image_id": image_id[ok], "orig_size": orig_size[ok]}
                if self.letterbox:
                    batch["letterbox"] = params[ok]
                yield batch
