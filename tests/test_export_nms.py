"""Self-describing exports: the NMS in the graph (``export --nms``), OpenVINO IR (``--format
openvino``) and the metadata every exported file carries.

The in-graph NMS is checked against the host postprocess (``engine/predict.postprocess``) on
the same decoded outputs, on ONNX Runtime and OpenVINO, float and int8; an int8 ``--nms``
export and its IR against ``predict --checkpoint`` on coco128 images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_export import BLOCKS, NUM_CLASSES, WIDTH, mindspore_outputs, quantized_tiny, tiny
from tiny import cli

import yoloqat
from yoloqat.deploy.nms import NmsSettings
from yoloqat.deploy.onnx_export import export_onnx
from yoloqat.engine.agreement import agreement
from yoloqat.engine.predict import postprocess, postprocess_detections
from yoloqat.engine.runtimes import open_model

pytest.importorskip("openvino")

SIZE = 64
#: Where the host maps the boxes: a 640 x 480 image stretched to the input, or letterboxed
#: (scale 0.1, 8 px of padding above and below).
MAPPINGS = {"stretch": np.array([1.0, 0.0, 0.0]), "letterbox": np.array([0.1, 0.0, 8.0])}
IMAGE = (640, 480)
RUNTIMES = ("onnxruntime", "openvino")


def _images(n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _same_detections(host: tuple, graph: tuple) -> None:
    (hb, hs, hc), (gb, gs, gc) = host, graph
    assert len(hs) > 0 and len(gs) == len(hs)
    np.testing.assert_array_equal(gc, hc)
    np.testing.assert_allclose(gs, hs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gb, hb, rtol=0, atol=1e-3)  # image pixels


@pytest.fixture(scope="module")
def float_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny float network without and with NMS (conf 0.3, iou 0.5, max_det 50)."""
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)
    out = tmp_path_factory.mktemp("nms")
    net = tiny("leaky", "same")
    nms = NmsSettings(conf=0.3, iou=0.5, max_det=50)
    return {
        "plain": export_onnx(net, out / "plain.onnx", input_size=SIZE, batch=None),
        "nms": export_onnx(net, out / "nms.onnx", input_size=SIZE, batch=None, nms=nms),
    }


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_nms_graph_is_the_host_postprocess(float_models, runtime: str) -> None:
    """Thresholds, best class, per-class NMS, best first, max_det, on a batch of 3: the
    detections of the NMS model are those the host finds in the plain model's outputs."""
    boxes, scores = open_model(float_models["plain"], runtime, threads=1)(_images())
    (detections,) = open_model(float_models["nms"], runtime, threads=1)(_images())
    assert detections.shape == (3, 50, 6) and detections.dtype == np.float32
    for params in MAPPINGS.values():
        for i in range(3):
            options = {"input_size": SIZE, "image_size": IMAGE, "conf": 0.3, "max_det": 50}
            host = postprocess(boxes[i], scores[i], params, iou=0.5, **options)
            graph = postprocess_detections(detections[i], params, **options)
            _same_detections(host, graph)


def test_padding_rows_empty_images_and_max_det(tmp_path: Path) -> None:
    net = tiny("leaky", "same")
    images = _images(2)
    none = export_onnx(
        net, tmp_path / "none.onnx", input_size=SIZE, batch=None, nms=NmsSettings(conf=1.0)
    )
    two = export_onnx(
        net, tmp_path / "two.onnx", input_size=SIZE, nms=NmsSettings(conf=0.2, max_det=2)
    )
    plain = export_onnx(net, tmp_path / "plain.onnx", input_size=SIZE)
    boxes, scores = open_model(plain, "onnxruntime")(images)
    for runtime in RUNTIMES:
        (empty,) = open_model(none, runtime)(images)
        assert empty.shape == (2, 300, 6)  # nothing scores 1.0: every row is padding
        assert (empty == np.array([0, 0, 0, 0, -1, -1], np.float32)).all()
        (best,) = open_model(two, runtime)(images)  # a batch-1 model, run image by image
        assert best.shape == (2, 2, 6)
        for i in range(2):
            options = {"input_size": SIZE, "image_size": (SIZE, SIZE), "conf": 0.2}
            host = postprocess(boxes[i], scores[i], MAPPINGS["stretch"], max_det=2, **options)
            graph = postprocess_detections(best[i], MAPPINGS["stretch"], max_det=2, **options)
            _same_detections(host, graph)


