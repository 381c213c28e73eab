"""The config schema: :class:`Config`, the validated config the code reads (pydantic).

Every default of a config key lives here, once: the code reads attributes of a
:class:`Config` (``cfg.train.per_batch_size``), never a raw dict with a default of its own.
:func:`as_config` turns a raw config (a dict) into a :class:`Config`, validating it; a
:class:`Config` passes through unchanged, so a command validates once and hands the model
down. :meth:`Config.to_dict` is the plain dict for what must serialize (checkpoints,
TensorBoard, reports).

Component blocks (``family``, ``model.backbone``, ``model.head``, ``quantizer``, ``loss``,
``scheduler``, ``dataset``) are :class:`Block` models: a ``name`` plus free parameters,
checked against their factory's signature by the registry (whose signature holds their
defaults); everything else is described here: ``model`` (besides its two blocks), ``data``,
``train`` and ``eval``. An unknown key is an error with a "Did you mean" suggestion, a value of the
wrong type or out of range an error naming the key, the value and what is expected. Values
are never coerced in ways that change them: ``2.5`` is not a batch size, ``"abc"`` not an
epoch count, ``0`` not an input size.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, List, Literal, Optional, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from yoloqat.core.defaults import INPUT_MULTIPLE, MULTI_SCALE
from yoloqat.core.errors import ConfigError

PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
InputSize = Annotated[StrictInt, Field(ge=INPUT_MULTIPLE, multiple_of=INPUT_MULTIPLE)]
Number = Union[StrictInt, float]
#: The seed's 0/1 switches; true/false work too.
Switch = Union[StrictBool, Literal[0, 1]]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


#: ``train.callbacks`` when the config names none: the run folder's writers.
DEFAULT_CALLBACKS: tuple[str, ...] = ("log", "metrics", "curves")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Block(BaseModel):
    """A component block: ``name`` plus the factory's keyword parameters (free keys; the
    registry checks them against the factory's signature, which holds their defaults).
    A bare name (``quantizer: none``) is the block ``{name: none}``. ``name`` may be left
    to the ``family`` preset (filled in by :func:`yoloqat.core.config.resolve_family`)."""

    model_config = ConfigDict(extra="allow")

    name: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def params(self) -> dict[str, Any]:
        """The parameters (every key but ``name``), a copy."""
        import copy

        return copy.deepcopy(dict(self.model_extra or {}))


class ModelSection(_Section):
    """``model``: the class count and the two component blocks (checked by the registry)."""

    num_classes: PositiveInt = 80
    backbone: Optional[Block] = None
    head: Optional[Block] = None


class DataSection(_Section):
    """``data``: training input sizes, batching of sizes, targets, augmentation, workers, and
    the input normalisation (used by training, eval, predict, calibration and export)."""

    multi_scale: Annotated[List[InputSize], Field(min_length=1)] = list(MULTI_SCALE)
    training_shape: Optional[InputSize] = None
    resize_rate: PositiveInt = 1
    max_boxes: PositiveInt = 50
    augment: Optional[dict[str, Any]] = None  # keys and ranges: yoloqat.data.loader
    num_workers: PositiveInt = 1
    #: network input: "imagenet" = RGB/255 then ImageNet mean/std (the seed), "unit" = RGB/255
    normalize: Literal["imagenet", "unit"] = "imagenet"

    @field_validator("multi_scale", mode="before")
    @classmethod
    def _default_sizes(cls, value: Any) -> Any:
        return list(MULTI_SCALE) if value is None else value


class EmaSection(_Section):
    """``train.ema``: the weights' moving average (``decay * (1 - exp(-t / ramp))``)."""

    decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9999
    ramp: Annotated[float, Field(ge=0.0)] = 2000.0


