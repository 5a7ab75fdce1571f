"""Hostile inputs and faults: one case per item of the hardening audits (issues 18 and 32).

Each test names the audit item it covers. Cases that held before the audit
(unpaired, multi-page, NaN, corrupt images...) live in the module tests.
"""

import json
import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile

import cellnb
from cellnb import Config, annotate, export, load_trained, train
from cellnb.annotate import read_records
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import Record, find_pairs, read_coco


class Payload:
    """Pickles into a call that writes a file: proof that loading ran code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (self.target.write_text, ("code ran",))


@pytest.fixture
def folder(tmp_path):
    write_pairs(synthetic_pairs(3, shape=(96, 96), n_cells=5, seed=4), tmp_path / "pairs")
    return tmp_path / "pairs"


def _records(n=3):
    return [Record(p.id, p.tl, p.labels, p.truth)
            for p in synthetic_pairs(n, shape=(64, 64), n_cells=4, seed=1)]


# -- 1. nothing loaded runs code ------------------------------------------------
def test_1_a_crafted_checkpoint_never_reaches_micro_sam(tmp_path):
    import torch

    ran = tmp_path / "ran"
    torch.save({"model_state": Payload(ran)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt holds objects other than tensors.*export the "
                                         "weights first"):
        cellnb.models.load("vit_t", checkpoint=tmp_path / "evil.pt", device="cpu")
    assert not ran.exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return export(_records(3), tmp_path_factory.mktemp("d") / "ds",
                  splits={"train": 2, "val": 1})


TINY = dict(recipe="unet", steps_per_epoch=2, batch_size=1, patch_shape=(32, 32),
            progress=False, depth=2, initial_features=4)


def test_1_a_crafted_resume_state_never_runs(dataset, tmp_path):
    import torch

    run = tmp_path / "run"
    train(dataset, out=run, epochs=1, **TINY)
    resume, = (run / "state").rglob("resume.pt")
    assert not list((run / "state").rglob("latest.pt"))  # torch_em's pickled checkpoint is gone
    ran = tmp_path / "ran"
    torch.save({"model_state": Payload(ran)}, resume)
    with pytest.raises(ValueError, match="resume.pt holds objects other than tensors"):
        train(dataset, out=run, epochs=2, **TINY)
    assert not ran.exists()
    resume.write_bytes(b"\x80\x04truncated")
    with pytest.raises(ValueError, match="resume.pt cannot be read as torch weights"):
        train(dataset, out=run, epochs=2, **TINY)


# -- 2. odd pair ids never touch other records ------------------------------------
def test_2_empty_and_hidden_stems(folder, tmp_path):
    summary = annotate(folder, tmp_path / "out", model="watershed", progress=False)
    assert (summary["status"] == "done").all()
    tl = tifffile.imread(folder / "synthetic_000_phs.tif")
    fl = tifffile.imread(folder / "synthetic_000_Texas Red.tif")
    tifffile.imwrite(folder / "._phs.tif", tl)           # macOS resource forks: hidden
    tifffile.imwrite(folder / "._Texas Red.tif", fl)
    with pytest.warns(UserWarning, match="skipped 2 hidden file"):
        again = annotate(folder, tmp_path / "out", model="watershed", progress=False)
    assert (again["status"] == "skipped").all() and len(again) == 3
    tifffile.imwrite(folder / "_phs.tif", tl)             # an empty stem
    with pytest.raises(ValueError, match="stem '' .*cannot be a pair id"):
        find_pairs(folder)
    assert len(read_records(tmp_path / "out", images=False)) == 3


def test_2_pair_ids_of_sub_folders_and_spaces(tmp_path):
    pairs = synthetic_pairs(2, shape=(96, 96), n_cells=4, seed=2)
    for sub, pair in zip(("plate1", "plate 2"), pairs):
        write_pairs([pair], tmp_path / "in" / sub)
    table = find_pairs(tmp_path / "in", recursive=True)
    assert table["pair_id"].tolist() == ["plate 2/synthetic_001", "plate1/synthetic_000"]
    annotate(table, tmp_path / "out", model="watershed", progress=False)
    records = read_records(tmp_path / "out")
    assert [r.id for r in records] == ["plate 2/synthetic_001", "plate1/synthetic_000"]
    out = export(records, tmp_path / "ds", splits={"train": 1.0})
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [
        "plate 2+synthetic_001.png", "plate1+synthetic_000.png"]


def test_2_a_duplicate_stem_is_an_error_not_a_silent_drop(folder):
    shutil.copy(folder / "synthetic_000_phs.tif", folder / "synthetic_000_phs.tiff.tif")
    with pytest.raises(ValueError, match="both match .* with the stem"):
        find_pairs(folder, tl="*_phs*")


# -- 3. no write escapes its folder -----------------------------------------------
@pytest.mark.parametrize("split", ["../../escaped", "/tmp/cellnb-escaped", ".", "a/b", ""])
def test_3_split_names_are_plain_names(tmp_path, split):
    with pytest.raises(ValueError, match="must be a plain folder name"):
        export(_records(), tmp_path / "ds", splits={"train": 0.5, split: 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    config = Config.from_dict({"export": {"splits": {"train": 0.5, split: 0.5}}})
    with pytest.raises(ValueError, match="must be a plain folder name"):
        export(_records(), tmp_path / "ds", config=config)


# -- 4. leftovers of killed runs --------------------------------------------------
def test_4_leftovers_of_a_killed_annotate_are_cleaned_and_never_read(folder, tmp_path):
    out = tmp_path / "out"
    annotate(folder, out, model="watershed", progress=False)
    records = out / "records"
    # a kill between writing a record and renaming it; a kill in the middle of an overwrite
    shutil.copytree(records / "synthetic_000", records / ".synthetic_000.k2j3.part")
    records.joinpath("synthetic_001").rename(records / ".synthetic_001.old")
    assert [r.id for r in read_records(out, images=False)] == ["synthetic_000", "synthetic_002"]
    again = annotate(folder, out, model="watershed", progress=False)
    assert again["status"].tolist() == ["skipped"] * 3  # the moved-aside copy was put back
    assert sorted(p.name for p in records.iterdir()) == [
        "synthetic_000", "synthetic_001", "synthetic_002"]


def test_4_a_killed_export_resumes(tmp_path):
    records = _records()
    out = export(records, tmp_path / "ds", splits={"train": 1.0}, zip=True)
    zipped = tmp_path / "ds.zip"
    before = zipped.read_bytes()
    zipped.unlink()                                   # killed before the zip was renamed
    (tmp_path / ".ds.zip.x1.part").write_bytes(b"half")
    (tmp_path / ".ds.a1b2.part").mkdir()              # and a dataset folder never finished
    assert export(records, tmp_path / "ds", splits={"train": 1.0}, zip=True) == out
    assert zipped.read_bytes() != b"" and len(zipped.read_bytes()) == len(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ds.zip"]
    out.rename(tmp_path / ".ds.old")                  # killed in the middle of an overwrite
    assert export(records, tmp_path / "ds", splits={"train": 1.0}) == out
    assert len(read_coco(out / "train")) == 3


# -- 5. stale records ---------------------------------------------------------------
def test_5_an_unreadable_input_drops_its_old_record(folder, tmp_path):
    out = tmp_path / "out"
    annotate(folder, out, model="watershed", progress=False)
    (folder / "synthetic_001_phs.tif").write_bytes(b"broken now")
    with pytest.warns(UserWarning, match="1 of 3 pair"):
        summary = annotate(folder, out, model="watershed", errors="skip", progress=False)
    assert summary["status"].tolist() == ["skipped", "failed", "skipped"]
    assert [r.id for r in read_records(out)] == ["synthetic_000", "synthetic_002"]


def test_5_moved_inputs_are_followed_and_paths_are_absolute(folder, tmp_path):
    import os

    out = tmp_path / "out"
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        annotate("pairs", "out", model="watershed", progress=False)  # relative paths
    finally:
        os.chdir(here)
    provenance = json.loads((out / "records" / "synthetic_000" / "record.json").read_text())
    assert provenance["tl_path"] == str((folder / "synthetic_000_phs.tif").resolve())
    moved = folder.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match="its TL image .* is gone; run annotate again"):
        read_records(out)
    again = annotate(moved, out, model="watershed", progress=False)
    assert again["status"].tolist() == ["skipped"] * 3
    assert export(out, tmp_path / "ds", splits={"train": 1.0}).is_dir()


def test_5_records_of_pairs_no_longer_there_are_reported(folder, tmp_path):
    annotate(folder, tmp_path / "out", model="watershed", progress=False)
    for f in folder.glob("synthetic_002_*"):
        f.unlink()
    with pytest.warns(UserWarning, match="holds 1 record.* not in this run \\(synthetic_002\\)"):
        annotate(folder, tmp_path / "out", model="watershed", progress=False)


# -- 6. overwrite deletes only what the call created ----------------------------------
def test_6_export_overwrite_never_deletes_foreign_folders(folder, tmp_path):
    annotate(folder, tmp_path / "out", model="watershed", progress=False)
    records = read_records(tmp_path / "out")
    for target in (tmp_path / "out", folder):
        before = sorted(p.name for p in target.rglob("*"))
        with pytest.raises(FileExistsError, match="is not a dataset cellnb.export wrote"):
            export(records, target, splits={"train": 1.0}, overwrite=True)
        assert sorted(p.name for p in target.rglob("*")) == before


def test_6_an_unrelated_zip_is_never_replaced(tmp_path):
    (tmp_path / "ds.zip").write_bytes(b"someone else's archive")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="is not a zip cellnb.export wrote"):
            export(_records(), tmp_path / "ds", splits={"train": 1.0}, zip=True,
                   overwrite=overwrite)
    assert (tmp_path / "ds.zip").read_bytes() == b"someone else's archive"
    assert not (tmp_path / "ds").exists()


def test_6_train_overwrite_never_deletes_a_foreign_folder(dataset, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a cellnb training run"):
        train(dataset, out=tmp_path / "mine", epochs=1, overwrite=True, **TINY)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "years of work"


# -- 7. parameters with a cost are bounded ----------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(tophat_size=500), r"`tophat_size` \(500\) is larger than the image"),
    (dict(tophat_size=100000), r"`tophat_size` \(100000\) is larger than the image"),
    (dict(erosion_radius=200), r"`erosion_radius` \(200\) erodes with a disk wider"),
    (dict(sigma=1000.0), r"`sigma` \(1000.0\) is larger than the image"),
])
def test_7_filters_larger_than_the_image_are_refused_at_once(kwargs, message):
    image = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        cellnb.locate(image, method="isodata", **kwargs)


# -- 8. a cluster without workers -------------------------------------------------------
def test_8_annotate_gives_up_when_the_cluster_has_no_worker(folder, tmp_path):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with pytest.raises(RuntimeError, match="has had no worker for 1 s, with 3 of 3 pair"):
            annotate(folder, tmp_path / "out", model="watershed", client=client,
                     worker_timeout=1, progress=False)


# -- 9. interrupted and damaged training runs ---------------------------------------------
def test_9_an_epoch_saved_but_never_validated_is_validated_on_resume(dataset, tmp_path):
    run = tmp_path / "run"
    train(dataset, out=run, epochs=2, **TINY)
    history = pd.read_csv(run / "history.csv")
    history[history["epoch"] < 1].to_csv(run / "history.csv", index=False)  # killed there
    resumed = train(dataset, out=run, epochs=2, **TINY)
    assert resumed.history["epoch"].tolist() == [0, 1]
    assert np.isfinite(resumed.history["val_ap50"]).all()


def test_9_damaged_run_folders_name_the_file(dataset, tmp_path):
    import torch

    run = tmp_path / "run"
    train(dataset, out=run, epochs=1, **TINY)
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "history.csv").write_bytes(b"\x00\xff garbage\n\x00")
    with pytest.raises(ValueError, match="history.csv"):
        load_trained(broken)
    shutil.copy(run / "history.csv", broken / "history.csv")
    torch.save({"model_state": {"nothing": torch.zeros(1)}}, broken / "weights" / "best.pt")
    with pytest.raises(ValueError, match="best.pt does not hold the weights of this 'unet' run"):
        load_trained(broken)
    (broken / "weights" / "best.pt").write_bytes((run / "weights" / "best.pt").read_bytes()[:99])
    with pytest.raises(ValueError, match="best.pt cannot be read as torch weights"):
        load_trained(broken)
    (broken / "trained.json").write_text("{not json")
    with pytest.raises(ValueError, match="trained.json is not valid JSON"):
        load_trained(broken)


# -- 10. what used to be accepted silently ---------------------------------------------------
def test_10_config_values_checked_also_when_edited():
    config = Config()
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0, got nan"):
        config.locate.sigma = float("nan")
    assert config.locate.sigma == 2.0
    with pytest.raises(ValueError, match=r"min_area \(50\) must not exceed max_area \(10\)"):
        config.locate.max_area = 10
        config.locate.min_area = 50
    with pytest.raises(TypeError, match="'method' must be one of"):
        config.locate.method = "otsu"
    with pytest.raises(AttributeError, match="LocateConfig has no setting 'sigmma'"):
        config.locate.sigmma = 1.0


def test_10_four_channels_with_data_are_refused(tmp_path):
    import imageio.v3 as iio

    rgba = np.random.default_rng(0).integers(0, 255, (8, 8, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "a.png", rgba)
    with pytest.raises(ValueError, match="has 4 channels and the last varies"):
        cellnb.io.read_image(tmp_path / "a.png")
    rgba[..., 3] = 255  # an opaque alpha channel is dropped
    iio.imwrite(tmp_path / "b.png", rgba)
    assert cellnb.io.read_image(tmp_path / "b.png").shape == (8, 8, 3)


def test_10_a_constant_tl_image_is_no_annotation(folder, tmp_path):
    tifffile.imwrite(folder / "synthetic_001_phs.tif", np.full((96, 96), 700, np.uint16))
    with pytest.warns(UserWarning, match="synthetic_001: ValueError: transmitted-light image .* "
                                         "is constant"):
        summary = annotate(folder, tmp_path / "out", model="watershed", errors="skip",
                           progress=False)
    assert summary["status"].tolist() == ["done", "failed", "done"]


def test_10_evaluate_refuses_nan_thresholds_and_empty_images():
    labels = np.zeros((4, 4), np.int32)
    labels[1:3, 1:3] = 1
    with pytest.raises(ValueError, match=r"`thresholds` must be non-empty values in \(0, 1\]"):
        cellnb.evaluate(labels, labels, thresholds=[float("nan")])
    empty = np.zeros((0, 0), np.int32)
    with pytest.raises(ValueError, match="are empty images"):
        cellnb.evaluate(empty, empty)


# -- 11. polygons never fill holes silently ---------------------------------------------------
def test_11_cells_with_holes_are_exported_exactly(tmp_path):
    labels = np.zeros((32, 32), np.int32)
    labels[4:20, 4:20] = 1
    labels[9:14, 9:14] = 0        # a hole
    labels[22:30, 22:30] = 2
    record = Record("ring", np.random.default_rng(0).random((32, 32)).astype(np.float32),
                    labels, pd.DataFrame(index=pd.Index([1, 2], name="label")))
    with pytest.warns(UserWarning, match="1 cell\\(s\\) have holes.*exact RLE"):
        out = export([record], tmp_path / "ds", splits={"train": 1.0}, masks="polygon")
    back = read_coco(out / "train")[0]
    np.testing.assert_array_equal(back.labels == 1, labels == 1)   # the hole is kept
    coco = json.loads((out / "train" / "dataset_train.json").read_text())
    kinds = [type(a["segmentation"]).__name__ for a in coco["annotations"]]
    assert kinds == ["dict", "list"]
    assert json.loads((out / "provenance.json").read_text())["rle_for_cells_with_holes"] == 1


def test_pickle_module_is_never_used_to_load(tmp_path):
    """A static guard: the library never calls pickle.load / torch.load without weights_only."""
    from pathlib import Path

    source = "\n".join(p.read_text() for p in Path(cellnb.__file__).parent.rglob("*.py"))
    assert "pickle.load" not in source and "weights_only=False" not in source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pickle.dumps(1)  # (the module itself is fine to import)


# -- 4. real kills at random moments -------------------------------------------------------
_KILLABLE = """
import sys
from cellnb import annotate, export
out = sys.argv[2]
annotate(sys.argv[1], out, model="watershed", progress=False)
export(out, out + "/ds", splits={"train": 0.5, "test": 0.5}, zip=True)
"""


def _tree(root):
    """Every file under `root` (hidden leftovers included) with its bytes, JSON-normalised."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".json":  # durations and absolute paths differ between runs
                obj = json.loads(data)
                for key in ("seconds",):
                    obj.pop(key, None)
                data = json.dumps(obj, sort_keys=True).encode()
            files[path.relative_to(root).as_posix()] = data
    return files


