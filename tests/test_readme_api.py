"""The README's Python API example runs as written, and finds what ``yoloqat predict``
finds on the same images with the same model."""

from __future__ import annotations

import json
import os
import re
import sys
import types
from pathlib import Path

from tiny import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_api_example_runs_and_matches_the_cli(tmp_path: Path, capsys) -> None:
    module = types.ModuleType("readme_api_example")
    sys.modules[module.__name__] = module
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(api_example(), "README.md (Python API)", "exec"), module.__dict__)
    finally:
        os.chdir(cwd)
        del sys.modules[module.__name__]
    printed = capsys.readouterr().out
    assert "AP50" in printed and '"detections"' in printed
    run, model = module.__dict__["run"], module.__dict__["model"]
    ckpt = tmp_path / run.checkpoints[-1]  # relative to the folder the example ran in
    res = cli("predict", str(tmp_path / "shapes" / "val"), "--checkpoint", str(ckpt),
              "--output", str(tmp_path / "cli"), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    by_cli = {Path(r["source"]).name: r["detections"] for r in json.loads(res.stdout)}
    for result in model.predict(str(tmp_path / "shapes" / "val"), conf=0.25):
        boxes = [d["box"] for d in by_cli[Path(result.source).name]]
        assert boxes == [[round(float(v), 2) for v in box] for box in result.boxes]
    assert len(list((tmp_path / "preds").glob("*.jpg"))) == 4  # the example's save_dir
