"""Per-cell features (Cell-APP's property list, intensity and texture) and culture metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._shared.validation import check_image, check_labels, check_same_shape
from .config import CELLAPP_PROPERTIES  # one list, shared with Config

__all__ = ["measure", "culture", "CELLAPP_PROPERTIES", "INTENSITY_FEATURES"]

#: Extra columns computed when an intensity image is given.
INTENSITY_FEATURES = ("intensity_mean", "intensity_std", "intensity_p10", "intensity_p50",
                      "intensity_p90", "intensity_skew", "texture_laplacian",
                      "texture_gradient")

_NEEDS_INTENSITY = {"intensity_max", "intensity_min", "intensity_mean", "intensity_std"}


def _per_label(values: np.ndarray, labels: np.ndarray, ids: np.ndarray, funcs) -> dict:
    """Apply reductions per label on pixels sorted once by label (no per-label scans)."""
    flat, vals = labels.ravel(), values.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_labels, sorted_vals = flat[order], vals[order]
    starts = np.searchsorted(sorted_labels, ids, side="left")
    stops = np.searchsorted(sorted_labels, ids, side="right")
    out = {name: np.empty(len(ids)) for name in funcs}
    for k, (a, b) in enumerate(zip(starts, stops)):
        chunk = sorted_vals[a:b]
        for name, func in funcs.items():
            out[name][k] = func(chunk)
    return out


def _skew(x):
    s = x.std()
    return float(((x - x.mean()) ** 3).mean() / s ** 3) if s > 0 else 0.0


def measure(labels, intensity=None, *, properties=CELLAPP_PROPERTIES, extra=None) -> pd.DataFrame:
    """Measure every labelled object: shape, intensity and texture.

    Parameters
    ----------
    labels : (H, W) int ndarray
        Nuclei (for fluorescence features) or cells (for TL features).
    intensity : (H, W) ndarray, optional
        Image to measure intensities in (fluorescence or TL); not rescaled.
    properties : sequence of str, default=Cell-APP's list
        scikit-image ``regionprops`` properties. Intensity properties need
        `intensity`; ``centroid_local`` expands to ``centroid_local_0/_1``.
    extra : sequence of callables, optional
        ``f(region_mask, region_intensity) -> float``, as scikit-image's
        ``extra_properties``; the column is named after the function.

    Returns
    -------
    features : DataFrame
        Indexed by ``label``; snake_case columns. With `intensity`, also
        :data:`INTENSITY_FEATURES`: mean, std, 10/50/90th percentiles,
        skewness, and texture as the mean absolute Laplacian and gradient
        magnitude inside the object.

    Examples
    --------
    >>> labels = np.zeros((6, 6), np.int32); labels[1:3, 1:4] = 1; labels[4:6, 4:6] = 7
    >>> image = np.arange(36, dtype=np.float32).reshape(6, 6)
    >>> measure(labels, image, properties=("area", "extent"))[["area", "extent", "intensity_mean"]]
           area  extent  intensity_mean
    label                              
    1       6.0     1.0            11.0
    7       4.0     1.0            31.5
    """
    from skimage.measure import regionprops_table

    labels = check_labels(labels, "labels")
    if intensity is not None:
        intensity = check_image(intensity, "intensity", rgb=True)
        check_same_shape(labels, intensity, "labels", "intensity")
        if intensity.ndim == 3:
            intensity = intensity.mean(axis=-1, dtype=np.float32)  # RGB TL stored as 3 channels
    ids = np.unique(labels[labels > 0])
    if len(ids) == 0:
        raise ValueError("`labels` holds no objects (all zeros); nothing to measure.")
    properties = list(properties)
    missing = sorted(set(properties) & _NEEDS_INTENSITY) if intensity is None else []
    if missing:
        raise ValueError(f"properties {missing} need an `intensity` image; pass one or drop them.")
    kwargs = {"extra_properties": list(extra)} if extra else {}
    if extra:
        properties += [f.__name__ for f in extra]
    table = regionprops_table(labels, intensity_image=intensity,
                              properties=["label", *properties], **kwargs)
    features = pd.DataFrame(table).set_index("label")
    features.columns = [c.replace("-", "_") for c in features.columns]
    if intensity is not None:
        from scipy import ndimage

        values = intensity.astype(np.float32, copy=False)
        stats = _per_label(values, labels, ids, {
            "intensity_mean": np.mean, "intensity_std": np.std,
            "intensity_p10": lambda x: np.percentile(x, 10),
            "intensity_p50": np.median,
            "intensity_p90": lambda x: np.percentile(x, 90),
            "intensity_skew": _skew})
        laplace = np.abs(ndimage.laplace(values))
        gradient = np.hypot(ndimage.sobel(values, 0), ndimage.sobel(values, 1))
        stats["texture_laplacian"] = ndimage.mean(laplace, labels, ids)
        stats["texture_gradient"] = ndimage.mean(gradient, labels, ids)
        for name, column in stats.items():
            features[name] = np.asarray(column, float)
    features.index = features.index.astype(np.int64)
    features.index.name = "label"
    return features.astype(float)


def culture(labels) -> pd.Series:
    """Culture-level metrics of a cell segmentation (as SAMCell reports them).

    Parameters
    ----------
    labels : (H, W) int ndarray
        Cell labels.

    Returns
    -------
    metrics : Series
        ``cell_count``, ``mean_area``, ``median_area`` (pixels),
        ``confluency`` (fraction of the image covered by cells) and
        ``neighbours_per_cell`` (mean number of other cells within 2 px).

    Examples
    --------
    >>> labels = np.zeros((4, 8), np.int32); labels[:, :3] = 1; labels[:, 3:5] = 2
    >>> culture(labels).to_dict()
    {'cell_count': 2.0, 'mean_area': 10.0, 'median_area': 10.0, 'confluency': 0.625, 'neighbours_per_cell': 1.0}
    """
    labels = check_labels(labels, "labels")
    ids = np.unique(labels[labels > 0])
    areas = np.bincount(labels.ravel())[ids] if len(ids) else np.array([])
    # neighbours: distinct labels within 2 px, from the 24 shifts of a 5 x 5 window
    h, w = labels.shape
    big = np.int64(labels.max()) + 1
    keys = []
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if (dy, dx) <= (0, 0):  # each unordered shift once
                continue
            a = labels[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            b = labels[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            touch = (a > 0) & (b > 0) & (a != b)
            lo, hi = np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])
            keys.append(lo.astype(np.int64) * big + hi)
    n_pairs = len(np.unique(np.concatenate(keys))) if keys else 0
    n = len(ids)
    return pd.Series({"cell_count": float(n),
                      "mean_area": float(areas.mean()) if n else 0.0,
                      "median_area": float(np.median(areas)) if n else 0.0,
                      "confluency": float((labels > 0).mean()),
                      "neighbours_per_cell": 2 * n_pairs / n if n else 0.0})
