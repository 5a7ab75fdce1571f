"""Matplotlib figures: image overlays and pair views.

Display contrast is stretched between percentiles for viewing only; the data
are never changed.
"""

from __future__ import annotations

import numpy as np

from ._shared.validation import check_image, check_labels, check_same_shape

__all__ = ["overlay", "pair", "ap_curve", "errors", "error_types", "class_examples", "tracks",
           "track_classes"]


def _display(image: np.ndarray, percentiles=(0.5, 99.5)) -> np.ndarray:
    """Float copy of `image` in [0, 1] for display (percentile stretch per channel)."""
    image = image.astype(np.float32)
    lo, hi = np.percentile(image, percentiles)
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)


def overlay(image, labels=None, prompts=None, *, ax=None, color="yellow", cmap="gray",
            title=None, percentiles=(0.5, 99.5)):
    """Show `image` with the outlines of `labels` and the `prompts` drawn on top.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        Image to show (contrast stretched for display only).
    labels : (H, W) int ndarray, optional
        Label image whose object outlines are drawn.
    prompts : DataFrame, optional
        Prompt table (:func:`cellnb.prompt`): points drawn as crosses, boxes
        as rectangles (dashed when clipped at the border) for ``kind``
        "boxes" / "points+boxes".
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is made if None.
    color : matplotlib color, default="yellow"
        Outline color.
    cmap : str, default="gray"
        Colormap for single-channel images.
    title : str, optional
        Axes title.
    percentiles : (float, float), default=(0.5, 99.5)
        Display range of the contrast stretch.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> labels = np.zeros((32, 32), np.int32); labels[8:16, 8:16] = 1
    >>> ax = overlay(np.ones((32, 32), np.float32), labels, title="one cell")
    >>> ax.get_title()
    'one cell'
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from skimage.segmentation import find_boundaries

    image = check_image(image, "image", rgb=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    shown = _display(image, percentiles)
    ax.imshow(shown, cmap=None if shown.ndim == 3 else cmap, interpolation="nearest")
    if labels is not None:
        labels = check_labels(labels)
        check_same_shape(image, labels, "image", "labels")
        edges = find_boundaries(labels, mode="inner")
        rgba = np.zeros(labels.shape + (4,), np.float32)
        rgba[edges] = to_rgba(color)
        ax.imshow(rgba, interpolation="nearest")
    if prompts is not None and len(prompts):
        _draw_prompts(ax, prompts)
    if title:
        ax.set_title(title)
    ax.set_axis_off()
    return ax


def _draw_prompts(ax, prompts, color="cyan"):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    missing = {"y", "x"} - set(prompts.columns)
    if missing:
        raise ValueError(f"`prompts` needs columns 'y' and 'x' (a cellnb.prompt table); "
                         f"missing {sorted(missing)}.")
    kinds = prompts["kind"] if "kind" in prompts.columns else "points"
    show_points = np.asarray(kinds != "boxes") if "kind" in prompts.columns else np.ones(
        len(prompts), bool)
    if show_points.any():
        # matplotlib draws pixel centres at integer (col, row): the (row, col) convention
        ax.plot(prompts["x"][show_points], prompts["y"][show_points], "+", color=color,
                markersize=7, markeredgewidth=1.5, linestyle="none")
    if {"y0", "x0", "y1", "x1"} <= set(prompts.columns) and "kind" in prompts.columns:
        boxed = prompts[prompts["kind"] != "points"]
        for dashed in (False, True):
            part = boxed[boxed.get("clipped", False) == dashed] if "clipped" in boxed else boxed
            rects = [Rectangle((r.x0 - 0.5, r.y0 - 0.5), r.x1 - r.x0, r.y1 - r.y0)
                     for r in part.itertuples()]
            if rects:
                ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor=color,
                                                  linewidth=0.8,
                                                  linestyle="--" if dashed else "-"))


def pair(tl, fluorescence, *, cells=None, nuclei=None, title=None):
    """Show a TL / fluorescence pair side by side, with optional outlines.

    Parameters
    ----------
    tl : (H, W) or (H, W, 3) ndarray
        Transmitted-light image.
    fluorescence : (H, W) ndarray
        Nuclear fluorescence image.
    cells, nuclei : (H, W) int ndarray, optional
        Cell outlines drawn on the TL image, nucleus outlines on the
        fluorescence image.
    title : str, optional
        Figure title.

    Returns
    -------
    fig : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from cellnb.data import synthetic_pairs
    >>> p = synthetic_pairs(1, shape=(96, 96), n_cells=4)[0]
    >>> fig = pair(p.tl, p.fluorescence, cells=p.labels, nuclei=p.nuclei)
    >>> len(fig.axes)
    2
    """
    import matplotlib.pyplot as plt

    check_same_shape(check_image(tl, "tl", rgb=True), check_image(fluorescence, "fluorescence"),
                     "tl", "fluorescence")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), constrained_layout=True)
    overlay(tl, cells, ax=axes[0], title="transmitted light" + (" + cells" if cells is not None
                                                                else ""))
    overlay(fluorescence, nuclei, ax=axes[1], cmap="magma", color="cyan",
            percentiles=(0.5, 99.9),
            title="fluorescence" + (" + nuclei" if nuclei is not None else ""))
    if title:
        fig.suptitle(title)
    return fig


def ap_curve(table, *, metric: str = "ap", ax=None):
    """Plot a metric against the IoU threshold, one line per method.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`cellnb.evaluate` or :func:`cellnb.compare`. Rows of
        several images are averaged per (method, threshold).
    metric : str, default="ap"
        Column to plot (``"ap"``, ``"f1"``, ``"precision"``, ...).
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from cellnb.evaluate import compare
    >>> truth = np.array([[1, 1, 0, 2]])
    >>> ax = ap_curve(compare(truth, {"a": truth, "b": truth * 0}))
    >>> [line.get_label() for line in ax.get_lines()]
    ['a', 'b']
    """
    import matplotlib.pyplot as plt

    if metric not in table.columns or "threshold" not in table.columns:
        raise ValueError(f"`table` needs columns 'threshold' and {metric!r} (an evaluate() "
                         f"table); it has {list(table.columns)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    groups = table.groupby("method", sort=False) if "method" in table.columns else [(None, table)]
    for method, group in groups:
        curve = group.groupby("threshold")[metric].mean()
        ax.plot(curve.index, curve.to_numpy(), marker="o", label=method)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if "method" in table.columns:
        ax.legend(title="method")
    return ax


def learning_curve(history, *, ax=None):
    """Plot training and validation loss, and validation AP@0.5, per epoch.

    Parameters
    ----------
    history : DataFrame
        ``TrainedModel.history`` (columns ``epoch``, ``train_loss``,
        ``val_loss``, ``val_ap50``).
    ax : matplotlib Axes, optional
        Axes for the losses; AP goes on a twin axis at the right.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib, pandas as pd
    >>> matplotlib.use("Agg")
    >>> h = pd.DataFrame({"epoch": [0, 1], "train_loss": [0.9, 0.5], "val_loss": [0.8, 0.6],
    ...                   "val_ap50": [0.1, 0.4]})
    >>> ax = learning_curve(h)
    >>> [line.get_label() for line in ax.get_lines()]
    ['train loss', 'val loss']
    """
    import matplotlib.pyplot as plt

    needed = {"epoch", "train_loss", "val_loss", "val_ap50"}
    if not needed <= set(history.columns):
        raise ValueError(f"`history` needs columns {sorted(needed)}; it has "
                         f"{list(history.columns)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(history["epoch"], history["train_loss"], marker="o", label="train loss")
    ax.plot(history["epoch"], history["val_loss"], marker="o", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(history["epoch"], history["val_ap50"], marker="s", color="tab:green",
              label="val AP@0.5")
    twin.set_ylabel("val AP@0.5", color="tab:green")
    twin.set_ylim(0, 1.02)
    handles = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper right")
    return ax


#: Colors of the error overlay.
ERROR_COLORS = {"true positive": "lime", "false positive": "red", "false negative": "dodgerblue",
                "merge": "orange", "split": "magenta"}


def error_types(truth, pred, *, threshold: float = 0.5):
    """Classify each object as matched, false positive/negative, merge or split.

    A *merge* is a predicted object holding more than half of two or more
    true objects; a *split* is a true object of which two or more predicted
    objects each lie mostly (more than half) inside. Merges and splits are
    reported as such even when one of their objects reaches the IoU
    threshold. Other objects are true positives when matched
    (:func:`cellnb.evaluate`'s matching at `threshold`), else false positives
    (predicted) or false negatives (true).

    Returns
    -------
    true_kind, pred_kind : dict {label: kind}
        Kind of every true and every predicted object.

    Examples
    --------
    >>> truth = np.array([[1, 1, 2, 2, 0, 3]])
    >>> pred = np.array([[4, 4, 4, 4, 0, 0]])
    >>> error_types(truth, pred)
    ({1: 'merge', 2: 'merge', 3: 'false negative'}, {4: 'merge'})
    """
    from .evaluate import _check_pair, _match_pairs, overlap_table

    truth, pred = _check_pair(truth, pred)
    pairs = overlap_table(truth, pred)
    matched = _match_pairs(pairs, threshold)
    true_kind = {int(t): "false negative" for t in np.unique(truth[truth > 0])}
    pred_kind = {int(p): "false positive" for p in np.unique(pred[pred > 0])}
    for t, p in matched:
        true_kind[int(t)] = pred_kind[int(p)] = "true positive"
    # structural errors win over a borderline match (a merge of two equal cells has IoU 0.5)
    covers = pairs[pairs["intersection"] > 0.5 * pairs["true_area"]]
    for p, group in covers.groupby("pred"):
        if len(group) > 1:
            pred_kind[int(p)] = "merge"
            true_kind.update({int(t): "merge" for t in group["true"]})
    inside = pairs[pairs["intersection"] > 0.5 * pairs["pred_area"]]
    for t, group in inside.groupby("true"):
        if len(group) > 1:
            true_kind[int(t)] = "split"
            pred_kind.update({int(p): "split" for p in group["pred"]})
    return true_kind, pred_kind


def errors(image, truth, pred, *, threshold: float = 0.5, title: str | None = None, ax=None):
    """Overlay segmentation errors on `image`: outlines colored by kind.

    True positives are drawn from the prediction in green; false positives
    (red) and merges (orange) from the prediction; false negatives (blue)
    and splits (magenta, the true outline) from the truth. See
    :func:`error_types`.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
    truth, pred : (H, W) int ndarray
        Label images.
    threshold : float, default=0.5
        IoU threshold of a match.
    title : str, optional
        First line of the title (e.g. the method); the counts follow.
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> truth = np.zeros((16, 16), np.int32); truth[2:8, 2:8] = 1
    >>> ax = errors(np.zeros((16, 16), np.float32), truth, truth, title="perfect")
    >>> print(ax.get_title())
    perfect
    TP 1 · FP 0 · FN 0
    merges 0 · splits 0 (IoU >= 0.5)
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch
    from skimage.segmentation import find_boundaries

    image = check_image(image, "image", rgb=True)
    true_kind, pred_kind = error_types(truth, pred, threshold=threshold)
    truth, pred = check_labels(truth, "truth"), check_labels(pred, "pred")
    check_same_shape(image, truth, "image", "truth")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(_display(image), cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
    rgba = np.zeros(truth.shape + (4,), np.float32)
    drawn = [(pred, pred_kind, ("true positive", "false positive", "merge")),
             (truth, true_kind, ("false negative", "split"))]
    for labels, kinds, wanted in drawn:
        edges = find_boundaries(labels, mode="inner")
        lut = np.zeros(labels.max() + 1, dtype=object)
        lut[:] = None
        for label, kind in kinds.items():
            lut[label] = kind if kind in wanted else None
        edge_kinds = lut[labels[edges]]
        for kind in wanted:
            where = np.zeros(labels.shape, bool)
            where[edges] = edge_kinds == kind
            rgba[where] = to_rgba(ERROR_COLORS[kind])
    ax.imshow(rgba, interpolation="nearest")
    from collections import Counter

    pred_n, true_n = Counter(pred_kind.values()), Counter(true_kind.values())
    counts = (f"TP {pred_n['true positive']} · FP {pred_n['false positive']} · "
              f"FN {true_n['false negative']}\nmerges {pred_n['merge']} · "
              f"splits {true_n['split']} (IoU >= {threshold})")
    ax.set_title(counts if title is None else f"{title}\n{counts}", fontsize=10)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in ERROR_COLORS.items()],
              loc="lower right", fontsize=8, framealpha=0.8)
    ax.set_axis_off()
    return ax


