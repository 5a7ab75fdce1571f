"""cellnb.viewer: what the viewer sends to the browser and what it does with the browser's events.

The browser side is exercised in tests/test_browser.py (JupyterLab in Chromium).
"""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellnb.prompt import prompt
from cellnb.viewer import Viewer, image_png, labels_png, show


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


@pytest.fixture
def viewer(monkeypatch):
    viewer = Viewer()
    viewer.sent = []
    monkeypatch.setattr(viewer, "send", lambda content, buffers=None: viewer.sent.append(
        (content, buffers)))
    return viewer


@pytest.fixture
def cells():
    labels = np.zeros((8, 10), np.int32)
    labels[1:5, 1:5] = 1
    labels[5:8, 6:10] = 2
    return labels


def test_image_png_grey_levels_are_the_stretched_intensities():
    image = np.arange(16, dtype=np.uint16).reshape(4, 4) * 100
    rgba = _decode(image_png(image, percentiles=(0, 100)))
    np.testing.assert_array_equal(rgba[..., 0], (np.arange(16).reshape(4, 4) / 15 * 255).astype(np.uint8))
    assert (rgba[..., 0] == rgba[..., 2]).all() and (rgba[..., 3] == 255).all()


def test_image_png_colour_channel_has_intensity_as_opacity():
    image = np.array([[0, 1], [2, 4]], np.float32)
    rgba = _decode(image_png(image, color="magenta", percentiles=(0, 100)))
    assert (rgba[..., :3] == [255, 0, 255]).all()
    np.testing.assert_array_equal(rgba[..., 3], [[0, 63], [127, 255]])


def test_image_png_of_a_flat_image_is_black_not_nan():
    rgba = _decode(image_png(np.full((3, 3), 7, np.uint8)))
    assert (rgba[..., :3] == 0).all()


def test_labels_png_outline_and_fill(cells):
    outline = _decode(labels_png(cells))
    fill = _decode(labels_png(cells, mode="fill", color="red"))
    assert (outline[..., 3] > 0).sum() == 12 + 10  # the inner boundary of a 4x4 and a 3x4 cell
    assert (fill[..., 3] > 0).sum() == 16 + 12
    assert (fill[fill[..., 3] > 0][:, :3] == [255, 0, 0]).all()
    assert not (outline[2, 1, :3] == outline[5, 6, :3]).all()  # one colour per cell
    assert outline[2, 2, 3] == 0 and outline[0, 0, 3] == 0  # inside and background: clear


def test_bad_rasters_are_refused_with_what_was_expected(viewer):
    with pytest.raises(TypeError, match="uint8, uint16 or float32, got int64"):
        viewer.add_image(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="NaN"):
        viewer.add_image(np.full((4, 4), np.nan, np.float32))
    viewer.add_image(np.zeros((4, 6), np.uint8), name="TL")
    with pytest.raises(ValueError, match=r"shape \(5, 6\), but this viewer shows \(4, 6\)"):
        viewer.add_labels(np.zeros((5, 6), int))
    with pytest.raises(ValueError, match="`mode` must be 'outline' or 'fill'"):
        labels_png(np.zeros((4, 6), int), mode="contour")
    with pytest.raises(ValueError, match="matplotlib colour"):
        viewer.add_image(np.zeros((4, 6), np.uint8), color="notacolour")
    with pytest.raises(ValueError, match=r"`opacity` must be a number in \[0, 1\]"):
        viewer.add_image(np.zeros((4, 6), np.uint8), opacity=2)
    with pytest.raises(ValueError, match="`percentiles` must be"):
        image_png(np.zeros((4, 6), np.uint8), percentiles=(50, 10))
    with pytest.raises(ValueError, match="`height` must be an int >= 100"):
        Viewer(height=10)
    assert viewer.layer_names == ["TL"]  # nothing half-added


def test_layers_are_sent_once_as_png_and_listed(viewer, cells):
    viewer.add_image(cells.astype(np.uint8), name="TL")
    viewer.add_image(cells.astype(np.float32), name="H2B", color="magenta", visible=False)
    viewer.add_labels(cells, name="cells", mode="fill", opacity=0.4)
    assert viewer.shape == (8, 10)
    assert viewer.layer_names == ["TL", "H2B", "cells"]
    assert [(m["event"], m["name"]) for m, _ in viewer.sent] == [
        ("raster", "TL"), ("raster", "H2B"), ("raster", "cells")]
    assert all(b[0][:4] == b"\x89PNG" for _, b in viewer.sent)
    layers = {layer["name"]: layer for layer in viewer.layers}
    assert layers["H2B"] == {"name": "H2B", "kind": "image", "visible": False, "opacity": 1.0,
                             "color": "#ff00ff"}
    assert layers["cells"]["mode"] == "fill" and layers["cells"]["opacity"] == 0.4
    # replacing a layer keeps its place
    viewer.add_labels(cells * 0, name="cells")
    assert viewer.layer_names == ["TL", "H2B", "cells"] and viewer.label_at("cells", 2, 2) == 0


