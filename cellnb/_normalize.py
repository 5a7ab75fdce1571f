"""Intensity normalisation for networks, explicit and recorded (private).

Every method returns the float32 image and a record of what was done, which
cellnb stores with its outputs (STYLE rule 5: never rescale silently).
"""

from __future__ import annotations

import numpy as np


def normalize(image: np.ndarray, method: str) -> tuple[np.ndarray, dict]:
    """Normalise a 2-D image for a network; returns (float32 image, record).

    ``"percentile"``: (x - p1) / (p99.8 - p1), the U-Net's input.
    ``"minmax255"``: (x - min) / (max - min) * 255, what SAM expects.
    ``"clahe_zscore"``: CLAHE, then zero mean / unit variance (SAMCell).

    Examples
    --------
    >>> x, info = normalize(np.array([[0, 50], [100, 200]], np.uint8), "minmax255")
    >>> x.tolist(), info["method"]
    ([[0.0, 63.75], [127.5, 255.0]], 'minmax255')
    """
    image = np.asarray(image, np.float32)
    if method == "percentile":
        lo, hi = np.percentile(image, (1.0, 99.8))
        scale = hi - lo if hi > lo else 1.0
        return (image - lo) / scale, {"method": "percentile", "low_percentile": 1.0,
                                      "high_percentile": 99.8}
    if method == "clahe_zscore":
        from skimage.exposure import equalize_adapthist

        lo, hi = float(image.min()), float(image.max())
        scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        out = equalize_adapthist(scaled).astype(np.float32)
        std = float(out.std())
        return (out - out.mean()) / (std if std > 0 else 1.0), {
            "method": "clahe_zscore", "clahe": "skimage equalize_adapthist, default kernel",
            "then": "zero mean, unit variance"}
    if method == "minmax255":
        lo, hi = float(image.min()), float(image.max())
        scale = hi - lo if hi > lo else 1.0
        # clip: float rounding may land a hair above 255, which SAM's input check refuses
        out = np.clip((image - lo) / np.float32(scale) * np.float32(255.0), 0, 255)
        return out, {"method": "minmax255", "range": [0, 255]}
    raise ValueError(f"unknown normalisation {method!r}.")