def class_examples(image, labels, classes, *, n: int = 6, size: int = 48, names=None,
                   seed=0, percentiles=(0.5, 99.9)):
    """Show `n` example crops of cells per class, one row per class.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        Image to crop (fluorescence or TL); one display range for all crops,
        so brightness compares across classes.
    labels : (H, W) int ndarray
        Cell or nucleus labels.
    classes : Series
        Class per label (:func:`cellnb.classify`); -1 (noise) gets a row too.
    n : int, default=6
        Crops per class (fewer if the class is smaller), chosen at random.
    size : int, default=48
        Crop side in pixels, centred on each object.
    names : dict {class id: name}, optional
        Row titles.
    seed : int, default=0

    Returns
    -------
    fig : matplotlib Figure

    Examples
    --------
    >>> import matplotlib, pandas as pd
    >>> matplotlib.use("Agg")
    >>> labels = np.zeros((64, 64), np.int32); labels[10:20, 10:20] = 1; labels[40:50, 40:50] = 2
    >>> fig = class_examples(np.ones((64, 64), np.float32), labels, pd.Series({1: 0, 2: 1}), n=2)
    >>> len(fig.axes)
    4
    """
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from ._shared.validation import as_generator

    image = check_image(image, "image", rgb=True)
    labels = check_labels(labels)
    check_same_shape(image, labels, "image", "labels")
    shown = _display(image, percentiles)
    rng = as_generator(seed)
    groups = sorted(classes.unique())
    fig, axes = plt.subplots(len(groups), n, figsize=(1.6 * n, 1.7 * len(groups)),
                             squeeze=False, constrained_layout=True)
    centres = dict(zip(classes.index, ndimage.center_of_mass(
        np.ones_like(labels), labels, classes.index.to_numpy())))
    half = size // 2
    for row, group in zip(axes, groups):
        members = classes.index[classes == group].to_numpy()
        chosen = rng.choice(members, min(n, len(members)), replace=False)
        for ax in row:
            ax.set_axis_off()
        for ax, label in zip(row, chosen):
            cy, cx = (int(round(c)) for c in centres[label])
            window = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
            crop = shown[window]
            ax.imshow(crop, cmap=None if crop.ndim == 3 else "gray", vmin=0, vmax=1)
            mask = labels[window] == label
            if not mask.all():
                ax.contour(mask, levels=[0.5], colors="yellow", linewidths=0.6)
        title = (names or {}).get(group, "noise" if group == -1 else f"class {group}")
        row[0].set_title(f"{title} ({len(members)})", loc="left", fontsize=9)
    return fig


