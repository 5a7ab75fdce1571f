"""Execute every tutorial notebook top to bottom in the quick configuration."""

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "docs"))
import notebook_outputs  # noqa: E402  (the executed copies the docs build reuses)


#: The numbers a notebook's story rests on, read from its kernel after the last cell: an
#: expression (a dict) and the check it must pass, in the quick configuration and at the
#: defaults alike. "No error and a figure" alone would let a tutorial that annotates nothing pass.
KEY_NUMBERS = {
    "00_quickstart": ("{'pairs': len(summary), 'done': int((summary['status'] == 'done').sum()),"
                      " 'N_PAIRS': N_PAIRS}",
                      lambda k: k["pairs"] == k["N_PAIRS"] == k["done"]),
    # the pairs the later notebooks read come back from disk as written, truth included
    "01_data": ("{'n': len(back), 'scene': data.TUTORIAL_SCENES['quick' if QUICK else 'full']['n'],"
                " 'as_written': all(b.truth.equals(p.truth) and bool((b.nuclei == p.nuclei).all())"
                " and bool((b.fluorescence == p.fluorescence).all()) for b, p in zip(back, pairs))}",
                lambda k: k["as_written"] and k["n"] == k["scene"]),
    # real nuclei: issue 30's floor for the DSB2018 image; on notebook 01's pair, auto gives
    # more cells exactly one prompt than Cell-APP's isodata (100 against 47 at the defaults)
    "02_locate_prompt": ("{'f1': float(detection(dsb.nuclei, located['auto'])['f1']),"
                         " 'one': check.loc['exactly one'].to_dict()}",
                         lambda k: k["f1"] >= 0.94 and k["one"]["auto"] > k["one"]["isodata"]),
    # one table row per prompt (dropped ones too); the watershed baseline finds the cells
    # of notebook 01's pair (AP@0.5 0.88 quick, 0.87 at the defaults)
    "03_segment": ("{'rows': len(result.table), 'prompts': len(prompts), 'watershed_ap50': float("
                   "cellnb.compare(pair.labels, {'w': baseline.labels}, thresholds=(0.5,))['ap'].iloc[0])}",
                   lambda k: k["rows"] == k["prompts"] and k["watershed_ap50"] >= 0.7),
    # the fluorescence classes hold on a held-out pair from TL alone (1.00 at the defaults)
    "04_classify": ("{'score': float(score)}", lambda k: k["score"] >= 0.8),
    # every record exported once, and read back from COCO, ROI zip and GeoJSON unchanged
    "05_export": ("{'exported': sum(c['images'] for c in provenance['counts'].values()),"
                  " 'records': len(records), 'coco': all(np.array_equal(back[i].labels,"
                  " {r.id: r for r in records}[i].labels) for i in back),"
                  " 'rois': bool(np.array_equal(rois, first.labels)),"
                  " 'geojson': bool(np.array_equal(shapes, first.labels))}",
                  lambda k: k["exported"] == k["records"] and k["coco"] and k["rois"]
                  and k["geojson"]),
    # the resumed run has all its epochs, its loss fell, and the bioimage.io package
    # segments as cellnb.segment does
    "06_train": ("{'epochs': len(trained.history), 'EPOCHS': EPOCHS,"
                 " 'loss': trained.history['train_loss'].iloc[[0, -1]].tolist(),"
                 " 'package_same': bool((cells == result.labels).all())}",
                 lambda k: k["epochs"] == k["EPOCHS"] + 2 and k["loss"][1] < k["loss"][0]
                 and k["package_same"]),
    # notebook 06's U-Net (or 07's short run) on unseen test images: the quick run reaches
    # AP@0.5 1.00, the defaults 0.97 (a short run on notebook 01's full pairs)
    "07_evaluate": ("{'ap50': float(scores.set_index('threshold').loc[0.5, 'ap'])}",
                    lambda k: k["ap50"] >= 0.5),
    # every pair annotated on the cluster; two training processes kept the same weights
    "08_hpc": ("{'done': int((summary['status'] == 'done').sum()), 'pairs': len(table),"
               " 'distributed': trained.info['distributed']}",
               lambda k: k["done"] == k["pairs"] and k["distributed"] == {
                   "world_size": 2, "checksums_equal": True}),
    # every recipe the plan runs here is trained, and every method has a row in the table
    "09_compare_methods": ("{'trained': sorted(trained), 'planned': sorted(plan.index[plan['runs']]),"
                           " 'rows': sorted(summary.index), 'methods': sorted({**out_of_the_box,"
                           " **predictions})}",
                           lambda k: k["trained"] == k["planned"] != []
                           and k["rows"] == k["methods"]),
    # the rejection (the add was undone) is what export wrote for that pair
    "10_review": ("{'ops': curate.curation(f'{OUT}/annotations')['op'].tolist(),"
                  " 'before': int(summary.set_index('pair_id').loc[worst, 'cells']),"
                  " 'exported': len(curated[worst].cells)}",
                  lambda k: k["ops"] == ["reject"] and k["exported"] == k["before"] - 1),
    "11_movies": ("{'frames': int(seg.labels.shape[0]), 'N_FRAMES': N_FRAMES, "
                  "'tracks': int(tracks.table['track_id'].nunique()), "
                  "'cells': int(seg.labels[0].max())}",
                  lambda k: k["frames"] == k["N_FRAMES"] and k["tracks"] > 0 and k["cells"] > 0),
}
_MARK = "CELLNB_KEY_NUMBERS="


