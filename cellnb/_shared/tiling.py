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

:func:`predict_windows` runs a network that resizes its input (SAM, μSAM's
UNETR) over windows of one size (small images reflect-padded to it,
:func:`pad_to`), so it sees every window at one scale.
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


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an image whose sides are shorter than `size` (bottom / right).

    Examples
    --------
    >>> pad_to(np.array([[1, 2, 3]]), 2).tolist()
    [[1, 2, 3], [1, 2, 3]]
    """
    h, w = image.shape
    if h >= size and w >= size:
        return image
    pad = ((0, max(0, size - h)), (0, max(0, size - w)))
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(image, pad, mode=mode)


def _kept(starts, length: int, window: int) -> list[tuple[int, int]]:
    """The part of the axis each window keeps: the pixels nearer its centre than any other's."""
    centres = [s + min(window, length) / 2 for s in starts]
    cuts = [0] + [int(round((a + b) / 2)) for a, b in zip(centres, centres[1:])] + [length]
    return list(zip(cuts[:-1], cuts[1:]))


def predict_windows(forward, image: np.ndarray, window: int, overlap: int, *, progress=False):
    """Apply ``forward((window, window) array) -> (C, window, window)`` over sliding windows.

    Windows of exactly `window` pixels overlap by at least `overlap`
    (:func:`window_starts`); each output pixel comes from the window whose
    centre is nearest, so it has at least ``overlap / 2`` pixels of context.
    An image (or axis) shorter than the window is reflect-padded to it
    (:func:`pad_to`) and the output cropped back. For networks that resize
    their input, every window is seen at the same scale.

    Examples
    --------
    >>> seen = []
    >>> out = predict_windows(lambda x: seen.append(x.shape) or x[None] * 2, np.ones((5, 7)), 4, 2)
    >>> out.shape, float(out.min()), set(seen)
    ((1, 5, 7), 2.0, {(4, 4)})
    """
    from tqdm.auto import tqdm

    if not 0 <= overlap < window:
        raise ValueError(f"`overlap` must be in [0, window), got {overlap} for window {window}.")
    h, w = image.shape
    rows = list(zip(window_starts(h, window, overlap),
                    _kept(window_starts(h, window, overlap), h, window)))
    cols = list(zip(window_starts(w, window, overlap),
                    _kept(window_starts(w, window, overlap), w, window)))
    out = None
    for (y0, (ky0, ky1)), (x0, (kx0, kx1)) in tqdm([(r, c) for r in rows for c in cols],
                                                   disable=not progress, desc="windows"):
        piece = image[y0:y0 + window, x0:x0 + window]
        pred = forward(pad_to(piece, window))
        if out is None:
            out = np.zeros((pred.shape[0], h, w), np.float32)
        out[:, ky0:ky1, kx0:kx1] = pred[:, ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0]
    return out