def test_4_sigkill_at_random_moments_then_rerun_changes_nothing(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    write_pairs(synthetic_pairs(6, shape=(128, 128), n_cells=6, seed=8), tmp_path / "pairs")
    script = tmp_path / "run.py"
    script.write_text(_KILLABLE)
    run = lambda out: subprocess.Popen([sys.executable, str(script), str(tmp_path / "pairs"),  # noqa: E731
                                        str(out)])
    clean = tmp_path / "clean"
    assert run(clean).wait(timeout=300) == 0
    reference = _tree(clean)
    rng = random.Random(0)
    for k in range(4):
        out = tmp_path / f"killed{k}"
        started = time.monotonic()
        proc = run(out)
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert run(out).wait(timeout=300) == 0, f"rerun {k} failed"
        got = _tree(out)
        assert sorted(got) == sorted(reference), f"kill {k} after {time.monotonic() - started:.1f} s"
        for name, data in reference.items():
            if name.endswith((".tif", ".csv", ".png")):
                assert got[name] == data, name


# -- 5. annotate -> train -> annotate: a trained model that finds no cell ----------
def test_5_annotate_with_a_trained_model_that_finds_no_cell(dataset, folder, tmp_path):
    """What an under-trained model does in the loop: no cell in a pair is a record, not a crash.

    A real unet run (one epoch); ``min_area`` above any cell makes its output empty.
    """
    trained = train(dataset, out=tmp_path / "run", epochs=1, **TINY)
    config = Config.from_dict({"segment": {"min_area": 10 ** 6}})
    with pytest.warns(UserWarning, match=r"3 of 3 pair\(s\) have a record with no cell kept "
                                         r"\(synthetic_000, synthetic_001, synthetic_002\): the "
                                         "model found no cell there"):
        summary = annotate(folder, tmp_path / "out", model=trained, config=config,
                           progress=False)
    assert (summary["status"] == "empty").all() and (summary["cells"] == 0).all()
    assert (summary["nuclei"] > 0).all()
    records = read_records(tmp_path / "out")
    assert len(records) == 3 and all(r.labels.max() == 0 and len(r.cells) == 0 for r in records)


# -- 6. evaluate matches images by id, never by position alone (issue 32, item 3) --------
def test_6_evaluate_matches_named_images_by_id_whatever_their_order(tmp_path):
    from cellnb.evaluate import compare, evaluate

    truth = _records(3)
    shuffled = [truth[2], truth[0], truth[1]]
    table = evaluate(truth, shuffled, thresholds=[0.5])
    assert table["image"].tolist() == [r.id for r in truth]
    assert (table["f1"] == 1.0).all()
    # a COCO file of the same images, written in another order, against the records
    coco = export(shuffled, tmp_path / "coco", splits={"test": 3})
    dataset = evaluate(truth, coco / "test", thresholds=[0.5], by="dataset")
    assert dataset["f1"].tolist() == [1.0] and dataset["tp"].tolist() == [12]
    ranked = compare(truth, {"shuffled": shuffled, "same": truth}, thresholds=[0.5])
    assert set(ranked["f1"]) == {1.0}


def test_6_evaluate_refuses_collections_of_different_images():
    from cellnb.evaluate import evaluate

    truth = _records(3)
    other = [Record("elsewhere", r.image, r.labels, r.cells) for r in truth[:1]] + truth[1:]
    with pytest.raises(ValueError, match=r"do not hold the same images \(they are matched by "
                                         r"id\): only in truth 1: \['synthetic_000'\]; only in "
                                         r"pred 1: \['elsewhere'\]"):
        evaluate(truth, other)
    with pytest.raises(ValueError, match=r"only in truth 1: \['synthetic_002'\]"):
        evaluate(truth, truth[:2])
    with pytest.raises(ValueError, match=r"`pred` holds image id\(s\) \['synthetic_001'\] more "
                                         "than once"):
        evaluate(truth, [truth[0], truth[1], truth[1]])
    with pytest.raises(ValueError, match="do not hold the same images"):
        evaluate(truth, other, by="class_name")


def test_6_plain_label_images_are_matched_by_position():
    from cellnb.evaluate import evaluate

    truth = _records(2)
    labels = [r.labels for r in truth]
    assert (evaluate(truth, labels, thresholds=[0.5])["f1"] == 1.0).all()
    swapped = evaluate(truth, labels[::-1], thresholds=[0.5])
    # positional, as documented (no id to match by): image 0 against image 1's labels
    crossed = evaluate(labels[0], labels[1], thresholds=[0.5])
    assert swapped.loc[0, "tp"] == crossed.loc[0, "tp"] < swapped.loc[0, "n_true"]
    with pytest.raises(ValueError, match="`truth` has 2 image.s. but `pred` has 1"):
        evaluate(truth, labels[:1])


# -- 7. YAML and patterns: bounded, no silent last-key-wins (issue 32, item 2) ------------
def _bomb(levels: int, width: int, section: str = "measure:\n  properties: ") -> str:
    """A 'billion laughs' document: `width` ** `levels` strings from a few lines."""
    lines = ['a0: &a0 ["area", "area", "area", "area", "area", "area", "area", "area"]']
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    return "\n".join(lines) + f"\n{section}*a{levels}\n"


@pytest.mark.parametrize("text, message", [
    (_bomb(8, 8), r"more than 64 aliases"),  # 8**9 strings: never finishes if followed
    (_bomb(8, 9, "export:\n  splits: "), r"more than 64 aliases"),
    (_bomb(7, 6), r"aliases expand to more than 200000 values"),  # under the alias bound
    ("measure:\n  properties: &p [area, *p]\n", r"a value that holds it"),
    ("locate:\n  sigma: 2\n  sigma: 3\n", r"line 3.*key 'sigma' appears twice \(first on line 2\)"),
    ("locate: {sigma: 2}\nlocate: {sigma: 3}\n", r"key 'locate' appears twice"),
    ("locate: !!python/object/apply:os.system [echo]\n", r"could not determine a constructor"),
    ("locate: [1, 2", r"line 1.*expected ',' or ']'"),
])
def test_7_hostile_yaml_configs_are_refused_quickly(text, message):
    import time

    t0 = time.monotonic()
    with pytest.raises(ValueError, match=rf"config text is not valid YAML.*{message}"):
        Config.from_yaml(text)
    assert time.monotonic() - t0 < 10


def test_7_cellapp_json_with_duplicate_keys_and_huge_files(tmp_path):
    path = tmp_path / "cellapp.json"
    path.write_text('{"threshold_type": "single", "threshold_type": "multi"}')
    with pytest.raises(ValueError, match=rf"Cell-APP config file {path} is not valid YAML.*"
                                         "key 'threshold_type' appears twice"):
        Config.from_cellapp(path)
    big = tmp_path / "big.yaml"
    big.write_text("locate: {}\n" + "# padding\n" * 500_000)  # 5 MB of comments
    with pytest.raises(ValueError, match=r"big.yaml is 5000011 bytes; cellnb reads YAML/JSON "
                                         r"files of at most 4194304 bytes"):
        Config.from_yaml(big)
    # anchors within the bounds still work
    config = Config.from_yaml("locate: {method: isodata, sigma: &s 3, threshold_division: *s}")
    assert (config.locate.method, config.locate.sigma, config.locate.threshold_division) == \
        ("isodata", 3.0, 3.0)


def test_7_a_group_pattern_that_backtracks_for_ever_fails_in_bounded_time(tmp_path):
    import time

    from cellnb.export import assign_splits

    ids = ["a" * 40 + "b", "a" * 30]
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"`group` pattern '\(a\|aa\)\+\$' took more than 1 s "
                                         r"on 'a+b'.*write a simpler pattern"):
        assign_splits(ids, {"train": 0.5, "test": 0.5}, group=r"(a|aa)+$")
    assert time.monotonic() - t0 < 10
    with pytest.raises(ValueError, match=r"`group` pattern '\(plate' is not a valid regular "
                                         "expression"):
        assign_splits(ids, {"train": 0.5, "test": 0.5}, group=r"(plate")
    # an ordinary pattern names the groups as before
    split = assign_splits(["p1_a", "p1_b", "p2_a", "p2_b"], {"train": 0.5, "test": 0.5},
                          group=r"^(p\d)_")
    assert sorted(map(sorted, split.values())) == [["p1_a", "p1_b"], ["p2_a", "p2_b"]]