def test_int8_nms_runs_in_float_after_the_int8_convs(tmp_path: Path) -> None:
    """The NMS part of an int8 export has no Q/DQ; with ONNX Runtime's graph optimisations
    off (the QDQ arithmetic as written, the fake-quant network's) it finds what the host
    finds in MindSpore's outputs; OpenVINO runs as many int8 convs as without NMS."""
    import onnxruntime as ort

    from yoloqat.deploy.openvino_stats import int8_op_stats

    net = quantized_tiny("relu", "symmetric")
    nms = NmsSettings(conf=0.2, iou=0.5, max_det=100)
    path = export_onnx(net, tmp_path / "q.onnx", input_size=SIZE, batch=None, int8=True, nms=nms)
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["detections"]
    nms_nodes = [n for n in model.graph.node if n.name.startswith("nms/")]
    assert "NonMaxSuppression" in {n.op_type for n in nms_nodes}
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in nms_nodes}
    float_inputs = {i for n in nms_nodes for i in n.input}
    producers = {o: n for n in model.graph.node for o in n.output}
    for name in ("boxes", "scores"):  # the family decode feeds the NMS in float
        assert name in float_inputs and producers[name].op_type != "DequantizeLinear"

    images = _images(2, seed=4)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (detections,) = session.run(None, {"images": images})
    boxes, scores = mindspore_outputs(net, images)
    for i in range(2):
        options = {"input_size": SIZE, "image_size": IMAGE, "conf": 0.2, "max_det": 100}
        host = postprocess(boxes[i], scores[i], MAPPINGS["stretch"], iou=0.5, **options)
        graph = postprocess_detections(detections[i], MAPPINGS["stretch"], **options)
        assert len(graph[1]) == len(host[1]) > 0
        close = np.isclose(graph[0], host[0], rtol=0, atol=1e-2).all(axis=1)
        # a float conv result on a rounding boundary lands one code apart (test_export)
        assert close.mean() > 0.9

    plain = export_onnx(net, tmp_path / "plain.onnx", input_size=SIZE, int8=True)
    with_nms, without = int8_op_stats(path, threads=1), int8_op_stats(plain, threads=1)
    assert with_nms["int8_convolutions"] == without["int8_convolutions"] > 0
    assert with_nms["layers"]["NonMaxSuppression"] == {"f32": 1}


def test_openvino_ir_float_and_int8(tmp_path: Path, float_models) -> None:
    """The IR computes what the ONNX file computes; both files written, nothing else left;
    the metadata is in the IR; int8 stays int8."""
    from yoloqat.deploy.openvino_ir import ir_paths, onnx_to_ir
    from yoloqat.deploy.openvino_stats import int8_op_stats

    folder = tmp_path / "ir"
    xml = onnx_to_ir(float_models["plain"], folder / "float")  # .xml appended
    assert xml == folder / "float.xml" and ir_paths(xml) == (xml, folder / "float.bin")
    assert sorted(p.name for p in folder.iterdir()) == ["float.bin", "float.xml"]
    ir = open_model(xml, "openvino", threads=1)
    onnx_model = open_model(float_models["plain"], "onnxruntime", threads=1)
    assert ir.metadata == onnx_model.metadata and ir.metadata["nms"] == "false"
    for got, want in zip(ir(_images()), onnx_model(_images())):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    net = quantized_tiny("relu", "symmetric")
    q = export_onnx(net, tmp_path / "q.onnx", input_size=SIZE, int8=True, nms=NmsSettings())
    q_xml = onnx_to_ir(q, folder / "q.xml")
    (from_ir,) = open_model(q_xml, "openvino", threads=1)(_images(1))
    (from_onnx,) = open_model(q, "openvino", threads=1)(_images(1))
    np.testing.assert_allclose(from_ir, from_onnx, rtol=0, atol=1e-5)
    ir_stats, onnx_stats = int8_op_stats(q_xml, threads=1), int8_op_stats(q, threads=1)
    assert ir_stats["int8_convolutions"] == onnx_stats["int8_convolutions"] > 0
    assert q_xml.with_suffix(".bin").stat().st_size < 0.5 * xml.with_suffix(".bin").stat().st_size


@pytest.fixture(scope="module")
def qat_checkpoint(tmp_path_factory) -> Path:
    """A QAT checkpoint of the tiny network, with its config and class names."""
    from yoloqat.core.config import load_config
    from yoloqat.engine.checkpoints import save_checkpoint

    cfg = load_config("yolov3_darknet53_quant")
    cfg["model"]["num_classes"] = NUM_CLASSES
    cfg["model"]["backbone"]["width"] = WIDTH
    cfg["model"]["backbone"]["blocks"] = list(BLOCKS)
    cfg["model"]["head"]["width"] = WIDTH
    cfg["eval"]["testing_shape"] = SIZE
    meta = {"quantized": True, "config": cfg, "class_names": ["cat", "dog", "bird"]}
    out = tmp_path_factory.mktemp("qat")
    return save_checkpoint(quantized_tiny("relu", "symmetric"), out / "qat.ckpt", meta)


