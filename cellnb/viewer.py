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
image pixel under the pointer, in box mode (button or ``b``) a drag calls
the :meth:`Viewer.on_box` callbacks, and in brush / eraser mode a drag
calls the :meth:`Viewer.on_stroke` callbacks. Each layer has its opacity
(and an image layer its contrast) under the image; the status line gives
the pixel under the pointer and every layer's value there, and a scale bar
in µm is drawn when ``Viewer.pixel_size`` is known.

Keys reach the viewer only while the pointer is over the image or the image
has the keyboard focus (an outline shows it), and only the keys of its key
map, which is listed under the image (the viewer's own plus
``Viewer.keymap``, which a panel such as the review widget fills): a
notebook never gets them, and the notebook's own keys (``b``, ``0`` ...) act
on the notebook again once the pointer leaves.

Examples
--------
>>> from cellnb.data import synthetic_pairs
>>> pair = synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=0)[0]
>>> viewer = Viewer()
>>> viewer.add_image(pair.tl, name="TL")
>>> viewer.add_labels(pair.labels, name="cells")
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

from ._shared.validation import check_image, check_labels

__all__ = ["Viewer", "show", "show_stack", "StackViewer", "image_png", "labels_png",
           "stroke_mask"]

_STATIC = Path(__file__).parent / "_static"
KINDS = ("image", "labels", "points", "boxes")
_EVENTS = ("click", "box", "key", "stroke")
# the keys the front end itself acts on (drawn in the key map under the image)
VIEWER_KEYS = {"+": "zoom in", "-": "zoom out", "0": "whole image", "p": "pan",
               "b": "box", "r": "brush", "e": "eraser"}


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


def _stretch(image: np.ndarray, percentiles: tuple[float, float], limits=None) -> np.ndarray:
    """Float image in [0, 1] between two percentiles, or two intensities (the contrast)."""
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    grey = grey.astype(np.float32)
    lo, hi = np.percentile(grey, percentiles) if limits is None else limits
    if hi <= lo:
        return np.zeros(grey.shape, np.float32)
    return np.clip((grey - lo) / (hi - lo), 0, 1)


def _check_limits(limits):
    if limits is None:
        return None
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"`limits` must be (low, high) intensities, got {limits!r}.") from None
    if not (np.isfinite([lo, hi]).all() and lo < hi):
        raise ValueError(f"`limits` must be finite with low < high, got {limits!r}.")
    return lo, hi