# -- 8. COCO files checked before pycocotools sees them (issue 32, items 1, 4, 5) ----------
def _coco(segmentation=None, **changes):
    """A one-image, one-cell COCO dict (8 x 8), with `changes` to its parts."""
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
           "segmentation": [[1, 1, 4, 1, 4, 4, 1, 4]] if segmentation is None else segmentation}
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
            "categories": [{"id": 1, "name": "cell"}], "annotations": [ann]}
    for part, value in changes.items():
        where, key = part.split("__")
        target = coco[where][0] if isinstance(coco[where], list) else coco[where]
        target[key] = value
    return coco


BAD_COCO = {
    "nan polygon": (_coco([[1, 1, float("nan"), 3, 5, 5]]), r"polygon 0 holds a non-finite"),
    "huge polygon": (_coco([[1, 1, 1e30, 3, 5, 5]]), r"polygon 0 reaches x 1\.\.1e\+30"),
    "far negative polygon": (_coco([[1, 1, -1e30, 3, 5, 5]]), r"outside the 8 x 8 image"),
    "short polygon": (_coco([[1, 1, 3]]), r"polygon 0 has 3 numbers.*at least 3 points"),
    "empty polygons": (_coco([]), r"holds no polygon"),
    "text in polygon": (_coco([["a", 1, 3, 4, 5, 6]]), r"polygon 0, number 0: .*valid number"),
    "rle short": (_coco({"size": [8, 8], "counts": [10, 5]}), r"add up to 15 pixels, not .* 64"),
    "rle long": (_coco({"size": [8, 8], "counts": "52203"}), r"add up to 16 pixels"),
    "rle size": (_coco({"size": [4, 16], "counts": [64]}), r"RLE size \[4, 16\] is not"),
    "rle negative": (_coco({"size": [-8, 8], "counts": [64]}), r"RLE size.0: .*greater than"),
    "rle garbage": (_coco({"size": [8, 8], "counts": "a b"}), r"not part of COCO's RLE alphabet"),
    "rle missing": (_coco({"size": [8, 8]}), r"RLE counts: Field required"),
    "segmentation text": (_coco("abc"), r"segmentation: Input should be a valid list"),
    "height as text": (_coco(images__height="8"), r"images\[0\] \(id 1\): height: .*integer"),
    "negative width": (_coco(images__width=-3), r"width: Input should be greater than 0"),
    "huge image": (_coco(images__width=2**40), r"width: Input should be less than or equal"),
    "too many pixels": (_coco(images__width=65536, images__height=65536),
                        r"more than the 268435456 cellnb rebuilds"),
    "climbing file name": (_coco(images__file_name="../../etc/passwd"), r"climbs out"),
    "absolute file name": (_coco(images__file_name="/etc/passwd"), r"is absolute"),
    "windows file name": (_coco(images__file_name="C:\\x.png"), r"is absolute"),
    "unknown category": (_coco(annotations__category_id=7),
                         r"category_id 7 is not in 'categories' \(ids \[1\]\)"),
    "no category": (_coco(annotations__category_id=None), r"category_id: .*valid integer"),
    "bool iscrowd": (_coco(annotations__iscrowd=True), r"iscrowd: .*valid integer"),
    "iscrowd 2": (_coco(annotations__iscrowd=2), r"iscrowd: .*less than or equal to 1"),
    "nan score": (_coco(annotations__score=float("nan")), r"score: .*finite number"),
    "images not a list": (_coco(images__id=[1]) | {"images": {"id": 1}}, r"images: .*valid list"),
}


