"""Checking an imported Darknet model against OpenCV DNN, and toy-size Darknet ``.cfg`` files.

OpenCV's Darknet reader (``cv2.dnn.readNetFromDarknet``, opencv-python 4.x) implements
Darknet's ``.cfg``/``.weights`` semantics independently of yoloqat, so it is a reference for
any ``.cfg``::

    from yoloqat.testing.darknet import (
        darknet_weights, differences, network_outputs, opencv_outputs,
    )

    darknet_weights("yolov4-tiny.cfg", image, "random.weights")  # realistic random weights
    # import_darknet("random.weights", "m.ckpt", cfg_file="yolov4-tiny.cfg"), load it as net
    theirs = opencv_outputs("yolov4-tiny.cfg", "random.weights", image, workdir)
    worst, at_scale = differences(network_outputs(net, image), theirs)

``image`` is a float32 ``[1, 3, S, S]`` RGB/255 batch (letterboxed as yoloqat feeds it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

#: OpenCV's YOLO layer zeroes scores <= thresh and runs NMS unless told not to.
OPENCV_RAW = "thresh=0\nnms_threshold=0\n"
#: Relative differences are taken against ``max(|reference|, FLOOR)``.
FLOOR = 1e-6


def randomize(network: Any, image: np.ndarray, seed: int = 12) -> None:
    """Random conv weights and realistic BN statistics for a Darknet-style ``network``
    (built with BN momentum 0): every BN's running mean/variance are its real statistics on
    ``image`` (one training-mode pass), the variance then scaled by U(0.8, 1.25); gamma ~
    U(0.8, 1.2), beta ~ U(-0.2, 0.2). Output convs (bias, ``len(mask) * (5 + C)`` filters)
    give logits of a trained detector's scale (most cells: no object)."""
    from mindspore import Tensor

    rng = np.random.default_rng(seed)
    head_units = getattr(network.head, "conv_units", list)
    units = [*network.backbone.conv_units(), *head_units()]
    per_anchor = 5 + int(network.num_classes)

    def normal(param: Any, gain: float) -> None:
        std = np.sqrt(gain / np.prod(param.shape[1:]))
        param.set_data(Tensor((rng.standard_normal(param.shape) * std).astype(np.float32)))

    for unit in units:
        if hasattr(unit, "bn"):
            normal(unit.conv.weight, 2.0)
        elif unit.bias.shape[0] % per_anchor:  # a conv with bias inside the network
            normal(unit.weight, 2.0)
            unit.bias.set_data(Tensor(rng.uniform(-0.2, 0.2, unit.bias.shape).astype(np.float32)))
        else:
            normal(unit.weight, 0.25)
            bias = rng.uniform(-0.5, 0.5, unit.bias.shape).reshape(-1, per_anchor)
            bias[:, 4] -= 4.0  # objectness
            bias[:, 5:] -= 3.0  # classes
            unit.bias.set_data(Tensor(bias.ravel().astype(np.float32)))
    network.set_train(True)
    network(Tensor(image))  # momentum 0: running statistics := this image's batch statistics
    network.set_train(False)
    for unit in units:
        if hasattr(unit, "bn"):
            bn, n = unit.bn, unit.bn.gamma.shape[0]
            bn.gamma.set_data(Tensor(rng.uniform(0.8, 1.2, n).astype(np.float32)))
            bn.beta.set_data(Tensor(rng.uniform(-0.2, 0.2, n).astype(np.float32)))
            var = bn.moving_variance.asnumpy() * rng.uniform(0.8, 1.25, n)
            bn.moving_variance.set_data(Tensor(var.astype(np.float32)))


def cfg_network(cfg_path: str | Path, *overrides: str) -> Any:
    """The network of a ``.cfg``'s own graph, as ``import-darknet --cfg-graph`` builds it
    (BN momentum 0, for :func:`randomize`)."""
    from yoloqat.core.cfgfile import read_cfg_file
    from yoloqat.engine import pipeline
    from yoloqat.engine.darknet_models import cfg_graph_config

    parsed, text = read_cfg_file(cfg_path)
    cfg, _ = cfg_graph_config(
        cfg_path, text, parsed, overrides=["model.backbone.bn_momentum=0.0", *overrides]
    )
    return pipeline.build_model(cfg)


def darknet_weights(
    cfg_path: str | Path, image: np.ndarray, path: str | Path, seed: int = 12
) -> Path:
    """Write random weights of the ``.cfg``'s network (:func:`randomize` on ``image``) in
    Darknet's ``.weights`` layout; returns the path."""
    from yoloqat.deploy.darknet_format import conv_specs, write_darknet_weights

    network = cfg_network(cfg_path)
    randomize(network, image, seed)
    values = {p.name: p.asnumpy() for p in network.get_parameters()}
    write_darknet_weights(path, conv_specs(network), values)
    return Path(path)