def _track_table(tracks):
    table = getattr(tracks, "table", tracks)
    needed = {"track_id", "t", "y", "x"}
    if not hasattr(table, "columns") or not needed <= set(table.columns):
        raise ValueError(f"`tracks` must be cellnb.movies.track's result or a table with "
                         f"columns {sorted(needed)}.")
    return table.sort_values(["track_id", "t"])


def tracks(tracks, image=None, *, ax=None, tail: int | None = None, title=None):
    """Draw every track's path (coloured per track) over a movie frame.

    Paths follow the positions that were linked: the nuclei
    (``nucleus_y, nucleus_x``) when the table has them, else the cells'
    centroids.

    Parameters
    ----------
    tracks : cellnb.movies.Tracks or DataFrame
        What :func:`cellnb.movies.track` returns (or its table).
    image : (H, W) ndarray, optional
        Frame shown underneath (e.g. the last TL frame).
    ax : matplotlib Axes, optional
    tail : int, optional
        Draw only the last `tail` frames of each path.
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib, pandas as pd
    >>> matplotlib.use("Agg")
    >>> table = pd.DataFrame({"track_id": [1, 1, 2], "t": [0, 1, 0], "y": [1.0, 2.0, 5.0],
    ...                       "x": [1.0, 1.5, 5.0]})
    >>> len(tracks(table).get_lines())  # a path and its end point per track
    4
    """
    import matplotlib.pyplot as plt

    table = _track_table(tracks)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    if image is not None:
        image = check_image(image, "image", rgb=True)
        ax.imshow(_display(image), cmap="gray", interpolation="nearest")
    colours = plt.get_cmap("tab20")
    y, x = ("nucleus_y", "nucleus_x") if {"nucleus_y", "nucleus_x"} <= set(table) else ("y", "x")
    for k, (track_id, path) in enumerate(table.groupby("track_id")):
        path = path if tail is None else path[path["t"] > path["t"].max() - tail]
        ax.plot(path[x], path[y], "-", color=colours(k % 20), lw=1.5)
        ax.plot(path[x].iloc[-1:], path[y].iloc[-1:], "o", color=colours(k % 20), ms=3)
    if image is None:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    else:
        ax.set_axis_off()
    ax.set_title(title or f"{table['track_id'].nunique()} tracks")
    return ax