@pytest.mark.parametrize("name", sorted(BAD_COCO))
def test_8_hostile_coco_is_refused_with_the_entry_and_field(name):
    coco, message = BAD_COCO[name]
    with pytest.raises(ValueError, match=message):
        read_coco(coco, images=False)


def test_8_repeated_ids_and_keys_are_refused(tmp_path):
    coco = _coco()
    coco["images"].append(dict(coco["images"][0], file_name="b.png"))
    with pytest.raises(ValueError, match=r"images\[1\] \(id 1\): image id 1 is used twice"):
        read_coco(coco, images=False)
    coco = _coco()
    coco["annotations"].append(dict(coco["annotations"][0]))
    with pytest.raises(ValueError, match=r"annotations\[1\] \(id 1\): annotation id 1 is used "
                                         "twice"):
        read_coco(coco, images=False)
    path = tmp_path / "twice.json"
    path.write_text('{"images": [], "images": [], "annotations": []}')
    with pytest.raises(ValueError, match=r"twice.json is not a valid COCO file: key\(s\) "
                                         r"\['images'\] appear twice"):
        read_coco(path, images=False)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json must hold a JSON object"):
        read_coco(tmp_path / "list.json", images=False)
    with pytest.raises(TypeError, match="a COCO source is a .json path, a split folder or a "
                                        "dict, got list"):
        read_coco([1, 2], images=False)
    (tmp_path / "cut.json").write_text(json.dumps(_coco())[:-20])
    with pytest.raises(ValueError, match="cut.json is not valid JSON"):
        read_coco(tmp_path / "cut.json", images=False)