class TrainSection(_Section):
    """``train``: the seed's train.py options (and ``ema``, off when null)."""

    resume_yolov3: Optional[str] = None
    max_epoch: PositiveInt = 1
    per_batch_size: PositiveInt = 16
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    loss_scale: Annotated[float, Field(gt=0.0)] = 1.0
    loss_scale_semantics: Literal["seed", "standard"] = "standard"
    dynamic_loss_scale: StrictBool = False
    # compile the step once for every input size (multi-scale) instead of once per size
    dynamic_shapes: Switch = False
    log_interval: PositiveInt = 100
    ckpt_interval: Optional[PositiveInt] = None
    keep_checkpoints: PositiveInt = 5
    is_save_on_master: Switch = 1
    need_profiler: Switch = 0
    ckpt_path: str = "outputs"
    seed: NonNegativeInt = 1
    # validation during training: every val_interval epochs (0: off) and at the last epoch
    val_interval: NonNegativeInt = 0
    best_metric: Literal["AP50", "AP"] = "AP50"
    val_max_images: Optional[PositiveInt] = None
    # names or {name: ..., params} blocks of yoloqat_callbacks (yoloqat.core.config)
    callbacks: List[Union[str, dict[str, Any]]] = list(DEFAULT_CALLBACKS)
    ema: Optional[EmaSection] = None

    @field_validator("callbacks", mode="before")
    @classmethod
    def _default_callbacks(cls, value: Any) -> Any:
        return list(DEFAULT_CALLBACKS) if value is None else value


class EvalSection(_Section):
    """``eval``: the defaults of ``yoloqat eval`` / ``predict`` / ``export``."""

    testing_shape: InputSize = 416
    score_threshold: Probability = 0.001
    nms_threshold: Probability = 0.5
    multi_label: StrictBool = False
    letterbox: StrictBool = False


class Config(_Section):
    """The whole config, validated: what every command reads (``cfg.train.max_epoch``)."""

    family: Optional[Block] = None
    model: ModelSection = Field(default_factory=ModelSection)
    quantizer: Optional[Block] = None
    loss: Optional[Block] = None
    scheduler: Optional[Block] = None
    dataset: Optional[Block] = None
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict of this config (every value, defaults included; keys whose value
        is None left out, which the schema reads as the same), for checkpoints and reports.
        ``as_config(cfg.to_dict()) == cfg``. A ``family`` without parameters stays a name."""
        out = _dump(self)
        if self.family is not None and not self.family.params:
            out["family"] = self.family.name
        return out

    @property
    def quantized(self) -> bool:
        """A quantizer other than ``none`` is named."""
        return self.quantizer is not None and self.quantizer.name != "none"


def _dump(model: BaseModel) -> dict[str, Any]:
    import copy

    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is None:
            continue
        out[name] = _dump(value) if isinstance(value, BaseModel) else copy.deepcopy(value)
    for key, value in (model.model_extra or {}).items():
        out[key] = _dump(value) if isinstance(value, BaseModel) else copy.deepcopy(value)
    return out


def default(dotted: str) -> Any:
    """The schema's default of a section key (``"train.per_batch_size"`` -> 16): for code
    that reads a raw dict not yet validated (a checkpoint's stored config)."""
    model: type[BaseModel] = Config
    parts = dotted.split(".")
    for part in parts[:-1]:
        sub = _sub_model(model, part)
        if sub is None or sub is Block:  # a component's parameters: its factory's defaults
            raise KeyError(dotted)
        model = sub
    if parts[-1] not in model.model_fields:
        raise KeyError(dotted)
    field = model.model_fields[parts[-1]]
    return field.get_default(call_default_factory=True)


#: Calls of :func:`validate_config` in this process (a test counts them per command).
VALIDATIONS = [0]


def validate_config(raw: Mapping[str, Any]) -> Config:
    """Check a raw config (sections, keys, types, ranges, the shape of component blocks)
    and return it as a :class:`Config`. Errors are ConfigErrors naming the key."""
    VALIDATIONS[0] += 1
    check_sections(raw)
    named = raw.get("family") is None  # else the preset may name the blocks
    _check_block("family", raw.get("family"), True)
    for key in ("quantizer", "loss", "scheduler", "dataset"):
        _check_block(key, raw.get(key), named)
    model = raw.get("model")
    if isinstance(model, Mapping):
        for key in ("backbone", "head"):
            _check_block(f"model.{key}", model.get(key), named)
    try:
        return Config.model_validate(dict(raw))
    except ValidationError as exc:  # the checks above should have said it better
        raise ConfigError(f"invalid config: {exc.errors(include_url=False)[0]['msg']}") from None


def _check_block(where: str, block: Any, named: bool) -> None:
    if block is None or isinstance(block, str):
        return
    name = block.get("name") if isinstance(block, Mapping) else None
    if not isinstance(block, Mapping) or not (
        isinstance(name, str) or (name is None and not named)
    ):
        raise ConfigError(f"{where}: expected a mapping with a 'name' key, got {block!r}")


def as_config(cfg: Config | Mapping[str, Any]) -> Config:
    """``cfg`` as a :class:`Config`: a Config as it is (validated already), a raw dict
    validated (:func:`validate_config`)."""
    if isinstance(cfg, Config):
        return cfg
    return validate_config(cfg)


#: Top-level sections: ``None`` for component blocks (the registry checks those).
SECTIONS: dict[str, type[_Section] | None] = {
    "family": None,
    "model": ModelSection,
    "quantizer": None,
    "loss": None,
    "scheduler": None,
    "dataset": None,
    "data": DataSection,
    "train": TrainSection,
    "eval": EvalSection,
}


def did_you_mean(key: str, choices: list[str], prefix: str = "") -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ""


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of its keys (or null)",
    "literal_error": None,  # pydantic's message lists the choices
}


