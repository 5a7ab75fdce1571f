import json
import zipfile

import numpy as np
import pytest

from cellnb import Config, evaluate, export
from cellnb.data import synthetic_pairs
from cellnb.export import assign_splits
from cellnb.io import Record, read_coco, read_image, read_labels


@pytest.fixture(scope="module")
def records():
    pairs = synthetic_pairs(5, shape=(96, 96), n_cells=6, mitotic_fraction=0.4, seed=1)
    wells = ["A1", "A1", "B2", "B2", "C3"]
    return [Record(f"{w}_{p.id}", p.tl, p.labels, p.truth, {"model": "random_vit_t",
                                                          "model_hash": "xxh128:0"})
            for w, p in zip(wells, pairs)]


def test_coco_dataset_loads_and_round_trips(records, tmp_path):
    from pycocotools.coco import COCO

    out = export(records, tmp_path / "ds", name="cells",
                 splits={"train": 0.6, "val": 0.2, "test": 0.2},
                 formats=("coco", "labels", "cellapp", "cellpose"))
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance["splits"]) == {"train", "val", "test"}
    assert sum(c["images"] for c in provenance["counts"].values()) == 5
    assert provenance["models"] == [{"name": "random_vit_t", "hash": "xxh128:0"}]
    assert provenance["versions"]["cellnb"] == "0.1.0"
    by_id = {r.id: r for r in records}
    for split in ("train", "val", "test"):
        root = out / split
        coco = COCO(str(root / f"cells_{split}.json"))  # pycocotools loads it unchanged
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["interphase", "mitotic"]
        for info in coco.dataset["images"]:
            # Detectron2's register_coco_instances(name, {}, json, image_root) joins these
            assert (root / "images" / info["file_name"]).is_file()
        for record in read_coco(root):
            original = by_id[record.id]
            np.testing.assert_array_equal(record.labels, original.labels)
            assert record.image.dtype == np.uint16  # lossless, original bit depth
            np.testing.assert_array_equal(record.image, original.image)
            np.testing.assert_array_equal(read_labels(root / "labels" / f"{record.id}.tif"),
                                          original.labels)
            expected = original.cells["class_name"].sort_index().tolist()
            assert record.cells["class_name"].tolist() == expected
            n_cells = len(np.unique(original.labels)) - 1
            assert len(list((root / "annotations").glob(f"{record.id}_cell*.png"))) == n_cells
            mask = read_image(root / "annotations" / f"{record.id}_cell{record.cells.index[0]}.png")
            assert set(np.unique(mask)) == {0, 255}
            np.testing.assert_array_equal(
                read_labels(root / "cellpose" / f"{record.id}_masks.tif"), original.labels)


def test_groups_never_share_a_split(records, tmp_path):
    out = export(records, tmp_path / "ds", splits={"train": 0.6, "test": 0.4}, group=r"^(\w\d)_",
                 seed=3)
    splits = json.loads((out / "provenance.json").read_text())["splits"]
    wells = {split: {i[:2] for i in ids} for split, ids in splits.items()}
    assert not wells["train"] & wells["test"]


def test_explicit_splits_and_scores(records, tmp_path):
    scored = [Record(r.id, r.image, r.labels, r.cells.assign(score=0.5)) for r in records]
    ids = [r.id for r in records]
    out = export(scored, tmp_path / "ds", splits={"train": ids[:4], "test": ids[4:]})
    coco = json.loads((out / "test" / "dataset_test.json").read_text())
    assert [im["cellnb_id"] for im in coco["images"]] == ids[4:]
    assert all(a["score"] == 0.5 and a["iscrowd"] == 0 and len(a["bbox"]) == 4
               for a in coco["annotations"])


def test_polygons_are_close_to_the_masks(records, tmp_path):
    out = export(records, tmp_path / "ds", splits={"all": 1.0}, masks="polygon")
    back = read_coco(out / "all")
    table = evaluate([r.labels for r in records], [r.labels for r in back], thresholds=[0.7])
    assert (table["f1"] == 1).all()


def test_cellapp_example_round_trip(cellapp_example, tmp_path):
    records = read_coco(cellapp_example / "train") + read_coco(cellapp_example / "test")
    out = export(records, tmp_path / "ds", splits={"train": ["0", "1"], "test": ["2"]})
    back = {r.id: r for r in read_coco(out / "train") + read_coco(out / "test")}
    for r in records:
        np.testing.assert_array_equal(back[r.id].labels, r.labels)
        np.testing.assert_array_equal(back[r.id].image, r.image)
    counts = json.loads((out / "provenance.json").read_text())["counts"]
    assert counts["train"]["cells"] == 372 and counts["test"]["cells"] == 195
    assert json.loads((out / "provenance.json").read_text())["overlaps_resolved"]["2"] == 1068


