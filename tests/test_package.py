import subprocess
import sys

import pytest

import cellnb


def test_import_is_light_and_fast():
    code = ("import sys, time; t = time.perf_counter(); import cellnb; "
            "dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'micro_sam', 'matplotlib', 'skimage', 'pycocotools') "
            "if m in sys.modules]; print(heavy, dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, seconds = out.stdout.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 1.0  # the acceptance bar; typically ~0.01 s


def test_exports_and_lazy_submodules():
    assert cellnb.__version__ == "0.1.0"
    assert "Config" in cellnb.__all__
    assert cellnb.io.find_pairs.__module__ == "cellnb.io._pairs"  # gathered by cellnb.io
    import importlib

    importlib.import_module("cellnb.evaluate")  # importing the module keeps the verb on top
    from cellnb.evaluate import overlap_table  # noqa: F401

    assert callable(cellnb.evaluate) and cellnb.evaluate.__module__ == "cellnb.evaluate"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        cellnb.nope


def test_demo_writes_pairs_and_figure(tmp_path):
    from cellnb.cli import main

    lines = []
    from cellnb import cli

    written = cli.demo(tmp_path / "demo", n_pairs=2, shape=(128, 128), n_cells=8, epochs=1,
                       steps_per_epoch=2, say=lines.append)
    assert written["figure"].is_file()
    assert len(list(written["pairs"].glob("*_phs.tif"))) == 2
    assert not any("issue" in line or "[x]" in line for line in lines)  # no build order
    assert lines[-3].startswith("next: the same pipeline step by step")
    assert "notebooks/00_quickstart.ipynb" in lines[-2]
    assert (written["model"] / "weights" / "best.pt").is_file()
    assert written["model_metrics"].is_file()
    assert any("where things are:" in line for line in lines)
    assert (written["dataset"] / "train" / "demo_train.json").is_file()
    assert written["metrics"].is_file()
    assert main(["demo", "--out", str(tmp_path / "cli"), "--pairs", "1", "--size", "96",
                 "--cells", "4", "--epochs", "1"]) == 0
    assert (tmp_path / "cli" / "figures" / "pairs.png").is_file()


def test_plot_rejects_mismatched_labels():
    import numpy as np

    from cellnb.plot import overlay

    with pytest.raises(ValueError, match=r"`image` \(shape \(4, 4\)\) and `labels` \(shape "
                                         r"\(5, 5\)\) must have the same height and width"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.int32))


def test_annotate_and_train_keep_tensorflow_out(tmp_path):
    """No TensorFlow (nor its log lines) unless a TensorFlow locator is asked for (issue 34):
    torch_em's tensorboard logger would import it through tensorboard's compat layer."""
    script = tmp_path / "run.py"
    script.write_text(f"""
import sys, warnings
warnings.simplefilter("ignore")
import cellnb
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import Record
from cellnb.testing import random_checkpoint, random_sam
out = {str(tmp_path)!r}
pairs = synthetic_pairs(2, shape=(96, 96), n_cells=4, seed=1)
write_pairs(pairs, out + "/pairs")
cellnb.annotate(out + "/pairs", out + "/ann", model=random_sam("vit_mini", decoder=True),
                progress=False)
ds = cellnb.export([Record(p.id, p.tl, p.labels, p.truth) for p in pairs], out + "/ds",
                   splits={{"train": 1, "val": 1}})
cellnb.train(ds, out=out + "/unet", recipe="unet", epochs=1, steps_per_epoch=1, batch_size=1,
             patch_shape=(64, 64), progress=False, depth=2, initial_features=4)
cellnb.train(ds, out=out + "/sam", recipe="microsam", model="vit_mini", epochs=1,
             checkpoint=random_checkpoint("vit_mini", out + "/m.pt", decoder=True),
             steps_per_epoch=1, batch_size=1, patch_shape=(64, 64), progress=False)
print("tensorflow imported:", "tensorflow" in sys.modules)
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tensorflow imported: False" in done.stdout
    noise = [line for line in done.stderr.splitlines()
             if any(word in line for word in ("tensorflow", "TensorFlow", "absl", "oneDNN",
                                              "cudart_stub", "TF_ENABLE"))]
    assert noise == []


def test_production_code_and_notebooks_never_import_the_test_helpers():
    """cellnb.testing is for tests and benchmarks; the library and the tutorials use the public
    API (the stand-ins for missing weights are cellnb.models.random_sam / random_checkpoint and
    cellnb.weights.train_base)."""
    import ast
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in sorted((root / "cellnb").rglob("*.py")):
        if path.name == "testing.py" and path.parent.name == "cellnb":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                names = [a.name for a in node.names]
                if module in (".testing", "cellnb.testing") or (
                        module in (".", "cellnb") and "testing" in names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
            elif isinstance(node, ast.Import):
                if any(a.name.startswith("cellnb.testing") for a in node.names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for k, cell in enumerate(cells):
            text = "".join(cell["source"])
            if cell["cell_type"] == "code" and ("cellnb.testing" in text or
                                                "import testing" in text):
                offenders.append(f"{path.name} cell {k}")
    assert offenders == []