def test_points_and_boxes_from_prompt_tables(viewer):
    nuclei = np.zeros((20, 20), np.int32)
    nuclei[2:6, 3:7] = 1
    nuclei[12:16, 10:14] = 2
    viewer.add_points(prompt(nuclei), name="prompts")
    viewer.add_boxes(prompt(nuclei, kind="boxes"), name="boxes")
    viewer.add_points(np.array([[1.0, 2.0]]), name="one", size=5)
    layers = {layer["name"]: layer for layer in viewer.layers}
    assert layers["prompts"]["data"] == [[3.5, 4.5], [13.5, 11.5]]
    assert len(layers["boxes"]["data"]) == 2 and len(layers["boxes"]["data"][0]) == 4
    assert layers["one"] == {"name": "one", "kind": "points", "visible": True, "color": "#00e5ff",
                             "size": 5.0, "data": [[1.0, 2.0]]}
    assert viewer.sent == []  # vector layers travel in the synced state, not as rasters
    with pytest.raises(ValueError, match=r"needs columns \['y', 'x'\]"):
        viewer.add_points(pd.DataFrame({"row": [1]}))
    with pytest.raises(ValueError, match=r"\(N, 4\) array"):
        viewer.add_boxes(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        viewer.add_points(np.array([[np.nan, 1.0]]))


def test_show_hide_remove(viewer, cells):
    viewer.add_image(cells.astype(np.uint8), name="TL")
    viewer.add_labels(cells, name="cells")
    viewer.set_visible("cells", False)
    assert [layer["visible"] for layer in viewer.layers] == [True, False]
    viewer.remove("TL")
    assert viewer.layer_names == ["cells"] and viewer.sent[-1] == ({"event": "drop", "name": "TL"},
                                                                   None)
    with pytest.raises(KeyError, match=r"no layer 'TL'; the layers are \['cells'\]"):
        viewer.set_visible("TL")


def test_click_reaches_callbacks_with_the_cell_under_it(viewer, cells):
    viewer.add_labels(cells, name="cells")
    got = []
    viewer.on_click(got.append)
    viewer.handle_event({"event": "click", "y": 2.7, "x": 3.2, "shift": False})
    viewer.handle_event({"event": "click", "y": 6.0, "x": 9.9, "shift": True})
    viewer.handle_event({"event": "click", "y": 0.5, "x": 0.5})
    assert [(e["labels"]["cells"], e["shift"]) for e in got] == [(1, False), (2, True), (0, False)]
    viewer.on_click(got.append, remove=True)
    viewer.handle_event({"event": "click", "y": 2.7, "x": 3.2})
    assert len(got) == 3 and len(viewer.events) == 4


def test_box_is_clipped_to_the_image_and_keys_are_passed_on(viewer, cells):
    viewer.add_labels(cells)
    boxes, keys = [], []
    viewer.on_box(boxes.append)
    viewer.on_key(keys.append)
    viewer.handle_event({"event": "box", "y0": -3, "x0": 2, "y1": 5, "x1": 40})
    viewer.handle_event({"event": "key", "key": "z", "ctrl": True})
    assert [boxes[0][k] for k in ("y0", "x0", "y1", "x1")] == [0.0, 2.0, 5.0, 10.0]
    assert keys[0]["key"] == "z" and keys[0]["ctrl"] is True
    with pytest.raises(ValueError, match="unknown viewer event 'wiggle'"):
        viewer.handle_event({"event": "wiggle"})
    with pytest.raises(ValueError, match="a hover message has numbers 'y' and 'x'"):
        viewer.handle_event({"event": "hover"})
    with pytest.raises(TypeError, match="`callback` must be callable"):
        viewer.on_click("print")


def test_a_new_browser_view_gets_every_raster_again(viewer, cells):
    viewer.add_image(cells.astype(np.uint8), name="TL")
    viewer.add_labels(cells, name="cells")
    viewer.sent.clear()
    viewer.handle_event({"event": "ready"})
    assert [m["name"] for m, _ in viewer.sent] == ["TL", "cells"]


def test_zoom_and_fit_set_the_synced_view(viewer):
    viewer.add_image(np.zeros((2048, 2048), np.uint8))
    viewer.zoom_to(1000, 1500, scale=100)
    assert viewer.view == {"cy": 1000.0, "cx": 1500.0, "scale": 32.0}  # max_scale
    viewer.fit()
    assert viewer.view == {}
    with pytest.raises(ValueError, match="finite"):
        viewer.zoom_to(np.nan, 3)


def test_events_keep_the_last_hundred(viewer, cells):
    viewer.add_labels(cells)
    for i in range(120):
        viewer.handle_event({"event": "key", "key": str(i)})
    assert len(viewer.events) == 100 and viewer.events[0]["key"] == "20"


def test_show_builds_the_layers_of_a_pair():
    from cellnb.data import synthetic_pairs
    from cellnb.locate import locate

    pair = synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=0)[0]
    nuclei = locate(pair.fluorescence)
    viewer = show(pair.tl, fluorescence=pair.fluorescence, labels=pair.labels, nuclei=nuclei,
                  prompts=prompt(nuclei, kind="points+boxes"))
    assert viewer.layer_names == ["TL", "fluorescence", "cells", "nuclei", "points", "boxes"]
    assert [layer["visible"] for layer in viewer.layers] == [True, False, True, False, True, True]
    assert show(fluorescence=pair.fluorescence).layers[0]["visible"] is True
    with pytest.raises(ValueError, match="nothing to show"):
        show()