def test_zip_holds_relative_paths_in_one_folder(records, tmp_path):
    out = export(records, tmp_path / "ds", splits={"train": 1.0}, zip=True)
    with zipfile.ZipFile(tmp_path / "ds.zip") as archive:
        names = archive.namelist()
    assert names and all(n.startswith("ds/") and not n.startswith("/") and ".." not in n
                         for n in names)
    assert "ds/train/dataset_train.json" in names
    assert out.is_dir()


def test_provenance_records_config(records, tmp_path):
    out = export(records, tmp_path / "ds", splits={"train": 1.0},
                 config=Config.from_dict({"locate": {"method": "auto"}}))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["config"]["locate"]["method"] == "auto"


def test_config_export_section_gives_the_defaults(records, tmp_path):
    config = Config.from_dict({"export": {"name": "cells", "splits": {"train": 1.0},
                                          "formats": ["coco"]}})
    out = export(records, tmp_path / "ds", config=config)
    assert (out / "train" / "cells_train.json").is_file() and not (out / "train" / "labels").exists()
    explicit = export(records, tmp_path / "ds2", config=config, name="other")  # arguments win
    assert (explicit / "train" / "other_train.json").is_file()
    seen = []
    export(records, tmp_path / "ds3", splits={"train": 1.0},
           callback=lambda done, total: seen.append((done, total)))
    assert seen == [(k, len(records)) for k in range(1, len(records) + 1)]


# -- bad input ----------------------------------------------------------------
def test_refuses_existing_output_unless_overwrite(records, tmp_path):
    out = export(records, tmp_path / "ds", splits={"train": 1.0})
    # the same export again finds it finished (a rerun after an interruption resumes)
    assert export(records, tmp_path / "ds", splits={"train": 1.0}) == out
    with pytest.raises(FileExistsError, match="other records or settings; pass overwrite=True"):
        export(records[:2], tmp_path / "ds", splits={"train": 1.0})
    export(records[:2], tmp_path / "ds", splits={"train": 1.0}, overwrite=True)
    assert len(read_coco(tmp_path / "ds" / "train")) == 2


def test_failure_mid_way_leaves_nothing(records, tmp_path, monkeypatch):
    import importlib

    ex = importlib.import_module("cellnb.export")  # the module; `cellnb.export` is the verb

    calls = []

    def broken(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")

    monkeypatch.setattr(ex, "_write_extra", broken)
    with pytest.raises(OSError, match="disk full"):
        export(records, tmp_path / "ds", splits={"train": 1.0})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(splits={"train": 0.9, "test": 0.1}), ValueError, r"split 'test' would be empty"),
    (dict(splits={"a": ["nope"]}), ValueError, r"unknown record id\(s\) \['nope'\]"),
    (dict(classes=["interphase"]), ValueError, r"class name\(s\) \['mitotic'\] .* not in"),
    (dict(masks="png"), ValueError, "`masks` must be 'rle' or 'polygon'"),
    (dict(formats=("coco", "tiff")), ValueError, r"unknown format\(s\) \['tiff'\]"),
    (dict(group=r"^(Z\d)"), ValueError, "does not match record id"),
    (dict(group=3), TypeError, "`group` must be a regex"),
])
def test_bad_options(records, tmp_path, kwargs, error, message):
    kwargs.setdefault("splits", {"train": 0.5, "test": 0.5})
    with pytest.raises(error, match=message):
        export(records[:2], tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def test_bad_records(records, tmp_path):
    r = records[0]
    with pytest.raises(ValueError, match=r"duplicate record ids \['A1_synthetic_000'\]"):
        export([r, r], tmp_path / "ds")
    mismatched = Record("m", r.image, r.labels[:50], r.cells)
    with pytest.raises(ValueError, match=r"labels \(shape \(50, 96\)\) do not match its image"):
        export([mismatched], tmp_path / "ds")
    with pytest.raises(ValueError, match="has no image"):
        export([Record("x", None, r.labels, r.cells)], tmp_path / "ds")
    with pytest.raises(ValueError, match="cannot be a file name"):
        export([Record("a:b", r.image, r.labels, r.cells)], tmp_path / "ds")
    with pytest.raises(TypeError, match=r"records\[0\] must be a cellnb.io.Record"):
        export([r.labels], tmp_path / "ds")
    with pytest.raises(ValueError, match="`records` is empty"):
        export([], tmp_path / "ds")
    with pytest.raises(TypeError, match="must hold integer ids"):
        export([Record("f", r.image, r.labels.astype(float), r.cells)], tmp_path / "ds")


def test_assign_splits_deterministic():
    ids = [f"r{i}" for i in range(20)]
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert a == assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert [len(v) for v in a.values()] == [16, 2, 2]
    assert sorted(sum(a.values(), [])) == sorted(ids)
