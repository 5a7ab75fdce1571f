"""Turn located nuclei into SAM prompts: a point, a box, or both per nucleus.

Coordinates are (row, col) and boxes half-open ``[y0, y1) x [x0, x1)``, as
everywhere in cellnb; only the code that calls SAM converts to (x, y).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._shared.validation import check_labels

__all__ = ["prompt", "prompt_counts", "KINDS", "PROMPT_COLUMNS"]

#: What :func:`prompt` makes: centroid points, boxes, or both.
KINDS = ("points", "boxes", "points+boxes")
#: Columns of the prompt table, one row per nucleus (``negatives``: labels of other prompts used as negative points).
PROMPT_COLUMNS = ["label", "y", "x", "y0", "x0", "y1", "x1", "clipped", "kind", "negatives"]


def _interior_points(nuclei, labels, centroids):
    """The centroid when it lies inside its nucleus, else the nucleus' most interior pixel."""
    from scipy import ndimage

    points = centroids.copy()
    rows = np.clip(np.round(centroids[:, 0]).astype(int), 0, nuclei.shape[0] - 1)
    cols = np.clip(np.round(centroids[:, 1]).astype(int), 0, nuclei.shape[1] - 1)
    outside = nuclei[rows, cols] != labels
    if outside.any():
        distance = ndimage.distance_transform_edt(nuclei > 0)
        inner = ndimage.maximum_position(distance, nuclei, labels[outside])
        points[outside] = np.asarray(inner, dtype=float)
    return points


def prompt(nuclei, *, kind: str = "points", box_scale: float = 2.5, box_size: str = "median",
           negatives: int = 0) -> pd.DataFrame:
    """One SAM prompt per nucleus.

    Parameters
    ----------
    nuclei : (H, W) int ndarray
        Nucleus labels (from :func:`cellnb.locate`), 0 = background.
    kind : {"points", "boxes", "points+boxes"}, default="points"
        Which prompt :func:`cellnb.segment` gives SAM; the table always holds
        both the point and the box.
    box_scale : float, default=2.5
        Box side = `box_scale` x the nucleus major axis length (Cell-APP's
        rule: a cell is about 2.5 nuclei wide).
    box_size : {"median", "per-cell"}, default="median"
        Use the image's median major axis for every box (Cell-APP), or each
        nucleus' own.
    negatives : int, default=0
        Add the `negatives` nearest other nuclei as negative points: SAM is
        told where the cell is *not*, which helps in dense cultures.

    Returns
    -------
    prompts : DataFrame
        One row per nucleus, columns ``label`` (nucleus id, which the cell
        will keep), ``y, x`` (the point: the centroid, or the most interior
        pixel when the centroid falls outside), ``y0, x0, y1, x1`` (integer
        box, half-open, clipped to the image), ``clipped`` (the box crossed
        the border; Cell-APP drops these cells, cellnb keeps them),
        ``kind``, and ``negatives`` (tuple of labels of the negative points).

    Examples
    --------
    >>> nuclei = np.zeros((20, 20), np.int32)
    >>> nuclei[4:8, 4:8] = 1
    >>> nuclei[12:16, 10:14] = 2
    >>> prompt(nuclei, kind="boxes", box_scale=3, negatives=1)
       label     y     x  y0  x0  y1  x1  clipped   kind negatives
    0      1   5.5   5.5   0   0  13  13     True  boxes      (2,)
    1      2  13.5  11.5   7   5  20  19     True  boxes      (1,)
    """
    nuclei = check_labels(nuclei, "nuclei")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {list(KINDS)}, got {kind!r}.")
    if box_size not in ("median", "per-cell"):
        raise ValueError(f"`box_size` must be 'median' or 'per-cell', got {box_size!r}.")
    if not (isinstance(box_scale, (int, float)) and box_scale > 0):
        raise ValueError(f"`box_scale` must be a positive number, got {box_scale!r}.")
    if isinstance(negatives, bool) or not isinstance(negatives, (int, np.integer)) or negatives < 0:
        raise ValueError(f"`negatives` must be an int >= 0, got {negatives!r}.")
    from skimage.measure import regionprops_table

    if nuclei.max() == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            PROMPT_COLUMNS, ["int64", "float64", "float64", "int64", "int64", "int64", "int64",
                             "bool", "object", "object"])})
    props = regionprops_table(nuclei, properties=("label", "centroid", "axis_major_length"))
    labels = props["label"].astype(np.int64)
    centroids = np.stack([props["centroid-0"], props["centroid-1"]], axis=1)
    points = _interior_points(nuclei, labels, centroids)
    major = np.maximum(props["axis_major_length"], 1.0)
    side = box_scale * (np.full(len(labels), np.median(major)) if box_size == "median" else major)
    h, w = nuclei.shape
    y0 = np.floor(points[:, 0] + 0.5 - side / 2).astype(np.int64)
    x0 = np.floor(points[:, 1] + 0.5 - side / 2).astype(np.int64)
    y1 = np.ceil(points[:, 0] + 0.5 + side / 2).astype(np.int64)
    x1 = np.ceil(points[:, 1] + 0.5 + side / 2).astype(np.int64)
    clipped = (y0 < 0) | (x0 < 0) | (y1 > h) | (x1 > w)
    table = pd.DataFrame({
        "label": labels, "y": points[:, 0], "x": points[:, 1],
        "y0": np.clip(y0, 0, h), "x0": np.clip(x0, 0, w),
        "y1": np.clip(y1, 0, h), "x1": np.clip(x1, 0, w),
        "clipped": clipped, "kind": kind})
    table["negatives"] = _nearest_others(points, labels, negatives)
    return table


