import json

import numpy as np
import pytest

from cellnb import Config, annotate, curate, export
from cellnb.annotate import read_records
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import read_coco, read_labels


@pytest.fixture
def out(tmp_path):
    write_pairs(synthetic_pairs(2, shape=(128, 128), n_cells=6, seed=1), tmp_path / "pairs")
    config = Config.from_dict({"locate": {"method": "auto"}})
    annotate(tmp_path / "pairs", tmp_path / "out", config=config, model="watershed",
             progress=False)
    return tmp_path / "out"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_reject_restore_and_what_export_sees(out, tmp_path):
    record = read_records(out)[0]
    label = int(record.cells.index[1])
    area = int((record.labels == label).sum())
    curate.reject(out, record.id, label)
    curated = {r.id: r for r in read_records(out)}[record.id]
    assert not (curated.labels == label).any() and label not in curated.cells.index
    assert len(curated.cells) == len(record.cells) - 1
    edit = curated.provenance["curation"]["edits"][0]
    assert edit["op"] == "reject" and edit["label"] == label and edit["cellnb"] == "0.1.0"
    assert curated.provenance["cells"] == len(record.cells) - 1
    from cellnb.qc import triage

    _, flags = triage(out)
    assert label not in flags.loc[flags["id"] == record.id, "label"].tolist()  # decided
    curate.reject(out, record.id, label)  # already rejected: nothing changes
    assert len(curate.curation(out)) == 1
    dataset = export(read_records(out), tmp_path / "ds", splits={"train": 1.0})
    coco = read_coco(dataset / "train", images=False)
    assert {r.id: int(r.labels.max() > 0) for r in coco}  # written
    exported = {r.id: r for r in coco}[record.id]
    assert len(np.unique(exported.labels[exported.labels > 0])) == len(record.cells) - 1
    curate.restore(out, record.id, label)
    back = {r.id: r for r in read_records(out)}[record.id]
    assert int((back.labels == label).sum()) == area and label in back.cells.index
    assert back.cells.loc[label, "curated"] == "restored"
    assert curate.curation(out)["op"].tolist() == ["reject", "restore"]


def test_add_takes_only_free_pixels_and_replace_redraws(out):
    record = read_records(out)[0]
    neighbour = int(record.cells.index[0])
    mask = np.zeros(record.labels.shape, bool)
    mask[0:30, 0:30] = True
    free = mask & (record.labels == 0)
    new = curate.add(out, record.id, mask, prompt={"points": [[10, 10]], "labels": [1]},
                     score=0.8)
    after = {r.id: r for r in read_records(out)}[record.id]
    assert new == int(max(record.cells.index.max(), record.labels.max())) + 1
    np.testing.assert_array_equal(after.labels == new, free)
    np.testing.assert_array_equal(after.labels[~free], record.labels[~free])
    assert after.cells.loc[new, "curated"] == "added" and after.cells.loc[new, "score"] == 0.8
    assert after.cells.loc[new, "area"] == free.sum()
    assert after.provenance["curation"]["edits"][-1]["prompt"] == {"points": [[10, 10]],
                                                                  "labels": [1]}
    smaller = after.labels == neighbour
    smaller[np.argwhere(smaller)[0][0]] = False  # drop its first row
    curate.replace(out, record.id, neighbour, smaller)
    edited = {r.id: r for r in read_records(out)}[record.id]
    np.testing.assert_array_equal(edited.labels == neighbour, smaller)
    assert edited.cells.loc[neighbour, "curated"] == "edited"
    assert (edited.labels == new).sum() == free.sum()  # the others are untouched


def test_undo_walks_back_to_the_automatic_record(out):
    record = read_records(out)[0]
    folder = out / "records" / record.id
    automatic = _files(folder)
    labels = [int(i) for i in record.cells.index[:2]]
    curate.reject(out, record.id, labels[0])
    one = _files(folder)
    curate.reject(out, record.id, labels[1])
    mask = np.zeros(record.labels.shape, bool)
    mask[:8, :8] = True
    curate.add(out, record.id, mask & (record.labels == 0) | mask)
    curate.undo(out, record.id)
    curate.undo(out, record.id)
    assert _files(folder) == one
    curate.undo(out, record.id)
    assert _files(folder) == automatic and not (folder / "history").exists()
    with pytest.raises(ValueError, match="no curation to undo"):
        curate.undo(out, record.id)