def test_int8_nms_export_and_ir_agree_with_predict_checkpoint_on_coco128(
    coco128: Path, qat_checkpoint: Path, tmp_path: Path
) -> None:
    """The acceptance line: ``export --int8 --nms`` (ONNX, and ``--format openvino``) gives
    the boxes ``predict --checkpoint`` gives, on coco128 images, on both runtimes.

    The bound: the in-graph NMS finds what the host finds in the same runtime's decoded
    outputs (but for boxes whose same-class IoU lies between ONNX's IoU and the host's "+1
    pixel" IoU at the threshold, and ties in score, below); what is left is the int8
    kernels' rounding against MindSpore's fake-quant arithmetic, which the export has
    without NMS too."""
    import onnxruntime as ort

    conf = 0.3
    common = ["--checkpoint", str(qat_checkpoint), "--int8", "--nms", "--conf", str(conf)]
    files = {}
    for fmt, name in (("onnx", "nms.onnx"), ("openvino", "nms.xml")):
        res = cli("export", *common, "--format", fmt, "--output", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
        assert "NMS in the graph (conf 0.3, iou 0.5, max_det 300)" in res.stderr
        files[fmt] = Path(res.stdout.strip().splitlines()[-1])
    assert files["openvino"].with_suffix(".bin").is_file()
    res = cli("export", "--checkpoint", str(qat_checkpoint), "--int8",
              "--output", str(tmp_path / "plain.onnx"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    plain = tmp_path / "plain.onnx"

    images = sorted(str(p) for p in (coco128 / "images" / "train2017").glob("*.jpg"))[:6]
    reference = yoloqat.load(qat_checkpoint).predict(images, conf=conf)
    assert sum(len(r) for r in reference) > 20

    # the QDQ arithmetic as written (the fake-quant network's): the checkpoint's boxes
    exact = yoloqat.load(files["onnx"])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact.predictor.runtime.session = ort.InferenceSession(
        str(files["onnx"]), options, providers=["CPUExecutionProvider"]
    )
    same = agreement(reference, exact.predict(images, conf=conf))
    assert same["paired"] >= 0.97 * same["reference_detections"], same
    assert same["p50_coord_diff_px"] == 0.0, same

    for path, runtime in ((files["onnx"], "onnxruntime"), (files["onnx"], "openvino"),
                          (files["openvino"], None)):  # fmt: skip
        model = yoloqat.load(path, runtime=runtime)
        assert model.nms == {"conf": conf, "iou": 0.5, "max_det": 300}
        assert model.names == ["cat", "dog", "bird"]
        results = model.predict(images, conf=conf)
        host = yoloqat.load(plain, runtime=runtime or "openvino").predict(images, conf=conf)
        # the same runtime, host NMS vs graph NMS: the same boxes (pairs of IoU 0.999),
        # but where boxes of one class score exactly alike (frequent in this toy int8
        # network, whose outputs sit on few codes), which ONNX Runtime's NMS may take in
        # another order than the host (by index), so that another of two overlapping boxes
        # survives
        nms_alone = agreement(host, results, min_iou=0.999)
        assert nms_alone["other_detections"] == nms_alone["reference_detections"], nms_alone
        assert nms_alone["paired"] >= 0.97 * nms_alone["reference_detections"], nms_alone
        assert nms_alone["max_coord_diff_px"] <= 1e-3, nms_alone
        int8 = agreement(reference, results)  # and against the checkpoint: int8 rounding
        assert int8["paired"] >= 0.8 * int8["reference_detections"], int8
        assert int8["p50_coord_diff_px"] <= 2.0, int8

    # on the command line, the IR names its classes (its runtime: openvino, by the file)
    out = tmp_path / "predict"
    res = cli("predict", *images[:2], "--onnx", str(files["openvino"]), "--conf", str(conf),
              "--json", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    names = {d["class_name"] for r in json.loads(res.stdout) for d in r["detections"]}
    assert names and names <= {"cat", "dog", "bird"}


def test_metadata_of_exports_and_what_load_reads(qat_checkpoint: Path, tmp_path: Path) -> None:
    options = ["--nms", "--conf", "0.4", "--iou", "0.6", "--max_det", "20"]
    output = ["--output", str(tmp_path / "m.onnx")]
    res = cli("export", "--checkpoint", str(qat_checkpoint), "--int8", *options, *output)
    assert res.returncode == 0, res.stderr
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == ["cat", "dog", "bird"]
    assert meta["normalize"] == "imagenet" and meta["letterbox"] == "false"
    assert meta["family"] == "yolov3_head" and meta["input_size"] == str(SIZE)
    assert meta["int8"] == "true" and meta["nms"] == "true"
    assert json.loads(meta["outputs"]) == ["detections"]
    decode = json.loads(meta["decode"])
    assert decode["nms"]["conf"] == 0.4 and decode["nms"]["iou"] == 0.6
    assert decode["outputs"]["detections"]["shape"] == ["N", 20, 6]
    assert "MindSpore" not in res.stderr and "will be deleted" not in res.stderr

    loaded = yoloqat.load(tmp_path / "m.onnx")
    from yoloqat.core import events

    seen: list[str] = []
    stop = events.subscribe(lambda e: seen.append(e.data.get("message", "")))
    try:
        loaded.predict(np.zeros((SIZE, SIZE, 3), np.uint8), conf=0.1, iou=0.5)
    finally:
        stop()
    assert any("below the model's in-graph threshold 0.4" in m for m in seen), seen
    assert any("iou 0.5 is not used" in m for m in seen), seen


def test_mindspore_onnx_deprecation_warning_is_dropped(tmp_path: Path) -> None:
    import mindspore as ms
    from mindspore import log

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = log._get_logger()
    handler = Keep()
    logger.addHandler(handler)
    try:
        net = tiny()
        export_onnx(net, tmp_path / "m.onnx", input_size=SIZE)
        assert not [r for r in records if "will be deleted" in r]
        dummy = ms.Tensor(np.zeros((1, 3, SIZE, SIZE), np.float32))  # MindSpore says it
        ms.export(net, dummy, file_name=str(tmp_path / "raw"), file_format="ONNX")
        assert [r for r in records if "will be deleted" in r]
    finally:
        logger.removeHandler(handler)


def test_bad_export_options(qat_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = str(qat_checkpoint)
    res = cli("export", "--checkpoint", ckpt, "--format", "mindir", "--nms")
    assert res.returncode == 2 and "not in mindir" in res.stderr
    res = cli("export", "--checkpoint", ckpt, "--format", "tflite")
    assert res.returncode == 2 and "onnx, mindir, openvino" in res.stderr
    for flag, value in (("--conf", "1.5"), ("--iou", "0"), ("--max_det", "0")):
        res = cli("export", "--checkpoint", ckpt, "--nms", flag, value)
        assert res.returncode == 2 and f"{flag} {value}" in res.stderr, res.stderr
    model = yoloqat.load(qat_checkpoint)
    out = model.export(format="openvino", nms=True, int8=True, imgsz=SIZE)
    try:
        assert out.name == "qat_64_int8_nms.xml" and out.with_suffix(".bin").is_file()
    finally:
        out.unlink()
        out.with_suffix(".bin").unlink()


def test_eval_onnx_with_an_nms_model(tmp_path: Path) -> None:
    """``eval --onnx`` of an NMS model (conf 0.001 baked in) scores what the plain model
    scores: the graph's detections go through the evaluation as decoded outputs."""
    from test_cli_misc import _own_detections_as_ground_truth

    from yoloqat.data.synth import make_synthetic_coco

    synth = tmp_path / "synth"
    make_synthetic_coco(synth, train=2, val=3, size=SIZE, seed=6, num_classes=3)
    net = tiny("leaky", "same", seed=2)
    gt = _own_detections_as_ground_truth(net, synth, tmp_path, calibrate_steps=5)
    nms = NmsSettings(conf=0.001, iou=0.5, max_det=300)
    files = {
        "plain": export_onnx(net, tmp_path / "plain.onnx", input_size=SIZE),
        "nms": export_onnx(net, tmp_path / "nms.onnx", input_size=SIZE, nms=nms),
    }
    stats = {}
    for name, path in files.items():
        out = tmp_path / f"eval_{name}"
        res = cli("eval", "--onnx", str(path), "--images", str(synth / "val"),
                  "--annotations", str(gt), "--output", str(out))  # fmt: skip
        assert res.returncode == 0, res.stderr
        stats[name] = json.loads(next(out.glob("*/eval.json")).read_text())["stats"]
    assert stats["plain"]["AP50"] > 0.5, "the ground truth is the network's own"
    for key in ("AP", "AP50"):
        assert stats["nms"][key] == pytest.approx(stats["plain"][key], abs=0.01)


def test_family_metadata() -> None:
    """The config's family preset, else (a config naming its parts) the head's name."""
    from yoloqat.core.config import load_config
    from yoloqat.engine.export import model_metadata

    cfg = load_config("synth_yolov8")
    assert model_metadata(cfg, {})["family"] == "yolov8"
    assert model_metadata(load_config("yolov3_darknet53"), {})["family"] == "yolov3_head"