def _with_key_numbers(nb, stem):
    """`nb` with a last cell that prints its key numbers (see :data:`KEY_NUMBERS`)."""
    if stem in KEY_NUMBERS:
        code = f"import json as _json\nprint({_MARK!r} + _json.dumps({KEY_NUMBERS[stem][0]}))"
        nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def _check_key_numbers(nb, stem):
    """Read and check the printed key numbers; the extra cell is taken off again."""
    import json

    if stem not in KEY_NUMBERS:
        return
    cell = nb.cells.pop()
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
    assert _MARK in text, f"{stem}: the key numbers were not printed: {cell.get('outputs')}"
    numbers = json.loads(text.split(_MARK, 1)[1].splitlines()[0])
    assert KEY_NUMBERS[stem][1](numbers), f"{stem}: key numbers out of range: {numbers}"


def test_notebooks_found():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", []), \
        "the first code cell must be tagged 'parameters'"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "outputs must be stripped in git"
    monkeypatch.setenv("CELLNB_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws figures
    # warnings are shown, not errors, inside notebooks: they are for people
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    source_sha256 = notebook_outputs.notebook_sha256(nb.cells)
    client = NotebookClient(_with_key_numbers(nb, path.stem), timeout=1800,
                            kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    _check_key_numbers(nb, path.stem)
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, "a tutorial shows pictures"
    if "CELLNB_EXECUTED_NOTEBOOKS" in os.environ:  # make test: kept for the docs build
        keep = notebook_outputs.folder()
        keep.mkdir(parents=True, exist_ok=True)
        nb.metadata["cellnb"] = {"source_sha256": source_sha256}
        partial = keep / f".{path.name}.part"
        nbformat.write(nb, partial)
        partial.replace(keep / path.name)


#: Notebooks also run at their default parameters, as a user runs them (issue 34): the
#: quickstart must finish in a few minutes on 2 CPU cores (106 s measured), and the movie
#: notebook's ids must hold at its default size (30 frames: zero-padded time points; 9 to 18
#: min on 2 cores, by the machine: run by make test as issue 34 asks, within CI's budget).
AT_DEFAULTS = [pytest.param(ROOT / "notebooks" / "00_quickstart.ipynb", id="00_quickstart"),
               pytest.param(ROOT / "notebooks" / "11_movies.ipynb", id="11_movies")]


@pytest.mark.parametrize("path", AT_DEFAULTS)
def test_notebook_runs_at_its_defaults(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    monkeypatch.delenv("CELLNB_QUICK", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    NotebookClient(_with_key_numbers(nb, path.stem), timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    _check_key_numbers(nb, path.stem)


def _run_until(stem, cell_id, expression, folder):
    """Run notebook `stem` (quick) in `folder` up to the cell `cell_id`; `expression`'s value there."""
    import json

    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    upto = next(i for i, c in enumerate(nb.cells) if c.get("id") == cell_id)
    nb.cells = nb.cells[:upto + 1] + [nbformat.v4.new_code_cell(
        f"import json as _json\nprint({_MARK!r} + _json.dumps({expression}))")]
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", [])
                   if o.output_type == "stream")
    return json.loads(text.split(_MARK, 1)[1].splitlines()[0])


def _export_tiny_dataset(folder):
    """A 3-image dataset where notebook 05 exports its own, ids starting ``from05_``."""
    import cellnb
    from cellnb.data import synthetic_pairs
    from cellnb.io import Record

    pairs = synthetic_pairs(3, shape=(64, 64), n_cells=4, seed=9)
    return cellnb.export([Record(f"from05_{k}", p.tl, p.labels, p.truth) for k, p in enumerate(pairs)],
                         folder / "cellnb-output" / "05_export" / "dataset",
                         splits={"train": 1 / 3, "val": 1 / 3, "test": 1 / 3}, progress=False)


def test_notebook_06_trains_on_the_dataset_notebook_05_exported(tmp_path, monkeypatch):
    """Notebooks hand on through files (issue 33): run after 05, notebook 06 reads 05's export
    instead of making its own (run alone, test_notebook_runs shows it makes one)."""
    _export_tiny_dataset(tmp_path)
    monkeypatch.setenv("CELLNB_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    first, dataset = _run_until("06_train", "d613bca7", "[first.id, str(dataset)]", tmp_path)
    assert first.startswith("from05_") and dataset == "cellnb-output/05_export/dataset"


def test_notebook_07_scores_the_model_notebook_06_trained(tmp_path, monkeypatch):
    """06 -> 07: run after 06, notebook 07 scores 06's run on the test split of the dataset
    that run trained on, and trains nothing itself."""
    import cellnb
    from cellnb.io import read_coco

    dataset = _export_tiny_dataset(tmp_path)
    run = tmp_path / "cellnb-output" / "06_train" / "unet"
    cellnb.train(dataset, recipe="unet", out=run, epochs=1, steps_per_epoch=1, batch_size=1,
                 patch_shape=(64, 64), progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    monkeypatch.setenv("CELLNB_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    path, ids = _run_until("07_evaluate", "c7a1f0e4", "[str(trained.path), [r.id for r in test]]",
                           tmp_path)
    assert path == "cellnb-output/06_train/unet"
    assert ids == [r.id for r in read_coco(dataset / "test", images=False)]
    assert len(ids) == 1 and ids[0].startswith("from05_")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == stamps  # nothing trained again
    assert not (tmp_path / "cellnb-output" / "01_data").exists()  # no pairs made either


#: The notebooks that read notebook 01's pairs: the cell that reads them, and what it read.
READS_01 = {"02_locate_prompt": ("cell-04", "[pair.id, int(pair.fluorescence.sum())]"),
            "03_segment": ("c67ae531", "[pair.id, int(pair.fluorescence.sum())]"),
            "04_classify": ("cell-04", "[pairs[-1].id, int(pairs[-1].fluorescence.sum())]"),
            "05_export": ("cell-04", "[pairs[-1].id, int(pairs[-1].fluorescence.sum())]"),
            "08_hpc": ("cb86ad37", "[table['pair_id'].iloc[-1], str(table['tl_path'].iloc[-1])]"),
            "10_review": ("e16858ad", "[summary['pair_id'].iloc[-1], int(summary['cells'].sum())]")}


@pytest.mark.parametrize("stem", sorted(READS_01))
def test_notebook_reads_the_pairs_notebook_01_wrote(stem, tmp_path, monkeypatch):
    """01 -> 02, 03, 04, 05, 08, 10 (issue 33): run after 01, each reads its pairs and rewrites
    nothing (run alone, test_notebook_runs shows it makes them)."""
    from cellnb.data import tutorial_pairs

    monkeypatch.setenv("CELLNB_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    folder = tmp_path / "cellnb-output" / "01_data" / "pairs"
    pairs = tutorial_pairs(folder, quick=True)  # what notebook 01 writes in its quick run
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    first, second = _run_until(stem, *READS_01[stem], tmp_path)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps  # read, not rewritten
    last = pairs[0] if stem in ("02_locate_prompt", "03_segment") else pairs[-1]
    assert first == last.id
    if stem == "08_hpc":
        assert second == f"cellnb-output/01_data/pairs/{last.id}_phs.tif"
    elif stem == "10_review":
        assert second > 0  # annotate found cells in 01's pairs
    else:
        assert second == int(last.fluorescence.sum())