@pytest.mark.parametrize("mode, color", [("outline", None), ("fill", "red")])
def test_update_labels_sends_only_the_changed_window(viewer, mode, color):
    from cellnb.data import synthetic_pairs

    cells = synthetic_pairs(1, shape=(96, 96), n_cells=6, seed=3)[0].labels
    viewer.add_labels(cells, name="cells", mode=mode, color=color)
    viewer.sent.clear()
    changed = cells.copy()
    label = int(changed.max())
    changed[changed == label] = 0                          # a cell rejected
    changed[40:44, 50:56] = np.where(changed[40:44, 50:56] == 0, label + 1, changed[40:44, 50:56])
    viewer.update_labels("cells", changed)
    (message, buffers), = viewer.sent
    assert message["event"] == "patch"
    patch = _decode(buffers[0])
    y0, x0 = message["y0"], message["x0"]
    full = _decode(labels_png(changed, mode=mode, color=color))
    np.testing.assert_array_equal(patch, full[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]])
    rows, cols = np.nonzero(changed != cells)
    assert y0 == max(rows.min() - 1, 0) and patch.shape[0] <= rows.max() - rows.min() + 3
    viewer.update_labels("cells", changed)  # nothing changed: nothing sent
    assert len(viewer.sent) == 1
    # a browser view opened later gets the whole, current layer
    viewer.sent.clear()
    viewer.handle_event({"event": "ready"})
    (message, buffers), = viewer.sent
    np.testing.assert_array_equal(_decode(buffers[0]), full)
    assert viewer.label_at("cells", 41, 52) == label + 1


def test_update_labels_refuses_other_layers_and_shapes(viewer, cells):
    viewer.add_image(cells.astype(np.uint8), name="TL")
    viewer.add_labels(cells, name="cells")
    with pytest.raises(ValueError, match="not a labels layer"):
        viewer.update_labels("TL", cells)
    with pytest.raises(ValueError, match=r"cannot replace layer 'cells' of shape \(8, 10\)"):
        viewer.update_labels("cells", np.zeros((4, 4), np.int32))
    with pytest.raises(KeyError, match="no layer 'nope'"):
        viewer.update_labels("nope", cells)


def test_each_event_is_answered_idle_and_a_hover_with_the_values_under_the_pointer(viewer):
    viewer.add_image(np.arange(12, dtype=np.uint16).reshape(3, 4) * 100, name="TL")
    labels = np.zeros((3, 4), int)
    labels[1:, 2:] = 7
    viewer.add_labels(labels, name="cells")
    viewer.sent.clear()
    viewer.handle_event({"event": "hover", "y": 2.5, "x": 3.5})
    assert viewer.sent == [({"event": "values", "y": 2.5, "x": 3.5,
                             "text": "TL 1100 · cells 7"}, None)]
    viewer.sent.clear()
    viewer.on_click(lambda e: 1 / 0)  # a failing callback: the browser still hears "idle"
    with pytest.raises(ZeroDivisionError):
        viewer.handle_event({"event": "click", "y": 0, "x": 0})
    assert viewer.sent == [({"event": "idle"}, None)]
    assert viewer.values_at(-1, 0) == {}


