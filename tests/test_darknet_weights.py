"""Darknet .weights import/export: exact round trips, a hand-written file, sizes, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import yoloqat  # noqa: F401  (sets the oneDNN ISA before any conv runs)
from yoloqat.core.errors import CheckpointError
from yoloqat.engine.checkpoints import read_checkpoint, save_checkpoint
from yoloqat.engine.darknet import (
    DarknetHeader,
    conv_specs,
    darknet_config,
    export_darknet,
    import_darknet,
    parse_header,
    payload_floats,
)
from yoloqat.engine.models import yolov3_darknet53

REPO = Path(__file__).resolve().parents[1]
WIDTH = 0.0625
NUM_CLASSES = 3
TINY_CFG = {
    "model": {
        "num_classes": NUM_CLASSES,
        "backbone": {"name": "darknet53", "activation": "leaky", "width": WIDTH},
        "head": {"name": "yolov3_head", "width": WIDTH},
    },
    "quantizer": {"name": "none"},
}


def tiny_net(seed: int = 0):
    """The tiny detector with random weights and random (valid) BN statistics."""
    from mindspore import Tensor

    net = yolov3_darknet53(width=WIDTH, num_classes=NUM_CLASSES, activation="leaky")
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        value = rng.standard_normal(p.shape).astype(np.float32)
        if p.name.endswith("moving_variance"):
            value = np.abs(value) + 0.01
        p.set_data(Tensor(value))
    return net


def params_of(net) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy() for p in net.get_parameters()}


def ckpt_arrays(path: Path) -> dict[str, np.ndarray]:
    params, _ = read_checkpoint(path)
    return {k: v.asnumpy() for k, v in params.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny float checkpoint (with its config stored) and its tensors."""
    root = tmp_path_factory.mktemp("darknet")
    net = tiny_net()
    ckpt = save_checkpoint(net, root / "tiny.ckpt", {"quantized": False, "config": TINY_CFG})
    cfg_file = root / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(TINY_CFG))
    return {"root": root, "ckpt": ckpt, "cfg": cfg_file, "params": params_of(net), "net": net}


def handwritten(path: Path, net, header: bytes, *, backbone_only: bool = False) -> None:
    """Write a .weights file by hand in Darknet's documented order (not via the writer)."""
    units = list(net.backbone.conv_units())
    if not backbone_only:
        units += list(net.head.conv_units())
    with open(path, "wb") as fh:
        fh.write(header)
        for unit in units:
            if hasattr(unit, "bn"):  # conv + BN: beta, gamma, mean, var, weights
                parts = [unit.bn.beta, unit.bn.gamma, unit.bn.moving_mean]
                parts += [unit.bn.moving_variance, unit.conv.weight]
            else:  # output conv: bias, weights
                parts = [unit.bias, unit.weight]
            for p in parts:
                p.asnumpy().astype("<f4").tofile(fh)


def test_full_round_trip_is_bit_exact(tiny) -> None:
    weights = tiny["root"] / "full.weights"
    summary = export_darknet(tiny["ckpt"], weights)
    assert summary["convs"] == 75
    specs = conv_specs(tiny["net"])
    assert weights.stat().st_size == 20 + 4 * payload_floats(specs)
    assert parse_header(weights.read_bytes()[:20]) == DarknetHeader(0, 2, 0, 0)

    out = tiny["root"] / "reimported.ckpt"
    import_darknet(weights, out, config=tiny["cfg"])
    got = ckpt_arrays(out)
    assert set(got) == set(tiny["params"])
    for name, value in tiny["params"].items():
        assert got[name].dtype == np.float32
        assert np.array_equal(got[name], value), name
    _, meta = read_checkpoint(out)
    assert meta["source"] == "darknet"
    assert meta["quantized"] is False
    assert meta["num_classes"] == NUM_CLASSES
    assert meta["config"]["model"]["backbone"]["activation"] == "leaky"

    # eval/predict rebuild the network from the stored config and load it
    from yoloqat.core.config import load_config
    from yoloqat.engine.inference import load_detector

    net, _, _ = load_detector(load_config("yolov3_darknet53"), out, explicit_config=False)
    assert net.backbone.activation == "leaky" and net.num_classes == NUM_CLASSES
    for p in net.get_parameters():
        assert np.array_equal(p.asnumpy(), tiny["params"][p.name]), p.name


