import importlib
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from cellnb import Config, annotate, export
from cellnb.annotate import read_records
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import find_pairs, read_coco

annotate_module = importlib.import_module("cellnb.annotate")  # `cellnb.annotate` is the verb


@pytest.fixture
def folder(tmp_path):
    write_pairs(synthetic_pairs(3, shape=(128, 128), n_cells=6, seed=4), tmp_path / "pairs")
    return tmp_path / "pairs"


def records_of(out):
    return {r.id: r for r in read_records(out)}


def test_annotate_writes_records_and_skips_identical_reruns(folder, tmp_path):
    config = Config.from_dict({"locate": {"method": "auto"}})
    summary = annotate(folder, tmp_path / "out", config=config, model="watershed",
                       progress=False)
    assert list(summary.columns) == ["pair_id", "status", "nuclei", "cells", "seconds", "record",
                                     "error"]
    assert summary["status"].tolist() == ["done"] * 3 and (summary["cells"] > 0).all()
    record = json.loads((tmp_path / "out/records/synthetic_000/record.json").read_text())
    assert record["config"]["locate"]["method"] == "auto" and len(record["tl_sha256"]) == 64
    assert record["model"] == "watershed" and "cellnb" in record["versions"]
    again = annotate(folder, tmp_path / "out", config=config, model="watershed", progress=False)
    assert again["status"].tolist() == ["skipped"] * 3
    changed = Config.from_dict({"locate": {"method": "auto"}, "prompt": {"box_scale": 3.0}})
    assert annotate(folder, tmp_path / "out", config=changed, model="watershed",
                    progress=False)["status"].tolist() == ["done"] * 3  # new config: redone


