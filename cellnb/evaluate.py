"""Instance-segmentation metrics of every seed paper, in one tidy table.

For each image and IoU threshold τ, predicted and true objects are matched
one-to-one, maximising the summed IoU over pairs with IoU >= τ (Hungarian
matching, scipy's ``linear_sum_assignment``, on a sparse overlap table built
from label pairs with ``bincount``; no objects x objects x pixels array is
ever made). From the matching:

- ``tp, fp, fn``; ``precision = tp / n_pred``, ``recall = tp / n_true``, ``f1``;
- ``ap = tp / (tp + fp + fn)``: the "average precision" of Cellpose and CellSeg1;
- ``mean_matched_iou`` (over true positives) and ``panoptic_quality``
  ``= sum(IoU of tp) / (tp + fp/2 + fn/2)`` (StarDist's set);
- ``seg, det, op_csb``: Cell Tracking Challenge measures used by SAMCell
  (independent of τ). SEG is the mean, over true objects, of the Jaccard
  index with the predicted object covering more than half of it (0 if none).
  DET = 1 - min(AOGM-D, AOGM-D0) / AOGM-D0 where AOGM-D weighs splits 5,
  false negatives 10 and false positives 1, and AOGM-D0 = 10 x n_true.
  OP_CSB = (SEG + DET) / 2;
- at dataset level, COCO ``coco_ap`` (AP@[.50:.95]), ``coco_ap50``,
  ``coco_ap75`` and ``coco_ar100`` from pycocotools' COCOeval (``segm``, at
  most 100 detections per image as in COCO and Detectron2), ranked by
  ``scores`` when given.

Undefined ratios: when an image has neither true nor predicted objects,
precision, recall, f1, ap and panoptic quality are 1 (nothing missed,
nothing false); otherwise a ratio with a zero denominator is 0.
``mean_matched_iou`` is NaN without true positives; ``seg``, ``det`` and
``op_csb`` are NaN without true objects (the CTC defines them over true
objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ._shared.validation import check_labels

__all__ = ["evaluate", "compare", "detection", "match_objects", "overlap_table",
           "DEFAULT_THRESHOLDS", "METRIC_COLUMNS"]

#: IoU thresholds 0.5, 0.55, ..., 0.95 (as in COCO).
DEFAULT_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

#: Columns of the per-threshold matching metrics, in table order.
METRIC_COLUMNS = ["n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "ap",
                  "mean_matched_iou", "panoptic_quality", "seg", "det", "op_csb"]

# Cell Tracking Challenge AOGM-D weights
_W_SPLIT, _W_FN, _W_FP = 5.0, 10.0, 1.0


# ---------------------------------------------------------------------------
# Overlaps and matching
# ---------------------------------------------------------------------------
def overlap_table(truth, pred) -> pd.DataFrame:
    """Pixel overlaps of every (true, predicted) object pair that touches.

    Parameters
    ----------
    truth, pred : (H, W) int ndarray
        Label images, 0 = background.

    Returns
    -------
    pairs : DataFrame
        Columns ``true, pred`` (label ids), ``intersection``, ``true_area``,
        ``pred_area``, ``iou``; one row per overlapping pair only.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2]])
    >>> p = np.array([[1, 0, 0, 2]])
    >>> overlap_table(t, p)[["true", "pred", "intersection", "iou"]]
       true  pred  intersection  iou
    0     1     1             1  0.5
    1     2     2             1  1.0
    """
    truth, pred = _check_pair(truth, pred)
    return _overlaps(truth, pred)[0]


def match_objects(truth, pred, *, threshold: float = 0.5) -> pd.DataFrame:
    """Pair each predicted object with the true object it matches, as :func:`evaluate` does.

    The optimal one-to-one matching (maximal summed IoU, Hungarian) among
    pairs with IoU >= `threshold`: the true positives of :func:`evaluate`
    at that threshold. Use it to carry what is known of the true objects
    (a class, a track id) over to the found ones.

    Parameters
    ----------
    truth, pred : (H, W) int ndarray
        Label images, 0 = background.
    threshold : float, default=0.5
        Least IoU of a match, in (0, 1].

    Returns
    -------
    matches : DataFrame
        Columns ``true, pred`` (label ids) and ``iou``, one row per matched
        pair, sorted by ``true``. Unmatched objects have no row.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2, 2, 0, 3]])
    >>> p = np.array([[5, 5, 0, 0, 7, 0, 0]])
    >>> match_objects(t, p)
       true  pred  iou
    0     1     5  1.0
    1     2     7  0.5
    >>> match_objects(t, p, threshold=0.6)["pred"].tolist()
    [5]
    """
    if not 0 < float(threshold) <= 1:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold!r}.")
    truth, pred = _check_pair(truth, pred)
    found = _matching(_overlaps(truth, pred)[0], float(threshold))
    table = pd.DataFrame(found, columns=["true", "pred", "iou"])
    table = table.astype({"true": np.int64, "pred": np.int64, "iou": float})
    return table.sort_values("true", ignore_index=True)


def _dense_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids present incl. 0, index of each pixel's id, area per id) without sorting pixels."""
    flat = labels.ravel()
    if labels.size and labels.max() <= 4 * labels.size:  # O(N) lookup table
        area = np.bincount(flat)
        ids = np.flatnonzero(area)
        if ids.size == 0 or ids[0] != 0:
            ids = np.concatenate([[0], ids])
        lut = np.zeros(area.size, np.int64)
        lut[ids] = np.arange(ids.size)
        return ids, lut[flat], area[ids]
    ids, idx = np.unique(flat, return_inverse=True)  # huge sparse ids: sort instead
    if ids.size == 0 or ids[0] != 0:
        ids, idx = np.concatenate([[0], ids]), idx + 1
    return ids, idx.ravel(), np.bincount(idx.ravel(), minlength=ids.size)