def track_classes(tracks, *, class_column: str = "class_name", ax=None, colors=None):
    """Timeline of every track: one row per track, coloured by its class in each frame.

    Parameters
    ----------
    tracks : cellnb.movies.Tracks or DataFrame
        With a per-frame class column.
    class_column : str, default="class_name"
    ax : matplotlib Axes, optional
    colors : mapping {class: color}, optional
        Default: tab10 in sorted class order.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib, pandas as pd
    >>> matplotlib.use("Agg")
    >>> table = pd.DataFrame({"track_id": [1, 1, 2], "t": [0, 1, 0], "y": 0.0, "x": 0.0,
    ...                       "class_name": ["interphase", "mitotic", "interphase"]})
    >>> track_classes(table).get_ylabel()
    'track'
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    table = _track_table(tracks)
    if class_column not in table.columns:
        raise ValueError(f"`tracks` has no {class_column!r} column; carry the classes into "
                         "track() with its `table`.")
    names = sorted(table[class_column].dropna().astype(str).unique())
    default = plt.get_cmap("tab10")
    colors = dict(colors or {}) or {n: default(k % 10) for k, n in enumerate(names)}
    missing = [n for n in names if n not in colors]
    if missing:
        raise ValueError(f"`colors` has no colour for class(es) {missing}.")
    ids = sorted(table["track_id"].unique())
    t0, t1 = int(table["t"].min()), int(table["t"].max())
    grid = np.full((len(ids), t1 - t0 + 1), np.nan)
    row = {track_id: k for k, track_id in enumerate(ids)}
    code = {n: k for k, n in enumerate(names)}
    for r in table.dropna(subset=[class_column]).itertuples():
        grid[row[r.track_id], int(r.t) - t0] = code[str(getattr(r, class_column))]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, max(2.0, 0.18 * len(ids) + 1)))
    cmap = ListedColormap([colors[n] for n in names]).with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=-0.5,
              vmax=len(names) - 0.5, interpolation="nearest",
              extent=(t0 - 0.5, t1 + 0.5, len(ids) - 0.5, -0.5))
    ax.set_xlabel("frame")
    ax.set_ylabel("track")
    ax.set_yticks(range(len(ids)), [str(i) for i in ids], fontsize=7)
    ax.legend(handles=[Patch(color=colors[n], label=n) for n in names],
              loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return ax
