"""cellnb.widgets.review: every callback, driven as the browser drives it (viewer events)."""

import json

import numpy as np
import pytest

from cellnb import Config, annotate, curate
from cellnb.annotate import read_records
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.segment import segment_click
from cellnb.widgets import review


@pytest.fixture
def out(tmp_path):
    write_pairs(synthetic_pairs(2, shape=(128, 128), n_cells=6, seed=1), tmp_path / "pairs")
    annotate(tmp_path / "pairs", tmp_path / "out",
             config=Config.from_dict({"locate": {"method": "auto"}}), model="watershed",
             progress=False)
    return tmp_path / "out"


def _click(panel, y, x, shift=False):
    panel.viewer.handle_event({"event": "click", "y": y, "x": x, "shift": shift})


def _inside(labels, label):
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(labels == label)
    return [float(v) for v in np.unravel_index(np.argmax(dist), dist.shape)]


def _addable(model, image, labels):
    """A background pixel where the (random-init) SAM model draws a mask with free pixels."""
    for y in range(4, labels.shape[0], 12):
        for x in range(4, labels.shape[1], 12):
            if labels[y, x] == 0:
                mask, _ = segment_click(model, image, [(y, x, True)])
                if (mask & (labels == 0)).sum() > 20:
                    return float(y), float(x)
    pytest.skip("the random-init model draws no mask on this image")


def test_pairs_come_most_flagged_first_and_keys_move_between_them(out):
    panel = review(out)
    assert panel.pairs["flagged"].is_monotonic_decreasing
    first = panel.pair_id
    assert first == panel.pairs["id"].iloc[0]
    assert panel.viewer.layer_names[:2] == ["TL", "fluorescence"]
    assert {"cells", "flagged", "rejected"} <= set(panel.viewer.layer_names)
    panel.viewer.handle_event({"event": "key", "key": "]"})
    assert panel.pair_id == panel.pairs["id"].iloc[1]
    panel.viewer.handle_event({"event": "key", "key": "ArrowLeft"})
    assert panel.pair_id == first
    with pytest.raises(KeyError, match="no record 'nope'"):
        panel.go("nope")


def test_click_rejects_and_restores_a_cell_on_disk(out):
    panel = review(out)
    label = int(panel.cells.index[0])
    y, x = _inside(panel.labels, label)
    _click(panel, y, x)
    assert panel.message.startswith(f"rejected cell {label}") and panel.seconds > 0
    record = {r.id: r for r in read_records(out)}[panel.pair_id]
    assert label not in record.cells.index and not (record.labels == label).any()
    assert (panel.viewer.label_at("rejected", y, x), panel.viewer.label_at("cells", y, x)) == (
        label, 0)
    _click(panel, y, x)  # the rejected cell, shown in red: back it comes
    assert panel.message.startswith(f"restored cell {label}")
    assert curate.curation(out)["op"].tolist() == ["reject", "restore"]
    panel.viewer.handle_event({"event": "key", "key": "z"})
    assert panel.message.startswith("undone") and panel.cells.loc[label, "status"] == "rejected"


def test_without_a_model_adding_says_what_is_missing(out):
    panel = review(out)
    background = np.argwhere(panel.labels == 0)[0]
    _click(panel, *map(float, background))
    assert "no model: pass model=" in panel.message
    _click(panel, *map(float, background), shift=True)
    assert "add a cell first" in panel.message
    assert curate.curation(out).empty


def test_add_negative_point_box_and_undo_with_sam(out, vit_t):
    panel = review(out, model=vit_t)
    y, x = _addable(vit_t, panel.image, panel.labels)
    before = panel.labels.copy()
    _click(panel, y, x)
    assert panel.message.startswith("added cell"), panel.message
    new = int(panel.message.split()[2])
    expected, score = segment_click(vit_t, panel.image, [(y, x, True)])
    np.testing.assert_array_equal(panel.labels == new, expected & (before == 0))
    edit = curate.curation(out).iloc[-1]
    assert edit["op"] == "add" and edit["prompt"] == {"points": [[y, x]], "labels": [1]}
    # shift-click: a negative point, the cell segmented again from both points
    ny, nx = float(np.argwhere(before > 0)[0][0]), float(np.argwhere(before > 0)[0][1])
    added = panel.labels == new
    _click(panel, ny, nx, shift=True)
    redrawn, _ = segment_click(vit_t, panel.image, [(y, x, True), (ny, nx, False)])
    if (redrawn & (before == 0)).any():
        assert panel.message.startswith(f"cell {new} segmented again with 2 points")
        np.testing.assert_array_equal(panel.labels == new, redrawn & (before == 0))
        negatives = panel.viewer.layers[panel.viewer.layer_names.index("negative")]["data"]
        assert negatives == [[ny, nx]]
    else:  # random weights may draw nothing: the cell keeps its mask, and says so
        assert "keeps its mask" in panel.message
        np.testing.assert_array_equal(panel.labels == new, added)
    # a box
    panel.viewer.handle_event({"event": "box", "y0": 0, "x0": 0, "y1": 60, "x1": 60})
    assert panel.message.startswith(("added cell", "SAM found no new cell")), panel.message
    n_edits = len(curate.curation(out))
    panel.undo()
    assert len(curate.curation(out)) == n_edits - 1
    on_disk = json.loads((out / "records" / panel.pair_id / "record.json").read_text())
    assert len(on_disk.get("curation", {"edits": []})["edits"]) == n_edits - 1


def test_review_refuses_a_model_that_cannot_click(out):
    with pytest.raises(TypeError, match="must be a SAM model"):
        review(out, model="watershed")
    with pytest.raises(ValueError, match="outside the image"):
        review(out).click(-5, 3)


def test_a_second_widget_on_the_same_folder_cannot_undo_the_firsts_edit(out):
    """Two reviews of one folder: an edit made through the other is never overwritten or
    undone by a stale one; the stale one says so and reloads (issue 34)."""
    first, second = review(out), review(out)
    label = int(first.cells.index[0])
    y, x = _inside(first.labels, label)
    _click(first, y, x)
    assert first.message.startswith(f"rejected cell {label}")
    other = int(second.cells.index[1])
    _click(second, *_inside(second.labels, other))  # second still holds the old version
    assert "changed since it was read" in second.message and "reloaded" in second.message
    assert curate.curation(out)["op"].tolist() == ["reject"]  # nothing else was written
    assert second.cells.loc[label, "status"] == "rejected"  # it now shows what is on disk
    second.viewer.handle_event({"event": "key", "key": "z"})  # undo: its own, fresh version
    assert second.message.startswith("undone")
    with pytest.raises(curate.StaleRecordError, match="changed since it was read"):
        curate.reject(out, first.pair_id, other, version=first.version)


def test_every_failure_of_an_edit_shows_in_the_status_line(out, monkeypatch):
    import shutil

    panel = review(out)
    label = int(panel.cells.index[0])
    y, x = _inside(panel.labels, label)
    shutil.rmtree(out / "records" / panel.pair_id)  # the record folder is gone
    _click(panel, y, x)
    assert panel.message.startswith("FileNotFoundError: no record")
    monkeypatch.setattr(curate, "undo", lambda *a, **k: 1 / 0)
    panel.viewer.handle_event({"event": "key", "key": "z"})
    assert panel.message == "ZeroDivisionError: division by zero"