def _overlaps(truth, pred) -> tuple[pd.DataFrame, int, int]:
    """Overlap table and the numbers of true and predicted objects (validated inputs)."""
    t_ids, t_idx, t_area = _dense_index(truth)
    p_ids, p_idx, p_area = _dense_index(pred)
    n_t, n_p = len(t_ids), len(p_ids)
    if n_t * n_p <= 4 * truth.size:  # dense bin table is small: one bincount
        counts = np.bincount(t_idx * n_p + p_idx, minlength=n_t * n_p)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:  # many objects: sort-based unique keeps memory proportional to the pairs
        keys, inter = np.unique(t_idx * n_p + p_idx, return_counts=True)
    ti, pi = keys // n_p, keys % n_p
    keep = (ti > 0) & (pi > 0)
    ti, pi, inter = ti[keep], pi[keep], inter[keep]
    union = t_area[ti] + p_area[pi] - inter
    table = pd.DataFrame({"true": t_ids[ti].astype(np.int64), "pred": p_ids[pi].astype(np.int64),
                          "intersection": inter.astype(np.int64),
                          "true_area": t_area[ti].astype(np.int64),
                          "pred_area": p_area[pi].astype(np.int64),
                          "iou": inter / union})
    return table, n_t - 1, n_p - 1


def _match_pairs(pairs: pd.DataFrame, threshold: float) -> list[tuple[int, int]]:
    """(true, pred) label pairs of the optimal one-to-one matching with IoU >= threshold."""
    return [(t, p) for t, p, _ in _matching(pairs, threshold)]


def _matching(pairs: pd.DataFrame, threshold: float):
    """Optimal matching: (true, pred, iou) triples maximising summed IoU, IoU >= threshold."""
    cand = pairs[pairs["iou"] >= threshold]
    t, p, iou = (cand[c].to_numpy() for c in ("true", "pred", "iou"))
    if threshold <= 0.5 and len(cand):  # IoU > 0.5 pairs are unique on both sides already
        from scipy.optimize import linear_sum_assignment

        rows, r_idx = np.unique(t, return_inverse=True)
        cols, c_idx = np.unique(p, return_inverse=True)
        cost = np.zeros((len(rows), len(cols)))
        cost[r_idx, c_idx] = -iou
        r, c = linear_sum_assignment(cost)
        keep = -cost[r, c] >= threshold
        t, p, iou = rows[r[keep]], cols[c[keep]], -cost[r[keep], c[keep]]
    return list(zip(t.tolist(), p.tolist(), iou.tolist()))


