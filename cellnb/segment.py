"""Segment whole cells in the transmitted-light image: the verb and the SAM prompt path.

:func:`segment` is the verb every model goes through (the model protocol of
:mod:`cellnb.models`): it checks the image, resolves the model and refuses
options the model does not take, then calls ``model.segment``. A
:class:`Segmentation` (label image + one row per cell or prompt) comes back
whatever the model.

The SAM path (:meth:`cellnb.models.SamModel.segment`, implemented here by
:func:`segment_prompts`):

1. The TL image is normalised explicitly as micro_sam does for its models
   (min-max per channel to uint8, grey replicated to RGB); the values used
   are recorded in ``Segmentation.normalization``.
2. The image embedding comes from :meth:`SamModel.embed`: computed once per
   image and kept, so segmenting the same image again (other prompts, one
   more click) does not run the encoder. Images larger than ``tile_shape``
   are embedded per tile by micro_sam (``precompute_image_embeddings(
   tile_shape=, halo=)``); each prompt goes to the tile whose inner block
   holds it, is decoded on that tile's embedding (``set_precomputed(tile_id=)``)
   and its mask is pasted back in image coordinates.
3. Prompts are decoded in batches (``batch_size``) at SAM's low-resolution
   logits (256 x 256). Each mask is located on those logits (the connected
   piece holding the prompt) and upsampled, bilinearly, only inside that
   piece's window, so memory grows with the number of cells, not cells x
   pixels.
4. :func:`resolve_overlaps` drops the lower-scoring of two masks whose
   **mask** IoU exceeds ``iou_threshold`` and gives contested pixels to the
   higher score. Every prompt keeps a row in the table with its status.

The watershed baseline (:class:`cellnb.models.Watershed`, ``model="watershed"``,
:func:`segment_watershed`) grows cells from the nuclei; it is never used
silently in place of SAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._validation import check_image, check_labels, check_tiling

__all__ = ["segment", "segment_prompts", "segment_watershed", "resolve_overlaps",
           "Segmentation", "normalize_for_sam", "check_prompts", "segment_click", "STATUSES",
           "TABLE_COLUMNS"]

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


# ---------------------------------------------------------------------------
# overlap resolution (pure)
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# SAM decoding
# ---------------------------------------------------------------------------
def _default_batch_size(device: str) -> int:
    # measured with benchmarks/bench_segment.py: on CPU the decoder is fastest one prompt at
    # a time (55 ms at 1 vs 67-97 ms at 8-64 per prompt, vit_t); on GPUs batching is the main
    # gain (one launch per batch), but 64 is not measured here yet: no GPU was available
    return 64 if str(device).startswith("cuda") else 1


def _sam_decode(sam, embedding, *, points=None, labels=None, boxes=None,
                multimask: bool = False):
    """SAM's prompt encoder + mask decoder on one image embedding.

    `points` (N, K, 2) xy with `labels` (N, K) and/or `boxes` (N, 4) xyxy,
    in SAM's input frame; with neither, SAM's default prompt (no sparse
    token, the no-mask dense embedding) gives one output for the image.
    Returns low-resolution mask logits (N, C, 256, 256) and predicted IoUs
    (N, C); C = 3 with `multimask`, else 1. Used by :func:`segment` and the
    SAM training recipes alike.
    """
    point_arg = (points, labels) if points is not None else None
    sparse, dense = sam.prompt_encoder(points=point_arg, boxes=boxes, masks=None)
    return sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                            multimask_output=multimask)


def _decode(predictor, prompts: pd.DataFrame, kind_points: bool, kind_boxes: bool,
            multimask: bool, batch_size: int, offset=(0, 0), positions=None):
    """Low-res logits (B, 256, 256) and scores for each prompt row, in batches.

    Negative points outside the embedded image (another tile) are left out.
    """
    import torch

    device = predictor.device
    transform = predictor.transform
    original = predictor.original_size
    oy, ox = offset
    th, tw = original
    logits_all, scores_all = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts.iloc[start:start + batch_size]
        coords = labels = boxes = None
        if kind_points:
            # positive point (+ negatives), (row, col) -> SAM's (x, y) at pixel centres
            n_neg = max((len(v) for v in chunk["negatives"]), default=0)
            pts = np.zeros((len(chunk), 1 + n_neg, 2), np.float32)
            lab = -np.ones((len(chunk), 1 + n_neg), np.int64)  # -1 = padding
            for r, row in enumerate(chunk.itertuples()):
                pts[r, 0] = (row.x + 0.5 - ox, row.y + 0.5 - oy)
                lab[r, 0] = 1
                j = 0
                for other in row.negatives:
                    y, x = positions[other][0] - oy, positions[other][1] - ox
                    if 0 <= y < th and 0 <= x < tw:
                        pts[r, 1 + j] = (x + 0.5, y + 0.5)
                        lab[r, 1 + j] = 0
                        j += 1
            coords = transform.apply_coords_torch(torch.as_tensor(pts, device=device), original)
            labels = torch.as_tensor(lab, device=device)
        if kind_boxes:
            xyxy = chunk[["x0", "y0", "x1", "y1"]].to_numpy(np.float32) - [ox, oy, ox, oy]
            boxes = transform.apply_boxes_torch(torch.as_tensor(xyxy, device=device), original)
        with torch.no_grad():
            low_res, iou = _sam_decode(predictor.model, predictor.features, points=coords,
                                       labels=labels, boxes=boxes, multimask=multimask)
        best = iou.argmax(dim=1)
        pick = torch.arange(len(chunk), device=device)
        logits_all.append(low_res[pick, best].float().cpu().numpy())
        scores_all.append(iou[pick, best].float().cpu().numpy())
    return np.concatenate(logits_all), np.concatenate(scores_all)


def _bilinear_weights(positions: np.ndarray, n: int) -> np.ndarray:
    """(len(positions), n) matrix of linear-interpolation weights (edge values held)."""
    c = np.clip(positions, 0, n - 1)
    i0 = np.floor(c).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (c - i0).astype(np.float32)
    weights = np.zeros((len(c), n), np.float32)
    rows = np.arange(len(c))
    np.add.at(weights, (rows, i0), 1 - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights


def _to_lowres(index, size, input_size):
    """Original pixel index -> position on the 256 x 256 logit grid (pixel centres)."""
    return ((np.asarray(index, float) + 0.5) * input_size / size) / 4 - 0.5


def _upsample_window(logits, window, image_shape, input_size):
    """Bilinear logits for the pixels of `window` (rows, cols slices), as two matrix products."""
    (h, w), (ih, iw) = image_shape, input_size
    rows = _to_lowres(np.arange(window[0].start, window[0].stop), h, ih)
    cols = _to_lowres(np.arange(window[1].start, window[1].stop), w, iw)
    return _bilinear_weights(rows, logits.shape[0]) @ logits @ _bilinear_weights(
        cols, logits.shape[1]).T


def _mask_from_logits(logits, image_shape, input_size, point):
    """The prompt's mask: located on the low-res logits, upsampled only around itself."""
    from scipy import ndimage

    (h, w), (ih, iw) = image_shape, input_size
    valid = (int(np.ceil(ih / 4)), int(np.ceil(iw / 4)))  # the rest of the grid is padding
    low = np.zeros(logits.shape, bool)
    low[:valid[0], :valid[1]] = logits[:valid[0], :valid[1]] > 0
    if not low.any():
        return 0, 0, np.zeros((0, 0), bool)
    pieces, _ = ndimage.label(low)
    py = int(np.clip(np.round(_to_lowres(point[0], h, ih)), 0, valid[0] - 1))
    px = int(np.clip(np.round(_to_lowres(point[1], w, iw)), 0, valid[1] - 1))
    keep = pieces[py, px] or np.argmax(np.bincount(pieces.ravel())[1:]) + 1
    box = ndimage.find_objects((pieces == keep).astype(np.uint8))[0]
    # back to original pixels, one low-res pixel of margin for the interpolation support
    scale_y, scale_x = 4 * h / ih, 4 * w / iw
    y0 = max(int(np.floor((box[0].start - 1 + 0.5) * scale_y - 0.5)), 0)
    y1 = min(int(np.ceil((box[0].stop + 1 + 0.5) * scale_y - 0.5)), h)
    x0 = max(int(np.floor((box[1].start - 1 + 0.5) * scale_x - 0.5)), 0)
    x1 = min(int(np.ceil((box[1].stop + 1 + 0.5) * scale_x - 0.5)), w)
    window = (slice(y0, y1), slice(x0, x1))
    mask = _upsample_window(logits, window, image_shape, input_size) > 0
    if not mask.any():
        return y0, x0, mask
    # keep the piece holding the prompt point (else the largest), with its holes filled
    pieces, _ = ndimage.label(mask)
    qy, qx = int(round(point[0])) - y0, int(round(point[1])) - x0
    inside = 0 <= qy < mask.shape[0] and 0 <= qx < mask.shape[1] and pieces[qy, qx]
    keep = pieces[qy, qx] if inside else np.argmax(np.bincount(pieces.ravel())[1:]) + 1
    return y0, x0, ndimage.binary_fill_holes(pieces == keep)