def test_backbone_only_round_trip(tiny) -> None:
    root = tiny["root"]
    weights = root / "backbone.weights"
    export_darknet(tiny["ckpt"], weights, backbone_only=True)
    specs = conv_specs(tiny["net"], backbone_only=True)
    assert len(specs) == 52
    assert weights.stat().st_size == 20 + 4 * payload_floats(specs)

    out = root / "backbone.ckpt"
    summary = import_darknet(weights, out, config=tiny["cfg"], backbone_only=True)
    assert summary["convs"] == 52
    got = ckpt_arrays(out)
    expected = {k: v for k, v in tiny["params"].items() if k.startswith("backbone.")}
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert np.array_equal(got[name], value), name

    # the backbone-only checkpoint exports back to the same bytes
    again = root / "backbone2.weights"
    export_darknet(out, again, backbone_only=True)
    assert again.read_bytes() == weights.read_bytes()
    # ... but not as a whole detector
    with pytest.raises(CheckpointError, match="only backbone weights"):
        export_darknet(out, root / "nope.weights")


def test_backbone_only_accepts_a_whole_detector_file(tiny) -> None:
    weights = tiny["root"] / "whole.weights"
    export_darknet(tiny["ckpt"], weights)
    out = tiny["root"] / "from_whole.ckpt"
    import_darknet(weights, out, config=tiny["cfg"], backbone_only=True)
    got = ckpt_arrays(out)
    assert got and all(k.startswith("backbone.") for k in got)
    for name, value in got.items():
        assert np.array_equal(value, tiny["params"][name]), name


@pytest.mark.parametrize(
    ("version", "seen", "seen_type", "header_bytes"),
    [
        ((0, 1, 0), 12345, "<i4", 16),  # old Darknet: seen is an int32
        ((0, 2, 0), 2**40 + 7, "<i8", 20),  # current Darknet: int64
        ((1, 0, 0), 64, "<i8", 20),
        ((1000, 2, 0), 9, "<i4", 16),  # a "transposed" file: int32 seen
    ],
)
def test_reader_on_a_handwritten_file(tmp_path, version, seen, seen_type, header_bytes) -> None:
    source = tiny_net(seed=1)
    header = np.asarray(version, "<i4").tobytes() + np.asarray([seen], seen_type).tobytes()
    assert len(header) == header_bytes
    weights = tmp_path / "hand.weights"
    handwritten(weights, source, header)
    out = tmp_path / "hand.ckpt"
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(TINY_CFG))
    summary = import_darknet(weights, out, config=cfg_file)
    assert summary["header"] == {
        "major": version[0],
        "minor": version[1],
        "revision": version[2],
        "seen": seen,
    }
    got = ckpt_arrays(out)
    want = params_of(source)
    assert set(got) == set(want)
    for name, value in want.items():
        assert np.array_equal(got[name], value), name


def test_wrong_size_names_expected_and_actual_bytes(tiny, tmp_path) -> None:
    good = tmp_path / "good.weights"
    export_darknet(tiny["ckpt"], good)
    data = good.read_bytes()
    need = len(data)

    short = tmp_path / "short.weights"
    short.write_bytes(data[:-8])
    with pytest.raises(CheckpointError) as err:
        import_darknet(short, tmp_path / "x.ckpt", config=tiny["cfg"])
    msg = err.value.message
    assert f"has {need - 8} bytes" in msg and f"needs {need} bytes" in msg
    assert "header 20" in msg

    longer = tmp_path / "long.weights"
    longer.write_bytes(data + b"\0" * 12)
    with pytest.raises(CheckpointError, match=f"has {need + 12} bytes.*needs {need} bytes"):
        import_darknet(longer, tmp_path / "x.ckpt", config=tiny["cfg"])

    backbone = tmp_path / "bb.weights"
    export_darknet(tiny["ckpt"], backbone, backbone_only=True)
    with pytest.raises(CheckpointError) as err:
        import_darknet(backbone, tmp_path / "x.ckpt", config=tiny["cfg"])
    assert "--backbone-only" in (err.value.hint or "")

    # a backbone file with extra data is refused too (no silent truncation)
    padded = tmp_path / "bb_long.weights"
    padded.write_bytes(backbone.read_bytes() + b"\0" * 40)
    with pytest.raises(CheckpointError, match="52-conv backbone needs"):
        import_darknet(padded, tmp_path / "x.ckpt", config=tiny["cfg"], backbone_only=True)

    tiny_file = tmp_path / "tiny.weights"
    tiny_file.write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="too short"):
        import_darknet(tiny_file, tmp_path / "x.ckpt", config=tiny["cfg"])
    assert not (tmp_path / "x.ckpt").exists()