def _ctc_counts(pairs: pd.DataFrame, n_true: int, n_pred: int) -> tuple[float, float]:
    """Summed SEG Jaccard and AOGM-D of one image (Cell Tracking Challenge)."""
    # a predicted object "covers" a true object when it holds more than half of it;
    # each true object has at most one cover
    cover = pairs[pairs["intersection"] > 0.5 * pairs["true_area"]]
    refs_per_pred = cover.groupby("pred").size()
    n_split = float((refs_per_pred - 1).clip(lower=0).sum())
    n_fn, n_fp = n_true - len(cover), n_pred - len(refs_per_pred)
    return float(cover["iou"].sum()), _W_SPLIT * n_split + _W_FN * n_fn + _W_FP * n_fp


def _ctc_scores(seg_sum: float, aogm: float, n_true: int) -> dict:
    """SEG, DET and OP_CSB from summed counts; NaN without true objects."""
    if n_true == 0:
        return {"seg": np.nan, "det": np.nan, "op_csb": np.nan}
    aogm0 = _W_FN * n_true  # creating every true object from nothing
    seg, det = seg_sum / n_true, 1 - min(aogm, aogm0) / aogm0
    return {"seg": float(seg), "det": float(det), "op_csb": float((seg + det) / 2)}


def _ratios(tp, fp, fn, iou_sum) -> dict:
    n_true, n_pred = tp + fn, tp + fp
    if n_true == 0 and n_pred == 0:
        return dict(precision=1.0, recall=1.0, f1=1.0, ap=1.0, mean_matched_iou=np.nan,
                    panoptic_quality=1.0)

    def div(a, b):
        return float(a / b) if b else 0.0

    return dict(precision=div(tp, n_pred), recall=div(tp, n_true),
                f1=div(2 * tp, n_true + n_pred), ap=div(tp, tp + fp + fn),
                mean_matched_iou=float(iou_sum / tp) if tp else np.nan,
                panoptic_quality=div(iou_sum, tp + fp / 2 + fn / 2))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def _check_pair(truth, pred):
    truth = check_labels(truth, "truth")
    pred = check_labels(pred, "pred")
    if truth.shape != pred.shape:
        raise ValueError(f"`truth` (shape {truth.shape}) and `pred` (shape {pred.shape}) must "
                         "have the same shape.")
    if truth.size == 0:
        raise ValueError(f"`truth` and `pred` are empty images (shape {truth.shape}); there is "
                         "nothing to score.")
    return truth, pred


