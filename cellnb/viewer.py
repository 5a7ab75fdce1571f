"""A zoomable image viewer for notebooks, with layers and click / box events sent to Python.

:class:`Viewer` is an `anywidget <https://anywidget.dev>`_ widget: one small
JavaScript module (``cellnb/_static/viewer.js``) draws on a canvas in the
browser, so it runs wherever anywidget runs (JupyterLab, Notebook 7, VS Code,
Colab) with no extension to install and no display on the server, unlike
napari or other desktop viewers on an HPC node. Pan and zoom happen in the
browser at full resolution (a 2048 x 2048 image is sent once, as PNG); only
the events come back to Python.

Layers are drawn in the order they were added, each shown or hidden from the
list under the image or from Python:

- ``image``: a TL image (grey) or a fluorescence channel (a colour whose
  opacity follows the intensity, so it lies over the TL image);
- ``labels``: cell masks, as outlines or fills, one colour per cell or one
  colour for all;
- ``points`` and ``boxes``: prompt tables of :func:`cellnb.prompt`.

In the browser: drag pans, the wheel (or ``+`` / ``-`` / ``0``) zooms, a
click or shift-click calls the :meth:`Viewer.on_click` callbacks with the
image pixel under the pointer, and in box mode (button or ``b``) a drag
calls the :meth:`Viewer.on_box` callbacks. Every key pressed on the image
goes to the :meth:`Viewer.on_key` callbacks.

Examples
--------
>>> from cellnb.data import synthetic_pairs
>>> pair = synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=0)[0]
>>> viewer = Viewer()
>>> viewer.add_image(pair.tl, name="TL")
>>> viewer.add_labels(pair.cells, name="cells")
>>> viewer.layer_names
['TL', 'cells']
>>> clicks = []
>>> viewer.on_click(clicks.append)
>>> viewer.handle_event({"event": "click", "y": 10.5, "x": 20.2, "shift": False})
>>> clicks[0]["y"], clicks[0]["x"], clicks[0]["labels"]["cells"] >= 0
(10.5, 20.2, True)
"""

from __future__ import annotations

import io
from pathlib import Path

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ._validation import check_image, check_labels

__all__ = ["Viewer", "show", "image_png", "labels_png"]

_STATIC = Path(__file__).parent / "_static"
KINDS = ("image", "labels", "points", "boxes")
_EVENTS = ("click", "box", "key")


def _rgb(color) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    try:
        return to_rgb(color)
    except ValueError as err:
        raise ValueError(f"`color` must be a matplotlib colour (name, '#rrggbb' or RGB tuple), "
                         f"got {color!r}.") from err


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(_rgb(color))