def objectness(network: Any, image: np.ndarray) -> np.ndarray:
    """sigmoid of each candidate's objectness logit, ``[1, M]`` in the decode's order."""
    from mindspore import Tensor

    feats = network.backbone(Tensor(image))
    raws = network.head(*[feats[i] for i in network.in_indices])  # eval mode: raw outputs
    parts = []
    for raw, mask in zip(raws, network.head.anchor_masks):
        n, c, h, w = raw.shape
        a = raw.asnumpy().reshape(n, len(mask), c // len(mask), h, w).transpose(0, 3, 4, 1, 2)
        parts.append(a[..., 4].reshape(n, -1))
    return 1 / (1 + np.exp(-np.concatenate(parts, axis=1).astype(np.float64)))


def network_outputs(network: Any, image: np.ndarray) -> list[np.ndarray]:
    """The decoded boxes, scores and the objectness of ``network`` (eval mode) on ``image``."""
    from mindspore import Tensor

    network.set_train(False)
    return [*(o.asnumpy() for o in network(Tensor(image))), objectness(network, image)]


def opencv_outputs(
    cfg_path: str | Path, weights: str | Path, image: np.ndarray, workdir: str | Path
) -> list[np.ndarray]:
    """OpenCV DNN's raw YOLO outputs of the pair on ``image`` (a copy of the ``.cfg`` with
    ``thresh=0``/``nms_threshold=0`` in each ``[yolo]`` section is written to ``workdir``):
    per output, rows (y, x, anchor) of ``[bx, by, bw, bh, obj, obj * cls...]``."""
    import cv2

    cfg_path = Path(cfg_path)
    raw_cfg = Path(workdir) / f"opencv-{cfg_path.name}"
    text = re.sub(r"^\s*\[yolo\]\s*$", "[yolo]\n" + OPENCV_RAW, cfg_path.read_text(), flags=re.M)
    raw_cfg.write_text(text)
    net = cv2.dnn.readNetFromDarknet(str(raw_cfg), str(weights))
    net.enableWinograd(False)  # Darknet itself runs im2col + GEMM, not Winograd
    net.setInput(image)
    return list(net.forward(net.getUnconnectedOutLayersNames()))


def differences(ours: list[np.ndarray], theirs: list[np.ndarray]) -> tuple[dict, dict]:
    """Per quantity (``xy``, ``wh``, ``obj``, ``score``): the worst elementwise relative
    difference ``|ours - opencv| / max(|opencv|, 1e-6)`` and the worst at the quantity's
    scale, ``max|ours - opencv| / max|opencv|``.

    ``ours``: :func:`network_outputs`; ``theirs``: :func:`opencv_outputs`.
    """
    worst = {"xy": 0.0, "wh": 0.0, "obj": 0.0, "score": 0.0}
    at_scale = dict(worst)
    boxes, scores, obj = ours
    mine = np.concatenate([boxes[0], obj[0][:, None], scores[0]], axis=1).astype(np.float64)
    cv = np.concatenate(theirs, axis=0).astype(np.float64)
    if mine.shape != cv.shape:
        raise AssertionError(f"{mine.shape[0]} candidates here, {cv.shape[0]} in OpenCV's")
    parts = {"xy": slice(0, 2), "wh": slice(2, 4), "obj": slice(4, 5), "score": slice(5, None)}
    for name, cols in parts.items():
        diff, ref = np.abs(mine[:, cols] - cv[:, cols]), np.abs(cv[:, cols])
        worst[name] = float((diff / np.maximum(ref, FLOOR)).max())
        at_scale[name] = float(diff.max() / ref.max())
    return worst, at_scale


def _scaled(width: float, step: int) -> Any:
    def replace(match: re.Match) -> str:
        filters = max(step, round(int(match.group(2)) * width / step) * step)
        return f"{match.group(1)}{filters}"

    return replace


def toy_cfg(text: str, *, width: float = 1 / 16, classes: int = 3, size: int | None = None) -> str:
    """A ``.cfg`` at toy size: every conv's ``filters`` times ``width`` (rounded to a
    multiple of the conv's and any route's ``groups``, so that channel groups stay whole),
    ``classes`` classes (the convs before ``[yolo]`` layers get ``len(mask) * (5 +
    classes)`` filters), and ``[net]`` width and height ``size`` when given."""
    sections = re.split(r"(?m)^(?=[ \t]*\[)", text)
    out = []
    for i, sec in enumerate(sections):
        kind = sec.strip().split("]", 1)[0].lstrip("[").strip().lower()
        nxt = (
            sections[i + 1].strip().split("]", 1)[0].lstrip("[").strip().lower()
            if i + 1 < len(sections)
            else ""
        )
        if kind in ("convolutional", "conv") and nxt == "yolo":
            mask = re.search(r"(?m)^\s*mask\s*=\s*(.+)$", sections[i + 1])
            anchors = len(mask.group(1).split(",")) if mask else 3
            sec = re.sub(r"(?m)^(\s*filters\s*=\s*)\d+", rf"\g<1>{anchors * (5 + classes)}", sec)
        elif kind in ("convolutional", "conv"):
            groups = re.search(r"(?m)^\s*groups\s*=\s*(\d+)", sec)
            step = 2 * int(groups.group(1)) if groups else 2  # route groups halve channels
            sec = re.sub(r"(?m)^(\s*filters\s*=\s*)(\d+)", _scaled(width, step), sec)
        elif kind == "yolo":
            sec = re.sub(r"(?m)^(\s*classes\s*=\s*)\d+", rf"\g<1>{classes}", sec)
        elif kind in ("net", "network") and size is not None:
            sec = re.sub(r"(?m)^(\s*(?:width|height)\s*=\s*)\d+", rf"\g<1>{size}", sec)
        out.append(sec)
    return "".join(out)