def detection(truth, pred) -> pd.Series:
    """Detection scores of located objects: one prompt per true object.

    The count ``locate`` is judged by (one SAM prompt per nucleus): a true
    object holding the centroid of at least one predicted object is found;
    every other predicted centroid is a false positive, either a second one
    in a true object (``fp_split``: the object would be split) or one where
    the truth has none. Ids need not be contiguous.

    Parameters
    ----------
    truth, pred : (H, W) int ndarray, or lists of them (same length, pairwise shapes)
        Reference and predicted labels; for lists the counts are summed.

    Returns
    -------
    scores : Series
        ``tp, fp, fp_split, fn, precision, recall, f1`` (the counts are whole
        numbers, in the Series' float dtype).

    Examples
    --------
    >>> truth = np.zeros((8, 12), np.int32); truth[1:4, 1:4] = 1; truth[1:4, 6:11] = 2
    >>> pred = np.zeros((8, 12), np.int32); pred[1:4, 1:4] = 5          # found
    >>> pred[1:4, 6:8] = 6; pred[1:4, 9:11] = 7                          # 2 split in two
    >>> pred[6:8, 6:8] = 8                                               # on background
    >>> detection(truth, pred)[["tp", "fp", "fp_split", "fn", "f1"]].tolist()
    [2.0, 2.0, 1.0, 0.0, 0.6666666666666666]
    """
    if isinstance(truth, np.ndarray) != isinstance(pred, np.ndarray):
        raise TypeError(f"`truth` and `pred` must both be label images or both be lists of "
                        f"them, got {type(truth).__name__} and {type(pred).__name__}.")
    truths = [truth] if isinstance(truth, np.ndarray) else list(truth)
    preds = [pred] if isinstance(pred, np.ndarray) else list(pred)
    if len(truths) != len(preds):
        raise ValueError(f"`truth` holds {len(truths)} images and `pred` {len(preds)}; they "
                         "must pair up one to one.")
    tp = fp = split = fn = 0
    for t, q in zip(truths, preds):
        t, q = _check_pair(t, q)
        ids = np.unique(q[q > 0])
        n_true = len(np.unique(t[t > 0]))
        if len(ids):
            from scipy import ndimage

            centres = np.round(ndimage.center_of_mass(np.ones(q.shape), q, ids)).astype(int)
            hit = t[centres[:, 0], centres[:, 1]]
        else:
            hit = np.zeros(0, np.int32)
        found = len(np.unique(hit[hit > 0]))
        tp, fp, fn = tp + found, fp + len(ids) - found, fn + n_true - found
        split += int((hit > 0).sum()) - found
    return pd.Series({"tp": tp, "fp": fp, "fp_split": split, "fn": fn,
                      "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
                      "f1": 2 * tp / max(2 * tp + fp + fn, 1)})


def _table_of(item) -> pd.DataFrame | None:
    """The cell table of a Segmentation (``table``) or Record (``cells``), else None.

    Read without running properties, so that the deprecated ``SyntheticPair.cells``
    (a label image) neither warns nor counts as a table.
    """
    from inspect import getattr_static

    for name in ("table", "cells"):
        table = getattr_static(item, name, None)
        if isinstance(table, pd.DataFrame):
            return table
    return None


def _class_of(item) -> pd.Series | None:
    """The ``class_name`` of each object of a Segmentation / Record, by label (None: unclassed)."""
    from .classify import CLASS_COLUMN

    table = _table_of(item)
    if table is None or CLASS_COLUMN not in table.columns:
        return None
    column = table.set_index("label")[CLASS_COLUMN] if "label" in table.columns else \
        table[CLASS_COLUMN]
    return column.dropna().astype(str)


def _align(t_items: list, p_items: list) -> list:
    """`p_items` in the order of `t_items`: matched by image id when both sides name
    every image (records, COCO files), else by position (plain label images)."""
    t_ids, p_ids = [item[0] for item in t_items], [item[0] for item in p_items]
    if None in t_ids or None in p_ids:
        if len(t_items) != len(p_items):
            raise ValueError(f"`truth` has {len(t_items)} image(s) but `pred` has "
                             f"{len(p_items)}; pass them in matching order.")
        return p_items
    for side, ids in (("truth", t_ids), ("pred", p_ids)):
        if len(set(ids)) != len(ids):
            twice = sorted({str(i) for i in ids if ids.count(i) > 1})
            raise ValueError(f"`{side}` holds image id(s) {twice[:5]} more than once; each "
                             "image must appear once to be matched with its counterpart.")
    missing = [i for i in t_ids if i not in set(p_ids)]
    extra = [i for i in p_ids if i not in set(t_ids)]
    if missing or extra:
        raise ValueError(
            "`truth` and `pred` do not hold the same images (they are matched by id): "
            + "; ".join(f"{what} {len(ids)}: {[str(i) for i in ids[:5]]}"
                        + (" ..." if len(ids) > 5 else "")
                        for what, ids in (("only in truth", missing), ("only in pred", extra))
                        if ids)
            + ". Evaluate the images both sides have, or pass plain label images to match "
              "by position.")
    by_id = {item[0]: item for item in p_items}
    return [by_id[i] for i in t_ids]


