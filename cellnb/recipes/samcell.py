"""SAMCell building blocks (VandeLoo, Malta et al., *SAMCell*, PLoS One 2025).

SAMCell regresses each cell's distance to its border, normalised by the
cell's own maximum, and turns the predicted map into cells with a watershed
from peaks above 0.47 inside the region above 0.09. The target and the
post-processing are here as pure functions; the recipe (fine-tuning SAM's
encoder and decoder on this target) is not part of :func:`cellnb.train` yet.
"""

from __future__ import annotations

import numpy as np

__all__ = ["distance_target", "watershed"]


def distance_target(labels) -> np.ndarray:
    """Per-cell distance to the cell border, divided by that cell's maximum.

    Parameters
    ----------
    labels : (H, W) int ndarray

    Returns
    -------
    target : (H, W) float32 in [0, 1]; 0 on background, 1 at each cell's centre.

    Examples
    --------
    >>> labels = np.zeros((7, 7), np.int32); labels[1:6, 1:6] = 1
    >>> (distance_target(labels)[3] * 3).round().astype(int).tolist()
    [0, 1, 2, 3, 2, 1, 0]
    """
    from scipy import ndimage

    from .._validation import check_labels

    labels = check_labels(labels, "labels")
    target = np.zeros(labels.shape, np.float32)
    for lab, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        padded = [slice(max(0, s.start - 1), s.stop + 1) for s in window]
        cell = labels[tuple(padded)] == lab
        dist = ndimage.distance_transform_edt(np.pad(cell, 1))[1:-1, 1:-1]
        if dist.max() > 0:
            view = target[tuple(padded)]
            view[cell] = (dist / dist.max())[cell]
    return target


def watershed(distance, *, peak: float = 0.47, fill: float = 0.09,
              min_size: int = 0) -> np.ndarray:
    """Cells from a predicted normalised distance map (SAMCell's post-processing).

    Seeds are the connected regions above `peak`; they grow by a watershed
    on the inverted map within the region above `fill`.

    Parameters
    ----------
    distance : (H, W) float ndarray, values in [0, 1]
    peak : float, default=0.47
        Cell-peak threshold.
    fill : float, default=0.09
        Cell-fill threshold.
    min_size : int, default=0
        Cells with fewer pixels are removed.

    Returns
    -------
    labels : (H, W) int32, ids 1..n

    Examples
    --------
    >>> yy, xx = np.mgrid[:20, :30]
    >>> disk = lambda cy, cx: np.clip(1 - np.hypot(yy - cy, xx - cx) / 5, 0, 1)
    >>> two = np.maximum(disk(10, 10), disk(10, 19))      # two touching cells
    >>> int(watershed(two).max())
    2
    """
    from skimage.measure import label
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential
    from skimage.segmentation import watershed as sk_watershed

    distance = np.asarray(distance, np.float32)
    if distance.ndim != 2:
        raise ValueError(f"`distance` must be 2-D, got shape {distance.shape}.")
    if not 0 <= fill < peak <= 1:
        raise ValueError(f"need 0 <= fill < peak <= 1, got fill={fill}, peak={peak}.")
    seeds = label(distance > peak)
    labels = sk_watershed(-distance, seeds, mask=distance > fill)
    if min_size:
        labels = remove_small_objects(labels, min_size + 0)
    return relabel_sequential(labels.astype(np.int32))[0]