# ---------------------------------------------------------------------------
# prompts in, Segmentation out
# ---------------------------------------------------------------------------
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


def _put_tile(predictor, embedding, tile_id, outer):
    """Put one tile's (or the whole image's) embedding in the predictor."""
    from .models import _micro_sam_util

    _micro_sam_util().set_precomputed(predictor, embedding.data, tile_id=tile_id)
    size = tuple(int(v) for v in predictor.original_size)
    if size != (outer[2] - outer[0], outer[3] - outer[1]):  # a tiling we do not know
        raise RuntimeError(f"micro_sam's embedding {tile_id} covers {size} pixels; cellnb "
                           f"expected the window {outer}.")


def segment_prompts(model, image, prompts, *, embedding=None, kind=None, multimask=False,
                    batch_size="auto", tile_shape=None, halo=None, iou_threshold=0.85,
                    min_area=None, progress=False, callback=None) -> Segmentation:
    """One cell per prompt with a SAM model (what :meth:`SamModel.segment` runs).

    See :func:`segment` for the parameters; `embedding` is the image's
    :class:`cellnb.models.ImageEmbedding` (default: ``model.embed(image,
    tile_shape=, halo=)``, which reuses a kept one).
    """
    from ._progress import Progress
    from ._tiling import tiles
    from .models import image_key

    image = check_image(image, "image", rgb=True)
    check_tiling(tile_shape, halo)
    h, w = image.shape[:2]
    prompts, kind = check_prompts(prompts, (h, w), kind)
    _check_common(iou_threshold, min_area)
    if batch_size != "auto" and (isinstance(batch_size, bool) or
                                 not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive int or 'auto', got {batch_size!r}.")
    if batch_size == "auto":
        batch_size = _default_batch_size(model.device)
    if embedding is None:
        embedding = model.embed(image, tile_shape=tile_shape, halo=halo, progress=progress)
    elif embedding.shape != (h, w) or not embedding.key.startswith(image_key(image)):
        raise ValueError(f"`embedding` was computed for another image (shape "
                         f"{embedding.shape}); embed this one with model.embed(image).")
    elif embedding.model != model.fingerprint:
        raise ValueError(f"`embedding` was computed by another model ({embedding.model}), not "
                         f"{model.fingerprint}.")
    kind_points, kind_boxes = kind != "boxes", kind != "points"
    positions = {int(r.label): (r.y, r.x) for r in prompts.itertuples()}
    crops, scores = [None] * len(prompts), np.zeros(len(prompts))
    # a prompt belongs to the tile holding its pixel (pixel i spans [i - 0.5, i + 0.5))
    ys = np.clip(np.round(prompts["y"].to_numpy()), 0, h - 1)
    xs = np.clip(np.round(prompts["x"].to_numpy()), 0, w - 1)
    whole = [((0, 0, h, w), (0, 0, h, w))]
    pieces = whole if embedding.tile_shape is None else tiles((h, w), embedding.tile_shape,
                                                              embedding.halo)
    predictor = model.predictor
    with Progress(len(prompts), "segment", progress=progress, callback=callback,
                  unit="cell") as bar:
        for tile_id, ((iy0, ix0, iy1, ix1), outer) in enumerate(pieces):
            inside = np.flatnonzero((ys >= iy0) & (ys < iy1) & (xs >= ix0) & (xs < ix1))
            if len(inside) == 0:
                continue
            _put_tile(predictor, embedding, None if embedding.tile_shape is None else tile_id,
                      outer)
            rows = prompts.iloc[inside]
            oy0, ox0, oy1, ox1 = outer
            logits, tile_scores = _decode(predictor, rows, kind_points, kind_boxes, multimask,
                                          int(batch_size), offset=(oy0, ox0),
                                          positions=positions)
            for k, row, lg, sc in zip(inside, rows.itertuples(), logits, tile_scores):
                wy0, wx0, mask = _mask_from_logits(lg, (oy1 - oy0, ox1 - ox0),
                                                   predictor.input_size, (row.y - oy0, row.x - ox0))
                crops[k] = (wy0 + oy0, wx0 + ox0, mask)
                scores[k] = sc
                bar.update()
    return _result(crops, scores, prompts, (h, w), iou_threshold, min_area,
                   embedding.normalization, f"{model.name} ({model.weights_hash})")


def segment_click(model, image, points=(), *, box=None, embedding=None, multimask=None):
    """One cell from interactive prompts: positive and negative points and / or a box.

    What a click in :func:`cellnb.widgets.review` runs: the image's embedding
    is computed once (``model.embed``, kept by the model) and each call only
    decodes, so a click costs SAM's prompt decoder and an upsampling around
    the mask. On a tiled embedding the tile holding the first positive
    point (else the box centre) is used; negative points outside it are
    left out.

    Parameters
    ----------
    model : cellnb.models.SamModel
    image : (H, W) or (H, W, 3) ndarray
        The TL image.
    points : sequence of (y, x, positive)
        Pixel coordinates (row, column) and True for a point on the cell,
        False for a point that is not the cell.
    box : (y0, x0, y1, x1), optional
        Box around the cell, in pixels.
    embedding : cellnb.models.ImageEmbedding, optional
        Default: ``model.embed(image)`` (reused when kept).
    multimask : bool, optional
        SAM's three candidate masks, the best by predicted IoU kept. Default:
        True for a lone point (ambiguous), else False.

    Returns
    -------
    mask : (H, W) bool ndarray
    score : float
        SAM's predicted IoU of the mask.

    Examples
    --------
    >>> from cellnb.models import random_sam
    >>> from cellnb.data import synthetic_pairs
    >>> pair = synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=0)[0]
    >>> mask, score = segment_click(random_sam("vit_t"), pair.tl, [(30, 30, True)])  # doctest: +SKIP
    >>> mask.shape  # doctest: +SKIP
    (64, 64)
    """
    import torch

    from ._tiling import tiles
    from .models import image_key

    image = check_image(image, "image", rgb=True)
    h, w = image.shape[:2]
    if not hasattr(model, "embed") or not hasattr(model, "predictor"):
        raise TypeError(f"`model` must be a SAM model (cellnb.models.load), got "
                        f"{type(model).__name__}: only SAM decodes clicks.")
    rows = []
    for point in points:
        if len(point) != 3:
            raise ValueError(f"each point is (y, x, positive), got {point!r}.")
        y, x, positive = float(point[0]), float(point[1]), bool(point[2])
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"point ({y:g}, {x:g}) lies outside the image ({h} x {w}).")
        rows.append((y, x, positive))
    if box is not None:
        y0, x0, y1, x1 = (float(v) for v in box)
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(f"`box` must be (y0, x0, y1, x1) inside the image ({h} x {w}) "
                             f"with y0 < y1 and x0 < x1, got {tuple(box)!r}.")
    positives = [(y, x) for y, x, p in rows if p]
    if not positives and box is None:
        raise ValueError("give at least one positive point or a box: negative points alone do "
                         "not say which cell.")
    if embedding is None:
        embedding = model.embed(image)
    elif embedding.shape != (h, w) or not embedding.key.startswith(image_key(image)):
        raise ValueError(f"`embedding` was computed for another image (shape "
                         f"{embedding.shape}); embed this one with model.embed(image).")
    anchor = positives[0] if positives else ((y0 + y1) / 2, (x0 + x1) / 2)
    pieces = [((0, 0, h, w), (0, 0, h, w))] if embedding.tile_shape is None else \
        tiles((h, w), embedding.tile_shape, embedding.halo)
    ay, ax = min(round(anchor[0]), h - 1), min(round(anchor[1]), w - 1)
    tile_id, outer = next((k, outer) for k, ((iy0, ix0, iy1, ix1), outer) in enumerate(pieces)
                          if iy0 <= ay < iy1 and ix0 <= ax < ix1)
    predictor = model.predictor
    _put_tile(predictor, embedding, None if embedding.tile_shape is None else tile_id, outer)
    oy0, ox0, oy1, ox1 = outer
    original, device = predictor.original_size, predictor.device
    coords = labels = boxes = None
    kept = [(y - oy0, x - ox0, p) for y, x, p in rows
            if oy0 <= y < oy1 and ox0 <= x < ox1]
    if kept:
        xy = np.array([[x + 0.5, y + 0.5] for y, x, _ in kept], np.float32)[None]
        coords = predictor.transform.apply_coords_torch(torch.as_tensor(xy, device=device),
                                                        original)
        labels = torch.as_tensor([[int(p) for _, _, p in kept]], device=device)
    if box is not None:
        xyxy = np.array([[x0 - ox0, y0 - oy0, x1 - ox0, y1 - oy0]], np.float32)
        boxes = predictor.transform.apply_boxes_torch(torch.as_tensor(xyxy, device=device),
                                                      original)
    if multimask is None:
        multimask = len(kept) == 1 and box is None
    with torch.no_grad():
        low_res, iou = _sam_decode(predictor.model, predictor.features, points=coords,
                                   labels=labels, boxes=boxes, multimask=bool(multimask))
    best = int(iou[0].argmax())
    logits = low_res[0, best].float().cpu().numpy()
    wy0, wx0, crop = _mask_from_logits(logits, (oy1 - oy0, ox1 - ox0), predictor.input_size,
                                       (anchor[0] - oy0, anchor[1] - ox0))
    mask = np.zeros((h, w), bool)
    mask[oy0 + wy0:oy0 + wy0 + crop.shape[0], ox0 + wx0:ox0 + wx0 + crop.shape[1]] = crop
    return mask, float(iou[0, best])