def _as_items(obj, name: str) -> list[tuple[str | None, np.ndarray, pd.Series | None]]:
    """Normalise inputs to a list of (id, label image, scores by label)."""
    return [item[:3] for item in _as_class_items(obj, name)]


def _as_class_items(obj, name: str) -> list[tuple]:
    """Normalise inputs to a list of (id, label image, scores by label, classes by label)."""
    from pathlib import Path

    if isinstance(obj, (str, Path)) or (isinstance(obj, Mapping) and "annotations" in obj):
        from .io import read_coco

        obj = read_coco(obj, images=False)
    if isinstance(obj, np.ndarray) and obj.ndim == 2:
        return [(None, obj, None, None)]
    if hasattr(obj, "labels") and not isinstance(obj, np.ndarray):
        obj = [obj]
    if isinstance(obj, np.ndarray) and obj.ndim == 3:
        obj = list(obj)
    if not isinstance(obj, Sequence) or isinstance(obj, str):
        raise TypeError(f"`{name}` must be a label image, a sequence of them, Segmentation or "
                        f"Record objects, or a COCO file; got {type(obj).__name__}.")
    items = []
    for k, item in enumerate(obj):
        if isinstance(item, np.ndarray):
            items.append((None, item, None, None))
        elif hasattr(item, "labels"):
            table = _table_of(item)
            score = None
            if table is not None and "score" in table:
                score = (table.set_index("label")["score"] if "label" in table.columns
                         else table["score"])
            items.append((getattr(item, "id", None), item.labels, score, _class_of(item)))
        else:
            raise TypeError(f"`{name}[{k}]` must be a label image or have `.labels`, got "
                            f"{type(item).__name__}.")
    return items


# ---------------------------------------------------------------------------
# COCO (pycocotools)
# ---------------------------------------------------------------------------
def _coco_metrics(pairs_of_images, scores_per_image, max_dets: int) -> dict:
    """COCO AP/AP50/AP75/AR of predictions vs truth, via pycocotools COCOeval."""
    import contextlib
    import io as _io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from .io._coco import label_rles

    def encode(labels, image_id, scores, start_id):
        anns = []
        for k, (lab, _, rle) in enumerate(label_rles(labels)):
            ann = {"id": start_id + k, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                   "segmentation": rle, "area": float(mask_utils.area(rle)),
                   "bbox": list(mask_utils.toBbox(rle))}
            if scores is not None:
                ann["score"] = float(scores.get(int(lab), 1.0))
            anns.append(ann)
        return anns

    images, gt_anns, dt_anns = [], [], []
    for image_id, ((truth, pred), scores) in enumerate(zip(pairs_of_images, scores_per_image),
                                                       start=1):
        h, w = truth.shape
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}"})
        gt_anns += encode(truth, image_id, None, len(gt_anns) + 1)
        dt_anns += encode(pred, image_id, scores if scores is not None else {},
                          len(dt_anns) + 1)
    if not gt_anns or not dt_anns:  # nothing to rank: 0 when objects were missed, else undefined
        return dict.fromkeys(_coco_columns(max_dets), 0.0 if gt_anns else np.nan)
    with contextlib.redirect_stdout(_io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns,
                      "categories": [{"id": 1, "name": "cell"}]}
        gt.createIndex()
        dt = gt.loadRes(dt_anns)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, 0, -1]  # [T, R] at area=all, maxDets=max_dets
    recall = ev.eval["recall"][:, 0, 0, -1]

    def mean_valid(x):
        x = x[x > -1]
        return float(x.mean()) if x.size else np.nan

    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(ev.params.iouThrs - 0.75)))
    values = (mean_valid(precision), mean_valid(precision[t50]), mean_valid(precision[t75]),
              mean_valid(recall))
    return dict(zip(_coco_columns(max_dets), values))


