"""What each section of a Darknet YOLO ``.cfg`` may say, and typed reading of its keys.

Every key of a section is either one yoloqat builds the network from (:data:`KEYS`), or a
training setting of Darknet that does not change what the network computes
(:data:`TRAINING_KEYS`, accepted and left to yoloqat's trainer), or an error:
:class:`SectionReader` names the file, line, section index, key and value.
"""

from __future__ import annotations

from yoloqat.core.cfgfile import Section
from yoloqat.core.errors import ConfigError

#: Darknet's activation names -> yoloqat's (``yoloqat.core.layers.ACTIVATIONS``).
ACTIVATIONS = {
    "linear": "none",
    "leaky": "leaky",
    "relu": "relu",
    "mish": "mish",
    "logistic": "logistic",
}
#: Section types (Darknet's short names too) -> the canonical type.
SECTION_TYPES = {
    "convolutional": "convolutional",
    "conv": "convolutional",
    "maxpool": "maxpool",
    "max": "maxpool",
    "route": "route",
    "shortcut": "shortcut",
    "upsample": "upsample",
    "yolo": "yolo",
}
#: Keys that define the network, per section type.
KEYS: dict[str, tuple[str, ...]] = {
    "net": ("width", "height", "channels", "letter_box"),
    "convolutional": (
        "batch_normalize",
        "filters",
        "size",
        "stride",
        "pad",
        "padding",
        "groups",
        "activation",
    ),
    "maxpool": ("size", "stride", "padding"),
    "route": ("layers", "groups", "group_id"),
    "shortcut": ("from", "activation"),
    "upsample": ("stride", "scale"),
    "yolo": ("mask", "anchors", "classes", "num", "scale_x_y", "new_coords", "nms_kind"),
}
#: Darknet's training settings (optimizer, schedule, augmentation, loss weights): accepted,
#: and without effect on what the imported network computes.
TRAINING_KEYS: dict[str, tuple[str, ...]] = {
    "net": (
        "batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure",
        "hue", "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales",
        "step", "gamma", "power", "mosaic", "mixup", "cutmix", "flip", "blur",
        "gaussian_noise", "jitter", "min_crop", "max_crop", "aspect", "adam", "B1", "B2",
        "eps", "max_chart_loss", "mosaic_bound", "resize_step", "track", "time_steps",
        "augment_speed", "sequential_subdivisions", "try_fix_nan", "loss_scale",
        "dynamic_minibatch", "optimized_memory", "workspace_size_limit_MB",
        "label_smooth_eps", "adversarial_lr", "contrastive", "unsupervised", "attention",
        "use_cuda_graph", "cudnn_half",
    ),
    "yolo": (
        "jitter", "ignore_thresh", "truth_thresh", "random", "resize", "iou_loss",
        "iou_normalizer", "cls_normalizer", "obj_normalizer", "beta_nms", "iou_thresh",
        "max_delta", "label_smooth_eps", "focal_loss", "counters_per_class",
        "objectness_smooth", "uc_normalizer", "delta_normalizer",
    ),
}  # fmt: skip


class SectionReader:
    """Typed access to one section's options, with errors naming where."""

    def __init__(self, sec: Section, source: str) -> None:
        self.sec = sec
        self.source = source

    def fail(self, key: str | None, message: str) -> ConfigError:
        where = self.sec.where(self.source, key)
        if key is None:
            return ConfigError(f"{where}: {message}")
        value = self.sec.options.get(key)
        return ConfigError(f"{where}: {key}={value} {message}")

    def integer(self, key: str, default: int | None = None, low: int | None = None) -> int:
        if key not in self.sec.options:
            if default is None:
                raise self.fail(None, f"the key '{key}' is missing")
            return default
        try:
            value = int(self.sec.options[key])
        except ValueError:
            raise self.fail(key, "is not an integer") from None
        if low is not None and value < low:
            raise self.fail(key, f"is not valid; expected an integer >= {low}")
        return value

    def number(self, key: str, default: float) -> float:
        if key not in self.sec.options:
            return default
        try:
            return float(self.sec.options[key])
        except ValueError:
            raise self.fail(key, "is not a number") from None

    def ints(self, key: str) -> list[int]:
        try:
            return [int(v) for v in _split(self.sec.options.get(key, ""))]
        except ValueError:
            raise self.fail(key, "is not a list of integers") from None

    def floats(self, key: str) -> list[float]:
        try:
            return [float(v) for v in _split(self.sec.options.get(key, ""))]
        except ValueError:
            raise self.fail(key, "is not a list of numbers") from None

    def activation(self, key: str, default: str) -> str:
        name = self.sec.options.get(key, default).strip().lower()
        if name not in ACTIVATIONS:
            raise self.fail(key, f"is not supported; supported: {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[name]

    def check_keys(self, kind: str) -> None:
        known = KEYS[kind] + TRAINING_KEYS.get(kind, ())
        for key in self.sec.options:
            if key not in known:
                raise self.fail(
                    key, f"is not supported (keys of [{kind}]: {', '.join(KEYS[kind])})"
                )


def _split(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]