def test_8_crowd_regions_are_not_cells():
    coco = _coco()
    coco["annotations"].append({"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1,
                                "segmentation": {"size": [8, 8], "counts": [0, 64]}})
    with pytest.warns(UserWarning, match=r"1 annotation\(s\) with iscrowd=1 .* left out"):
        [record] = read_coco(coco, images=False)
    assert record.labels.max() == 1 and (record.labels > 0).sum() == 9
    assert record.cells["annotation_id"].tolist() == [1]


def test_8_the_cases_that_killed_the_process_raise_in_a_subprocess(tmp_path):
    """Formerly pycocotools allocated without bound (the kernel was killed): now each is a
    Python ValueError, through read_coco and evaluate alike."""
    import subprocess
    import sys

    for k, name in enumerate(("nan polygon", "huge polygon", "far negative polygon")):
        path = tmp_path / f"case{k}.json"
        path.write_text(json.dumps(BAD_COCO[name][0]))  # NaN as JSON's NaN, as tools write it
        code = ("import numpy as np, cellnb\n"
                f"cellnb.evaluate(r'{path}', [np.zeros((8, 8), np.int32)])\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 1, (name, done.returncode, done.stderr[-500:])
        assert f"ValueError: COCO file {path} is not a valid COCO dataset" in done.stderr, name


# -- 9. images: the header is checked before anything is decoded (issue 32, item 1) ---------
def _png16(path, image):
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour)."""
    import struct
    import zlib

    height, width, channels = image.shape
    rows = b"".join(b"\x00" + image[r].astype(">u2").tobytes() for r in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_9_sixteen_bit_colour_png_keeps_its_bits_and_is_no_fluorescence(tmp_path):
    image = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    _png16(tmp_path / "rgb16.png", image)
    read = cellnb.io.read_image(tmp_path / "rgb16.png")  # Pillow would cut it to uint8
    assert read.dtype == np.uint16 and np.array_equal(read, image)
    with pytest.raises(ValueError, match=r"rgb16.png: `fluorescence` must have shape \(H, W\), "
                                         r"got shape \(4, 5, 3\). An RGB image cannot be used"):
        cellnb.io.read_image(tmp_path / "rgb16.png", name="fluorescence", rgb=False)


def test_9_a_tiff_that_claims_a_huge_image_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zlib")
    with tifffile.TiffFile(path, mode="r+") as tif:  # the header now claims 60000 x 60000
        tif.pages[0].tags["ImageWidth"].overwrite(60000)
        tif.pages[0].tags["ImageLength"].overwrite(60000)
    with pytest.raises(ValueError, match=r"image file .*bomb.tif claims 60000 x 60000 pixels "
                                         r"\(3600000000\), more than the 268435456"):
        cellnb.io.read_image(path)


def test_9_a_png_that_claims_a_huge_image_is_refused(tmp_path):
    from PIL import Image

    Image.new("L", (17000, 16000)).save(tmp_path / "big.png")  # 272 M pixels, 0.3 MB file
    with pytest.raises(ValueError, match=r"big.png claims 16000 x 17000 pixels"):
        cellnb.io.read_image(tmp_path / "big.png")


def test_9_more_than_free_memory_is_refused(tmp_path, monkeypatch):
    import psutil

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((64, 64), np.uint16))
    free = type("Free", (), {"available": 4096})()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: free)
    with pytest.raises(ValueError, match=r"a.tif needs 0.0 GiB to read and this machine has "
                                         r"0.0 GiB free; crop or tile"):
        cellnb.io.read_image(tmp_path / "a.tif")


@pytest.mark.parametrize("shape", [(2, 16, 16), (3, 2, 16, 16)])
def test_9_two_channel_tl_files_name_their_planes(tmp_path, shape):
    tifffile.imwrite(tmp_path / "tl.tif", np.ones(shape, np.uint16))
    with pytest.raises(ValueError, match=rf"tl.tif holds {int(np.prod(shape[:-2]))} planes "
                                         rf"\(shape \({shape[0]}, .*channels, time points or z"):
        cellnb.io.read_image(tmp_path / "tl.tif", name="transmitted-light image")


def test_9_grey_plus_alpha_png_reads_as_grey_unless_the_alpha_varies(tmp_path):
    import imageio.v3 as iio

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    iio.imwrite(tmp_path / "la.png", np.dstack([grey, np.full_like(grey, 255)]))
    assert np.array_equal(cellnb.io.read_image(tmp_path / "la.png"), grey)
    iio.imwrite(tmp_path / "lx.png", np.dstack([grey, grey]))
    with pytest.raises(ValueError, match="lx.png has 2 channels and the last varies"):
        cellnb.io.read_image(tmp_path / "lx.png")


# -- 10. Cell-APP configs and seeds (issue 32, item 1) -----------------------------------------
BAD_CELLAPP = {
    "propslist as text": ('{"propslist": "area"}', r"propslist: Input should be a valid list "
                                                   r"\(got 'area'\)"),
    "propslist of numbers": ('{"propslist": [1]}', r"propslist\[0\]: .*valid string \(got 1\)"),
    "morphology as text": ('{"morphology": "tophatstruct"}', r"morphology: .*valid dictionary"),
    "structure args as text": ('{"morphology": {"tophatstruct": {"func": "square", '
                               '"args": "size"}}}',
                               r"morphology.tophatstruct.args: .*valid dictionary"),
    "bbox as a list": ('{"bbox": [2.5]}', r"bbox: .*valid dictionary"),
    "sigma as text": ('{"gaussian_sigma": "2"}', r"gaussian_sigma: .*valid number \(got '2'\)"),
    "sigma nan (YAML)": ("gaussian_sigma: .nan", r"gaussian_sigma: .*finite number"),
    "prompts as text": ('{"point_prompts": "false"}', r"point_prompts: .*valid boolean"),
    "threshold as list": ('{"threshold_type": ["single"]}',
                          r"threshold_type: Input should be 'single', 'multi' or 'watershed'"),
}


@pytest.mark.parametrize("name", sorted(BAD_CELLAPP))
def test_10_cellapp_configs_of_the_wrong_shape_are_refused(name):
    text, message = BAD_CELLAPP[name]
    with pytest.raises(ValueError, match=r"Cell-APP config text is not valid: " + message):
        Config.from_cellapp(text)


def test_10_cellapp_config_file_errors_name_the_file(tmp_path):
    (tmp_path / "hela.json").write_text('{"propslist": "area", "iou_thresh": 0.9}')
    with pytest.raises(ValueError, match=r"Cell-APP config file .*hela.json is not valid: "
                                         "propslist"):
        Config.from_cellapp(tmp_path / "hela.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(TypeError, match=r"list.json must hold a mapping of Cell-APP's keys, "
                                        "got list"):
        Config.from_cellapp(tmp_path / "list.json")


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_10_seeds_outside_what_the_libraries_take_are_refused_everywhere(seed, dataset,
                                                                          tmp_path):
    from cellnb.classify import CellClassifier

    message = rf"`seed` must be an int from 0 to 4294967295 \(2\*\*32 - 1\), got {seed}\."
    features = pd.DataFrame({"area": [1.0, 2.0, 10.0, 11.0]}, index=[1, 2, 3, 4])
    with pytest.raises(ValueError, match=message):
        cellnb.classify(features, columns=["area"], seed=seed)
    with pytest.raises(ValueError, match=message):
        CellClassifier(seed=seed)
    with pytest.raises(ValueError, match=message):
        synthetic_pairs(1, shape=(32, 32), n_cells=1, seed=seed)
    with pytest.raises(ValueError, match=message):
        export(_records(2), tmp_path / "ds", splits={"train": 0.5, "test": 0.5}, seed=seed)
    with pytest.raises(ValueError, match=message):
        train(dataset, out=tmp_path / "run", recipe="unet", epochs=1, seed=seed)
    with pytest.raises(ValueError, match="config: " + message):
        Config.from_dict({"seed": seed})
    assert not (tmp_path / "ds").exists() and not (tmp_path / "run").exists()


# -- 11. damaged record folders name the file, and annotate writes them again (issue 32) ----
DAMAGE = {
    "record.json": [("[1]", r"record.json must hold a JSON object, got list"),
                    ('{"pair_id": ', r"record.json is damaged \(not JSON: "),
                    ('{"pair_id": "a"}', r"record.json is damaged: tl_path: Field required"),
                    ("\xff\xfe", r"record.json is damaged \(not JSON")],
    "cells.csv": [("garbage,\n1,2\n", r"cells.csv has no column\(s\) \['label', 'status'\]"),
                  ("label,status\nx,kept\n", r"cells.csv: 'label' must hold unique integer ids")],
    "cells.tif": [("II*\x00garbage", r"record labels .*cells.tif are damaged")],
}


@pytest.mark.parametrize("case", [(f, k) for f, texts in DAMAGE.items() for k in range(len(texts))])
def test_11_a_damaged_record_is_named_and_annotate_writes_it_again(case, folder, tmp_path):
    from cellnb.curate import reject

    name, k = case
    text, message = DAMAGE[name][k]
    annotate(folder, tmp_path / "out", model="watershed", progress=False)
    record = tmp_path / "out" / "records" / "synthetic_001"
    (record / name).write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=message + r".*run annotate again on the same pairs"):
        read_records(tmp_path / "out", images=False)
    with pytest.raises(ValueError, match=message):
        reject(tmp_path / "out", "synthetic_001", 1)
    summary = annotate(folder, tmp_path / "out", model="watershed", progress=False)
    assert summary["status"].tolist() == ["skipped", "done", "skipped"]
    assert len(read_records(tmp_path / "out", images=False)) == 3
