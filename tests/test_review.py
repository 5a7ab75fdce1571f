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
    assert "click empty TL first" in panel.message
    assert panel.pending is None and curate.curation(out).empty


def _key(panel, key):
    panel.viewer.handle_event({"event": "key", "key": key})


def test_a_click_previews_enter_accepts_then_negative_point_box_and_undo(out, vit_t):
    panel = review(out, model=vit_t)
    y, x = _addable(vit_t, panel.image, panel.labels)
    before = panel.labels.copy()
    expected, score = segment_click(vit_t, panel.image, [(y, x, True)])
    free = expected & (before == 0)
    _click(panel, y, x)
    # a preview: shown with its size and score, nothing written yet
    assert panel.message.startswith(f"preview of a new cell: {free.sum()} px, SAM score "
                                    f"{score:.2f} — Enter accepts"), panel.message
    np.testing.assert_array_equal(panel.pending["mask"], free)
    assert panel.viewer.label_at("preview", y, x) == int(free[int(y), int(x)])
    assert curate.curation(out).empty and not panel._accept.disabled
    _key(panel, "Enter")
    assert panel.message.startswith("added cell"), panel.message
    new = int(panel.message.split()[2])
    np.testing.assert_array_equal(panel.labels == new, free)
    edit = curate.curation(out).iloc[-1]
    assert edit["op"] == "add" and edit["prompt"] == {"points": [[y, x]], "labels": [1]}
    assert panel.pending is None and panel._accept.disabled
    assert not panel.viewer._label_images["preview"].any()  # the preview is cleared
    # shift-click: a negative point; the accepted cell's new mask is previewed, Enter keeps it
    ny, nx = float(np.argwhere(before > 0)[0][0]), float(np.argwhere(before > 0)[0][1])
    added = panel.labels == new
    _click(panel, ny, nx, shift=True)
    redrawn, _ = segment_click(vit_t, panel.image, [(y, x, True), (ny, nx, False)])
    if (redrawn & ((before == 0) | added)).any():
        assert panel.message.startswith(f"preview of cell {new} again"), panel.message
        negatives = panel.viewer.layers[panel.viewer.layer_names.index("negative")]["data"]
        assert negatives == [[ny, nx]]
        _key(panel, "Enter")
        assert panel.message.startswith(f"cell {new} segmented again with 2 points")
        np.testing.assert_array_equal(panel.labels == new, redrawn & ((before == 0) | added))
        assert curate.curation(out)["op"].tolist() == ["add", "replace"]
    else:  # random weights may draw nothing: the cell keeps its mask, and says so
        assert "SAM found no new cell" in panel.message
        np.testing.assert_array_equal(panel.labels == new, added)
    # a box: previewed, and Esc drops it without a write
    n_edits = len(curate.curation(out))
    panel.viewer.handle_event({"event": "box", "y0": 0, "x0": 0, "y1": 60, "x1": 60})
    assert panel.message.startswith(("preview of a new cell", "SAM found no new cell"))
    _key(panel, "Escape")
    assert panel.pending is None and len(curate.curation(out)) == n_edits
    panel.undo()
    assert len(curate.curation(out)) == n_edits - 1
    on_disk = json.loads((out / "records" / panel.pair_id / "record.json").read_text())
    assert len(on_disk.get("curation", {"edits": []})["edits"]) == n_edits - 1


def test_a_mask_far_outside_the_cell_sizes_is_previewed_with_a_warning(out, vit_t,
                                                                      monkeypatch):
    """A background "cell" over most of the image (SAM score 0.07) and a 2 px speck are
    previewed with a warning, and Esc keeps them out of the record (issue 34)."""
    import importlib

    module = importlib.import_module("cellnb.segment")  # the module, not the verb
    panel = review(out, model=vit_t)
    background = panel.labels == 0
    areas = np.bincount(panel.labels.ravel())[1:]
    areas = areas[areas > 0]
    monkeypatch.setattr(module, "segment_click", lambda *a, **k: (background, 0.07))
    y, x = map(float, np.argwhere(background)[0])
    _click(panel, y, x)
    share = round(100 * background.sum() / background.size)
    assert panel.pending["warning"] == (f"this mask covers {share} % of the image: "
                                        f"background, not a cell?")
    assert "SAM score 0.07" in panel.message and "⚠" in panel._status.value
    _key(panel, "Escape")
    assert panel.message == "preview discarded" and curate.curation(out).empty
    speck = np.zeros_like(background)
    speck[int(y), int(x)] = True
    monkeypatch.setattr(module, "segment_click", lambda *a, **k: (speck, 0.9))
    _click(panel, y, x)
    assert panel.pending["warning"] == (f"far smaller than this record's cells "
                                        f"({areas.min()}-{areas.max()} px)")
    _key(panel, "Enter")  # kept anyway when the user says so
    assert curate.curation(out)["op"].tolist() == ["add"]


def test_the_first_click_on_a_pair_says_the_embedding_is_computed(out, vit_t):
    panel = review(out, model=vit_t)
    vit_t._embeddings.clear()
    y, x = map(float, np.argwhere(panel.labels == 0)[0])
    panel.messages.clear()
    _click(panel, y, x)
    assert panel.messages[0].startswith("computing SAM's image embedding for this pair")
    panel.messages.clear()
    _click(panel, y, x)  # kept: no second announcement
    assert not any(m.startswith("computing") for m in panel.messages)


def test_brush_grows_the_cell_it_starts_in_and_eraser_removes_pixels_one_undo_each(out):
    from cellnb.viewer import stroke_mask

    panel = review(out)
    label = int(panel.cells.index[0])
    y, x = _inside(panel.labels, label)
    before = panel.labels.copy()
    from scipy import ndimage

    ring = ndimage.binary_dilation(before == label, iterations=4) & (before == 0)
    by, bx = np.argwhere(ring)[0]
    points = [[y + 0.5, x + 0.5], [by + 0.5, bx + 0.5]]  # from inside the cell out past it
    panel.viewer.handle_event({"event": "stroke", "points": points, "radius": 2.0,
                               "erase": False})
    grown = stroke_mask(before.shape, points, 2.0) & (before == 0)
    assert panel.message.startswith(f"painted {grown.sum()} px onto cell {label}")
    np.testing.assert_array_equal(panel.labels == label, (before == label) | grown)
    np.testing.assert_array_equal(panel.labels[(before > 0) & (before != label)],
                                  before[(before > 0) & (before != label)])  # no cell robbed
    painted = panel.labels.copy()
    panel.paint([[y + 0.5, x + 0.5]], 3.0, erase=True)
    erased = stroke_mask(before.shape, [[y + 0.5, x + 0.5]], 3.0)
    assert panel.message.startswith(f"erased {(erased & (painted > 0)).sum()} px")
    np.testing.assert_array_equal(panel.labels, np.where(erased, 0, painted))
    assert curate.curation(out)["op"].tolist() == ["replace_all", "replace_all"]
    _key(panel, "z")
    _key(panel, "z")
    np.testing.assert_array_equal(panel.labels, before)
    background = np.argwhere(before == 0)[0] + 0.5
    panel.paint([background], 2.0)
    assert panel.message.startswith("start a brush stroke inside the cell")


def test_review_keys_and_static_picture(out):
    panel = review(out)
    assert panel.viewer.keymap["Enter"] == "accept" and panel.viewer.keymap["Escape"] == "discard"
    bundle = panel._repr_mimebundle_()
    assert {"application/vnd.jupyter.widget-view+json", "image/png"} <= set(bundle)
    assert bundle["image/png"][:4] == b"\x89PNG"


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
