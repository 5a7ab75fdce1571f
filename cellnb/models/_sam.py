"""SAM / μSAM as a prompted model: image embeddings (kept in memory and on disk),
and decoding prompts into one mask per prompt.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._shared.normalize import normalize_for_sam
from .._shared.validation import check_image, check_tiling
from ._architectures import _micro_sam_util
from ._protocol import keyword_options
from ._result import Segmentation, _check_common, _result, check_prompts


@dataclass
class ImageEmbedding:
    """SAM's embedding of one image, from :meth:`SamModel.embed`.

    Attributes
    ----------
    key : str
        Hash of the image's pixels, shape and dtype, plus the tiling.
    shape : (int, int)
        Image height and width.
    tile_shape, halo : (int, int) or None
        Tiling (None: one embedding for the whole image).
    data : dict
        micro_sam's image embeddings (``features``, ``input_size``,
        ``original_size``; per tile when tiled).
    normalization : dict
        How the image was mapped to SAM's input.
    model : str
        Fingerprint of the model that computed it.
    path : Path or None
        micro_sam's zarr file when saved on disk.
    """

    key: str
    shape: tuple
    tile_shape: tuple | None
    halo: tuple | None
    data: dict = field(repr=False)
    normalization: dict
    model: str
    path: Path | None = None


def image_key(image: np.ndarray) -> str:
    """A hash of an image's pixels, shape and dtype (what embeddings are keyed by).

    >>> a = np.zeros((4, 4), np.uint8)
    >>> image_key(a) == image_key(a.copy()), image_key(a) == image_key(a.astype(np.uint16))
    (True, False)
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.shape}{image.dtype.str}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