def image_png(image, *, color="gray", percentiles=(0.5, 99.8), limits=None) -> bytes:
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
    limits : (float, float), optional
        The two intensities themselves (e.g. ``(100, 4000)`` counts); they
        replace `percentiles`.

    Returns
    -------
    png : bytes

    Examples
    --------
    >>> png = image_png(np.arange(16, dtype=np.uint8).reshape(4, 4))
    >>> png[:4] == b"\\x89PNG"
    True
    """
    return _png(_image_rgba(check_image(image, "image", rgb=True), color, percentiles,
                            _check_limits(limits)))


def _image_rgba(image, color, percentiles, limits) -> np.ndarray:
    if not (len(percentiles) == 2 and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise ValueError(f"`percentiles` must be (low, high) with 0 <= low < high <= 100, "
                         f"got {percentiles!r}.")
    level = _stretch(image, percentiles, limits)
    rgba = np.empty(level.shape + (4,), np.uint8)
    if color == "gray":
        rgba[..., :3] = (level * 255).astype(np.uint8)[..., None]
        rgba[..., 3] = 255
    else:
        rgba[..., :3] = (np.asarray(_rgb(color)) * 255).astype(np.uint8)
        rgba[..., 3] = (level * 255).astype(np.uint8)
    return rgba


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


def stroke_mask(shape, points, radius: float) -> np.ndarray:
    """Pixels a brush of `radius` covers along a stroke through `points`.

    A pixel is covered when its centre lies within `radius` of the
    polyline (pixel ``(r, c)`` has its centre at ``(r + 0.5, c + 0.5)``,
    the viewer's coordinates), so a stroke paints the same pixels whatever
    the zoom it was drawn at.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    points : (N, 2) array-like of (y, x)
        The stroke, in image pixels; one point is a dot.
    radius : float
        Brush radius in image pixels, > 0.

    Returns
    -------
    mask : (H, W) bool ndarray

    Examples
    --------
    >>> stroke_mask((5, 7), [(2.5, 1.5), (2.5, 5.5)], 0.5).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    if not (len(shape) == 2 and all(isinstance(v, (int, np.integer)) and v > 0 for v in shape)):
        raise ValueError(f"`shape` must be (H, W) with positive ints, got {shape!r}.")
    if isinstance(radius, bool) or not (isinstance(radius, (int, float)) and
                                        np.isfinite(radius) and radius > 0):
        raise ValueError(f"`radius` must be a positive number of pixels, got {radius!r}.")
    pts = np.asarray(points, float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if len(pts) == 0 or not np.isfinite(pts).all():
        raise ValueError(f"`points` must be a non-empty (N, 2) array of finite (y, x), got "
                         f"{len(pts)} points.")
    h, w = shape
    mask = np.zeros((h, w), bool)
    segments = zip(pts, pts[1:]) if len(pts) > 1 else [(pts[0], pts[0])]
    for a, b in segments:  # distance of each pixel centre near the segment to the segment
        y0 = max(int(np.floor(min(a[0], b[0]) - radius)), 0)
        y1 = min(int(np.ceil(max(a[0], b[0]) + radius)) + 1, h)
        x0 = max(int(np.floor(min(a[1], b[1]) - radius)), 0)
        x1 = min(int(np.ceil(max(a[1], b[1]) + radius)) + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        d = b - a
        length2 = float(d @ d)
        t = np.zeros_like(yy) if length2 == 0 else np.clip(
            ((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / length2, 0, 1)
        near = (yy - a[0] - t * d[0]) ** 2 + (xx - a[1] - t * d[1]) ** 2 <= radius ** 2
        mask[y0:y1, x0:x1] |= near
    return mask


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
    mode : {"pan", "box", "brush", "erase"}
        What a drag does.
    keymap : dict
        Keys a panel adds to the viewer's own (key name as the browser
        gives it, e.g. ``"z"``, ``"Enter"``, ``"ArrowRight"`` -> what it
        does); only these and the viewer's keys are taken from the notebook.
    pixel_size : float or None
        µm per image pixel; a scale bar is drawn when it is set.
    brush_radius : float
        Brush and eraser radius in image pixels.
    events : list of dict
        The last 100 events received (click, box, key, stroke).

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
    mode = traitlets.Enum(("pan", "box", "brush", "erase"), default_value="pan").tag(sync=True)
    height = traitlets.Int(640).tag(sync=True)
    max_scale = traitlets.Float(32.0).tag(sync=True)
    keymap = traitlets.Dict().tag(sync=True)
    # the drag modes offered (brush and eraser once something listens to strokes)
    tools = traitlets.List(traitlets.Unicode(), ["pan", "box"]).tag(sync=True)
    pixel_size = traitlets.Float(None, allow_none=True).tag(sync=True)
    brush_radius = traitlets.Float(4.0).tag(sync=True)

    @traitlets.validate("pixel_size")
    def _check_pixel_size(self, proposal):
        value = proposal["value"]
        if value is not None and not (np.isfinite(value) and value > 0):
            raise traitlets.TraitError(f"`pixel_size` must be a positive number of µm per "
                                       f"pixel, or None; got {value!r}.")
        return value

    @traitlets.validate("brush_radius")
    def _check_brush_radius(self, proposal):
        value = proposal["value"]
        if not (np.isfinite(value) and 0.5 <= value <= 200):
            raise traitlets.TraitError(f"`brush_radius` must be between 0.5 and 200 pixels, "
                                       f"got {value!r}.")
        return value

    @traitlets.validate("keymap")
    def _check_keymap(self, proposal):
        keymap = proposal["value"]
        for key, what in keymap.items():
            if not (isinstance(key, str) and key and isinstance(what, str)):
                raise traitlets.TraitError(f"`keymap` maps key names to descriptions (str -> "
                                           f"str), got {key!r}: {what!r}.")
            if key in VIEWER_KEYS:
                raise traitlets.TraitError(f"key {key!r} is the viewer's own "
                                           f"({VIEWER_KEYS[key]}); pick another.")
        return keymap

    def __init__(self, *, height: int = 640, max_scale: float = 32.0, **kwargs):
        if isinstance(height, bool) or not isinstance(height, int) or height < 100:
            raise ValueError(f"`height` must be an int >= 100 (screen pixels), got {height!r}.")
        if not (isinstance(max_scale, (int, float)) and max_scale >= 1):
            raise ValueError(f"`max_scale` must be a number >= 1, got {max_scale!r}.")
        super().__init__(height=height, max_scale=float(max_scale), **kwargs)
        self._rasters: dict[str, bytes] = {}
        self._images: dict[str, tuple] = {}  # name -> (image, color, percentiles, limits)
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
                  visible: bool = True, percentiles=(0.5, 99.8), limits=None) -> None:
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
        limits : (float, float), optional
            Display contrast as two intensities; replaces `percentiles`.
        """
        image = check_image(image, name, rgb=True)
        self._check_shape(image, f"image {name!r}")
        limits = _check_limits(limits)
        png = _png(_image_rgba(image, color, percentiles, limits))
        self._images[name] = (image, color, tuple(percentiles), limits)
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

    def set_opacity(self, name: str, opacity: float) -> None:
        """Opacity of layer `name`, in [0, 1] (as its slider under the image sets it)."""
        layers = [dict(layer) for layer in self.layers]
        layers[self._index(name)]["opacity"] = _opacity(opacity)
        self.layers = layers

    def set_contrast(self, name: str, limits=None, *, percentiles=(0.5, 99.8)) -> None:
        """Display contrast of image layer `name`: two intensities, or two percentiles.

        The browser's contrast slider scales what it was sent; this sends the
        layer again, stretched between `limits` (e.g. ``(100, 4000)``
        counts) or, without them, between `percentiles` of its values.
        """
        if name not in self._images:
            raise KeyError(f"no image layer {name!r}; the image layers are "
                           f"{sorted(self._images)}.")
        image, color, _, _ = self._images[name]
        limits = _check_limits(limits)
        png = _png(_image_rgba(image, color, percentiles, limits))
        self._images[name] = (image, color, tuple(percentiles), limits)
        self._set_layer(dict(self.layers[self._index(name)]), png)

    def values_at(self, y: float, x: float) -> dict:
        """Each raster layer's value at image pixel (`y`, `x`): what the status line shows.

        Image layers give their raw intensity (a tuple for RGB), label layers
        the label (0: background); an empty dict outside the image.

        Examples
        --------
        >>> viewer = Viewer()
        >>> viewer.add_image(np.arange(12, dtype=np.uint16).reshape(3, 4), name="TL")
        >>> viewer.add_labels(np.eye(3, 4, dtype=int), name="cells")
        >>> viewer.values_at(1.5, 1.2)
        {'TL': 5, 'cells': 1}
        """
        h, w = self.shape
        row, col = int(np.floor(y)), int(np.floor(x))
        if not (0 <= row < h and 0 <= col < w):
            return {}
        values = {}
        for layer in self.layers:
            name = layer["name"]
            if name in self._images:
                value = self._images[name][0][row, col]
                values[name] = (tuple(v.item() for v in value) if np.ndim(value)
                                else value.item())
            elif name in self._label_images:
                values[name] = int(self._label_images[name][row, col])
        return values

    def remove(self, name: str) -> None:
        """Remove layer `name`."""
        index = self._index(name)
        self.layers = [dict(layer) for i, layer in enumerate(self.layers) if i != index]
        self._rasters.pop(name, None)
        self._images.pop(name, None)
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
        """Call ``callback(event)`` on each key of the key map pressed (``key``, ``shift``).

        The browser sends the viewer's own keys and those of ``keymap``,
        while the pointer is over the image or the image has the focus.
        """
        self._register("key", callback, remove)

    def on_stroke(self, callback, *, remove: bool = False) -> None:
        """Call ``callback(event)`` when a brush or eraser stroke is drawn.

        `event` has ``points`` ((N, 2) float array of (y, x) image pixels),
        ``radius`` (image pixels), ``erase`` (bool) and ``mask`` (the
        :func:`stroke_mask` of the stroke). Registering one shows the brush
        and eraser buttons.
        """
        self._register("stroke", callback, remove)
        painting = bool(self._callbacks["stroke"])
        self.tools = ["pan", "box"] + (["brush", "erase"] if painting else [])

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
        "key", ...}``, ``{"event": "stroke", "points", "radius", "erase"}``,
        ``{"event": "hover", "y", "x"}``, ``{"event": "ready"}``); public so
        that tests and scripts drive the viewer exactly as a user does. After
        a click, box, key or stroke the browser is told ``idle`` (it shows
        "working…" until then); a hover is answered with the values under
        the pointer.
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
        if kind == "hover":  # the status line asks for the values under the pointer
            try:
                y, x = float(message["y"]), float(message["x"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"a hover message has numbers 'y' and 'x', got "
                                 f"{message!r}.") from None
            self.send({"event": "values", "y": y, "x": x, "text": _values_text(
                self.values_at(y, x))})
            return
        if kind not in _EVENTS:
            raise ValueError(f"unknown viewer event {kind!r}; expected one of "
                             f"{list(_EVENTS) + ['ready', 'hover']}.")
        try:
            self._dispatch(kind, dict(message))
        finally:  # the browser shows "working" from the click until this arrives
            self.send({"event": "idle"})

    def _dispatch(self, kind: str, event: dict) -> None:
        h, w = self.shape
        if kind == "stroke":
            points = np.asarray(event.get("points", []), float).reshape(-1, 2)
            event["points"] = np.clip(points, 0, [h, w])
            event["radius"] = float(event.get("radius", self.brush_radius))
            event["erase"] = bool(event.get("erase", False))
            event["mask"] = stroke_mask((h, w), event["points"], event["radius"])
        elif kind == "click":
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

    # ---- a picture of the first view (for pages without a kernel) -------------------
    def snapshot(self, *, max_size: int = 800) -> np.ndarray:
        """The visible layers composited as the browser draws them at "fit": an RGB image.

        What a static page shows in place of the live widget (the docs site,
        an exported notebook): the widget adds it to its MIME bundle as PNG.

        Parameters
        ----------
        max_size : int, default=800
            Longest side in pixels; larger images are shrunk.

        Returns
        -------
        rgb : (h, w, 3) uint8 ndarray

        Examples
        --------
        >>> viewer = Viewer()
        >>> viewer.add_image(np.full((4, 4), 7, np.uint8), name="TL")
        >>> labels = np.zeros((4, 4), int); labels[1:3, 1:3] = 1
        >>> viewer.add_labels(labels, name="cells", mode="fill", color="red")
        >>> viewer.snapshot()[:, :, 0]
        array([[  0,   0,   0,   0],
               [  0, 255, 255,   0],
               [  0, 255, 255,   0],
               [  0,   0,   0,   0]], dtype=uint8)
        """
        from PIL import Image, ImageDraw

        h, w = self.shape
        if h == 0:
            raise ValueError("the viewer has no raster layer to draw.")
        canvas = np.zeros((h, w, 3), np.float32)
        canvas[:] = 17 / 255  # the canvas background
        for layer in self.layers:
            name = layer["name"]
            if not layer["visible"] or layer["kind"] not in ("image", "labels"):
                continue
            if name in self._images:
                image, color, percentiles, limits = self._images[name]
                rgba = _image_rgba(image, color, percentiles, limits)
            else:
                labels = self._label_images[name]
                edges = _inner_edges(labels) if layer.get("mode") == "outline" else None
                rgba = _labels_rgba(labels, edges, None if layer.get("own_colors")
                                    else layer["color"])
            alpha = rgba[..., 3:].astype(np.float32) / 255 * layer.get("opacity", 1.0)
            canvas = canvas * (1 - alpha) + rgba[..., :3].astype(np.float32) / 255 * alpha
        picture = Image.fromarray(np.round(canvas * 255).astype(np.uint8))
        factor = min(1.0, max_size / max(h, w))
        if factor < 1:
            picture = picture.resize((max(round(w * factor), 1), max(round(h * factor), 1)),
                                     Image.Resampling.BOX)
        draw = ImageDraw.Draw(picture)
        for layer in self.layers:
            if not layer["visible"] or layer["kind"] not in ("points", "boxes"):
                continue
            if layer["kind"] == "points":
                r = layer.get("size", 3)
                for y, x in layer["data"]:
                    draw.ellipse([x * factor - r, y * factor - r, x * factor + r,
                                  y * factor + r], fill=layer["color"])
            else:
                for y0, x0, y1, x1 in layer["data"]:
                    draw.rectangle([x0 * factor, y0 * factor, x1 * factor, y1 * factor],
                                   outline=layer["color"])
        return np.asarray(picture)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        if data is not None and self.shape[0] > 0:  # JupyterLab draws the live widget instead
            data = {**data, "image/png": _snapshot_png(self)}
        return (data, metadata) if isinstance(bundle, tuple) else data


def _snapshot_png(viewer, *, min_size: int = 480) -> bytes:
    """PNG of the viewer's snapshot, small images enlarged by whole pixels to `min_size`."""
    picture = viewer.snapshot()
    factor = -(-min_size // max(picture.shape[:2]))
    if factor > 1:
        picture = picture.repeat(factor, axis=0).repeat(factor, axis=1)
    return _png(picture)


def _values_text(values: dict) -> str:
    def fmt(v):
        if isinstance(v, tuple):
            return "(" + ", ".join(fmt(u) for u in v) + ")"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return " · ".join(f"{name} {fmt(v)}" for name, v in values.items())


def _panel_bundle(panel, viewer, **kwargs):
    """The MIME bundle of a widget `panel` holding `viewer`, with the viewer's snapshot as PNG.

    Live front ends draw the widget; static pages (the docs site, an
    exported notebook) show the picture of its first view instead of blank
    space.
    """
    data = panel._repr_mimebundle_(**kwargs)
    if isinstance(data, tuple):
        data = data[0]
    if data is not None and viewer.shape[0] > 0:
        data = {**data, "image/png": _snapshot_png(viewer)}
    return data


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
    >>> show(pair.tl, fluorescence=pair.fluorescence, labels=pair.labels).layer_names
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


class StackViewer:
    """A :class:`Viewer` of image stacks (a movie, a z-stack) with a t / z slider.

    Build it with :func:`show_stack`. The sliders (and the ``,`` / ``.``
    keys for the first axis) pick the plane; every layer shows that plane.

    Attributes
    ----------
    viewer : Viewer
    sliders : dict
        Axis letter (``"t"``, ``"z"``) -> its ``ipywidgets.IntSlider``.
    index : dict
        Axis letter -> the plane shown.
    """

    def __init__(self, stacks: dict, *, axes: str, height: int, pixel_size=None):
        import ipywidgets as w

        self._stacks = stacks
        self.axes = axes
        lead = next(iter(stacks.values()))[1].shape[:len(axes)]
        self.viewer = Viewer(height=height)
        if pixel_size is not None:
            self.viewer.pixel_size = float(pixel_size)
        self.sliders = {axis: w.IntSlider(value=0, min=0, max=n - 1, description=axis,
                                          continuous_update=False,
                                          layout=w.Layout(width="auto", min_width="20em"))
                        for axis, n in zip(axes, lead)}
        self.index = {axis: 0 for axis in axes}
        for axis, slider in self.sliders.items():
            slider.observe(lambda change, a=axis: self.go(**{a: change["new"]}), names="value")
        first = axes[0]
        self.viewer.keymap = {",": f"previous {first}", ".": f"next {first}"}
        self.viewer.on_key(self._key)
        self.panel = w.VBox([w.HBox(list(self.sliders.values()),
                                    layout=w.Layout(flex_flow="row wrap")), self.viewer])
        self._draw()

    def go(self, **index) -> None:
        """Show plane ``t=...`` / ``z=...`` (the axes not given stay where they are)."""
        for axis, value in index.items():
            if axis not in self.sliders:
                raise KeyError(f"no axis {axis!r}; this stack has {list(self.sliders)}.")
            n = self.sliders[axis].max + 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                    not 0 <= value < n:
                raise ValueError(f"`{axis}` must be an int in [0, {n - 1}], got {value!r}.")
        changed = {a: int(v) for a, v in index.items() if self.index[a] != v}
        if not changed:
            return
        self.index.update(changed)
        for axis, value in changed.items():
            self.sliders[axis].value = value
        self._draw()

    def _plane(self, stack):
        return stack[tuple(self.index[a] for a in self.axes)]

    def _draw(self) -> None:
        for name, (kind, stack, style) in self._stacks.items():
            if kind == "image":
                self.viewer.add_image(self._plane(stack), name=name, **style)
            elif name in self.viewer.layer_names:
                self.viewer.update_labels(name, self._plane(stack))
            else:
                self.viewer.add_labels(self._plane(stack), name=name, **style)

    def _key(self, event) -> None:
        axis = self.axes[0]
        step = {",": -1, ".": 1}.get(event["key"])
        if step is not None:
            n = self.sliders[axis].max + 1
            self.go(**{axis: (self.index[axis] + step) % n})

    def _repr_mimebundle_(self, **kwargs):
        return _panel_bundle(self.panel, self.viewer, **kwargs)


def show_stack(tl=None, *, fluorescence=None, labels=None, axes: str = "TYX",
               pixel_size=None, height: int = 640) -> StackViewer:
    """A viewer of stacks with a slider per t / z axis: a movie, a z-stack, or both.

    Parameters
    ----------
    tl, fluorescence : ndarray, optional
        Stacks with the leading axes `axes` names, then (H, W).
    labels : int ndarray, optional
        Cell masks per plane, same leading shape; outlined.
    axes : str, default="TYX"
        ``"TYX"``, ``"ZYX"`` or ``"TZYX"`` (the order of the stacks' axes).
    pixel_size : float, optional
        µm per pixel, for the scale bar.
    height : int, default=640

    Returns
    -------
    stack : StackViewer
        Displays itself; ``stack.go(t=3)`` does what the slider does.

    Examples
    --------
    >>> movie = np.random.default_rng(0).integers(0, 255, (5, 32, 32), dtype=np.uint8)
    >>> stack = show_stack(movie, labels=(movie > 200).astype(int))
    >>> stack.go(t=3)
    >>> stack.index, stack.viewer.values_at(2, 2)["TL"] == int(movie[3, 2, 2])
    ({'t': 3}, True)
    """
    axes = str(axes).upper()
    if axes not in ("TYX", "ZYX", "TZYX"):
        raise ValueError(f"`axes` must be 'TYX', 'ZYX' or 'TZYX', got {axes!r}.")
    lead_axes = axes[:-2].lower()
    given = {"TL": ("image", tl, {}),
             "fluorescence": ("image", fluorescence, {"color": "magenta",
                                                      "visible": tl is None}),
             "cells": ("labels", labels, {})}
    stacks = {}
    lead = None
    for name, (kind, stack, style) in given.items():
        if stack is None:
            continue
        stack = np.asarray(stack)
        if stack.ndim not in (len(axes), len(axes) + 1) or (
                stack.ndim == len(axes) + 1 and stack.shape[-1] != 3):
            raise ValueError(f"{name} must have axes {axes} (ndim {len(axes)}), got shape "
                             f"{stack.shape}.")
        if lead is None:
            lead = stack.shape[:len(lead_axes)]
        elif stack.shape[:len(lead_axes)] != lead:
            raise ValueError(f"{name} has {dict(zip(lead_axes, stack.shape))} planes but the "
                             f"first stack has {dict(zip(lead_axes, lead))}: they must match.")
        if 0 in stack.shape:
            raise ValueError(f"{name} is empty (shape {stack.shape}).")
        stacks[name] = (kind, stack, style)
    if not stacks:
        raise ValueError("nothing to show: pass at least one of tl, fluorescence, labels.")
    return StackViewer(stacks, axes=lead_axes, height=height, pixel_size=pixel_size)
