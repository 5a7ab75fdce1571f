"""Intensity normalisation for networks, explicit and recorded (private).

Every method returns the float32 image and a record of what was done, which
cellnb stores with its outputs (STYLE rule 5: never rescale silently).
"""

from __future__ import annotations

import numpy as np

from .validation import check_image


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


def normalize_for_sam(image) -> tuple[np.ndarray, dict]:
    """Map a TL image to SAM's input: (H, W, 3) uint8, min-max per channel.

    The arithmetic is micro_sam's own (``micro_sam.util._to_image``: float32,
    minus the minimum, divided by the maximum + 1e-7, times 255, truncated
    to uint8), so an image segmented through cellnb and through micro_sam
    meets the same network input. Returns the image and a record of the
    mapping (``method``, per-channel ``min`` and ``max``).

    Examples
    --------
    >>> rgb, record = normalize_for_sam(np.array([[100, 300], [200, 300]], np.uint16))
    >>> rgb.shape, rgb[..., 0].tolist(), record["min"], record["max"]
    ((2, 2, 3), [[0, 255], [127, 255]], [100.0], [300.0])
    """
    image = check_image(image, "image", rgb=True)
    channels = image[..., None] if image.ndim == 2 else image
    scaled = channels.astype(np.float32)
    scaled -= scaled.min(axis=(0, 1))[None, None]
    scaled /= scaled.max(axis=(0, 1))[None, None] + np.float32(1e-7)
    out = (scaled * 255).astype(np.uint8)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    values = channels.reshape(-1, channels.shape[-1])
    return out, {"method": "min-max per channel to uint8, truncated (micro_sam's _to_image)",
                 "min": values.min(axis=0).astype(float).tolist(),
                 "max": values.max(axis=0).astype(float).tolist()}
