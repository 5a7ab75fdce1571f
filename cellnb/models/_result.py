"""What every model's ``segment`` returns: a :class:`Segmentation` (labels + one row per
prompt or cell), and the overlap resolution and prompt checks all models share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._shared.validation import check_labels


#: Status of each prompt in ``Segmentation.table``.
STATUSES = ("kept", "overlap", "empty", "too small", "covered")


#: Columns of ``Segmentation.table``, one row per prompt (automatic models: per cell).
TABLE_COLUMNS = ["label", "score", "area", "y0", "x0", "y1", "x1", "status"]


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    labels : (H, W) int32 ndarray
        Cell labels; each cell keeps the id of the nucleus that prompted it.
    table : DataFrame
        One row per prompt: ``label, score, area, y0, x0, y1, x1, status``
        (status in :data:`STATUSES`: kept, overlap = dropped as a duplicate,
        empty = SAM returned no pixel, too small, covered = every pixel went
        to higher-scoring cells).
    normalization : dict
        How the TL image was mapped to SAM's input.
    model : str
        Model name (and weights hash for SAM models).
    """

    labels: np.ndarray
    table: pd.DataFrame
    normalization: dict = field(default_factory=dict)
    model: str = ""

    @classmethod
    def from_labels(cls, labels, scores=None, *, normalization=None, model: str = ""):
        """A Segmentation of automatic cells: one "kept" row per label of `labels`.

        Parameters
        ----------
        labels : (H, W) int ndarray
        scores : dict {label: score}, optional
            Missing labels score 1.0.
        normalization : dict, optional
        model : str, default=""

        Examples
        --------
        >>> labels = np.zeros((4, 5), np.int32); labels[1:3, 1:4] = 2
        >>> Segmentation.from_labels(labels, {2: 0.5}).table.values.tolist()
        [[2, 0.5, 6, 1, 1, 3, 4, 'kept']]
        """
        from scipy import ndimage

        labels = check_labels(labels, "labels")
        scores = scores or {}
        boxes = ndimage.find_objects(labels)
        areas = np.bincount(labels.ravel())
        rows = [(int(lab), float(scores.get(int(lab), 1.0)), int(areas[lab]), box[0].start,
                 box[1].start, box[0].stop, box[1].stop, "kept")
                for lab, box in enumerate(boxes, start=1) if box is not None]
        return cls(labels, pd.DataFrame(rows, columns=TABLE_COLUMNS), dict(normalization or {}),
                   model)


def _as_crops(masks):
    """(N, H, W) bool array or list of (y0, x0, crop) -> list of (y0, x0, crop), shape."""
    if isinstance(masks, np.ndarray):
        if masks.ndim != 3:
            raise ValueError(f"`masks` must be (N, H, W), got shape {masks.shape}.")
        from scipy import ndimage

        crops = []
        for m in masks.astype(bool):
            box = ndimage.find_objects(m.astype(np.uint8))
            if not box:
                crops.append((0, 0, np.zeros((0, 0), bool)))
            else:
                ys, xs = box[0]
                crops.append((ys.start, xs.start, m[ys, xs]))
        return crops, masks.shape[1:]
    return list(masks), None


def resolve_overlaps(masks, scores, iou_threshold: float = 0.85, *, shape=None,
                     labels=None, min_area: int | None = None):
    """Turn possibly overlapping masks into one label image.

    Masks are visited from the highest score down. A mask whose **mask IoU**
    with an already kept mask exceeds `iou_threshold` is dropped as a
    duplicate ("overlap"); box overlap alone never drops a mask, so touching
    neighbours in dense cultures both stay. Pixels claimed by several kept
    masks go to the highest score.

    Parameters
    ----------
    masks : (N, H, W) bool ndarray, or list of (y0, x0, (h, w) bool crop)
        Candidate masks (crops place a mask at row `y0`, column `x0`).
    scores : (N,) array
        Higher is better (e.g. SAM's predicted IoU).
    iou_threshold : float, default=0.85
    shape : (int, int), optional
        Image shape; required with crops.
    labels : (N,) int array, optional
        Id of each mask in the output (default 1..N).
    min_area : int, optional
        Masks with fewer pixels are dropped ("too small").

    Returns
    -------
    label_image : (H, W) int32 ndarray
    status : list of str
        Per input mask: "kept", "overlap", "empty", "too small" or
        "covered" (all its pixels went to higher scores).

    Examples
    --------
    >>> a = np.zeros((3, 6, 6), bool)
    >>> a[0, 1:4, 0:3] = True   # cell
    >>> a[1, 1:4, 3:6] = True   # its neighbour: the boxes touch, the masks do not overlap
    >>> a[2, 1:4, 0:3] = True   # a duplicate of the first
    >>> image, status = resolve_overlaps(a, [0.9, 0.8, 0.7])
    >>> status
    ['kept', 'kept', 'overlap']
    >>> image[2].tolist()
    [1, 1, 1, 2, 2, 2]
    """
    crops, array_shape = _as_crops(masks)
    shape = array_shape or shape
    if shape is None:
        raise ValueError("pass `shape=(H, W)` when `masks` are crops.")
    scores = np.asarray(scores, dtype=float)
    if len(scores) != len(crops):
        raise ValueError(f"{len(crops)} masks but {len(scores)} scores.")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"`iou_threshold` must be in (0, 1], got {iou_threshold}.")
    ids = np.arange(1, len(crops) + 1) if labels is None else np.asarray(labels)
    status = [""] * len(crops)
    kept = []  # (index, y0, x0, crop)
    for i in np.argsort(-scores, kind="stable"):
        y0, x0, crop = crops[i]
        area = int(crop.sum())
        if area == 0:
            status[i] = "empty"
            continue
        if min_area and area < min_area:
            status[i] = "too small"
            continue
        duplicate = False
        for _, ky0, kx0, kcrop in kept:
            # intersect bounding boxes first; mask IoU only where they meet
            oy0, ox0 = max(y0, ky0), max(x0, kx0)
            oy1 = min(y0 + crop.shape[0], ky0 + kcrop.shape[0])
            ox1 = min(x0 + crop.shape[1], kx0 + kcrop.shape[1])
            if oy0 >= oy1 or ox0 >= ox1:
                continue
            inter = np.logical_and(crop[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0],
                                   kcrop[oy0 - ky0:oy1 - ky0, ox0 - kx0:ox1 - kx0]).sum()
            if inter and inter / (area + kcrop.sum() - inter) > iou_threshold:
                duplicate = True
                break
        if duplicate:
            status[i] = "overlap"
            continue
        kept.append((i, y0, x0, crop))
        status[i] = "kept"
    image = np.zeros(shape, np.int32)
    for i, y0, x0, crop in reversed(kept):  # lowest score first: higher scores paint last
        window = image[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]
        window[crop] = ids[i]
    present = set(np.unique(image).tolist())
    for i, *_ in kept:
        if ids[i] not in present:
            status[i] = "covered"
    return image, status