def _coco_columns(max_dets: int) -> list[str]:
    return ["coco_ap", "coco_ap50", "coco_ap75", f"coco_ar{max_dets}"]


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def evaluate(truth, pred, *, thresholds=DEFAULT_THRESHOLDS, scores=None,
             by: str = "image", coco_max_dets: int = 100, progress: bool = False) -> pd.DataFrame:
    """Compare predicted to true instance segmentations.

    Parameters
    ----------
    truth, pred : label image, sequence of label images, Segmentation / Record objects, or COCO file
        ``(H, W)`` int label images (0 = background), a sequence of them (or
        an ``(N, H, W)`` stack), objects with a ``.labels`` attribute
        (:class:`cellnb.io.Record`, Segmentation), or a COCO json / split
        folder / dict (read with :func:`cellnb.io.read_coco`). When both
        sides name their images (records, COCO files) they are matched by
        id, whatever their order, and must hold the same images (an error
        lists those only one side has); plain label images are matched by
        position.
    thresholds : sequence of float, default=(0.5, 0.55, ..., 0.95)
        IoU thresholds in (0, 1].
    scores : sequence of mapping {label: score}, optional
        Confidence of each predicted object per image (in `pred`'s order), used to rank
        detections for the COCO metrics. Default: the ``score`` column of
        Segmentation / Record tables when present, else all equal.
    by : {"image", "dataset", "class_name"}, default="image"
        One row per (image, threshold), or per threshold over all images
        pooled (counts summed; SEG over all true objects; DET from summed
        AOGM) with the COCO columns added, or ``"class_name"``: the
        dataset-level row of each cell class, under a leading ``class_name``
        column (``"class"``, the old spelling, names that column ``class``
        and warns; it goes in the next release). Classes
        come from the ``class_name`` column of the truth Records and the
        predicted Segmentations; a predicted cell counts for its predicted
        class only, so a cell found but given the wrong class is a false
        positive of one class and a miss of the other (as in COCO's
        per-category AP).
    coco_max_dets : int, default=100
        Detections per image the COCO metrics consider (COCO's and
        Detectron2's 100, so numbers compare with theirs). Images with more
        cells than this cap recall and AP; a warning says so. The AR column
        is named ``coco_ar<coco_max_dets>``.
    progress : bool, default=False
        Show a progress bar over images.

    Returns
    -------
    table : DataFrame
        Columns ``image, threshold`` followed by :data:`METRIC_COLUMNS`
        (plus ``coco_ap, coco_ap50, coco_ap75, coco_ar100`` with
        ``by="dataset"``; see `coco_max_dets`). ``image`` is the record id when known, else the
        position; ``"all"`` at dataset level.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2, 2],
    ...                   [1, 1, 0, 2, 2]])
    >>> pred = np.array([[1, 1, 0, 0, 0],
    ...                  [1, 1, 0, 0, 3]])
    >>> table = evaluate(truth, pred, thresholds=[0.5])
    >>> table[["tp", "fp", "fn", "precision", "recall", "f1", "ap"]]
       tp  fp  fn  precision  recall   f1        ap
    0   1   1   1        0.5     0.5  0.5  0.333333

    Per class: both cells are found, but cell 2 is called "a" instead of "b".

    >>> from cellnb.io import Record
    >>> cells = pd.DataFrame({"class_name": ["a", "b"]}, index=pd.Index([1, 2], name="label"))
    >>> true = Record("im", None, truth, cells)
    >>> guess = Record("im", None, truth, cells.assign(class_name=["a", "a"]))
    >>> table = evaluate([true], [guess], thresholds=[0.5], by="class_name")
    >>> table[["class_name", "tp", "fp", "fn"]]
      class_name  tp  fp  fn
    0          a   1   1   0
    1          b   0   0   1
    """
    from tqdm.auto import tqdm

    if by not in ("image", "dataset", "class_name", "class"):
        raise ValueError(f"`by` must be 'image', 'dataset' or 'class_name', got {by!r}.")
    if by in ("class_name", "class"):
        if by == "class":
            _warn_old_by("evaluate")
        table = _by_class(truth, pred, thresholds=thresholds, scores=scores,
                          coco_max_dets=coco_max_dets, progress=progress)
        return table.rename(columns={"class_name": "class"}) if by == "class" else table
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if thresholds.size == 0 or not ((thresholds > 0) & (thresholds <= 1)).all():  # NaN too
        raise ValueError(f"`thresholds` must be non-empty values in (0, 1], got "
                         f"{thresholds.tolist()}.")
    t_items, p_items = _as_items(truth, "truth"), _as_items(pred, "pred")
    if scores is not None:  # in pred's order: attached before the images are matched
        if len(scores) != len(p_items):
            raise ValueError(f"`scores` has {len(scores)} entries for {len(p_items)} image(s).")
        p_items = [(i, lab, pd.Series(s, dtype=float)) for (i, lab, _), s in zip(p_items, scores)]
    p_items = _align(t_items, p_items)

    rows, per_image = [], []
    for k, ((t_id, t_lab, _), (p_id, p_lab, _)) in enumerate(
            tqdm(list(zip(t_items, p_items)), desc="evaluate", disable=not progress)):
        try:
            t_lab, p_lab = _check_pair(t_lab, p_lab)
        except (TypeError, ValueError) as err:
            raise type(err)(f"image {k}: {err}") from None
        pairs, n_true, n_pred = _overlaps(t_lab, p_lab)
        image = t_id if t_id is not None else (p_id if p_id is not None else k)
        seg_sum, aogm = _ctc_counts(pairs, n_true, n_pred)
        ctc = _ctc_scores(seg_sum, aogm, n_true)
        per_image.append({"n_true": n_true, "seg_sum": seg_sum, "aogm": aogm})
        for threshold in thresholds:
            ious = np.array([m[2] for m in _matching(pairs, threshold)])
            tp = len(ious)
            counts = {"n_true": n_true, "n_pred": n_pred, "tp": tp, "fp": n_pred - tp,
                      "fn": n_true - tp, "iou_sum": float(ious.sum())}
            rows.append({"image": image, "threshold": float(threshold), **counts,
                         **_ratios(tp, n_pred - tp, n_true - tp, ious.sum()), **ctc})
    table = pd.DataFrame(rows)
    if by == "image":
        return table[["image", "threshold", *METRIC_COLUMNS]].reset_index(drop=True)

    totals = pd.DataFrame(per_image).sum()
    ctc = _ctc_scores(totals["seg_sum"], totals["aogm"], int(totals["n_true"]))
    if isinstance(coco_max_dets, bool) or not isinstance(coco_max_dets, int) or coco_max_dets < 1:
        raise ValueError(f"`coco_max_dets` must be a positive int, got {coco_max_dets!r}.")
    most = max(r["n_pred"] for r in rows)
    if most > coco_max_dets:
        import warnings

        warnings.warn(f"an image has {most} predicted objects but the COCO metrics consider "
                      f"only the top {coco_max_dets} per image, which caps coco_ap and recall; "
                      f"pass coco_max_dets={most} (or more) to count them all.", stacklevel=2)
    coco = _coco_metrics([(t[1], p[1]) for t, p in zip(t_items, p_items)],
                         [p[2] for p in p_items], coco_max_dets)
    out = []
    for threshold, group in table.groupby("threshold", sort=True):
        s = group[["n_true", "n_pred", "tp", "fp", "fn", "iou_sum"]].sum()
        out.append({"image": "all", "threshold": threshold,
                    **{c: int(s[c]) for c in ("n_true", "n_pred", "tp", "fp", "fn")},
                    **_ratios(s["tp"], s["fp"], s["fn"], s["iou_sum"]), **ctc, **coco})
    return pd.DataFrame(out)[["image", "threshold", *METRIC_COLUMNS, *coco]]