def _describe(error: Mapping[str, Any]) -> str:
    """What the key expects, in words (pydantic's message, made readable)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "multiple_of" or (kind == "greater_than_equal" and ctx["ge"] == INPUT_MULTIPLE):
        return f"a positive multiple of {INPUT_MULTIPLE} (e.g. 320, 416, 608)"
    if kind == "greater_than_equal":
        return f"a value >= {ctx['ge']}"
    if kind == "greater_than":
        return f"a value > {ctx['gt']}"
    if kind == "less_than_equal":
        return f"a value <= {ctx['le']}"
    if kind == "less_than":
        return f"a value < {ctx['lt']}"
    if kind == "too_short":
        return "a non-empty list"
    expected = _EXPECTED.get(kind)
    if expected:
        return expected
    msg = str(error.get("msg", kind))
    return msg[len("Input should be ") :] if msg.startswith("Input should be ") else msg


def _schema_error(section: str, model: type[_Section], exc: ValidationError) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    if first["type"] == "extra_forbidden":
        owner: type[BaseModel] = model
        prefix = section
        for part in loc[:-1]:  # a nested section (``train.ema``)
            sub = _sub_model(owner, part)
            if sub is None:
                break
            owner, prefix = sub, f"{prefix}.{part}"
        key = loc[-1] if owner is not model else loc[0]
        known = list(owner.model_fields)
        return ConfigError(
            f"{section}.{'.'.join(loc)} is not a known key."
            f"{did_you_mean(key, known, prefix=prefix + '.')}",
            hint=f"{prefix} keys: {', '.join(known)}",
        )
    # union types report one error per alternative: describe them all, for the first key
    alternatives = []
    for error in errors:
        if [str(p) for p in error["loc"]][: len(loc)] == loc or _same_field(error, first):
            text = _describe(error)
            if text not in alternatives:
                alternatives.append(text)
    # drop pydantic's names of union members (``int``, ``literal[0,1]``) from the path
    path, node = loc[0], _sub_model(model, loc[0])
    for part in loc[1:]:
        if part.isdigit():
            path += f"[{part}]"
        elif node is not None and part in node.model_fields:
            path, node = f"{path}.{part}", _sub_model(node, part)
    value = first.get("input")
    expected = " or ".join(alternatives)
    fractional = isinstance(value, float) and "integer" in expected
    hint = (
        "a count or size is a whole number, written without a decimal point" if fractional else None
    )
    return ConfigError(f"{section}.{path}={value!r} is not valid: expected {expected}", hint=hint)


def _sub_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The section model of field ``name`` of ``model`` (``Optional`` unwrapped), if any."""
    field = model.model_fields.get(name)
    if field is None:
        return None
    for candidate in (field.annotation, *get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _same_field(error: Mapping[str, Any], first: Mapping[str, Any]) -> bool:
    return bool(error["loc"]) and error["loc"][0] == first["loc"][0]


def check_sections(cfg: Mapping[str, Any]) -> None:
    """Check the top-level keys and every non-component section of ``cfg``."""
    known = list(SECTIONS)
    for key, value in cfg.items():
        if key not in SECTIONS:
            raise ConfigError(
                f"'{key}' is not a config section.{did_you_mean(str(key), known)}",
                hint=f"sections: {', '.join(known)}",
            )
        model = SECTIONS[key]
        if model is None or value is None:
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}={value!r} is not valid: expected a mapping of {key} keys")
        try:
            model.model_validate(dict(value))
        except ValidationError as exc:
            raise _schema_error(key, model, exc) from None
