"""The review widget behind :func:`cellnb.widgets.review` (private module).

A :class:`cellnb.viewer.Viewer` of one record at a time, pairs ordered by
:func:`cellnb.qc.triage` (most flagged first), and the clicks turned into
:mod:`cellnb.curate` edits:

- click a cell: reject it (it turns red); click a rejected cell: restore it;
- click empty TL: SAM's cell from that positive point (on the image's kept
  embedding), shown as a yellow *preview* with its size and SAM score, and a
  warning when its size is far outside the record's cells; ``Enter`` (or the
  button) accepts it, ``Esc`` discards it;
- shift-click: a negative point for the preview (or, with none, for the cell
  accepted last, whose new mask is previewed);
- box mode + drag: a preview from the box;
- brush / eraser mode + drag: paint the cell the stroke starts in (onto
  background only) / erase cell pixels; each stroke is one edit;
- ``z`` (or the button) undoes the last edit, ``]`` / ``[`` (or the arrow
  keys) go to the next / previous pair.

A click or key shows "working…" at once in the viewer; the first click on a
pair says that SAM's image embedding is being computed (seconds on a CPU).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import curate


def _read_fl(provenance) -> np.ndarray:
    plane = provenance.get("plane")
    if plane:
        from ..io.microscope import read_plane

        return read_plane(provenance["fl_path"], scene=plane["scene"], t=plane["t"],
                          z=plane["z"], channel=plane["fl_channel"], name="fluorescence image")
    from ..io import read_image

    return read_image(provenance["fl_path"], name="fluorescence image")


class Review:
    """Browse annotate records, worst first, and correct them by clicking.

    Build it with :func:`cellnb.widgets.review`. Every action is also a
    method (:meth:`click`, :meth:`box`, :meth:`undo`, :meth:`go`), the same
    code a click in the browser runs, so corrections can be scripted and
    tested.

    Attributes
    ----------
    pairs : DataFrame
        :func:`cellnb.qc.triage`'s per-pair table, in review order.
    pair_id : str
        The record shown.
    viewer : cellnb.viewer.Viewer
    message : str
        What the last action did (also shown above the image).
    messages : list of str
        Every message shown, oldest first (the last 200).
    pending : dict or None
        The preview waiting for Enter / Esc: ``mask``, ``score``, ``area``,
        ``points``, ``box``, ``replaces`` (the cell it would replace, or None)
        and ``warning`` (empty when its size is in range).
    seconds : float
        How long the last action took, from the click to the redrawn layers.
    """

    KEYMAP = {"Enter": "accept", "Escape": "discard", "z": "undo", "]": "next pair",
              "[": "previous pair", "ArrowRight": "next pair", "ArrowLeft": "previous pair"}

    def __init__(self, out, *, model=None, height: int = 560):
        import ipywidgets as w

        from ..qc import triage
        from ..viewer import Viewer

        self.out = Path(out)
        if model is not None and not (hasattr(model, "embed") and hasattr(model, "predictor")):
            raise TypeError(f"`model` must be a SAM model (cellnb.models.load or "
                            f"cellnb.models.load_cached) to add cells by clicking, or None; got "
                            f"{type(model).__name__}.")
        self.model = model
        self.pairs, _ = triage(self.out)
        self.viewer = Viewer(height=height)
        self.viewer.keymap = dict(self.KEYMAP)
        self.message, self.messages, self.seconds = "", [], 0.0
        self.pending: dict | None = None
        self._selected: int | None = None  # the cell added last, and its points
        self._points: list[tuple[float, float, bool]] = []
        names = [(f"{r.id}  ({r.flagged} flagged of {r.cells})", r.id)
                 for r in self.pairs.itertuples()]
        self._pick = w.Dropdown(options=names, description="pair",
                                layout=w.Layout(width="auto", min_width="16em"))
        previous, following = w.Button(description="◀ previous"), w.Button(description="next ▶")
        undo = w.Button(description="undo (z)", tooltip="undo the last edit of this pair")
        self._accept = w.Button(description="accept (Enter)", button_style="success",
                                disabled=True, tooltip="keep the previewed cell")
        self._discard = w.Button(description="discard (Esc)", disabled=True,
                                 tooltip="drop the previewed cell")
        previous.on_click(lambda _: self.step(-1))
        following.on_click(lambda _: self.step(1))
        undo.on_click(lambda _: self.undo())
        self._accept.on_click(lambda _: self.accept())
        self._discard.on_click(lambda _: self.discard())
        self._status = w.HTML()
        help_ = w.HTML("<small>click a cell: reject / restore · click empty TL: preview a "
                       "cell (SAM), Enter accepts, Esc discards · shift-click: negative point "
                       "· box mode: drag a box · brush / eraser: drag to paint / erase · "
                       "z undo · ] / [ next / previous pair</small>")
        bar = w.HBox([previous, self._pick, following, undo, self._accept, self._discard],
                     layout=w.Layout(flex_flow="row wrap"))
        self.panel = w.VBox([bar, self._status, self.viewer, help_])
        self._pick.observe(lambda change: self.go(change["new"]), names="value")
        self.viewer.on_click(lambda e: self.click(e["y"], e["x"], shift=e["shift"]))
        self.viewer.on_box(lambda e: self.box(e["y0"], e["x0"], e["y1"], e["x1"]))
        self.viewer.on_stroke(lambda e: self.paint(e["points"], e["radius"],
                                                   erase=e["erase"]))
        self.viewer.on_key(self._key)
        self.pair_id = None
        self.go(self.pairs["id"].iloc[0])

    # ---- one record --------------------------------------------------------------
    def _load(self) -> None:
        """The record shown, as curate reads it (and its nuclei, for the flags)."""
        from ..io import read_labels
        from ..io._records import read_record, record_folder

        folder = record_folder(self.out, self.pair_id)
        self.version = curate.version(self.out, self.pair_id)  # edits refused once stale
        self.provenance, self.cells, self.labels, self.auto = read_record(folder)
        self.nuclei = read_labels(folder / "nuclei.tif") if (folder / "nuclei.tif").is_file() \
            else None

    def go(self, pair_id: str) -> None:
        """Show record `pair_id`."""
        from ..annotate import _read_tl
        from ..io import Record
        from ..qc import flag_cells

        if pair_id not in set(self.pairs["id"]):
            raise KeyError(f"no record {pair_id!r} in {self.out}.")
        if pair_id == self.pair_id:
            return
        if self.pending is not None:
            self._clear_pending()
        self.pair_id, self._selected, self._points = pair_id, None, []
        self._pick.value = pair_id
        self._load()
        self.image = _read_tl(self.provenance)
        viewer = self.viewer
        for name in list(viewer.layer_names):
            viewer.remove(name)
        viewer.shape = (0, 0)
        viewer.add_image(self.image, name="TL")
        size = self.provenance.get("pixel_size_um")
        viewer.pixel_size = float(np.mean(size)) if size else None
        try:
            viewer.add_image(_read_fl(self.provenance), name="fluorescence", color="magenta",
                             visible=False)
        except (OSError, ValueError):  # the fluorescence file moved: review the TL alone
            pass
        flags = flag_cells(Record(pair_id, None, self.labels, self.cells), nuclei=self.nuclei)
        self._flagged = flags.index[flags["n_flags"] > 0].to_numpy()
        self._draw()
        viewer.fit()
        self._say(f"{pair_id}: {int((self.cells['status'] == 'kept').sum())} cells, "
                  f"{len(self._flagged)} flagged (orange)")

    def _draw(self, layers=("rejected", "flagged", "cells")) -> None:
        """Send the label layers in `layers` again (each is a PNG of the whole image)."""
        viewer = self.viewer

        def show(name, labels, **style):  # a layer on show already: only what changed travels
            if name in viewer.layer_names:
                viewer.update_labels(name, labels)
            else:
                viewer.add_labels(labels, name=name, **style)

        if "rejected" in layers:
            rejected = self.cells.index[self.cells["status"] == "rejected"].to_numpy()
            show("rejected", np.where(np.isin(self.auto, rejected) & (self.labels == 0),
                                      self.auto, 0), mode="fill", color="red", opacity=0.35)
        if "flagged" in layers:
            show("flagged", np.where(np.isin(self.labels, self._flagged), self.labels, 0),
                 mode="fill", color="orange", opacity=0.3)
        if "cells" in layers:
            show("cells", self.labels)
        if self.nuclei is not None and "nuclei" not in viewer.layer_names:
            viewer.add_labels(self.nuclei, name="nuclei", color="#00e5ff", visible=False)
        self._draw_points(self._points)

    def _draw_points(self, points) -> None:
        """The clicks of the cell being made: positive (green) and negative (red) points."""
        for name, color, positive in (("positive", "#39ff14", True), ("negative", "red", False)):
            where = np.array([[y, x] for y, x, p in points if p == positive]).reshape(-1, 2)
            self.viewer.add_points(where, name=name, color=color, size=4)

    def _say(self, message: str, warning: str = "") -> None:
        import html

        self.message = message + (f" — {warning}" if warning else "")
        self.messages = (self.messages + [self.message])[-200:]
        shown = f"<b>{html.escape(message)}</b>"
        if warning:
            shown += f' <b style="color:#d35400">⚠ {html.escape(warning)}</b>'
        self._status.value = shown

    def _fail(self, err: Exception) -> None:
        """An edit that failed: its message in the status line, whatever the exception (a
        click in a notebook must never fail without a word); a stale record is reloaded."""
        if isinstance(err, (ValueError, RuntimeError)):
            message = str(err)
        else:
            message = f"{type(err).__name__}: {err}"
        if isinstance(err, curate.StaleRecordError):
            if self.pending is not None:
                self._clear_pending()
            try:
                self._load()
                self._draw(("rejected", "flagged", "cells"))
                message += " (reloaded: what you see now is on disk)"
            except Exception:  # noqa: BLE001  the record itself is gone: say the first error
                pass
        self._say(message)

    def _changed(self, message: str, t0: float, layers=("rejected", "flagged", "cells")) -> None:
        self._load()
        self._draw(layers)
        self.seconds = time.perf_counter() - t0
        self._say(f"{message} ({self.seconds * 1000:.0f} ms)")

    def step(self, by: int) -> None:
        """Go `by` pairs forward (negative: back) in review order."""
        ids = self.pairs["id"].tolist()
        self.go(ids[(ids.index(self.pair_id) + by) % len(ids)])

    # ---- actions ------------------------------------------------------------------
    def _segment(self, points=(), box=None):
        from ..segment import segment_click

        if self.model is None:
            raise RuntimeError("no model: pass model= (a SAM model) to review() to add cells "
                               "by clicking.")
        if not self.model.has_embedding(self.image):
            self._say("computing SAM's image embedding for this pair (once per pair; seconds "
                      "on a CPU)…")
        return segment_click(self.model, self.image, list(points), box=box)

    def click(self, y: float, x: float, *, shift: bool = False) -> None:
        """What a click at image pixel (`y`, `x`) does (see the module notes)."""
        t0 = time.perf_counter()
        h, w = self.labels.shape
        row, col = int(np.floor(y)), int(np.floor(x))
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"({y}, {x}) lies outside the image ({h} x {w}).")
        try:
            if shift:
                self._negative(y, x, t0)
            elif self.labels[row, col] > 0:
                label = int(self.labels[row, col])
                curate.reject(self.out, self.pair_id, label, version=self.version)
                self._selected, self._points = None, []
                self._changed(f"rejected cell {label}", t0, layers=("rejected", "cells"))
            elif self.auto[row, col] > 0 and self.cells.loc[int(self.auto[row, col]),
                                                            "status"] == "rejected":
                label = int(self.auto[row, col])
                curate.restore(self.out, self.pair_id, label, version=self.version)
                self._changed(f"restored cell {label}", t0, layers=("rejected", "cells"))
            else:
                self._preview([(float(y), float(x), True)], None, None, t0)
        except Exception as err:  # noqa: BLE001  (every failure is shown, none vanishes)
            self._fail(err)

    def _size_warning(self, area: int, replaces) -> str:
        """A warning when `area` is far outside the sizes of the record's kept cells."""
        h, w = self.labels.shape
        if area > 0.25 * h * w:
            return (f"this mask covers {100 * area / (h * w):.0f} % of the image: background, "
                    f"not a cell?")
        areas = np.bincount(self.labels.ravel())[1:]
        areas = np.delete(areas, replaces - 1) if replaces and replaces <= len(areas) else areas
        areas = areas[areas > 0]
        if len(areas) < 3:
            return ""
        low, high = int(areas.min()), int(areas.max())
        if area < low / 2:
            return f"far smaller than this record's cells ({low}-{high} px)"
        if area > 2 * high:
            return f"far larger than this record's cells ({low}-{high} px)"
        return ""

    def _preview(self, points, box, replaces, t0) -> None:
        """SAM's mask for the prompts, shown for Enter / Esc (nothing written yet)."""
        mask, score = self._segment(points, box)
        free = mask & ((self.labels == 0) | ((self.labels == replaces) if replaces else False))
        if not free.any():
            self._say("SAM found no new cell there (an empty mask, or only pixels of other "
                      "cells); try a box, or a point nearer the cell's middle.")
            return
        area = int(free.sum())
        self.pending = {"mask": free, "score": float(score), "area": area,
                        "points": list(points), "box": box, "replaces": replaces,
                        "warning": self._size_warning(area, replaces)}
        self._accept.disabled = self._discard.disabled = False
        preview = free.astype(np.int32)
        if "preview" in self.viewer.layer_names:
            self.viewer.update_labels("preview", preview)
        else:
            self.viewer.add_labels(preview, name="preview", mode="fill", color="#ffd400",
                                   opacity=0.45)
        self._draw_points(points)
        what = f"cell {replaces} again" if replaces else "a new cell"
        self.seconds = time.perf_counter() - t0
        self._say(f"preview of {what}: {area} px, SAM score {score:.2f} — Enter accepts, "
                  f"Esc discards", self.pending["warning"])

    def _clear_pending(self) -> None:
        self.pending = None
        self._accept.disabled = self._discard.disabled = True
        if "preview" in self.viewer.layer_names:
            self.viewer.update_labels("preview", np.zeros(self.labels.shape, np.int32))

    def accept(self) -> None:
        """Keep the previewed cell: one edit, written into the record (Enter)."""
        t0 = time.perf_counter()
        pending = self.pending
        if pending is None:
            self._say("nothing to accept: click empty TL (or drag a box) for a preview first.")
            return
        points, box = pending["points"], pending["box"]
        prompt = {"points": [[y, x] for y, x, _ in points], "labels": [int(p) for *_, p in points]}
        if box is not None:
            prompt["box"] = [float(v) for v in box]
        try:
            if pending["replaces"] is None:
                label = curate.add(self.out, self.pair_id, pending["mask"], prompt=prompt,
                                   score=pending["score"], version=self.version)
                message = f"added cell {label} ({pending['area']} px, SAM score " \
                          f"{pending['score']:.2f})"
            else:
                label = pending["replaces"]
                curate.replace(self.out, self.pair_id, label, pending["mask"], prompt=prompt,
                               score=pending["score"], version=self.version)
                message = f"cell {label} segmented again with {len(points)} points"
        except Exception as err:  # noqa: BLE001  (every failure is shown, none vanishes)
            self._fail(err)
            return
        self._clear_pending()
        self._selected, self._points = label, list(points)
        self._changed(message, t0, layers=("cells",))

    def discard(self) -> None:
        """Drop the previewed cell (Esc); nothing was written."""
        if self.pending is None:
            self._say("nothing to discard.")
            return
        self._clear_pending()
        self._points = []
        self._draw(())
        self._say("preview discarded")

    def _negative(self, y, x, t0) -> None:
        if self.pending is not None:
            pending = self.pending
            points = pending["points"] + [(float(y), float(x), False)]
            self._preview(points, pending["box"], pending["replaces"], t0)
            return
        if self._selected is None:
            self._say("shift-click adds a negative point to the previewed cell or the cell "
                      "accepted last: click empty TL first.")
            return
        points = self._points + [(float(y), float(x), False)]
        self._preview(points, None, self._selected, t0)

    def paint(self, points, radius: float, *, erase: bool = False) -> None:
        """A brush (or eraser) stroke through `points` ((y, x) image pixels), as one edit.

        The brush grows the cell the stroke starts in, over background pixels
        only (never another cell's); the eraser takes the stroke's pixels
        from every cell. Either is written with :func:`cellnb.curate.replace_all`
        and undone with one undo.
        """
        from ..viewer import stroke_mask

        t0 = time.perf_counter()
        try:
            mask = stroke_mask(self.labels.shape, points, radius)
            labels = self.labels.copy()
            if erase:
                touched = sorted(int(v) for v in np.unique(labels[mask]) if v > 0)
                if not touched:
                    self._say("the eraser touched no cell.")
                    return
                labels[mask] = 0
                source, message = "eraser", f"erased {int((mask & (self.labels > 0)).sum())} " \
                                            f"px of cell(s) {touched}"
            else:
                y, x = (int(np.floor(v)) for v in np.asarray(points, float).reshape(-1, 2)[0])
                label = int(self.labels[min(y, labels.shape[0] - 1), min(x, labels.shape[1] - 1)])
                if label == 0:
                    self._say("start a brush stroke inside the cell you want to grow (the "
                              "brush paints that cell onto background).")
                    return
                grow = mask & (labels == 0)
                if not grow.any():
                    self._say(f"the stroke adds no background pixel to cell {label}.")
                    return
                labels[grow] = label
                source, message = "brush", f"painted {int(grow.sum())} px onto cell {label}"
            curate.replace_all(self.out, self.pair_id, labels, source=source,
                               version=self.version)
        except Exception as err:  # noqa: BLE001  (every failure is shown, none vanishes)
            self._fail(err)
            return
        self._changed(message, t0)

    def box(self, y0: float, x0: float, y1: float, x1: float) -> None:
        """What a box dragged from (`y0`, `x0`) to (`y1`, `x1`) does: a new cell from it."""
        t0 = time.perf_counter()
        try:
            self._preview([], (y0, x0, y1, x1), None, t0)
        except Exception as err:  # noqa: BLE001  (every failure is shown, none vanishes)
            self._fail(err)

    def undo(self) -> None:
        """Undo the last edit of the record shown."""
        t0 = time.perf_counter()
        if self.pending is not None:
            self._clear_pending()
        try:
            curate.undo(self.out, self.pair_id, version=self.version)
        except Exception as err:  # noqa: BLE001  (every failure is shown, none vanishes)
            self._fail(err)
            return
        self._selected, self._points = None, []
        self._changed("undone", t0)

    def _key(self, event) -> None:
        key = event["key"]
        if key == "Enter":
            self.accept()
        elif key == "Escape":
            self.discard()
        elif key == "z":
            self.undo()
        elif key in ("]", "ArrowRight"):
            self.step(1)
        elif key in ("[", "ArrowLeft"):
            self.step(-1)

    def _repr_mimebundle_(self, **kwargs):
        from ..viewer import _panel_bundle

        return _panel_bundle(self.panel, self.viewer, **kwargs)