@dataclass
class SamModel:
    """A loaded SAM model: embed an image once, then segment from prompts.

    Parameters
    ----------
    name : str
        Model-zoo name (``"vit_b_lm"``) or a name for a checkpoint.
    predictor : micro_sam / segment_anything ``SamPredictor``
        Holds the SAM network (``predictor.model``).
    decoder : micro_sam ``DecoderAdapter`` or None
        Instance-segmentation decoder, when the model ships one.
    weights_hash : str
        ``xxh128:`` hash of the weight file, as micro_sam computes it.
    device : str
        Torch device the model sits on.
    checkpoint : Path or None
        Weight file the model was loaded from.
    cache_size : int, default=4
        How many images' embeddings :meth:`embed` keeps in memory.

    Examples
    --------
    >>> model = cellnb.models.load("vit_b_lm")  # doctest: +SKIP
    >>> embedding = model.embed(tl)  # doctest: +SKIP
    >>> first = model.segment(tl, prompts)  # the kept embedding  # doctest: +SKIP
    >>> again = model.segment(tl, prompts.iloc[:1])  # no re-encoding  # doctest: +SKIP
    """

    name: str
    predictor: Any
    decoder: Any
    weights_hash: str
    device: str
    checkpoint: Path | None = None
    cache_size: int = 4
    _embeddings: OrderedDict = field(default_factory=OrderedDict, repr=False)

    prompted = True

    def __post_init__(self):
        # micro_sam reads these off a predictor (its get_sam_model sets them; tiled embeddings
        # are signed with them): a predictor built another way gets them from here
        for attribute, value in (("model_type", "unknown"), ("model_name", self.name),
                                 ("_hash", self.weights_hash)):
            if not hasattr(self.predictor, attribute):
                setattr(self.predictor, attribute, value)

    @property
    def architecture(self) -> str:
        """Encoder architecture: "vit_t", "vit_b", "vit_l", "vit_h" or "vit_mini" (for tests)."""
        return self.predictor.model_type

    @property
    def fingerprint(self) -> str:
        """The weights' hash: two models with the same fingerprint segment alike."""
        return self.weights_hash

    def __repr__(self) -> str:
        decoder = "with" if self.decoder is not None else "without"
        return (f"SamModel(name={self.name!r}, architecture={self.architecture!r}, "
                f"device={self.device!r}, {decoder} instance decoder, "
                f"weights_hash={self.weights_hash!r})")

    def clear_embeddings(self) -> None:
        """Forget the embeddings kept in memory (the next segment encodes again)."""
        self._embeddings.clear()

    def __getstate__(self):  # embeddings stay behind when the model travels (Dask)
        state = dict(self.__dict__)
        state["_embeddings"] = OrderedDict()
        return state

    def embed(self, image, *, tile_shape=None, halo=None, save_path=None,
              progress: bool = False) -> ImageEmbedding:
        """Compute (or fetch) SAM's embedding of a TL image.

        The image is normalised as micro_sam normalises its inputs (min-max
        per channel to uint8, grey replicated to RGB) and encoded whole, or
        per tile by micro_sam (``precompute_image_embeddings(tile_shape=,
        halo=)``) when it is larger than `tile_shape`. The result is kept in
        memory (the last `cache_size` images): embedding the same pixels
        with the same tiling again returns it without running the encoder.

        Parameters
        ----------
        image : (H, W) or (H, W, 3) ndarray
        tile_shape, halo : (int, int), optional
            Tiles and their context (see :func:`cellnb.segment`).
        save_path : str or Path, optional
            A micro_sam zarr embedding file: read when it exists (micro_sam
            checks it belongs to this image and model), else written
            (atomically).
        progress : bool, default=False

        Returns
        -------
        embedding : ImageEmbedding
        """

        image = check_image(image, "image", rgb=True)
        check_tiling(tile_shape, halo)
        h, w = image.shape[:2]
        if tile_shape is not None and h <= tile_shape[0] and w <= tile_shape[1]:
            tile_shape = None  # the image fits in one tile
        if tile_shape is not None:
            tile_shape = tuple(int(v) for v in tile_shape)
            halo = tuple(int(v) for v in halo or (0, 0))
        else:
            halo = None
        key = f"{image_key(image)}:{tile_shape}:{halo}"
        if key in self._embeddings and (save_path is None or Path(save_path).exists()):
            self._embeddings.move_to_end(key)
            return self._embeddings[key]
        rgb, normalization = normalize_for_sam(image)
        if tile_shape is not None:  # micro_sam maps each tile from the image as it came
            rgb = image
            normalization = {**normalization, "tiles": "min-max per tile by micro_sam, from "
                                                       "the image as it came"}
        data = _precompute(self.predictor, rgb, tile_shape, halo, save_path, progress)
        embedding = ImageEmbedding(key, (h, w), tile_shape, halo, data, normalization,
                                   self.fingerprint, Path(save_path) if save_path else None)
        self._embeddings[key] = embedding
        while len(self._embeddings) > max(int(self.cache_size), 1):
            self._embeddings.popitem(last=False)
        return embedding

    def has_embedding(self, image, *, tile_shape=None, halo=None) -> bool:
        """Whether :meth:`embed` would return a kept embedding of `image` (no encoder run).

        What a widget asks before a click, to say "computing the embedding"
        while the encoder runs the first time.
        """

        image = check_image(image, "image", rgb=True)
        h, w = image.shape[:2]
        if tile_shape is None or (h <= tile_shape[0] and w <= tile_shape[1]):
            tile_shape, halo = None, None
        else:
            tile_shape = tuple(int(v) for v in tile_shape)
            halo = tuple(int(v) for v in halo or (0, 0))
        return f"{image_key(image)}:{tile_shape}:{halo}" in self._embeddings

    def mode_options(self, mode: str = "ais", *, tiled: bool = False) -> dict:
        """``{option: default}`` that segmenting without prompts in `mode` takes:
        micro_sam's own names and defaults, read off its class for that mode.

        >>> sorted(SamModel.mode_options(None, "amg"))[:3]
        ['box_nms_thresh', 'crop_n_layers', 'crop_n_points_downscale_factor']
        """
        from ._automatic import mode_options

        return mode_options(mode, tiled=tiled)

    def segment(self, image, prompts=None, *, embedding=None, kind=None, multimask=False,
                batch_size="auto", tile_shape=None, halo=None, iou_threshold=0.85,
                min_area=None, progress=False, callback=None, mode=None, **mode_options):
        """Cells of a TL image (the model protocol; see :func:`cellnb.segment`).

        With `prompts`: one cell per prompt. Without: automatic, in `mode`
        (default "ais" for a model with an instance decoder; "apg", "amg"),
        through micro_sam's own classes, with `mode_options` in micro_sam's
        names (:meth:`mode_options` lists them). `embedding` is an
        :class:`ImageEmbedding` of this image (default: :meth:`embed`, which
        reuses a kept one), shared by both ways.
        """
        if prompts is None and (mode is not None or self.decoder is not None):
            from ._automatic import segment_automatic

            prompt_only = {"kind": kind, "multimask": multimask, "batch_size": batch_size,
                           "iou_threshold": iou_threshold}
            defaults = {"kind": None, "multimask": False, "batch_size": "auto",
                        "iou_threshold": 0.85}
            given = sorted(k for k, v in prompt_only.items() if v != defaults[k])
            if given:
                raise TypeError(f"{given} apply to prompts; segmenting without prompts "
                                f"(mode={mode or 'ais'!r}) takes "
                                f"{sorted(AUTOMATIC_SAM_OPTIONS)} and the mode's options.")
            return segment_automatic(self, image, mode=mode or "ais", embedding=embedding,
                                     tile_shape=tile_shape, halo=halo, min_area=min_area,
                                     progress=progress, callback=callback, **mode_options)
        if mode is not None or mode_options:
            raise TypeError(f"mode={mode!r} and mode options {sorted(mode_options)} are for "
                            "segmenting without prompts; pass prompts=None, or drop them.")
        return segment_prompts(self, image, prompts, embedding=embedding, kind=kind,
                               multimask=multimask, batch_size=batch_size,
                               tile_shape=tile_shape, halo=halo, iou_threshold=iou_threshold,
                               min_area=min_area, progress=progress, callback=callback)

    #: read off the signature above, so it cannot drift from what segment takes
    segment_options = keyword_options(segment)


