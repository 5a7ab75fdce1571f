"""How cellnb cuts large images into pieces, in one place (private).

Two ways, for two needs:

- :func:`tiles`: blocks of ``tile_shape`` that cover the image once, each
  seen with ``halo`` pixels of context (clipped at the border) and kept
  only in its inner block. Row-major, as micro_sam numbers the tiles of
  ``precompute_image_embeddings``, so :func:`cellnb.segment`'s prompts and
  micro_sam's tile embeddings agree; :func:`predict_tiled` runs a network
  over them.
- :func:`window_starts`: windows of one fixed size that overlap, shifted to
  stay inside the image, for networks that must see every window at the
  same scale (SAMCell's and CellSeg1's sliding windows).
"""

from __future__ import annotations

import numpy as np


def tiles(shape, tile_shape, halo):
    """Inner blocks of `tile_shape` and their outer windows grown by `halo`.

    Yields ``(inner, outer)``, each ``(y0, x0, y1, x1)``, row-major.

    Examples
    --------
    >>> [t for t in tiles((4, 6), (2, 3), (1, 1))][:2]
    [((0, 0, 2, 3), (0, 0, 3, 4)), ((0, 3, 2, 6), (0, 2, 3, 6))]
    """
    h, w = shape
    th, tw = tile_shape
    hy, hx = halo
    for y in range(0, h, th):
        for x in range(0, w, tw):
            inner = (y, x, min(y + th, h), min(x + tw, w))
            outer = (max(y - hy, 0), max(x - hx, 0), min(y + th + hy, h), min(x + tw + hx, w))
            yield inner, outer


def predict_tiled(forward, image: np.ndarray, tile_shape, halo, *, progress=False):
    """Apply ``forward((h, w) array) -> (C, h, w) array`` tile by tile (:func:`tiles`).

    An image that fits in one tile is processed whole.

    Examples
    --------
    >>> out = predict_tiled(lambda x: x[None] * 2, np.ones((5, 7), np.float32), (2, 3), (1, 1))
    >>> out.shape, float(out.min()), float(out.max())
    ((1, 5, 7), 2.0, 2.0)
    """
    from tqdm.auto import tqdm

    h, w = image.shape
    tile_shape = (min(tile_shape[0], h), min(tile_shape[1], w))
    if tile_shape == (h, w):
        return forward(image)
    out = None
    for (y, x, iy1, ix1), (y0, x0, y1, x1) in tqdm(list(tiles((h, w), tile_shape, halo)),
                                                   disable=not progress, desc="tiles"):
        pred = forward(image[y0:y1, x0:x1])
        if out is None:
            out = np.zeros((pred.shape[0], h, w), np.float32)
        out[:, y:iy1, x:ix1] = pred[:, y - y0:iy1 - y0, x - x0:ix1 - x0]
    return out


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows covering `length`, neighbours sharing `overlap` pixels.

    Examples
    --------
    >>> window_starts(600, 256, 32)
    [0, 224, 344]
    >>> window_starts(200, 256, 32)
    [0]
    """
    if length <= window:
        return [0]
    step = max(1, window - overlap)
    starts = list(range(0, length - window, step)) + [length - window]
    return sorted(set(starts))