def test_size_hint_finds_num_classes(tiny, tmp_path) -> None:
    weights = tmp_path / "c3.weights"
    export_darknet(tiny["ckpt"], weights)
    with pytest.raises(CheckpointError) as err:
        import_darknet(
            weights, tmp_path / "x.ckpt", config=tiny["cfg"], num_classes=NUM_CLASSES + 2
        )
    assert f"num_classes={NUM_CLASSES}" in (err.value.hint or "")


def test_export_refuses_a_qat_checkpoint(tiny, tmp_path) -> None:
    qat = save_checkpoint(tiny["net"], tmp_path / "qat.ckpt", {"quantized": True})
    with pytest.raises(CheckpointError, match="QAT"):
        export_darknet(qat, tmp_path / "q.weights")
    assert not (tmp_path / "q.weights").exists()


def test_published_file_sizes() -> None:
    """The full-size layout matches the sizes of pjreddie's files [general knowledge]."""
    net = yolov3_darknet53(num_classes=80, activation="leaky")
    assert 20 + 4 * payload_floats(conv_specs(net, backbone_only=True)) == 162_482_580
    assert 20 + 4 * payload_floats(conv_specs(net)) == 248_007_048  # yolov3.weights


def test_default_config_is_switched_to_leaky() -> None:
    cfg, notes = darknet_config(None)
    assert cfg["model"]["backbone"]["activation"] == "leaky"
    assert notes and "leaky" in notes[0]
    # the rest is the bundled float config
    assert cfg["scheduler"]["name"] == "cosine_annealing"
    assert cfg["model"]["num_classes"] == 80


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("YOLOQAT_DISABLE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "yoloqat", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def test_cli_import_export_and_exit_codes(tiny, tmp_path) -> None:
    weights = tmp_path / "cli.weights"
    handwritten(weights, tiny["net"], DarknetHeader().to_bytes())
    out = tmp_path / "cli.ckpt"
    cfg = str(tiny["cfg"])
    res = run_cli("import-darknet", str(weights), "--output", str(out), "--config", cfg)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["convs"] == 75
    got = ckpt_arrays(out)
    assert all(np.array_equal(got[k], v) for k, v in tiny["params"].items())

    back = tmp_path / "back.weights"
    res = run_cli("export-darknet", str(out), "--output", str(back))
    assert res.returncode == 0, res.stderr
    assert back.read_bytes() == weights.read_bytes()

    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[:-4])
    bad = str(tmp_path / "bad.ckpt")
    res = run_cli("import-darknet", str(short), "--output", bad, "--config", cfg, "--backbone_only")
    assert res.returncode == CheckpointError.exit_code
    assert "error:" in res.stderr and "bytes" in res.stderr and "Traceback" not in res.stderr
    assert not Path(bad).exists()

    qat = save_checkpoint(tiny["net"], tmp_path / "qat.ckpt", {"quantized": True})
    res = run_cli("export-darknet", str(qat), "--output", str(tmp_path / "q.weights"))
    assert res.returncode == CheckpointError.exit_code
    assert "QAT" in res.stderr


