"""cellnb.train: datasets checked, tiny real runs (U-Net, random-init μSAM), resume, reload."""

import json
import os

import numpy as np
import pandas as pd
import pytest

import cellnb
from cellnb.data import synthetic_pairs
from cellnb.io import Record
from cellnb import TrainedModel, load_trained, train
from cellnb.dataset import read_dataset

TINY = dict(epochs=4, steps_per_epoch=5, batch_size=2, patch_shape=(64, 64), progress=False)


def _records(n, shape=(96, 96), n_cells=8, seed=0):
    pairs = synthetic_pairs(n, shape=shape, n_cells=n_cells, seed=seed)
    return [Record(p.id, p.tl, p.labels, p.truth) for p in pairs]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ds"
    return cellnb.export(_records(3), out, splits={"train": 2, "val": 1})


@pytest.fixture(scope="module")
def unet_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "unet"
    return train(dataset, recipe="unet", out=out, **TINY)


# ---------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------
def test_read_dataset_counts_and_classes(dataset):
    data = read_dataset(dataset)
    assert (len(data.train), len(data.val)) == (2, 1)
    assert data.train[0].image.shape == (96, 96)
    assert data.source["n_train_cells"] == sum(len(np.unique(r.labels)) - 1 for r in data.train)
    assert data.classes == ["interphase", "mitotic"]
    assert set(data.source["splits"]) == {"train", "val"}


def test_read_dataset_without_val_holds_out_rows(tmp_path):
    out = cellnb.export(_records(2), tmp_path / "ds", splits={"train": 2})
    with pytest.warns(UserWarning, match="holding out the bottom 20%"):
        data = read_dataset(out)
    assert [r.image.shape for r in data.train] == [(77, 96)] * 2
    assert [r.image.shape for r in data.val] == [(19, 96)] * 2
    assert data.val[0].id.endswith("[77:]")