def test_annotate_never_replaces_a_curated_record(out, tmp_path):
    record = read_records(out)[0]
    curate.reject(out, record.id, int(record.cells.index[0]))
    before = _files(out / "records" / record.id)
    same = annotate(tmp_path / "pairs", out, config=Config.from_dict({"locate": {"method": "auto"}}),
                    model="watershed", progress=False)
    assert sorted(same["status"]) == ["skipped", "skipped"]
    with pytest.warns(UserWarning, match=r"1 curated record\(s\) were kept"):
        changed = annotate(tmp_path / "pairs", out, model="watershed", progress=False)
    statuses = dict(zip(changed["pair_id"], changed["status"]))
    assert statuses[record.id] == "curated" and sorted(statuses.values()) == ["curated", "done"]
    assert _files(out / "records" / record.id) == before


def test_curation_refuses_bad_input_and_leaves_the_record_whole(out, monkeypatch):
    record = read_records(out)[0]
    folder = out / "records" / record.id
    before = _files(folder)
    label = int(record.cells.index[0])
    with pytest.raises(FileNotFoundError, match="no record 'nope'"):
        curate.reject(out, "nope", 1)
    with pytest.raises(KeyError, match="no cell 999"):
        curate.reject(out, record.id, 999)
    with pytest.raises(TypeError, match="`label` must be an int"):
        curate.reject(out, record.id, "3")
    with pytest.raises(TypeError, match="`mask` must be a boolean array, got int64"):
        curate.add(out, record.id, np.ones(record.labels.shape, np.int64))
    with pytest.raises(ValueError, match=r"`mask` has shape \(4, 4\)"):
        curate.add(out, record.id, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="`mask` is empty"):
        curate.add(out, record.id, np.zeros(record.labels.shape, bool))
    with pytest.raises(ValueError, match="belongs to another cell"):
        curate.add(out, record.id, record.labels == label)
    with pytest.raises(ValueError, match="is not rejected"):
        curate.restore(out, record.id, label)
    import cellnb.io

    def broken(path, labels):
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(cellnb.io, "write_labels", broken)
    with pytest.raises(OSError, match="disk full"):
        curate.reject(out, record.id, label)
    assert _files(folder) == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert json.loads((folder / "record.json").read_text()).get("curation") is None
    np.testing.assert_array_equal(read_labels(folder / "cells.tif"), record.labels)


def test_reject_many_at_once_and_undo_them_together(out):
    record = read_records(out)[0]
    folder = out / "records" / record.id
    automatic = _files(folder)
    three = [int(i) for i in record.cells.index[:3]]
    curate.reject(out, record.id, three + [three[0]])  # a repeat is one rejection
    after = {r.id: r for r in read_records(out)}[record.id]
    assert not np.isin(after.labels, three).any()
    assert curate.curation(out)["label"].tolist() == three
    curate.undo(out, record.id)
    assert _files(folder) == automatic


def test_reject_flagged_leaves_the_named_flags_out_of_export(out, tmp_path):
    from cellnb.qc import reject_flagged, triage

    _, before = triage(out)
    expected = before[before["border"].fillna(False) & (before["cell_area"] > 0)]
    rejected = reject_flagged(out, ["border"])
    assert sorted(zip(rejected["id"], rejected["label"])) == sorted(
        zip(expected["id"], expected["label"].astype(int)))
    assert len(rejected) > 0
    for record in read_records(out):
        mine = rejected.loc[rejected["id"] == record.id, "label"]
        assert not np.isin(record.labels, mine).any()
    _, after = triage(out)
    assert not after["border"].fillna(False).any()  # decided cells are no longer flagged
    with pytest.raises(ValueError, match="`flags` must be a non-empty list"):
        reject_flagged(out, "border")
    with pytest.raises(ValueError, match="`min_flags` must be an int from 1 to 1"):
        reject_flagged(out, ["border"], min_flags=2)