def test_cfg_round_trip_gives_a_ready_darknet_model(tiny, tmp_path) -> None:
    """export-darknet --cfg, then import-darknet --cfg with no config: the same network
    (classes, width, anchors from the .cfg), with the checkpoint's own BN eps and input
    preprocessing (from the .cfg's yoloqat line), and bit-exact weights."""
    from yoloqat.deploy.darknet_cfg import read_cfg
    from yoloqat.engine.inference import preprocessing

    weights, cfg = tmp_path / "t.weights", tmp_path / "t.cfg"
    export_darknet(tiny["ckpt"], weights, cfg_file=cfg)
    net_opts, layers = read_cfg(cfg)
    assert net_opts["width"] == "416" and len(layers) == 107
    out = tmp_path / "t.ckpt"
    import_darknet(weights, out, cfg_file=cfg)  # no --config, no --num-classes
    _, meta = read_checkpoint(out)
    model = meta["config"]["model"]
    assert model["num_classes"] == NUM_CLASSES
    assert model["backbone"]["width"] == model["head"]["width"] == WIDTH
    assert model["backbone"]["bn_eps"] == model["head"]["bn_eps"] == 1e-5  # the checkpoint's
    assert model["backbone"]["activation"] == "leaky"
    assert model["head"]["anchors"] == [
        list(map(float, a)) for a in tiny["net"].head.anchors.tolist()
    ]
    # TINY_CFG says nothing: the seed's ImageNet input, stretched (kept, not Darknet's)
    assert preprocessing(meta["config"]) == {"normalize": "imagenet", "letterbox": False}
    assert meta["class_names"] == [str(i) for i in range(NUM_CLASSES)]
    got = ckpt_arrays(out)
    assert all(np.array_equal(got[k], v) for k, v in tiny["params"].items())

    # a .cfg that describes another network than --config is refused, naming the file,
    # line and layer; without --config it is that other network, whose size then differs
    text = cfg.read_text().splitlines()
    third = [i for i, line in enumerate(text) if line == "[convolutional]"][2]
    filters = next(i for i in range(third, len(text)) if text[i].startswith("filters="))
    text[filters] = "filters=7"
    bad = tmp_path / "bad.cfg"
    bad.write_text("\n".join(text))
    with pytest.raises(CheckpointError, match=rf"bad.cfg:{third + 1}: layer 2 .*filters=7"):
        import_darknet(weights, tmp_path / "x.ckpt", config=tiny["cfg"], cfg_file=bad)
    with pytest.raises(CheckpointError, match=r"expected \d+ floats, got \d+"):
        import_darknet(weights, tmp_path / "x.ckpt", cfg_file=bad)
    # a truncated .weights file: how many floats were expected and found
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[:-40])
    need = payload_floats(conv_specs(tiny["net"]))
    with pytest.raises(CheckpointError, match=f"expected {need} floats, got {need - 10}"):
        import_darknet(short, tmp_path / "x.ckpt", cfg_file=cfg)
    assert not (tmp_path / "x.ckpt").exists()


def test_a_yolov3_layout_with_scale_x_y_is_its_own_graph(tiny, tmp_path) -> None:
    """The YOLOv3 layout with YOLOv4's scale_x_y is not the bundled network: it is built
    from the .cfg (same weights), its decode widening the centres."""
    weights, cfg = tmp_path / "t.weights", tmp_path / "t.cfg"
    export_darknet(tiny["ckpt"], weights, cfg_file=cfg)
    scaled = tmp_path / "scaled.cfg"
    scaled.write_text(cfg.read_text().replace("[yolo]\n", "[yolo]\nscale_x_y=1.05\n"))
    out = tmp_path / "s.ckpt"
    summary = import_darknet(weights, out, cfg_file=scaled)
    assert summary["network"] == "darknet_cfg" and summary["convs"] == 75
    _, meta = read_checkpoint(out)
    assert meta["config"]["model"]["head"]["scale_x_y"] == [1.05] * 3
    assert meta["config"]["model"]["backbone"]["bn_eps"] == 1e-5