def segment_watershed(image, prompts, *, nuclei, iou_threshold=0.85, min_area=None,
                      progress=False, callback=None) -> Segmentation:
    """Seeded watershed of the TL image from the nuclei (the classical baseline).

    A marker-controlled watershed of the smoothed image's gradient: each
    prompted nucleus is a marker, and so is the background, the pixels
    whose local standard deviation is well below the Otsu threshold of the
    image's texture (cells are textured, the background is flat), away from
    any nucleus. Cells end where they meet the background or each other.
    What :class:`cellnb.models.Watershed` runs; see :func:`segment`.
    """
    from scipy import ndimage
    from skimage.filters import sobel, threshold_otsu
    from skimage.segmentation import watershed

    from ._progress import Progress

    image = check_image(image, "image", rgb=True)
    h, w = image.shape[:2]
    prompts, _ = check_prompts(prompts, (h, w))
    _check_common(iou_threshold, min_area)
    if nuclei is None:
        raise ValueError("the watershed baseline needs `nuclei=` (the seeds), e.g. "
                         "cellnb.locate(fluorescence).")
    nuclei = check_labels(nuclei, "nuclei")
    if nuclei.shape != (h, w):
        raise ValueError(f"`nuclei` (shape {nuclei.shape}) must match the image {(h, w)}.")
    grey = image.mean(axis=-1) if image.ndim == 3 else image.astype(np.float32)
    smooth = ndimage.gaussian_filter(grey.astype(np.float32), 1.5)
    mean = ndimage.uniform_filter(smooth, 9)
    texture = np.sqrt(np.clip(ndimage.uniform_filter(smooth ** 2, 9) - mean ** 2, 0, None))
    markers = np.where(np.isin(nuclei, prompts["label"].to_numpy()), nuclei, 0)
    if texture.max() > texture.min():
        flat = ndimage.binary_erosion(texture < 0.3 * threshold_otsu(texture), iterations=3)
        background = int(nuclei.max()) + 1
        markers[flat & (ndimage.distance_transform_edt(nuclei == 0) > 5)] = background
        grown = watershed(sobel(smooth), markers)
        grown[grown == background] = 0
    else:  # a flat image has no edges: each cell is its nucleus' watershed basin
        grown = watershed(sobel(smooth), markers)
    boxes = ndimage.find_objects(grown)
    crops = []
    with Progress(len(prompts), "segment", progress=progress, callback=callback,
                  unit="cell") as bar:
        for lab in prompts["label"]:
            box = boxes[lab - 1] if lab - 1 < len(boxes) else None
            crops.append((0, 0, np.zeros((0, 0), bool)) if box is None else
                         (box[0].start, box[1].start, grown[box] == lab))
            bar.update()
    return _result(crops, np.ones(len(prompts)), prompts, (h, w), iou_threshold, min_area,
                   {"method": "none (watershed works on the TL image as is)"}, "watershed")