def test_interrupted_run_resumes_with_identical_records(folder, tmp_path, monkeypatch):
    config = Config.from_dict({"locate": {"method": "auto"}})
    reference = annotate(folder, tmp_path / "ref", config=config, model="watershed",
                         progress=False)
    segment_module = importlib.import_module("cellnb.segment")
    original = segment_module.segment
    calls = []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(segment_module, "segment", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        annotate(folder, tmp_path / "out", config=config, model="watershed", progress=False)
    written = sorted(p.name for p in (tmp_path / "out" / "records").iterdir())
    assert written == ["synthetic_000"]  # nothing half-written for the second pair
    monkeypatch.setattr(segment_module, "segment", original)
    resumed = annotate(folder, tmp_path / "out", config=config, model="watershed",
                       progress=False)
    assert resumed["status"].tolist() == ["skipped", "done", "done"]
    ref, out = records_of(tmp_path / "ref"), records_of(tmp_path / "out")
    assert set(ref) == set(out)
    for pair_id in ref:
        np.testing.assert_array_equal(ref[pair_id].labels, out[pair_id].labels)
        pd.testing.assert_frame_equal(ref[pair_id].cells, out[pair_id].cells)


def test_annotate_with_sam_model_and_export_from_folder(folder, tmp_path, vit_t):
    config = Config.from_dict({"locate": {"method": "auto"}, "segment": {"batch_size": 4}})
    summary = annotate(find_pairs(folder), tmp_path / "out", config=config, model=vit_t,
                       progress=False)
    assert summary["status"].tolist() == ["done"] * 3
    record = json.loads((tmp_path / "out/records/synthetic_001/record.json").read_text())
    assert record["model"] == "random_vit_t" and record["model_hash"].startswith("xxh128:")
    records = read_records(tmp_path / "out")
    assert [r.id for r in records] == ["synthetic_000", "synthetic_001", "synthetic_002"]
    assert records[0].image.dtype == np.uint16
    dataset = export(tmp_path / "out", tmp_path / "ds", splits={"train": 1.0})
    back = {r.id: r for r in read_coco(dataset / "train")}
    for r in records:
        np.testing.assert_array_equal(back[r.id].labels, r.labels)
    provenance = json.loads((dataset / "provenance.json").read_text())
    assert provenance["models"][0]["name"] == "random_vit_t"


def test_dask_local_cluster_gives_the_same_records(folder, tmp_path):
    from dask.distributed import Client, LocalCluster

    config = Config.from_dict({"locate": {"method": "auto"}})
    local = annotate(folder, tmp_path / "local", config=config, model="watershed",
                     progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        distributed = annotate(folder, tmp_path / "dask", config=config, model="watershed",
                               client=client, progress=False)
        from cellnb.cli import main  # the CLI on the same running cluster

        assert main(["annotate", str(folder), "--out", str(tmp_path / "cli"), "--model",
                     "watershed", "--scheduler", cluster.scheduler_address]) == 0
    assert len(read_records(tmp_path / "cli", images=False)) == 3
    assert distributed["pair_id"].tolist() == local["pair_id"].tolist()
    a, b = records_of(tmp_path / "local"), records_of(tmp_path / "dask")
    for pair_id in a:
        np.testing.assert_array_equal(a[pair_id].labels, b[pair_id].labels)
        pd.testing.assert_frame_equal(a[pair_id].cells, b[pair_id].cells)


def test_dask_workers_load_a_sam_model_once(folder, tmp_path):
    """SAM (the reduced vit_mini) on Dask workers: the model object sent once, or loaded from
    its file once per worker; the same labels as in-process."""
    from dask.distributed import Client, LocalCluster

    from cellnb.models import load
    from cellnb.testing import random_checkpoint, random_sam

    mini = random_sam("vit_mini", seed=0)
    config = Config.from_dict({"locate": {"method": "auto"}})
    local = records_of(_annotated(folder, tmp_path / "local", config, mini))
    # the same weights from a file: each worker loads them itself
    from_file = load("vit_mini", checkpoint=random_checkpoint("vit_mini", tmp_path / "w.pt",
                                                              seed=0), device="cpu")
    import torch

    ours, theirs = from_file.predictor.model.state_dict(), mini.predictor.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        in_memory = records_of(_annotated(folder, tmp_path / "mem", config, mini, client))
        loaded = records_of(_annotated(folder, tmp_path / "file", config, from_file, client))
        cached = client.run(lambda: sorted(importlib.import_module("cellnb.annotate")._LOADED))
    assert all(len(keys) <= 1 for keys in cached.values())  # at most one load per worker
    assert sum(len(keys) for keys in cached.values()) >= 1
    for records in (in_memory, loaded):
        assert sorted(records) == sorted(local)
        for pair_id, record in records.items():
            np.testing.assert_array_equal(record.labels, local[pair_id].labels)


def test_a_zoo_name_is_loaded_only_when_a_pair_needs_it(folder, tmp_path, monkeypatch):
    """Finished pairs load nothing; the record's model hash comes from micro_sam's registry."""
    import cellnb.models

    annotate(folder, tmp_path / "out", model="watershed", progress=False)
    loads = []
    monkeypatch.setattr(cellnb.models, "load", lambda *a, **k: loads.append(a))
    from cellnb.models import fingerprint

    assert fingerprint("vit_b_lm").startswith("xxh128:")
    spec = annotate_module._model_spec("vit_b_lm", Config(), None)
    assert {k: spec[k] for k in ("kind", "name", "fingerprint")} == {
        "kind": "zoo", "name": "vit_b_lm", "fingerprint": fingerprint("vit_b_lm")}
    assert loads == []  # describing the model loaded nothing
    again = annotate(folder, tmp_path / "out", model="watershed", progress=False)
    assert again["status"].tolist() == ["skipped"] * 3 and loads == []


def test_embeddings_kept_on_disk_are_reused_by_a_rerun(folder, tmp_path, vit_t):
    calls = []
    handle = vit_t.predictor.model.image_encoder.register_forward_hook(
        lambda *args: calls.append(1))
    try:
        annotate(folder, tmp_path / "a", model=vit_t, embeddings=tmp_path / "emb",
                 progress=False)
        assert len(calls) == 3
        assert len(list((tmp_path / "emb").glob("*/*.zarr"))) == 3
        vit_t.clear_embeddings()
        other = Config.from_dict({"locate": {"method": "auto"}})  # other settings, same images
        annotate(folder, tmp_path / "b", config=other, model=vit_t, embeddings=tmp_path / "emb",
                 progress=False)
        assert len(calls) == 3  # read back from disk, not encoded again
    finally:
        handle.remove()


def test_annotate_reports_progress_through_a_callback(folder, tmp_path):
    seen = []
    annotate(folder, tmp_path / "out", model="watershed", progress=False,
             callback=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def _annotated(folder, out, config, model, client=None):
    summary = annotate(folder, out, config=config, model=model, client=client, progress=False)
    assert summary["status"].tolist() == ["done"] * 3
    return out


def test_a_corrupt_pair_stops_the_run_or_is_reported(folder, tmp_path):
    (folder / "synthetic_001_phs.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="cannot read transmitted-light image file .*001"):
        annotate(folder, out, model="watershed", progress=False)
    assert sorted(p.name for p in (out / "records").iterdir()) == ["synthetic_000"]
    with pytest.warns(UserWarning, match="1 of 3 pair.* failed .*synthetic_001: ValueError"):
        summary = annotate(folder, out, model="watershed", errors="skip", progress=False)
    assert summary["status"].tolist() == ["skipped", "failed", "done"]
    assert "not a TIFF" in summary["error"][1] and summary["error"][0] == ""
    # nothing half-written: only the two finished records, no temporary folders
    assert sorted(p.name for p in (out / "records").iterdir()) == ["synthetic_000",
                                                                   "synthetic_002"]


def test_bad_inputs(folder, tmp_path):
    with pytest.raises(ValueError, match="`errors` must be 'raise' or 'skip'"):
        annotate(folder, tmp_path / "out", model="watershed", errors="ignore")
    with pytest.raises(TypeError, match="`config` must be a cellnb.Config"):
        annotate(folder, tmp_path / "out", config={"locate": {}}, model="watershed")
    with pytest.raises(TypeError, match="`pairs` must be a find_pairs"):
        annotate([1, 2], tmp_path / "out", model="watershed")
    with pytest.raises(TypeError, match="`model` must be a model of cellnb's protocol"):
        annotate(folder, tmp_path / "out", model=3)
    with pytest.raises(FileNotFoundError, match="holds no annotate records"):
        read_records(tmp_path / "nothing")


def test_cli_annotate(folder, tmp_path, capsys):
    from cellnb.cli import main

    config = tmp_path / "c.yaml"
    Config.from_dict({"locate": {"method": "auto"}}).to_yaml(config)
    assert main(["annotate", str(folder), "--out", str(tmp_path / "out"), "--config",
                 str(config), "--model", "watershed"]) == 0
    shown = capsys.readouterr().out
    assert "synthetic_002" in shown and "done" in shown
    assert len(read_records(tmp_path / "out", images=False)) == 3
    (folder / "synthetic_000_phs.tif").write_bytes(b"")
    with pytest.warns(UserWarning, match="pair.* failed"):
        assert main(["annotate", str(folder), "--out", str(tmp_path / "out2"), "--model",
                     "watershed", "--skip-errors"]) == 0
    assert "failed" in capsys.readouterr().out


def test_annotate_with_a_learned_locator_from_the_config(folder, tmp_path, tiny_stardist):
    _, model_folder = tiny_stardist
    config = Config.from_dict({"locate": {"method": "stardist", "model": str(model_folder)}})
    summary = annotate(folder, tmp_path / "out", config=config, model="watershed",
                       progress=False)
    assert summary["status"].tolist() == ["done"] * 3
    record = json.loads((tmp_path / "out/records/synthetic_000/record.json").read_text())
    assert record["config"]["locate"] == {**record["config"]["locate"], "method": "stardist",
                                          "model": str(model_folder)}


def test_cli_annotate_with_a_checkpoint(folder, tmp_path, capsys):
    """--checkpoint loads the weights under the config's model name (vit_mini here)."""
    from cellnb.cli import main
    from cellnb.testing import random_checkpoint

    config = tmp_path / "c.yaml"
    Config.from_dict({"locate": {"method": "auto"},
                      "segment": {"model": "vit_mini"}}).to_yaml(config)
    checkpoint = random_checkpoint("vit_mini", tmp_path / "mini.pt")
    assert main(["annotate", str(folder), "--out", str(tmp_path / "out"), "--config",
                 str(config), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    assert "done" in capsys.readouterr().out
    records = read_records(tmp_path / "out", images=False)
    assert len(records) == 3


def test_cli_annotate_without_prompts_with_mode(folder, tmp_path, capsys):
    """--mode ais: μSAM's automatic instance segmentation (a checkpoint with a decoder)."""
    from cellnb.cli import main
    from cellnb.testing import random_checkpoint

    config = tmp_path / "c.yaml"
    Config.from_dict({"locate": {"method": "auto"},
                      "segment": {"model": "vit_mini"}}).to_yaml(config)
    checkpoint = random_checkpoint("vit_mini", tmp_path / "mini.pt", decoder=True)
    with warnings.catch_warnings():  # random weights may find no cell in a pair
        warnings.simplefilter("ignore", UserWarning)
        assert main(["annotate", str(folder), "--out", str(tmp_path / "out"), "--config",
                     str(config), "--checkpoint", str(checkpoint), "--mode", "ais",
                     "--device", "cpu"]) == 0
    records = read_records(tmp_path / "out", images=False)
    assert {r.provenance["model_name"] for r in records} == {"vit_mini:ais"}
    with pytest.raises(SystemExit, match="--mode is for SAM"):
        main(["annotate", str(folder), "--out", str(tmp_path / "w"), "--model", "watershed",
              "--mode", "ais"])


def test_embeddings_for_a_model_without_embeddings_is_an_error(folder, tmp_path):
    """An option the model does not use is refused, never silently ignored (issue 33)."""
    with pytest.raises(ValueError, match="`embeddings` keeps SAM's image embeddings on disk, "
                                         "but the model 'watershed' computes none"):
        annotate(folder, tmp_path / "out", model="watershed", embeddings=tmp_path / "emb",
                 progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "emb").exists()


def test_models_loaded_for_annotate_are_let_go_oldest_first(monkeypatch):
    """The process keeps the last two loaded models, not every model ever loaded (issue 33)."""
    import types

    import cellnb.models

    module = importlib.import_module("cellnb.annotate")  # the module, not the verb

    monkeypatch.setattr(module, "_LOADED", type(module._LOADED)())
    monkeypatch.setattr(cellnb.models, "load", lambda name, **k: types.SimpleNamespace(
        name=name, fingerprint=f"fp-{name}"))
    specs = [{"kind": "zoo", "name": n, "fingerprint": f"fp-{n}"} for n in ("a", "b", "c")]
    first = module._get_model(specs[0])
    assert module._get_model(specs[0]) is first  # loaded once
    for spec in specs[1:]:
        module._get_model(spec)
    assert [key[1] for key in module._LOADED] == ["b", "c"]
    module._get_model(specs[1])  # used again: now the newest
    assert [key[1] for key in module._LOADED] == ["c", "b"]