#: Options :meth:`SamModel.segment` takes (and, without prompts, those of its `mode`).
SAM_OPTIONS = SamModel.segment_options


def _precompute(predictor, rgb, tile_shape, halo, save_path, progress):
    """micro_sam's embeddings of `rgb`; a new `save_path` is written beside and renamed."""
    import os
    import shutil
    import tempfile

    precompute_image_embeddings = _micro_sam_util().precompute_image_embeddings

    def run(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return precompute_image_embeddings(predictor, rgb, save_path=path, ndim=2,
                                               tile_shape=tile_shape, halo=halo,
                                               verbose=progress)

    if save_path is None or Path(save_path).exists():
        return run(None if save_path is None else str(save_path))
    save_path = Path(save_path)
    save_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{save_path.name}.", suffix=".part",
                                dir=save_path.parent))
    try:
        run(str(tmp / "embedding.zarr"))
        os.replace(tmp / "embedding.zarr", save_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run(str(save_path))  # read back: tiled features are read from the file lazily


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
    oy, ox = offset
    th, tw = predictor.original_size
    logits_all, scores_all = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts.iloc[start:start + batch_size]
        points = labels = boxes = None
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
            points, labels = pts, lab
        if kind_boxes:
            boxes = chunk[["x0", "y0", "x1", "y1"]].to_numpy(np.float32) - [ox, oy, ox, oy]
        logits, scores = _decode_batch(predictor, points=points, labels=labels, boxes=boxes,
                                       multimask=multimask)
        logits_all.append(logits)
        scores_all.append(scores)
    return np.concatenate(logits_all), np.concatenate(scores_all)


def _decode_batch(predictor, *, points=None, labels=None, boxes=None, multimask=False):
    """The one decoder path of :func:`segment_prompts` and :func:`segment_click`.

    Prompts are in the embedded image's pixels: `points` (N, K, 2) xy at pixel
    centres with `labels` (N, K) (1 on the cell, 0 not, -1 padding), `boxes`
    (N, 4) xyxy. Returns the best of SAM's outputs per prompt (by predicted
    IoU): low-resolution logits (N, 256, 256) and scores (N,).
    """
    import torch

    device, transform, original = predictor.device, predictor.transform, predictor.original_size
    coords = point_labels = sam_boxes = None
    if points is not None:
        coords = transform.apply_coords_torch(torch.as_tensor(points, device=device), original)
        point_labels = torch.as_tensor(labels, device=device)
    if boxes is not None:
        sam_boxes = transform.apply_boxes_torch(torch.as_tensor(boxes, device=device), original)
    with torch.no_grad():
        low_res, iou = _sam_decode(predictor.model, predictor.features, points=coords,
                                   labels=point_labels, boxes=sam_boxes, multimask=multimask)
    best = iou.argmax(dim=1)
    pick = torch.arange(len(best), device=device)
    return low_res[pick, best].float().cpu().numpy(), iou[pick, best].float().cpu().numpy()


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


def _put_tile(predictor, embedding, tile_id, outer):
    """Put one tile's (or the whole image's) embedding in the predictor."""

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
    from .._shared.progress import Progress
    from .._shared.tiling import tiles

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
    from .._shared.tiling import tiles

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
    points = labels = boxes = None
    kept = [(y - oy0, x - ox0, p) for y, x, p in rows
            if oy0 <= y < oy1 and ox0 <= x < ox1]
    if kept:
        points = np.array([[x + 0.5, y + 0.5] for y, x, _ in kept], np.float32)[None]
        labels = np.array([[int(p) for _, _, p in kept]], np.int64)
    if box is not None:
        boxes = np.array([[x0 - ox0, y0 - oy0, x1 - ox0, y1 - oy0]], np.float32)
    if multimask is None:
        multimask = len(kept) == 1 and box is None
    logits, scores = _decode_batch(predictor, points=points, labels=labels, boxes=boxes,
                                   multimask=bool(multimask))
    wy0, wx0, crop = _mask_from_logits(logits[0], (oy1 - oy0, ox1 - ox0), predictor.input_size,
                                       (anchor[0] - oy0, anchor[1] - ox0))
    mask = np.zeros((h, w), bool)
    mask[oy0 + wy0:oy0 + wy0 + crop.shape[0], ox0 + wx0:ox0 + wx0 + crop.shape[1]] = crop
    return mask, float(scores[0])


@dataclass
class AutomaticSam:
    """A SAM model that segments without prompts, as an automatic model of the protocol.

    Made by :func:`automatic`; :func:`cellnb.annotate` relabels its cells by
    the nucleus each holds (records join on ``label``) and records the mode
    in the model name (``"vit_b_lm:ais"``).

    Attributes
    ----------
    sam : SamModel
    mode : {"ais", "apg", "amg"}
    options : dict
        The mode's options (micro_sam's names).
    """

    sam: SamModel
    mode: str = "ais"
    options: dict = field(default_factory=dict)

    prompted = False

    @property
    def name(self) -> str:
        """The SAM model's name and the mode, as results and records carry it."""
        return f"{self.sam.name}:{self.mode}"

    @property
    def fingerprint(self) -> str:
        """The weights' hash, the mode and its options: what decides the cells."""
        import hashlib
        import json

        options = json.dumps(self.options, sort_keys=True, default=str)
        return (f"{self.sam.fingerprint}:{self.mode}:"
                f"{hashlib.sha256(options.encode()).hexdigest()[:12]}")

    def embed(self, image, **options) -> ImageEmbedding:
        """The SAM model's :meth:`SamModel.embed` (kept, shared with prompted calls)."""
        return self.sam.embed(image, **options)

    def segment(self, image, prompts=None, *, embedding=None, tile_shape=None, halo=None,
                min_area=None, progress=False, callback=None):
        """All cells of `image`, found without prompts (see :func:`automatic`)."""
        if prompts is not None:
            raise ValueError(f"model {self.name!r} segments without prompts; segment with "
                             f"its SAM model (.sam) to use prompts.")
        return self.sam.segment(image, None, embedding=embedding, tile_shape=tile_shape,
                                halo=halo, min_area=min_area, progress=progress,
                                callback=callback, mode=self.mode, **self.options)

    #: read off the signature above, so it cannot drift from what segment takes
    segment_options = keyword_options(segment)


#: Options of :class:`AutomaticSam` (what its mode takes comes on top).
AUTOMATIC_SAM_OPTIONS = AutomaticSam.segment_options