def segment(image, prompts=None, *, model, nuclei=None, embedding=None, kind=None,
            multimask=None, batch_size=None, tile_shape=None, halo=None, iou_threshold=None,
            min_area=None, mode=None, progress: bool = False, callback=None,
            **options) -> Segmentation:
    """Segment the cells of a transmitted-light image with any model.

    The verb of the model protocol (:mod:`cellnb.models`): options left at
    None take the model's default; an option the model does not take raises
    a TypeError naming the ones it does.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        TL image (uint8, uint16 or float32), as read.
    prompts : DataFrame, optional
        Prompt table of :func:`cellnb.prompt`; each cell keeps its ``label``.
        Required by prompted models (the watershed baseline, ``cellsam``
        runs: boxes) and by SAM models without an instance decoder unless
        `mode` is "amg"; refused by automatic ones. A SAM model with a
        decoder (``vit_b_lm``) and no prompts runs μSAM's automatic instance
        segmentation (`mode`).
    model : SamModel, TrainedModel, Watershed or "watershed"
        A loaded SAM model (:func:`cellnb.models.load`,
        :func:`cellnb.models.random_sam`), a model trained by
        :func:`cellnb.train` (automatic instance segmentation, tiled by
        `tile_shape` / `halo`; cells carry ``class_name`` when it was
        trained with classes) or the classical baseline.
    nuclei : (H, W) int ndarray, optional
        Watershed baseline only: the nucleus labels (its seeds).
    embedding : ImageEmbedding, optional
        SAM models only: the image's embedding from ``model.embed(image)``.
        Default: computed once and kept by the model, so a second call on
        the same image does not run the encoder.
    kind : {"points", "boxes", "points+boxes"}, optional
        SAM models: prompt kind; default the table's ``kind`` column.
    multimask : bool, optional
        SAM models: let SAM propose three masks per prompt and keep the best
        scored (default False).
    batch_size : int or "auto", optional
        SAM models: prompts decoded together (default "auto": 1 on CPU,
        where benchmarks/bench_segment.py measures batching as slower,
        55 ms per prompt at 1 vs ~95 ms at 16-64 on 2 cores; 64 on GPU, not
        yet measured by cellnb).
    tile_shape, halo : (int, int), optional
        Images larger than `tile_shape` are processed per tile with `halo`
        pixels of context on each side (SAM: micro_sam's tiled embeddings,
        each tile min-max scaled again, every tile embedded; trained models:
        their own tiling).
    iou_threshold : float, optional
        Prompted models: mask IoU above which the lower-scoring of two masks
        is dropped (default 0.85).
    min_area : int, optional
        Masks with fewer pixels are dropped (trained models: default from
        the recipe).
    mode : {"ais", "apg", "amg"}, optional
        SAM models without prompts: μSAM's automatic instance segmentation
        (default for models with a decoder), automatic prompt generation
        (decoder + SAM), or SAM's grid-based automatic mask generation
        (any SAM model), each through micro_sam's own class.
    progress : bool, default=False
        Progress bar over prompts (SAM: also over tiles being embedded).
    callback : callable, optional
        Called as ``callback(done, total)`` after each prompt (automatic
        models: once, at the end).
    **options
        Options of the model itself: with a SAM `mode`, that mode's
        (micro_sam's names and defaults; ``model.mode_options(mode)`` lists
        them); for a Cellpose-SAM model (``load("cpsam")``) cellpose's
        ``diameter``, ``flow_threshold``, ``cellprob_threshold``. Options a
        model does not take are an error.

    Returns
    -------
    segmentation : Segmentation

    Raises
    ------
    TypeError
        `model` is not a model, or an option is given that it does not take.
    ValueError
        Bad image, prompts or option values.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> from cellnb.locate import locate
    >>> from cellnb.prompt import prompt
    >>> pair = synthetic_pairs(1, shape=(128, 128), n_cells=6, seed=0)[0]
    >>> nuclei = locate(pair.fluorescence)
    >>> result = segment(pair.tl, prompt(nuclei), model="watershed", nuclei=nuclei)
    >>> set(result.table["status"]) <= {"kept", "covered", "empty"}
    True
    >>> segment(pair.tl, prompt(nuclei), model="watershed", nuclei=nuclei, multimask=True)
    Traceback (most recent call last):
    ...
    TypeError: model 'watershed' takes no option(s) ['multimask']; it takes ['callback', 'iou_threshold', 'min_area', 'nuclei', 'progress'].
    """
    from ._progress import check_callback
    from .models import as_model

    image = check_image(image, "image", rgb=True)
    check_tiling(tile_shape, halo)
    check_callback(callback)
    model = as_model(model)
    given = {"nuclei": nuclei, "embedding": embedding, "kind": kind, "multimask": multimask,
             "batch_size": batch_size, "tile_shape": tile_shape, "halo": halo,
             "iou_threshold": iou_threshold, "min_area": min_area, "callback": callback,
             "mode": mode}
    common = {k: v for k, v in given.items() if v is not None}
    unknown = set(common) - set(model.segment_options)
    if not hasattr(model, "mode_options"):  # a SAM model checks its mode's options itself
        unknown |= set(options) - set(model.segment_options)
    unknown = sorted(unknown)
    if unknown:
        raise TypeError(f"model {model.name!r} takes no option(s) {unknown}; it takes "
                        f"{sorted(model.segment_options)}.")
    return model.segment(image, prompts, progress=progress, **common, **options)