def _png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _stretch(image: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Float image in [0, 1] between two percentiles (the display contrast)."""
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    grey = grey.astype(np.float32)
    lo, hi = np.percentile(grey, percentiles)
    if hi <= lo:
        return np.zeros(grey.shape, np.float32)
    return np.clip((grey - lo) / (hi - lo), 0, 1)


def image_png(image, *, color="gray", percentiles=(0.5, 99.8)) -> bytes:
    """PNG of `image` as the viewer draws it.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        uint8, uint16 or float32.
    color : "gray" or a matplotlib colour, default="gray"
        ``"gray"``: opaque grey levels. A colour: that colour, its opacity
        the stretched intensity (a fluorescence channel over the TL image).
    percentiles : (float, float), default=(0.5, 99.8)
        Intensities mapped to black / full colour.

    Returns
    -------
    png : bytes

    Examples
    --------
    >>> png = image_png(np.arange(16, dtype=np.uint8).reshape(4, 4))
    >>> png[:4] == b"\\x89PNG"
    True
    """
    image = check_image(image, "image", rgb=True)
    if not (len(percentiles) == 2 and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise ValueError(f"`percentiles` must be (low, high) with 0 <= low < high <= 100, "
                         f"got {percentiles!r}.")
    level = _stretch(image, percentiles)
    rgba = np.empty(level.shape + (4,), np.uint8)
    if color == "gray":
        rgba[..., :3] = (level * 255).astype(np.uint8)[..., None]
        rgba[..., 3] = 255
    else:
        rgba[..., :3] = (np.asarray(_rgb(color)) * 255).astype(np.uint8)
        rgba[..., 3] = (level * 255).astype(np.uint8)
    return _png(rgba)


def _label_colors(n: int) -> np.ndarray:
    """(n + 1, 3) uint8: a bright colour per label id (the same id, the same colour), 0 black.

    Hues step by the golden ratio, so neighbouring ids differ and a cell keeps
    its colour when others are added.
    """
    import colorsys

    hues = (np.arange(1, n + 1) * 0.6180339887) % 1.0
    colors = [colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues]
    return np.vstack([[0, 0, 0], (np.asarray(colors).reshape(-1, 3) * 255)]).astype(np.uint8)


def _inner_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a cell with a 4-neighbour of another label or outside the image.

    skimage's ``find_boundaries(mode="inner")`` on the padded image, in four
    array comparisons (a 2048 x 2048 image in ~20 ms), so that cells cut by
    the image border are closed there too.
    """
    return _edges(np.pad(labels, 1))


def _edges(padded: np.ndarray) -> np.ndarray:
    """Inner edges of the centre of `padded` (its labels with one pixel of neighbours round)."""
    centre = padded[1:-1, 1:-1]
    edges = np.zeros(centre.shape, bool)
    for neighbour in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        edges |= neighbour != centre
    return edges & (centre > 0)


def labels_png(labels, *, mode="outline", color=None) -> bytes:
    """PNG of a label image as the viewer draws it: outlines or fills, transparent elsewhere.

    Parameters
    ----------
    labels : (H, W) int ndarray
        0 is background.
    mode : {"outline", "fill"}, default="outline"
    color : matplotlib colour, optional
        One colour for every cell; by default each cell gets its own.

    Returns
    -------
    png : bytes

    Examples
    --------
    >>> labels = np.zeros((8, 8), int); labels[2:6, 2:6] = 1
    >>> labels_png(labels)[:4] == b"\\x89PNG"
    True
    """
    labels = check_labels(labels)
    if mode not in ("outline", "fill"):
        raise ValueError(f"`mode` must be 'outline' or 'fill', got {mode!r}.")
    edges = _inner_edges(labels) if mode == "outline" else None
    return _png(_labels_rgba(labels, edges, color))


def _labels_rgba(labels, edges, color) -> np.ndarray:
    """RGBA of `labels`: where `edges` (or, when None, every cell pixel) is, its colour."""
    shown = labels * edges if edges is not None else labels
    rgba = np.zeros(labels.shape + (4,), np.uint8)
    if color is None:
        rgba[..., :3] = _label_colors(int(labels.max()))[shown]
    else:
        rgba[..., :3] = (np.asarray(_rgb(color)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(shown > 0, 255, 0)
    return rgba


def _coordinates(data, columns: list[str], what: str, source: str) -> list[list[float]]:
    """(N, len(columns)) coordinates from a table with `columns` or an array, as lists."""
    if isinstance(data, pd.DataFrame):
        missing = set(columns) - set(data.columns)
        if missing:
            raise ValueError(f"a {what} table needs columns {columns} ({source}); missing "
                             f"{sorted(missing)}.")
        data = data[columns].dropna().to_numpy(float)
    data = np.asarray(data, float)
    if data.size == 0:
        return []
    if data.ndim != 2 or data.shape[1] != len(columns):
        raise ValueError(f"{what} must be an (N, {len(columns)}) array of ({', '.join(columns)}) "
                         f"or a table with those columns, got shape {data.shape}.")
    if not np.isfinite(data).all():
        raise ValueError(f"{what} must be finite (no NaN or inf).")
    return data.tolist()


def _points(data) -> list[list[float]]:
    return _coordinates(data, ["y", "x"], "points", "cellnb.prompt's")


def _boxes(data) -> list[list[float]]:
    return _coordinates(data, ["y0", "x0", "y1", "x1"], "boxes",
                        "cellnb.prompt(..., kind='boxes')")


class Viewer(anywidget.AnyWidget):
    """Zoomable, layered image viewer whose clicks and boxes reach Python.

    Parameters
    ----------
    height : int, default=640
        Largest height of the canvas in screen pixels; its width is the
        notebook column's.
    max_scale : float, default=32
        Deepest zoom, in screen pixels per image pixel.

    Attributes
    ----------
    view : dict
        ``{"cy", "cx", "scale"}``: the image pixel at the centre of the canvas
        and the zoom; kept in step with the browser, and settable
        (:meth:`zoom_to`, :meth:`fit`).
    mode : {"pan", "box"}
        What a drag does.
    events : list of dict
        The last 100 events received (click, box, key).

    Examples
    --------
    >>> viewer = Viewer(height=400)
    >>> viewer.add_image(np.zeros((32, 48), np.uint8), name="TL")
    >>> viewer.shape
    (32, 48)
    >>> viewer.zoom_to(10, 20, scale=4)
    >>> viewer.view
    {'cy': 10.0, 'cx': 20.0, 'scale': 4.0}
    """

    _esm = _STATIC / "viewer.js"
    _css = _STATIC / "viewer.css"
    shape = traitlets.Tuple(traitlets.Int(0), traitlets.Int(0), default_value=(0, 0)).tag(sync=True)
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    view = traitlets.Dict().tag(sync=True)
    mode = traitlets.Enum(("pan", "box"), default_value="pan").tag(sync=True)
    height = traitlets.Int(640).tag(sync=True)
    max_scale = traitlets.Float(32.0).tag(sync=True)

    def __init__(self, *, height: int = 640, max_scale: float = 32.0, **kwargs):
        if isinstance(height, bool) or not isinstance(height, int) or height < 100:
            raise ValueError(f"`height` must be an int >= 100 (screen pixels), got {height!r}.")
        if not (isinstance(max_scale, (int, float)) and max_scale >= 1):
            raise ValueError(f"`max_scale` must be a number >= 1, got {max_scale!r}.")
        super().__init__(height=height, max_scale=float(max_scale), **kwargs)
        self._rasters: dict[str, bytes] = {}
        self._label_images: dict[str, np.ndarray] = {}
        self._stale: set[str] = set()  # label layers patched since their last full raster
        self._callbacks = {event: [] for event in _EVENTS}
        self.events: list[dict] = []
        self.on_msg(self._on_message)

    # ---- layers -------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """Names of the layers, bottom first."""
        return [layer["name"] for layer in self.layers]

    def _check_shape(self, array, what):
        shape = tuple(array.shape[:2])
        if self.shape == (0, 0):
            self.shape = shape
        elif shape != tuple(self.shape):
            raise ValueError(f"{what} has shape {shape}, but this viewer shows {tuple(self.shape)} "
                             f"images; every raster layer must match.")

    def _set_layer(self, layer: dict, raster: bytes | None = None) -> None:
        name = layer["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
        if raster is not None:
            self._rasters[name] = raster
            self.send({"event": "raster", "name": name}, buffers=[raster])
        layers = [dict(old) for old in self.layers]
        names = [old["name"] for old in layers]
        if name in names:
            layers[names.index(name)] = layer
        else:
            layers.append(layer)
        self.layers = layers

    def add_image(self, image, *, name: str = "image", color="gray", opacity: float = 1.0,
                  visible: bool = True, percentiles=(0.5, 99.8)) -> None:
        """Add (or replace) an image layer.

        Parameters
        ----------
        image : (H, W) or (H, W, 3) ndarray
            TL image or fluorescence channel, uint8, uint16 or float32.
        name : str, default="image"
        color : "gray" or a matplotlib colour, default="gray"
            See :func:`image_png`; e.g. ``"magenta"`` for a nuclear channel.
        opacity : float in [0, 1], default=1
        visible : bool, default=True
        percentiles : (float, float), default=(0.5, 99.8)
            Display contrast.
        """
        image = check_image(image, name, rgb=True)
        self._check_shape(image, f"image {name!r}")
        png = image_png(image, color=color, percentiles=percentiles)
        self._set_layer({"name": name, "kind": "image", "visible": bool(visible),
                         "opacity": _opacity(opacity),
                         "color": "#808080" if color == "gray" else _hex(color)}, png)

    def add_labels(self, labels, *, name: str = "labels", mode: str = "outline", color=None,
                   opacity: float = 1.0, visible: bool = True) -> None:
        """Add (or replace) a label layer: cell outlines or fills.

        Parameters
        ----------
        labels : (H, W) int ndarray
        name : str, default="labels"
        mode : {"outline", "fill"}, default="outline"
        color : matplotlib colour, optional
            One colour for all cells; default one per cell.
        opacity : float in [0, 1], default=1
            Fills read best at about 0.4.
        visible : bool, default=True
        """
        labels = check_labels(labels, name)
        self._check_shape(labels, f"labels {name!r}")
        png = labels_png(labels, mode=mode, color=color)
        self._label_images[name] = labels
        self._stale.discard(name)
        self._set_layer({"name": name, "kind": "labels", "visible": bool(visible),
                         "opacity": _opacity(opacity), "mode": mode, "own_colors": color is None,
                         "color": "#ffffff" if color is None else _hex(color)}, png)

    def update_labels(self, name: str, labels) -> None:
        """Change the cells of label layer `name`; only the part that changed travels.

        The browser gets a PNG of the bounding box of the changed pixels (and
        their outlines), not of the whole image: a corrected cell on a
        2048 x 2048 image costs a few kilobytes.

        Parameters
        ----------
        name : str
            A layer added with :meth:`add_labels`.
        labels : (H, W) int ndarray
            Same shape as the layer's.
        """
        layer = self.layers[self._index(name)]
        if layer["kind"] != "labels":
            raise ValueError(f"layer {name!r} is a {layer['kind']} layer, not a labels layer.")
        labels = check_labels(labels, name)
        old = self._label_images[name]
        if labels.shape != old.shape:
            raise ValueError(f"labels of shape {labels.shape} cannot replace layer {name!r} of "
                             f"shape {old.shape}.")
        rows, cols = np.nonzero(labels != old)
        if len(rows) == 0:
            return
        h, w = labels.shape
        # the changed box and one pixel round it: the outlines of its neighbours change too
        y0, x0 = max(rows.min() - 1, 0), max(cols.min() - 1, 0)
        y1, x1 = min(rows.max() + 2, h), min(cols.max() + 2, w)
        window = labels[y0:y1, x0:x1]
        edges = None
        if layer.get("mode") == "outline":  # against the real neighbours, not the window's edge
            edges = _edges(np.pad(labels, 1)[y0:y1 + 2, x0:x1 + 2])
        color = None if layer.get("own_colors") else layer["color"]
        rgba = _labels_rgba(window, edges, color)
        self._label_images[name] = labels
        self._stale.add(name)
        self.send({"event": "patch", "name": name, "y0": int(y0), "x0": int(x0)},
                  buffers=[_png(rgba)])

    def add_points(self, points, *, name: str = "points", color="#00e5ff", size: float = 3,
                   visible: bool = True) -> None:
        """Add (or replace) a points layer (e.g. point prompts), drawn at a fixed screen size.

        Parameters
        ----------
        points : DataFrame with ``y``, ``x`` or (N, 2) array of (y, x)
        name : str, default="points"
        color : matplotlib colour, default="#00e5ff"
        size : float, default=3
            Marker radius in screen pixels.
        visible : bool, default=True
        """
        if not (isinstance(size, (int, float)) and size > 0):
            raise ValueError(f"`size` must be a positive number, got {size!r}.")
        self._set_layer({"name": name, "kind": "points", "visible": bool(visible),
                         "color": _hex(color), "size": float(size), "data": _points(points)})

    def add_boxes(self, boxes, *, name: str = "boxes", color="#ffd400",
                  visible: bool = True) -> None:
        """Add (or replace) a boxes layer (e.g. box prompts).

        Parameters
        ----------
        boxes : DataFrame with ``y0, x0, y1, x1`` or (N, 4) array
        name : str, default="boxes"
        color : matplotlib colour, default="#ffd400"
        visible : bool, default=True
        """
        self._set_layer({"name": name, "kind": "boxes", "visible": bool(visible),
                         "color": _hex(color), "data": _boxes(boxes)})

    def _index(self, name: str) -> int:
        names = self.layer_names
        if name not in names:
            raise KeyError(f"no layer {name!r}; the layers are {names}.")
        return names.index(name)

    def set_visible(self, name: str, visible: bool = True) -> None:
        """Show or hide layer `name` (as its checkbox does)."""
        layers = [dict(layer) for layer in self.layers]
        layers[self._index(name)]["visible"] = bool(visible)
        self.layers = layers

    def remove(self, name: str) -> None:
        """Remove layer `name`."""
        index = self._index(name)
        self.layers = [dict(layer) for i, layer in enumerate(self.layers) if i != index]
        self._rasters.pop(name, None)
        self._label_images.pop(name, None)
        self._stale.discard(name)
        self.send({"event": "drop", "name": name})

    # ---- view ---------------------------------------------------------------------
    def zoom_to(self, y: float, x: float, *, scale: float = 8.0) -> None:
        """Centre the view on image pixel (`y`, `x`) at `scale` screen pixels per image pixel."""
        if not all(np.isfinite([y, x, scale])) or scale <= 0:
            raise ValueError(f"`y`, `x` must be finite and `scale` > 0, got {(y, x, scale)!r}.")
        self.view = {"cy": float(y), "cx": float(x), "scale": float(min(scale, self.max_scale))}

    def fit(self) -> None:
        """Show the whole image (the browser computes the scale from the canvas size)."""
        self.view = {}

    # ---- events -------------------------------------------------------------------
    def on_click(self, callback, *, remove: bool = False) -> None:
        """Call ``callback(event)`` on each click on the image.

        `event` has ``y``, ``x`` (image pixel, float), ``shift`` (bool) and
        ``labels``: for each label layer, the label under the click (0:
        background).
        """
        self._register("click", callback, remove)

    def on_box(self, callback, *, remove: bool = False) -> None:
        """Call ``callback(event)`` when a box is dragged (box mode).

        `event` has ``y0, x0, y1, x1`` (image pixels, clipped to the image).
        """
        self._register("box", callback, remove)

    def on_key(self, callback, *, remove: bool = False) -> None:
        """Call ``callback(event)`` on each key pressed on the image (``key``, ``shift``, ``ctrl``)."""
        self._register("key", callback, remove)

    def _register(self, event, callback, remove):
        if not callable(callback):
            raise TypeError(f"`callback` must be callable, got {type(callback).__name__}.")
        if remove:
            self._callbacks[event].remove(callback)
        else:
            self._callbacks[event].append(callback)

    def label_at(self, name: str, y: float, x: float) -> int:
        """The label of layer `name` at image pixel (`y`, `x`); 0 outside the image."""
        if name not in self._label_images:
            raise KeyError(f"no label layer {name!r}; the label layers are "
                           f"{sorted(self._label_images)}.")
        labels = self._label_images[name]
        row, col = int(np.floor(y)), int(np.floor(x))
        if 0 <= row < labels.shape[0] and 0 <= col < labels.shape[1]:
            return int(labels[row, col])
        return 0

    def handle_event(self, message: dict) -> None:
        """Process one message from the browser, as a click in the browser does.

        What the front end sends (``{"event": "click", "y", "x", "shift"}``,
        ``{"event": "box", "y0", "x0", "y1", "x1"}``, ``{"event": "key",
        "key", ...}``, ``{"event": "ready"}``); public so that tests and
        scripts drive the viewer exactly as a user does.
        """
        if not isinstance(message, dict) or "event" not in message:
            raise ValueError(f"a viewer message is a dict with an 'event', got {message!r}.")
        kind = message["event"]
        if kind == "ready":  # a new view of this widget: it needs every raster
            for name in list(self._stale):  # patched layers: render them whole again
                layer = self.layers[self._index(name)]
                self._rasters[name] = labels_png(
                    self._label_images[name], mode=layer["mode"],
                    color=None if layer.get("own_colors") else layer["color"])
            self._stale.clear()
            for name, raster in self._rasters.items():
                self.send({"event": "raster", "name": name}, buffers=[raster])
            return
        if kind not in _EVENTS:
            raise ValueError(f"unknown viewer event {kind!r}; expected one of "
                             f"{list(_EVENTS) + ['ready']}.")
        event = dict(message)
        h, w = self.shape
        if kind == "click":
            event["y"], event["x"] = float(event["y"]), float(event["x"])
            event["shift"] = bool(event.get("shift", False))
            event["labels"] = {name: self.label_at(name, event["y"], event["x"])
                               for name in self._label_images}
        elif kind == "box":
            for key, side in (("y0", h), ("y1", h), ("x0", w), ("x1", w)):
                event[key] = float(np.clip(float(event[key]), 0, side))
        self.events = (self.events + [event])[-100:]
        for callback in list(self._callbacks[kind]):
            callback(event)

    def _on_message(self, _widget, content, _buffers):
        self.handle_event(content)


def show(tl=None, *, fluorescence=None, labels=None, nuclei=None, prompts=None,
         height: int = 640) -> Viewer:
    """A :class:`Viewer` of one pair: TL, fluorescence, cells, nuclei and prompts, each a layer.

    Parameters
    ----------
    tl : (H, W) or (H, W, 3) ndarray, optional
        Transmitted-light image (grey).
    fluorescence : (H, W) ndarray, optional
        Nuclear channel, drawn in magenta over the TL image (hidden at
        first when there is a TL image; tick it in the layer list).
    labels : (H, W) int ndarray, optional
        Cell masks, outlined.
    nuclei : (H, W) int ndarray, optional
        Nucleus masks, outlined in one colour (hidden at first).
    prompts : DataFrame, optional
        Prompt table of :func:`cellnb.prompt`: its points, and its boxes when
        it has them.
    height : int, default=640

    Returns
    -------
    viewer : Viewer
        Displayed when it is the last expression of a cell.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> pair = synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=0)[0]
    >>> show(pair.tl, fluorescence=pair.fluorescence, labels=pair.cells).layer_names
    ['TL', 'fluorescence', 'cells']
    """
    viewer = Viewer(height=height)
    if tl is not None:
        viewer.add_image(tl, name="TL")
    if fluorescence is not None:
        viewer.add_image(fluorescence, name="fluorescence", color="magenta",
                         visible=tl is None)
    if labels is not None:
        viewer.add_labels(labels, name="cells")
    if nuclei is not None:
        viewer.add_labels(nuclei, name="nuclei", color="#00e5ff", visible=False)
    if prompts is not None:
        viewer.add_points(prompts, name="points")
        if {"y0", "x0", "y1", "x1"} <= set(prompts.columns) and prompts["y0"].notna().any():
            viewer.add_boxes(prompts, name="boxes")
    if not viewer.layers:
        raise ValueError("nothing to show: pass at least one of tl, fluorescence, labels, nuclei.")
    return viewer


def _opacity(value) -> float:
    if not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise ValueError(f"`opacity` must be a number in [0, 1], got {value!r}.")
    return float(value)