def test_a_stroke_event_carries_its_mask(viewer):
    from cellnb.viewer import stroke_mask

    viewer.add_image(np.zeros((6, 8), np.uint8))
    strokes = []
    viewer.on_stroke(strokes.append)
    viewer.handle_event({"event": "stroke", "points": [[1.5, 1.5], [1.5, 20]], "radius": 0.5,
                         "erase": True})
    event = strokes[0]
    assert event["erase"] is True and event["radius"] == 0.5
    np.testing.assert_array_equal(event["points"], [[1.5, 1.5], [1.5, 8.0]])  # clipped
    expected = np.zeros((6, 8), bool)
    expected[1, 1:] = True
    np.testing.assert_array_equal(event["mask"], expected)
    np.testing.assert_array_equal(stroke_mask((3, 3), [(1.5, 1.5)], 1.0),
                                  [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="`radius` must be a positive number"):
        stroke_mask((3, 3), [(1, 1)], 0)
    with pytest.raises(ValueError, match="non-empty"):
        stroke_mask((3, 3), [], 1)


def test_keymap_pixel_size_and_brush_are_checked():
    import traitlets

    viewer = Viewer()
    viewer.keymap = {"Enter": "accept"}
    with pytest.raises(traitlets.TraitError, match="key 'b' is the viewer's own"):
        viewer.keymap = {"b": "mine"}
    with pytest.raises(traitlets.TraitError, match="`pixel_size` must be a positive number"):
        viewer.pixel_size = -0.5
    viewer.pixel_size = 0.65
    with pytest.raises(traitlets.TraitError, match="`brush_radius` must be between"):
        viewer.brush_radius = 0
    assert viewer.mode == "pan"
    viewer.mode = "erase"


def test_contrast_opacity_and_snapshot(viewer):
    image = np.array([[0, 100], [200, 1000]], np.uint16)
    viewer.add_image(image, name="TL", limits=(0, 200))
    np.testing.assert_array_equal(viewer.snapshot()[..., 0], [[0, 127], [255, 255]])
    viewer.set_contrast("TL", (0, 1000))
    np.testing.assert_array_equal(viewer.snapshot()[..., 0], [[0, 25], [51, 255]])
    assert viewer.sent[-1][0] == {"event": "raster", "name": "TL"}  # sent again
    labels = np.array([[0, 1], [0, 0]])
    viewer.add_labels(labels, name="cells", mode="fill", color="#ff0000")
    viewer.set_opacity("cells", 0.5)
    assert viewer.layers[1]["opacity"] == 0.5
    assert viewer.snapshot()[0, 1].tolist() == [140, 12, 12]  # half red over grey 25
    with pytest.raises(KeyError, match="no image layer 'cells'"):
        viewer.set_contrast("cells", (0, 1))
    with pytest.raises(ValueError, match="low < high"):
        viewer.set_contrast("TL", (5, 5))
    big = Viewer()
    big.add_image(np.zeros((1000, 2000), np.uint8))
    assert big.snapshot(max_size=400).shape == (200, 400, 3)
    bundle = big._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert bundle["image/png"][:4] == b"\x89PNG"
    from PIL import Image
    import io

    small = Viewer()
    small.add_image(np.zeros((100, 150), np.uint8))
    bundle = small._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    # a small image is enlarged by whole pixels for the page (4 x 150 >= 480)
    assert Image.open(io.BytesIO(bundle["image/png"])).size == (600, 400)


def test_show_stack_slides_through_t_and_z():
    from cellnb.viewer import show_stack

    stack = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    viewer = show_stack(stack, labels=(stack % 7 == 0).astype(int), axes="TZYX",
                        pixel_size=0.5)
    assert list(viewer.sliders) == ["t", "z"] and viewer.viewer.pixel_size == 0.5
    viewer.sliders["z"].value = 2
    assert viewer.index == {"t": 0, "z": 2}
    assert viewer.viewer.values_at(1, 1)["TL"] == stack[0, 2, 1, 1]
    viewer.viewer.handle_event({"event": "key", "key": "."})  # next t
    assert viewer.index == {"t": 1, "z": 2}
    assert viewer.viewer.values_at(1, 1) == {"TL": int(stack[1, 2, 1, 1]),
                                             "cells": int(stack[1, 2, 1, 1] % 7 == 0)}
    with pytest.raises(ValueError, match=r"`z` must be an int in \[0, 2\]"):
        viewer.go(z=3)
    with pytest.raises(ValueError, match="must have axes TYX"):
        show_stack(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="they must match"):
        show_stack(np.zeros((3, 4, 4)), labels=np.zeros((2, 4, 4), int))