def test_full_size_cfg_has_the_published_yolov3_layout() -> None:
    """yoloqat's yolov3.cfg has the layer indices Darknet prints for yolov3.cfg
    [general knowledge]: yolo at 82/94/106, routes 83 (79), 86 (85, 61), 95 (91), 98 (97, 36)."""
    from yoloqat.deploy.darknet_cfg import yolov3_sections

    sections = yolov3_sections(yolov3_darknet53(num_classes=80, activation="leaky"))
    kinds = [s.type for s in sections]
    assert len(kinds) == 107 and kinds.count("convolutional") == 75
    assert kinds.count("shortcut") == 23 and kinds.count("upsample") == 2
    assert [i for i, k in enumerate(kinds) if k == "yolo"] == [82, 94, 106]
    routes = {i: s.options["layers"] for i, s in enumerate(sections) if s.type == "route"}
    assert routes == {83: "-4", 86: "-1, 61", 95: "-4", 98: "-1, 36"}
    assert [sections[i].options["filters"] for i in (81, 93, 105)] == ["255"] * 3
    assert sections[106].options["anchors"].startswith("10,13,  16,30,  33,23")
    assert [sections[i].options["mask"] for i in (82, 94, 106)] == ["6,7,8", "3,4,5", "0,1,2"]
    assert sections[0].options == {
        "batch_normalize": "1",
        "filters": "32",
        "size": "3",
        "stride": "1",
        "pad": "1",
        "activation": "leaky",
    }


def test_imported_model_exports_and_fine_tunes_as_itself(tiny, tmp_path) -> None:
    """export records the input preprocessing for eval --onnx; QAT from the imported
    checkpoint keeps its Darknet settings (activation, eps, input) over the quant recipe's."""
    import onnx

    from yoloqat.cli.export import onnx_preprocessing
    from yoloqat.cli.train import inherit_initial_network
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine import pipeline
    from yoloqat.engine.evaluate import model_preprocessing
    from yoloqat.engine.inference import load_detector, preprocessing
    from yoloqat.engine.runtimes import open_model

    weights = tmp_path / "t.weights"
    export_darknet(tiny["ckpt"], weights)
    ckpt = tmp_path / "dark.ckpt"
    import_darknet(weights, ckpt, config=tiny["cfg"])
    net, _, meta = load_detector(load_config("yolov3_darknet53"), ckpt, explicit_config=False)
    assert {u.bn.eps for u in net.backbone.conv_units()} == {1e-6}
    path = export_onnx(
        net, tmp_path / "m.onnx", input_size=64, metadata=onnx_preprocessing(meta["config"])
    )
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["normalize"] == "unit" and props["letterbox"] == "true"
    prep = model_preprocessing({}, {}, open_model(path), explicit=False)
    assert prep == {"normalize": "unit", "letterbox": True}

    cfg = load_config("yolov3_darknet53_quant")
    inherit_initial_network(cfg, str(ckpt))  # what train does with --resume_yolov3 CKPT
    cfg = apply_overrides(cfg, ["eval.letterbox=false"])  # then the --set keys
    assert cfg["model"]["backbone"]["activation"] == "leaky"
    assert cfg["model"]["backbone"]["bn_eps"] == cfg["model"]["head"]["bn_eps"] == 1e-6
    assert cfg["model"]["backbone"]["width"] == WIDTH and cfg["model"]["num_classes"] == 3
    assert cfg["data"]["normalize"] == "unit"
    assert cfg["eval"]["letterbox"] is False  # a --set key stays the user's
    stored = meta["config"]["model"]["backbone"]  # the whole block, every setting
    assert cfg["model"]["backbone"] == {
        **load_config("yolov3_darknet53_quant")["model"]["backbone"],
        **stored,
    }
    recipe = load_config("yolov3_darknet53_quant")
    assert cfg["loss"] == meta["config"].get("loss", recipe["loss"])  # and its loss, if any
    assert cfg["quantizer"]["name"] == "int8_qat"  # the recipe's quantizer
    assert preprocessing(cfg)["normalize"] == "unit"
    network = pipeline.build_model(cfg)
    assert network.backbone.activation == "leaky"
    assert {u.bn.eps for u in network.head.conv_units() if hasattr(u, "bn")} == {1e-6}
