"""ipywidgets panels for JupyterLab (inline matplotlib; no front-end extension needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["tune_locate", "LocateTuner", "review"]

# the locate controls that only Cell-APP's methods read
CELLAPP_CONTROLS = ("threshold_division", "sigma", "tophat_size", "erosion_radius")


def _as_pairs(pairs_or_images) -> list[tuple[str, object]]:
    """(name, loader) per pair; loaders read files lazily and return (tl, fl)."""
    import pandas as pd

    from ..data import SyntheticPair
    from ..io import read_pair

    if isinstance(pairs_or_images, pd.DataFrame):
        if not {"tl_path", "fl_path"} <= set(pairs_or_images.columns):
            raise ValueError("a pairs table needs columns 'tl_path' and 'fl_path' "
                             "(cellnb.io.find_pairs).")
        names = pairs_or_images.get("pair_id", pd.Series(range(len(pairs_or_images))))
        return [(str(n), (lambda r=row: read_pair(r)))
                for n, (_, row) in zip(names, pairs_or_images.iterrows())]
    if isinstance(pairs_or_images, (SyntheticPair, tuple)):
        pairs_or_images = [pairs_or_images]
    out = []
    for k, item in enumerate(pairs_or_images):
        if isinstance(item, SyntheticPair):
            out.append((item.id, (lambda p=item: (p.tl, p.fluorescence))))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append((f"pair {k}", (lambda p=item: p)))
        else:
            raise TypeError("`pairs_or_images` must be a find_pairs() table, SyntheticPair "
                            f"objects or (tl, fluorescence) tuples; item {k} is "
                            f"{type(item).__name__}.")
    if not out:
        raise ValueError("`pairs_or_images` is empty.")
    return out


class LocateTuner:
    """Interactive choice of the locate and prompt parameters.

    Build it with :func:`tune_locate`. Attributes after each update:
    ``nuclei`` (label image), ``prompts`` (table), ``figure`` (the nucleus
    size histogram), ``viewer`` (a :class:`cellnb.viewer.Viewer` of the
    fluorescence and TL images with the nuclei and prompts, zoomable to
    single nuclei); ``config`` is the :class:`cellnb.Config` the controls
    describe.
    """

    def __init__(self, pairs_or_images, config=None):
        import ipywidgets as w

        from ..config import Config
        from ..viewer import Viewer

        self.pairs = _as_pairs(pairs_or_images)
        if config is None:  # the method the tutorials recommend; Cell-APP's modes are one click away
            config = Config()
            config.locate.method = "auto"
        self.config = dataclasses.replace(config)
        loc, pro = self.config.locate, self.config.prompt
        from .._nuclei.learned import LEARNED, learned_available

        # one description width for every control, so that each slider keeps a track it can
        # be dragged on (a description as wide as its text left 0-28 px tracks)
        style = {"description_width": "9.5em"}
        # sliders recompute when released, not on every step of a drag
        slider = {"style": style, "continuous_update": False}
        methods = ["auto", "isodata", "multiotsu", "watershed"]
        methods += [m for m in LEARNED if learned_available(m) or loc.method == m]
        self.controls = {
            "pair": w.Dropdown(options=[n for n, _ in self.pairs], description="pair"),
            "method": w.Dropdown(options=methods, value=loc.method, description="method"),
            "threshold_division": w.FloatSlider(value=loc.threshold_division, min=0.1, max=2.0,
                                                step=0.05, description="threshold division",
                                                **slider),
            "sigma": w.FloatSlider(value=loc.sigma, min=0, max=10, step=0.5,
                                   description="gaussian sigma", **slider),
            # any integer size (Cell-APP's 71 stays 71: a step of 2 from 0 would snap it to
            # 72, and even footprints are many times slower); 0 switches the top-hat off
            "tophat_size": w.BoundedIntText(value=loc.tophat_size or 0, min=0, max=1001,
                                            description="top-hat size (0 = off)", style=style),
            "erosion_radius": w.IntSlider(value=loc.erosion_radius or 0, min=0, max=30,
                                          description="erosion radius (0 = off)", **slider),
            "kind": w.Dropdown(options=["points", "boxes", "points+boxes"], value=pro.kind,
                               description="prompts"),
            "box_scale": w.FloatSlider(value=pro.box_scale, min=1.0, max=5.0, step=0.1,
                                       description="box scale", **slider),
        }
        self.path = w.Text(value="cellnb_config.yaml", description="save as",
                           layout=w.Layout(flex="1 1 12em", min_width="10em"))
        self.save_button = w.Button(description="Save config", icon="save",
                                    layout=w.Layout(flex="0 0 auto"))
        self.status = w.HTML()
        self.note = w.HTML()  # why some controls are greyed out
        self.output = w.Output()
        for control in self.controls.values():  # "auto": the grid cell's width, margins inside it
            control.layout = w.Layout(width="auto")
            control.observe(lambda change: self.update(), names="value")
        for name in CELLAPP_CONTROLS:
            self.controls[name].tooltip = (
                "a parameter of Cell-APP's methods (isodata, multiotsu, watershed)")
        self.save_button.on_click(lambda _: self.save())
        # controls in as many columns as the notebook column holds; nothing wider than it
        grid = w.GridBox(list(self.controls.values()), layout=w.Layout(
            grid_template_columns="repeat(auto-fill, minmax(24em, 1fr))", grid_gap="2px 12px"))
        save = w.HBox([self.path, self.save_button], layout=w.Layout(flex_flow="row wrap"))
        self.viewer = Viewer(height=520)
        self.panel = w.VBox([grid, self.note, save, self.status, self.viewer, self.output])
        self._images = {}
        self._shown = None
        self.nuclei = self.prompts = self.figure = None
        self.update()

    # -- state ------------------------------------------------------------------
    def parameters(self) -> dict:
        """Current locate and prompt parameters, as :func:`cellnb.locate` takes them."""
        c = {k: v.value for k, v in self.controls.items()}
        return {"locate": {"method": c["method"], "threshold_division": c["threshold_division"],
                           "sigma": c["sigma"], "tophat_size": c["tophat_size"] or None,
                           "erosion_radius": c["erosion_radius"] or None},
                "prompt": {"kind": c["kind"], "box_scale": c["box_scale"]}}

    def _pair(self):
        name = self.controls["pair"].value
        if name not in self._images:
            self._images[name] = dict(self.pairs)[name]()
        return self._images[name]

    # -- callbacks ----------------------------------------------------------------
    def update(self) -> None:
        """Recompute nuclei and prompts for the current controls and redraw."""
        import warnings

        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        from ..locate import locate, method_options
        from ..prompt import prompt

        params = self.parameters()
        method = params["locate"]["method"]
        cellapp = method not in ("auto", "stardist", "cellpose")
        for name in CELLAPP_CONTROLS:
            self.controls[name].disabled = not cellapp
        self.note.value = "" if cellapp else (
            f"<small><i>threshold division, gaussian sigma, top-hat size and erosion radius "
            f"are greyed out: they are parameters of Cell-APP's methods (isodata, multiotsu, "
            f"watershed). <b>{method}</b> "
            + ("estimates the nucleus scale from the image and needs no tuning."
               if method == "auto" else "is a learned model and takes none of them.")
            + " Pick a Cell-APP method to use them.</i></small>")
        tl, fl = self._pair()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            options, _ = method_options(method, params["locate"])  # greyed-out ones stay out
            self.nuclei = locate(fl, **options)
        self.prompts = prompt(self.nuclei, **params["prompt"])
        areas = np.bincount(self.nuclei.ravel())[1:]
        self._show(tl, fl)
        if self.figure is not None:
            plt.close(self.figure)
        fig, ax = plt.subplots(figsize=(6, 2.4), constrained_layout=True)
        ax.hist(areas, bins=30, color="0.4")
        ax.set_xlabel("nucleus area (px)")
        ax.set_ylabel("nuclei")
        clipped = int(self.prompts["clipped"].sum()) if len(self.prompts) else 0
        ax.set_title(f"{len(areas)} nuclei, {clipped} boxes at the border", fontsize=10)
        self.figure = fig
        note = f"<b>{len(areas)}</b> prompts"
        if caught:
            note += f" — {caught[0].message}"
        self.status.value = note
        from IPython import get_ipython

        if get_ipython() is not None:  # in a notebook: draw into the panel's output area
            with self.output:
                clear_output(wait=True)
                display(fig)
        plt.close(fig)

    def _show(self, tl, fl) -> None:
        """The pair in the viewer (images sent once per pair), nuclei and prompts on top."""
        viewer, name = self.viewer, self.controls["pair"].value
        if self._shown != name:
            for layer in list(viewer.layer_names):
                viewer.remove(layer)
            viewer.shape = (0, 0)
            viewer.add_image(fl, name="fluorescence", percentiles=(0.5, 99.9))
            viewer.add_image(tl, name="TL", visible=False)
            self._shown = name
        viewer.add_labels(self.nuclei, name="nuclei", color="#00e5ff")
        viewer.add_points(self.prompts, name="points", color="#ffd400")
        boxes = self.prompts if self.controls["kind"].value != "points" else self.prompts.iloc[:0]
        viewer.add_boxes(boxes, name="boxes", color="#ff4fd8")

    def save(self, path=None) -> Path:
        """Write the config with the current parameters as YAML (atomically)."""
        from ..config import Config

        path = Path(path or self.path.value)
        data = self.config.to_dict()
        for section, values in self.parameters().items():
            data[section].update(values)
        self.config = Config.from_dict(data)
        self.config.to_yaml(path)
        self.status.value = f"saved {path}"
        return path

    def _repr_mimebundle_(self, **kwargs):
        from ..viewer import _panel_bundle

        return _panel_bundle(self.panel, self.viewer, **kwargs)


def tune_locate(pairs_or_images, *, config=None) -> LocateTuner:
    """Tune locate and prompt parameters with sliders, watching the result.

    Pick a pair, a method and its parameters; nuclei outlines and prompts are
    drawn over the fluorescence image (the TL image is a layer to tick) in a
    :class:`cellnb.viewer.Viewer`, zoomable to single nuclei, with the
    nucleus count and size histogram below. Sliders recompute when released.
    "Save config" writes the YAML that :class:`cellnb.Config` and ``cellnb
    annotate --config`` read.

    Parameters
    ----------
    pairs_or_images : DataFrame, SyntheticPair(s) or (tl, fluorescence) tuples
        A :func:`cellnb.io.find_pairs` table (images are read when picked),
        synthetic pairs, or image tuples.
    config : cellnb.Config, optional
        Starting values (default: Cell-APP's defaults with ``method="auto"``,
        which needs no tuning).

    Returns
    -------
    tuner : LocateTuner
        Displays itself in a notebook; ``tuner.config`` holds the choice.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> tuner = tune_locate(synthetic_pairs(1, shape=(96, 96), n_cells=4))
    >>> tuner.controls["method"].value = "auto"
    >>> int(tuner.nuclei.max()) == len(tuner.prompts)
    True
    """
    return LocateTuner(pairs_or_images, config=config)


def review(out, *, model=None, height: int = 560):
    """Review and correct the records of an annotate folder, most flagged pairs first.

    Shows one record at a time in a :class:`cellnb.viewer.Viewer` (TL,
    fluorescence, cells, flagged cells in orange, rejected ones in red).
    Click a cell to reject it (again to restore it). Click empty TL for SAM's
    cell from that point, drawn as a yellow preview with its size and score
    (and a warning when its size is far outside the record's cells): Enter
    keeps it, Esc drops it; shift-click gives the preview a negative point;
    in box mode drag a box for a preview from it (these need a SAM `model`:
    decoding on the image's kept embedding, no re-encoding). In brush /
    eraser mode a drag paints the cell it starts in / erases cell pixels.
    ``z`` undoes. Every edit is written at once, atomically, into the record
    (:mod:`cellnb.curate`), so export and train use it and annotate keeps it.
    The keys act while the pointer is over the image (the key map is listed
    under it); the notebook keeps them otherwise.

    Parameters
    ----------
    out : str or Path
        The :func:`cellnb.annotate` output folder.
    model : cellnb.models.SamModel, optional
        Segments the cells you add (``cellnb.models.load_cached("vit_b_lm")``);
        without it, rejecting and restoring still work.
    height : int, default=560
        Largest height of the image in screen pixels.

    Returns
    -------
    review : Review
        Displays itself; ``review.click(y, x)``, ``review.box(...)``,
        ``review.accept()``, ``review.discard()``, ``review.paint(...)``,
        ``review.undo()``, ``review.go(pair_id)`` do what the clicks do.

    Examples
    --------
    >>> import tempfile
    >>> from cellnb import annotate, data
    >>> root = tempfile.mkdtemp()
    >>> _ = data.write_pairs(data.synthetic_pairs(2, shape=(96, 96), n_cells=4, seed=0), root + "/p")
    >>> _ = annotate(root + "/p", root + "/out", model="watershed", progress=False)
    >>> panel = review(root + "/out")
    >>> label = int(panel.cells.index[0])
    >>> y, x = [int(v) for v in np.argwhere(panel.labels == label)[0]]
    >>> panel.click(y, x)
    >>> panel.message.startswith(f"rejected cell {label}")
    True
    """
    from ._review import Review

    return Review(out, model=model, height=height)