def check_prompts(prompts, shape, kind=None) -> tuple[pd.DataFrame, str]:
    """Check a prompt table against an image of `shape`; return it tidied and its kind.

    The table gets a fresh index and a ``negatives`` column (empty when
    missing); `kind` defaults to the table's ``kind`` column.

    Examples
    --------
    >>> table = pd.DataFrame({"label": [1], "y": [5.0], "x": [5.0], "y0": [0], "x0": [0],
    ...                       "y1": [9], "x1": [9]})
    >>> check_prompts(table, (10, 10))[1]
    'points'
    >>> check_prompts(table, (4, 4))
    Traceback (most recent call last):
    ...
    ValueError: 1 prompt(s) lie outside the image of shape (4, 4); were they made for another image?
    """
    if prompts is None:
        raise ValueError("this model segments one cell per prompt: pass `prompts`, e.g. "
                         "cellnb.prompt(cellnb.locate(fluorescence)).")
    if not isinstance(prompts, pd.DataFrame) or not {"label", "y", "x", "y0", "x0", "y1",
                                                      "x1"} <= set(prompts.columns):
        raise ValueError("`prompts` must be a prompt table from cellnb.prompt (columns label, "
                         f"y, x, y0, x0, y1, x1), got {type(prompts).__name__}"
                         + (f" with columns {list(prompts.columns)}"
                            if isinstance(prompts, pd.DataFrame) else "") + ".")
    if prompts["label"].duplicated().any():
        raise ValueError("`prompts` has duplicate labels; every prompt needs its own id.")
    h, w = shape
    outside = (prompts["y"] < 0) | (prompts["y"] >= h) | (prompts["x"] < 0) | (prompts["x"] >= w)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} prompt(s) lie outside the image of shape "
                         f"{(h, w)}; were they made for another image?")
    prompts = prompts.reset_index(drop=True)
    if "negatives" not in prompts.columns:
        prompts = prompts.assign(negatives=[()] * len(prompts))
    known = set(prompts["label"].tolist())
    strays = sorted({int(n) for v in prompts["negatives"] for n in v} - known)
    if strays:
        raise ValueError(f"`prompts` lists negative points at labels {strays[:5]}, which are "
                         "not rows of the table; keep those rows, or drop the `negatives` "
                         "column of a subset (prompts.drop(columns='negatives')).")
    if kind is None:
        kinds = set(prompts["kind"]) if "kind" in prompts.columns else {"points"}
        if len(kinds) > 1:
            raise ValueError(f"`prompts` mixes kinds {sorted(kinds)}; pass `kind=`.")
        kind = kinds.pop() if kinds else "points"
    if kind not in ("points", "boxes", "points+boxes"):
        raise ValueError(f"`kind` must be 'points', 'boxes' or 'points+boxes', got {kind!r}.")
    return prompts, kind


def _check_common(iou_threshold, min_area):
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"`iou_threshold` must be in (0, 1], got {iou_threshold}.")
    if min_area is not None and (isinstance(min_area, bool) or
                                 not isinstance(min_area, (int, np.integer)) or min_area < 0):
        raise ValueError(f"`min_area` must be a non-negative int or None, got {min_area!r}.")


def _result(crops, scores, prompts, shape, iou_threshold, min_area, normalization, name):
    """Overlaps resolved into one label image, one table row per prompt."""
    from scipy import ndimage

    labels, status = resolve_overlaps(crops, scores, iou_threshold, shape=shape,
                                      labels=prompts["label"].to_numpy(), min_area=min_area)
    top = int(prompts["label"].max()) if len(prompts) else 0
    areas = np.bincount(labels.ravel(), minlength=top + 1)
    boxes = ndimage.find_objects(labels)
    rows = []
    for lab, sc, st in zip(prompts["label"], scores, status):
        box = boxes[lab - 1] if st == "kept" and lab - 1 < len(boxes) and boxes[lab - 1] else None
        y0, x0, y1, x1 = ((box[0].start, box[1].start, box[0].stop, box[1].stop) if box
                          else (0, 0, 0, 0))
        rows.append((int(lab), float(sc), int(areas[lab]) if st == "kept" else 0,
                     y0, x0, y1, x1, st))
    return Segmentation(labels, pd.DataFrame(rows, columns=TABLE_COLUMNS), normalization, name)
