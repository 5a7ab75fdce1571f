"""CellSeg1 building blocks (Zhou, Du & Xu, *CellSeg1*, sections 4.5-4.7).

The training sampler and the inference NMS of CellSeg1, as pure functions.
The recipe itself (LoRA on SAM's attention q/v projections trained from one
image) is not part of :func:`cellnb.train` yet.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_points", "two_stage_nms"]


def _top_fraction(dist: np.ndarray, region: np.ndarray, fraction: float) -> np.ndarray:
    """Coordinates of `region` whose distance is in the top `fraction` of the region's."""
    values = dist[region]
    if values.size == 0:
        return np.zeros((0, 2), int)
    cut = np.quantile(values, 1.0 - fraction)
    return np.argwhere(region & (dist >= cut))


def sample_points(labels, *, rng=None, top: float = 0.2, max_positive: int = 30,
                  max_negative: int = 15):
    """Training points of CellSeg1: cell interiors and clear background.

    Positive points come from the top `top` fraction of each cell's distance
    transform (one per cell, at most `max_positive` cells drawn at random);
    negative points from the top `top` fraction of the background's distance
    to the nearest cell.

    Parameters
    ----------
    labels : (H, W) int ndarray
    rng : numpy Generator or int, optional
    top : float, default=0.2
    max_positive, max_negative : int, default=30, 15

    Returns
    -------
    positive : (P, 3) int ndarray
        ``y, x, label`` rows.
    negative : (Q, 2) int ndarray
        ``y, x`` rows.

    Examples
    --------
    >>> labels = np.zeros((20, 20), np.int32); labels[2:9, 2:9] = 1; labels[12:19, 12:19] = 2
    >>> pos, neg = sample_points(labels, rng=0, max_negative=3)
    >>> sorted(pos[:, 2].tolist()), [int(labels[y, x]) for y, x in pos[:, :2]], len(neg)
    ([1, 2], [1, 2], 3)
    """
    from scipy import ndimage

    from .._validation import check_labels

    labels = check_labels(labels, "labels")
    if not 0 < top <= 1:
        raise ValueError(f"`top` must be in (0, 1], got {top}.")
    rng = np.random.default_rng(rng)
    ids = np.unique(labels[labels > 0])
    if len(ids) > max_positive:
        ids = rng.choice(ids, max_positive, replace=False)
    positive = []
    boxes = ndimage.find_objects(labels)
    for lab in sorted(ids):
        window = boxes[lab - 1]
        cell = np.pad(labels[window] == lab, 1)
        dist = ndimage.distance_transform_edt(cell)
        coords = _top_fraction(dist, cell, top)
        y, x = coords[rng.integers(len(coords))] - 1
        positive.append((y + window[0].start, x + window[1].start, lab))
    background = labels == 0
    negative = np.zeros((0, 2), int)
    if background.any() and max_negative > 0:
        dist = ndimage.distance_transform_edt(background) if len(ids) else \
            np.ones(labels.shape)
        coords = _top_fraction(dist, background, top)
        pick = rng.choice(len(coords), min(max_negative, len(coords)), replace=False)
        negative = coords[np.sort(pick)]
    return np.array(positive, int).reshape(-1, 3), negative


def _box_iou(a, b) -> np.ndarray:
    """IoU matrix of half-open boxes (y0, x0, y1, x1)."""
    y0 = np.maximum(a[:, None, 0], b[None, :, 0])
    x0 = np.maximum(a[:, None, 1], b[None, :, 1])
    y1 = np.minimum(a[:, None, 2], b[None, :, 2])
    x1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def two_stage_nms(masks, scores, *, box_threshold: float = 0.05,
                  mask_threshold: float = 0.05) -> np.ndarray:
    """CellSeg1's optimised mask NMS (its Algorithm 1).

    Masks are visited by decreasing score; each kept mask suppresses the
    remaining masks whose **box** IoU with it exceeds `box_threshold` (cheap
    pre-filter) *and* whose **mask** IoU exceeds `mask_threshold`. Mask IoU is
    only computed for box-overlapping pairs.

    Parameters
    ----------
    masks : (N, H, W) bool ndarray
    scores : (N,) float
        CellSeg1 uses predicted IoU x stability score.
    box_threshold, mask_threshold : float, default=0.05

    Returns
    -------
    keep : (K,) int ndarray
        Indices of kept masks, by decreasing score.

    Examples
    --------
    >>> m = np.zeros((3, 10, 10), bool)
    >>> m[0, 0:5, 0:10] = True; m[0, 5:10, 0:2] = True   # an L-shaped cell
    >>> m[1, 5:10, 3:10] = True                           # its neighbour: boxes overlap, masks do not
    >>> m[2] = m[0]; m[2, 0, 0] = False                   # a duplicate of the first
    >>> two_stage_nms(m, [0.9, 0.8, 0.7]).tolist()
    [0, 1]
    """
    masks = np.asarray(masks, bool)
    scores = np.asarray(scores, float)
    if masks.ndim != 3 or len(scores) != len(masks):
        raise ValueError(f"`masks` must be (N, H, W) with one score each; got {masks.shape} "
                         f"and {len(scores)} scores.")
    n = len(masks)
    if n == 0:
        return np.zeros(0, int)
    rows, cols = masks.any(2), masks.any(1)
    boxes = np.zeros((n, 4), int)
    for i in range(n):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(ys):
            boxes[i] = (ys[0], xs[0], ys[-1] + 1, xs[-1] + 1)
    overlap = _box_iou(boxes, boxes) > box_threshold
    order = list(np.argsort(-scores, kind="stable"))
    alive = np.ones(n, bool)
    keep = []
    for k in order:
        if not alive[k]:
            continue
        keep.append(k)
        alive[k] = False
        for i in np.flatnonzero(overlap[k] & alive):
            inter = np.logical_and(masks[k], masks[i]).sum()
            union = np.logical_or(masks[k], masks[i]).sum()
            if union and inter / union > mask_threshold:
                alive[i] = False
    return np.array(keep, int)