def _warn_old_by(verb: str) -> None:
    import warnings

    warnings.warn(f"{verb}(by='class') is the old spelling: by='class_name' names the class "
                  "column 'class_name', as every cellnb table does. by='class' (and its 'class' "
                  "column) works until the next release.", FutureWarning, stacklevel=3)


def _by_class(truth, pred, *, scores, **kwargs) -> pd.DataFrame:
    """``evaluate(by="class_name")``: the dataset-level table of each class's cells alone."""
    t_items, p_items = _as_class_items(truth, "truth"), _as_class_items(pred, "pred")
    for side, items in (("truth", t_items), ("pred", p_items)):
        # images without cells need no class column (a Segmentation of no cell has none)
        if all(item[3] is None for item in items) and any(item[1].max() > 0 for item in items):
            raise ValueError(f"by='class_name' needs each cell's class, but `{side}` has no "
                             "'class_name' column: pass Records / Segmentations whose tables "
                             "have one (e.g. the segment output of a model trained on classes).")
    if scores is not None:
        if len(scores) != len(p_items):
            raise ValueError(f"`scores` has {len(scores)} entries for {len(p_items)} image(s).")
        p_items = [(i, lab, pd.Series(s, dtype=float), c)
                   for (i, lab, _, c), s in zip(p_items, scores)]
    p_items = _align(t_items, p_items)
    names = sorted(set().union(*(set(item[3]) for item in t_items if item[3] is not None)))

    def only(items, name):
        return [np.where(np.isin(lab, [] if cls is None else cls.index[cls == name].to_numpy()),
                         lab, 0) for _, lab, _, cls in items]

    ranked = [{} if sc is None else sc.to_dict() for _, _, sc, _ in p_items]
    tables = []
    for name in names:
        table = evaluate(only(t_items, name), only(p_items, name), by="dataset", scores=ranked,
                         **kwargs)
        table.insert(0, "class_name", name)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def compare(truth, predictions: Mapping, **kwargs) -> pd.DataFrame:
    """Evaluate several methods against the same truth, in one tidy table.

    Parameters
    ----------
    truth
        As for :func:`evaluate`, and first, as there.
    predictions : mapping {method name: predictions or str}
        Each value is anything :func:`evaluate` accepts as `pred`, or a str
        saying why the method could not run (weights not cached, say): its
        rows stay in the table with empty scores and that ``note``, so a
        method never vanishes from a comparison without a word.
        (The old order, ``compare(predictions, truth)``, still works with a
        FutureWarning until the next release.)
    **kwargs
        Passed to :func:`evaluate` (``thresholds``, ``by``, ...).

    Returns
    -------
    table : DataFrame
        :func:`evaluate`'s columns with a leading ``method`` column and a
        trailing ``note`` ("" for methods that ran).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2]])
    >>> table = compare(truth, {"perfect": truth, "empty": np.zeros_like(truth),
    ...                         "vit_b_lm AIS": "weights not cached"}, thresholds=[0.5])
    >>> table[["method", "tp", "fn", "f1"]]
             method   tp   fn   f1
    0       perfect  2.0  0.0  1.0
    1         empty  0.0  2.0  0.0
    2  vit_b_lm AIS  NaN  NaN  NaN
    >>> table["note"].tolist()
    ['', '', 'weights not cached']
    """
    if isinstance(truth, Mapping) and not isinstance(predictions, Mapping):
        import warnings

        warnings.warn("compare(predictions, truth) is the old order; call compare(truth, "
                      "predictions), the order of evaluate(truth, pred). The old order works "
                      "until the next release.", FutureWarning, stacklevel=2)
        truth, predictions = predictions, truth
    if not isinstance(predictions, Mapping) or not predictions:
        raise TypeError("`predictions` must be a non-empty mapping {method name: predictions}.")
    old_by = kwargs.get("by") == "class"
    if old_by:
        _warn_old_by("compare")
        kwargs["by"] = "class_name"
    tables, frame = [], None
    for method, pred in predictions.items():
        if isinstance(pred, str):
            if frame is None:  # the rows a method would have: truth scored against itself
                frame = evaluate(truth, truth, **kwargs)
            table = frame.copy()
            keep = {"image", "dataset", "class_name", "threshold", "n_true"}
            for column in table.columns:
                if column not in keep:
                    table[column] = np.nan
            table["note"] = pred
        else:
            table = evaluate(truth, pred, **kwargs)
            table["note"] = ""
        table.insert(0, "method", method)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    return table.rename(columns={"class_name": "class"}) if old_by else table