def test_read_dataset_errors(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'train' split"):
        read_dataset(tmp_path / "empty")
    records = _records(2)
    for r in records:
        r.labels = np.zeros_like(r.labels)
    out = cellnb.export(records, tmp_path / "nocells", splits={"train": 1, "val": 1})
    with pytest.raises(ValueError, match="holds 0 labelled cell"):
        read_dataset(out)
    records = _records(2)
    records[0].image = np.full_like(records[0].image, 7)
    out = cellnb.export(records, tmp_path / "flat", splits={"train": 1, "val": 1})
    with pytest.raises(ValueError, match="is constant"):
        read_dataset(out)


def test_train_rejects_bad_arguments(dataset, tmp_path):
    with pytest.raises(ValueError, match="`recipe` must be one of"):
        train(dataset, recipe="yolo", out=tmp_path / "r")
    with pytest.raises(TypeError, match="takes no option"):
        train(dataset, recipe="unet", out=tmp_path / "r", lora_rank=4)
    with pytest.raises(ValueError, match="`epochs` must be a positive int"):
        train(dataset, recipe="unet", out=tmp_path / "r", epochs=0)
    with pytest.raises(ValueError, match="`patch_shape` must be two ints"):
        train(dataset, recipe="unet", out=tmp_path / "r", patch_shape=(8, 8))
    with pytest.raises(ValueError, match="recipe 'unet' .* starts from no model; got "
                                         "model='vit_b_lm'"):  # not silently ignored
        train(dataset, recipe="unet", out=tmp_path / "r", model="vit_b_lm")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------
# the U-Net recipe
# ---------------------------------------------------------------------------
def test_unet_run_folder_and_learning(unet_run):
    assert isinstance(unet_run, TrainedModel)
    files = {p.name for p in unet_run.path.iterdir()}
    assert {"trained.json", "history.csv", "learning_curve.png", "weights", "state",
            "classifier.csv"} <= files
    h = unet_run.history
    assert list(h["epoch"]) == [0, 1, 2, 3] and list(h["step"]) == [5, 10, 15, 20]
    # 20 optimiser steps: the training loss goes down
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert np.isfinite(h[["val_loss", "val_ap50", "val_f1", "val_seg"]].to_numpy()).all()
    info = json.loads((unet_run.path / "trained.json").read_text())
    assert info["status"] == "finished" and info["normalization"]["method"] == "percentile"
    assert info["best_epoch"] == int(h["val_ap50"].idxmax())
    assert info["dataset"]["n_val_images"] == 1


def test_segment_with_trained_model(unet_run):
    image = _records(1, seed=5)[0].image
    seg = cellnb.segment(image, model=unet_run)
    assert seg.labels.shape == image.shape and seg.labels.dtype == np.int32
    assert list(seg.table.columns[:8]) == ["label", "score", "area", "y0", "x0", "y1", "x1",
                                           "status"]
    assert sorted(seg.table["label"]) == sorted(np.unique(seg.labels[seg.labels > 0]))
    if len(seg.table):  # trained with classes: each cell carries one
        assert set(seg.table["class_name"]) <= {"interphase", "mitotic"}
    with pytest.raises(ValueError, match="segments automatically"):
        cellnb.segment(image, pd.DataFrame(), model=unet_run)


def test_trained_model_round_trip_predicts_identically(unet_run):
    image = _records(1, seed=5)[0].image
    again = load_trained(unet_run.path)
    first, second = cellnb.segment(image, model=unet_run), cellnb.segment(image, model=again)
    np.testing.assert_array_equal(first.labels, second.labels)
    pd.testing.assert_frame_equal(first.table, second.table)
    tiled = cellnb.segment(image, model=again, tile_shape=(48, 48), halo=(16, 16))
    assert tiled.labels.shape == image.shape


def test_tile_options_only_for_recipes_that_tile(unet_run, monkeypatch):
    """tile_shape / halo are options of the recipes that tile (unet, cellsam) and an error for
    the others, never silently ignored (issue 33): read off each recipe's own signature."""
    from cellnb import recipes

    tiles = {name: "tile_shape" in recipes.segment_options(recipes.get(name))
             for name in recipes.RECIPES}
    assert tiles == {"unet": True, "microsam": False, "samcell": False, "cellseg1": False,
                     "cellsam": True, "cellpose": False, "maskrcnn": False}
    assert unet_run.segment_options == {"tile_shape", "halo", "min_area", "progress", "callback"}
    unet = recipes.get("unet")
    original = unet.predict

    def whole_image(net, image, settings, *, min_area=None, progress=False):
        return original(net, image, settings, min_area=min_area, progress=progress)

    monkeypatch.setattr(unet, "predict", whole_image)  # as a recipe that does not tile is
    assert unet_run.segment_options == {"min_area", "progress", "callback"}
    image = _records(1, seed=5)[0].image
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['halo', 'tile_shape'\]"):
        cellnb.segment(image, model=unet_run, tile_shape=(48, 48), halo=(16, 16))
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['tile_shape'\]"):
        unet_run.segment(image, tile_shape=(48, 48))
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['multimask'\]"):
        unet_run.segment(image, multimask=True)
    assert unet_run.segment(image).labels.shape == image.shape
    calls = []
    unet_run.segment(image, callback=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_every_model_advertises_exactly_the_options_its_segment_takes():
    """segment_options is read off each model's own segment signature (issue 33)."""
    import inspect

    from cellnb import recipes
    from cellnb.models import CellposeSam, SamModel, Watershed
    from cellnb.models._sam import AutomaticSam

    for cls in (SamModel, AutomaticSam, Watershed, CellposeSam):
        keywords = {n for n, p in inspect.signature(cls.segment).parameters.items()
                    if p.kind is p.KEYWORD_ONLY}
        assert cls.segment_options == keywords, cls
    for name in recipes.RECIPES:
        function = recipes.inference(recipes.get(name))
        parameters = inspect.signature(function).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), name
        assert {"min_area", "progress"} <= recipes.segment_options(recipes.get(name)), name
    assert recipes.segment_options(recipes.get("cellsam")) == {
        "tile_shape", "halo", "min_area", "batch_size", "iou_threshold", "multimask",
        "progress", "callback"}


def test_resume_after_interruption_matches_uninterrupted_run(dataset, tmp_path, monkeypatch,
                                                            unet_run):
    from cellnb.recipes import _common

    calls = {"n": 0}
    original = _common.PatchDataset.__getitem__

    def dying(self, index):
        if not self.fixed:
            calls["n"] += 1
            if calls["n"] > 2 * 5 * 2 + 3:  # mid-way through the third epoch
                raise KeyboardInterrupt("killed")
        return original(self, index)

    monkeypatch.setattr(_common.PatchDataset, "__getitem__", dying)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(dataset, recipe="unet", out=out, **TINY)
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [0, 1]
    monkeypatch.setattr(_common.PatchDataset, "__getitem__", original)
    resumed = train(dataset, recipe="unet", out=out, **TINY)
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3]
    [entry] = resumed.info["resumed"]  # the run folder says where it went on
    assert entry["epoch"] == 2 and entry["slurm_job_id"] == os.environ.get("SLURM_JOB_ID")
    import torch

    state = torch.load(out / "state" / "checkpoints" / "unet" / "resume.pt", weights_only=True)
    assert state["iteration"] == 20 and state["epoch"] == 3
    assert "scheduler_state" in state and "optimizer_state" in state
    # the same weights as the uninterrupted run (same seed, same patches, same steps)
    a = torch.load(out / "weights" / "last.pt")["model_state"]
    b = torch.load(unet_run.path / "weights" / "last.pt")["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_existing_run_needs_resume_or_overwrite(dataset, unet_run, tmp_path):
    with pytest.raises(FileExistsError, match="resume=True"):
        train(dataset, recipe="unet", out=unet_run.path, resume=False, **TINY)
    with pytest.raises(ValueError, match="other settings"):
        train(dataset, recipe="unet", out=unet_run.path, **{**TINY, "batch_size": 1})
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a cellnb training run"):
        train(dataset, recipe="unet", out=tmp_path / "junk", **TINY)
    # a finished run resumes to itself without training again
    again = train(dataset, recipe="unet", out=unet_run.path, **TINY)
    pd.testing.assert_frame_equal(again.history, unet_run.history)


def test_load_trained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a cellnb training run"):
        load_trained(tmp_path)


def test_load_trained_never_runs_code_from_a_weight_file(unet_run, tmp_path):
    import pickle
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(unet_run.path, run)
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (ran.write_text, ("code ran",))

    torch.save({"model_state": Payload()}, run / "weights" / "best.pt")
    with pytest.raises(ValueError, match="best.pt holds objects other than tensors"):
        load_trained(run)
    assert not ran.exists()
    (run / "weights" / "best.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="best.pt cannot be read as torch weights"):
        load_trained(run)
    # a classifier stored as a pickle by an older cellnb is not loaded
    (run / "classifier.csv").unlink()
    (run / "classifier.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.warns(UserWarning, match="is a pickle, which cellnb no longer loads"):
        trained = load_trained(run, weights="last")
    assert trained._classifier is None and not ran.exists()


def test_training_leaves_global_random_state_alone(dataset, tmp_path):
    import random

    import torch

    np.random.seed(123)
    torch.manual_seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), torch.random.get_rng_state().clone(),
              random.getstate())
    seen = []
    train(dataset, recipe="unet", out=tmp_path / "run", epochs=1, steps_per_epoch=2,
          batch_size=1, patch_shape=(64, 64), progress=False,
          callback=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(np.random.get_state()[1], before[0])
    assert torch.equal(torch.random.get_rng_state(), before[1])
    assert random.getstate() == before[2]
    assert seen[-1] == (2, 2) and all(total == 2 for _, total in seen)


def test_annotate_with_a_trained_model(unet_run, tmp_path):
    """annotate -> train -> annotate again: a TrainedModel annotates like any model."""
    from cellnb.annotate import read_records
    from cellnb.data import write_pairs

    pairs = synthetic_pairs(2, shape=(96, 96), n_cells=8, seed=11)
    write_pairs(pairs, tmp_path / "pairs")
    config = cellnb.Config.from_dict({"locate": {"method": "auto"}})
    summary = cellnb.annotate(tmp_path / "pairs", tmp_path / "out", model=unet_run,
                              config=config, progress=False)
    assert summary["status"].tolist() == ["done", "done"]
    records = read_records(tmp_path / "out")
    for record in records:
        assert record.provenance["model_hash"] == unet_run.fingerprint
        assert record.provenance["model_name"].startswith("unet (")
        # cells carry the id of the nucleus they hold, so nucleus features join on label
        nuclei = cellnb.io.read_labels(tmp_path / "out" / "records" / record.id / "nuclei.tif")
        held = [lab for lab in record.cells.index if lab <= nuclei.max()]
        assert all(((record.labels == lab) & (nuclei == lab)).any() for lab in held)
        assert "nucleus_area" in record.cells.columns
    again = cellnb.annotate(tmp_path / "pairs", tmp_path / "out", model=unet_run,
                            config=config, progress=False)
    assert again["status"].tolist() == ["skipped", "skipped"]
    refused = cellnb.Config.from_dict({"segment": {"multimask": True}})
    with pytest.raises(TypeError, match=r"config.segment sets \['multimask'\], which model"):
        cellnb.annotate(tmp_path / "pairs", tmp_path / "out2", model=unet_run, config=refused,
                        progress=False)


# ---------------------------------------------------------------------------
# the μSAM recipe (random-init vit_mini through micro_sam's trainer)
# ---------------------------------------------------------------------------
def test_microsam_tiny_run_exports_a_micro_sam_checkpoint(dataset, tmp_path):
    from cellnb.recipes.microsam import export_checkpoint
    from cellnb.testing import random_checkpoint

    base = random_checkpoint("vit_mini", tmp_path / "vit_mini.pt", decoder=True)
    trained = train(dataset, recipe="microsam", model="vit_mini", checkpoint=str(base),
                    out=tmp_path / "run", epochs=2, steps_per_epoch=2, batch_size=1,
                    patch_shape=(64, 64), n_sub_iteration=1, n_objects_per_batch=2,
                    progress=False)
    h = trained.history
    assert list(h["step"]) == [2, 4] and np.isfinite(h["train_loss"]).all()
    image = _records(1, seed=5)[0].image
    seg = cellnb.segment(image, model=trained)
    assert seg.labels.shape == image.shape
    np.testing.assert_array_equal(seg.labels, load_trained(trained.path).segment(image).labels)
    model = cellnb.models.load("vit_mini",
                               checkpoint=export_checkpoint(trained, tmp_path / "m.pt"))
    assert model.decoder is not None and model.architecture == "vit_mini"


def test_microsam_needs_a_known_model(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        train(dataset, recipe="microsam", model="vit_q", out=tmp_path / "r", progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(dataset, recipe="microsam", model="vit_t", checkpoint=str(tmp_path / "x.pt"),
              out=tmp_path / "r2", progress=False)


# ---------------------------------------------------------------------------
# command line and torchrun (2 gloo processes on CPU)
# ---------------------------------------------------------------------------
def test_cli_train(dataset, tmp_path, capsys):
    from cellnb.cli import main

    assert main(["train", str(dataset), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "1", "--patch-shape", "64", "64",
                 "--device", "cpu", "--no-progress"]) == 0
    assert "trained model:" in capsys.readouterr().out
    assert len(load_trained(tmp_path / "run").history) == 1


def test_torchrun_two_processes_stay_in_sync(dataset, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), "-m", "cellnb", "train", str(dataset), "--out",
           str(tmp_path / "run"), "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "2",
           "--patch-shape", "64", "64", "--device", "cpu", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "trained.json").read_text())
    # each process drew its own patches; averaged gradients kept the weights identical
    assert info["distributed"] == {"world_size": 2, "checksums_equal": True}
    assert info["status"] == "finished"
    assert done.stdout.count("trained model:") == 1  # only rank 0 reports
    assert list(pd.read_csv(tmp_path / "run" / "history.csv")["epoch"]) == [0, 1]