def _nearest_others(points, labels, k):
    if k == 0 or len(labels) < 2:
        return [()] * len(labels)
    from scipy.spatial import cKDTree

    k = min(k, len(labels) - 1)
    _, idx = cKDTree(points).query(points, k=k + 1)
    idx = np.asarray(idx).reshape(len(labels), k + 1)
    return [tuple(int(labels[j]) for j in row if j != i)[:k] for i, row in enumerate(idx)]


def prompt_counts(prompts: pd.DataFrame, cells) -> pd.DataFrame:
    """How many prompts fall in each cell: Cell-APP's "exactly one prompt per cell" check.

    Parameters
    ----------
    prompts : DataFrame
        Output of :func:`prompt` (uses ``y, x``).
    cells : (H, W) int ndarray
        Cell labels to check against (ground truth, or a segmentation).

    Returns
    -------
    counts : DataFrame
        Indexed by cell label, column ``prompts`` (0 = missed cell, 2+ = the
        cell will be split), plus one row ``label=0`` for prompts in the
        background when there are any.

    Examples
    --------
    >>> cells = np.zeros((10, 10), np.int32); cells[:, :5] = 1; cells[:, 5:] = 2
    >>> table = pd.DataFrame({"y": [2.0, 7.0, 3.0], "x": [1.0, 2.0, 8.0]})
    >>> prompt_counts(table, cells)
           prompts
    label         
    1            2
    2            1
    """
    cells = check_labels(cells, "cells")
    if not {"y", "x"} <= set(prompts.columns):
        raise ValueError(f"`prompts` needs columns 'y' and 'x', got {list(prompts.columns)}.")
    rows = np.clip(np.round(prompts["y"].to_numpy()).astype(int), 0, cells.shape[0] - 1)
    cols = np.clip(np.round(prompts["x"].to_numpy()).astype(int), 0, cells.shape[1] - 1)
    hits = np.bincount(cells[rows, cols], minlength=cells.max() + 1)
    ids = np.unique(cells[cells > 0])
    counts = pd.DataFrame({"prompts": hits[ids]}, index=pd.Index(ids.astype(np.int64),
                                                                 name="label"))
    if hits[0]:
        counts = pd.concat([pd.DataFrame({"prompts": [hits[0]]},
                                         index=pd.Index([0], name="label")), counts])
    return counts
