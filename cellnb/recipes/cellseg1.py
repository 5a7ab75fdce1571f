"""``cellseg1`` recipe (Zhou, Du & Xu, *CellSeg1: robust cell segmentation with one training image*).

SAM stays frozen; LoRA adapters (rank 4, dropout 0.1) on the query and value
projections of the attention layers of the image encoder and the mask
decoder are the only trained weights.

- Training samples are image + one point (:func:`sample_points`): positive
  points from the top 20 % of each cell's distance transform, negative
  points from the top 20 % of the background's, at most 30 + 15 per image;
  the image is encoded once for all its points. Loss (section 4.4): for a
  positive point, BCE between the mask and the cell plus MSE pulling the
  IoU head toward 1; for a negative point, MSE pulling the IoU head toward 0.
- AdamW (betas 0.9 / 0.999, weight decay 0.01), one-cycle schedule with max
  lr 3e-3 peaking at 30 % of the optimizer steps, batches of 4 images with
  gradients accumulated over 8 (an effective batch of 32 images).
- Inference (sections 4.6-4.7): a 32 x 32 point grid per window, the IoU
  head read as the probability that the point lies in a cell, score =
  predicted IoU x stability score, and :func:`two_stage_nms` (box IoU
  pre-filter at 0.05, then mask IoU only between box-overlapping masks).
  The filters are those of CellSeg1's released configuration: predicted
  IoU > 0.8 (``min_probability``), stability > 0.6 with a logit offset of
  0.8, masks at most 10 % of the window, at least 20 pixels.

Differences from the paper: the paper shrinks SAM's input to 512 px
(interpolating the positional encodings) to fit 8 GB GPUs; cellnb keeps
SAM's 1024 px input and resizes each ``patch_shape`` window to it (windows of
small images padded to the patch first, so inference sees cells at the
training scale), so the architecture is the released one. The paper trains 300 epochs over one
image; here an epoch is ``steps_per_epoch`` batches of random patches.
"""

from __future__ import annotations

import numpy as np

from ._sam import SamNet as Net, instance_target as _instances, load_sam_net
from ._sam import sam_weights as weights  # noqa: F401  (the recipe interface)

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

    from .._shared.validation import check_labels

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


def _tight_crops(masks):
    """(N, H, W) bool array or list of (y0, x0, crop) -> tight (y0, x0, crop) list and boxes."""
    if isinstance(masks, np.ndarray) or (isinstance(masks, list) and masks
                                         and not isinstance(masks[0], tuple)):
        array = np.asarray(masks, bool)
        if array.ndim != 3:
            raise ValueError(f"`masks` must be (N, H, W) or a list of (y0, x0, crop); got an "
                             f"array of shape {array.shape}.")
        masks = [(0, 0, m) for m in array]
    crops, boxes = [], np.zeros((len(masks), 4), int)
    for i, (y0, x0, crop) in enumerate(masks):
        crop = np.asarray(crop, bool)
        ys, xs = np.flatnonzero(crop.any(1)), np.flatnonzero(crop.any(0))
        if len(ys):
            crop = crop[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
            y0, x0 = y0 + ys[0], x0 + xs[0]
            boxes[i] = (y0, x0, y0 + crop.shape[0], x0 + crop.shape[1])
        crops.append((int(y0), int(x0), crop))
    return crops, boxes


def _crop_iou(a, b) -> float:
    (ay, ax, am), (by, bx, bm) = a, b
    y0, x0 = max(ay, by), max(ax, bx)
    y1, x1 = min(ay + am.shape[0], by + bm.shape[0]), min(ax + am.shape[1], bx + bm.shape[1])
    inter = 0
    if y1 > y0 and x1 > x0:
        inter = int(np.logical_and(am[y0 - ay:y1 - ay, x0 - ax:x1 - ax],
                                   bm[y0 - by:y1 - by, x0 - bx:x1 - bx]).sum())
    union = int(am.sum()) + int(bm.sum()) - inter
    return inter / union if union else 0.0


def two_stage_nms(masks, scores, *, box_threshold: float = 0.05,
                  mask_threshold: float = 0.05) -> np.ndarray:
    """CellSeg1's optimised mask NMS (its Algorithm 1).

    Masks are visited by decreasing score; each kept mask suppresses the
    remaining masks whose **box** IoU with it exceeds `box_threshold` (cheap
    pre-filter) *and* whose **mask** IoU exceeds `mask_threshold`. Mask IoU is
    only computed for box-overlapping pairs, on the boxes' common region.

    Parameters
    ----------
    masks : (N, H, W) bool ndarray, or list of (y0, x0, crop)
        Whole-image masks, or each mask as a crop and its offset (memory
        grows with the cells, not cells x pixels).
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
    scores = np.asarray(scores, float)
    if len(scores) != len(masks):
        raise ValueError(f"`masks` and `scores` differ in length: {len(masks)} masks, "
                         f"{len(scores)} scores.")
    n = len(scores)
    if n == 0:
        return np.zeros(0, int)
    crops, boxes = _tight_crops(masks)
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
            if _crop_iou(crops[k], crops[i]) > mask_threshold:
                alive[i] = False
    return np.array(keep, int)


# ---------------------------------------------------------------------------
# the recipe
# ---------------------------------------------------------------------------
DEFAULTS = {"epochs": 30, "batch_size": 4, "patch_shape": (512, 512), "lr": 3e-3,
            "steps_per_epoch": 16}
OPTIONS = {"checkpoint": None, "lora_rank": 4, "lora_dropout": 0.1, "accumulate": 8,
           "weight_decay": 0.01, "peak": 0.3, "max_positive": 30, "max_negative": 15,
           "grid": 32, "points_per_batch": 64, "min_probability": 0.8, "min_stability": 0.6,
           "stability_offset": 0.8, "max_area_fraction": 0.1,  # CellSeg1's released config
           "overlap": 64, "min_size": 20}
USES_MODEL = True
#: Whether the trained model segments whole images at its training scale: tile_shape / halo are no options of its.
DEFAULT_MODEL = "vit_b_lm"  # what train() starts from when no model is named
PROMPTED = False  # True: segments from box prompts (defines box_prompts, segment, ...)
CLASSES = False  # predicts each cell's class itself (defines predict_classes)
_NORMALIZATION = "minmax255"


def check(settings) -> None:
    """Fail early on an unknown model, a missing checkpoint, a non-square patch, bad options."""
    from ._sam import check as check_sam

    check_sam(settings)
    options = settings["options"]
    for key in ("lora_rank", "accumulate", "grid", "points_per_batch"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{key}` must be a positive int, got {value!r}.")
    if not 0 <= options["overlap"] < settings["patch_shape"][0] // 2:
        raise ValueError(f"`overlap` must be in [0, patch side / 2), got {options['overlap']}.")


def _sam_with_lora(sam, options):
    from ._sam import add_lora

    add_lora(sam, rank=int(options["lora_rank"]), dropout=float(options["lora_dropout"]))
    return sam


def _point_losses(sam, embedding, labels, size, options, seed, *, backward_scale=None):
    """Loss terms of one image's sampled points; backpropagates per point batch when asked.

    Returns (sum of per-point losses, number of points).
    """
    import torch

    from ._sam import decode, input_size, to_window

    scale = input_size(sam) / size
    labels_np = labels.cpu().numpy().astype(np.int32)
    pos, neg = sample_points(labels_np, rng=seed, max_positive=options["max_positive"],
                             max_negative=options["max_negative"])
    points = np.concatenate([pos[:, :2], neg]) if len(neg) else pos[:, :2]
    cells = np.concatenate([pos[:, 2], np.zeros(len(neg), int)])
    if not len(points):
        return 0.0, 0
    total = 0.0
    chunk = int(options["points_per_batch"])
    for start in range(0, len(points), chunk):
        yx = torch.as_tensor(points[start:start + chunk], dtype=torch.float32,
                             device=embedding.device)
        ids = torch.as_tensor(cells[start:start + chunk], device=embedding.device)
        coords = (yx.flip(-1) + 0.5) * scale  # (y, x) pixels -> SAM's xy frame
        logits, iou = decode(sam, embedding, points=coords[:, None],
                             labels=torch.ones(len(yx), 1, device=embedding.device))
        positive = ids > 0
        target_iou = positive.float()
        loss = torch.nn.functional.mse_loss(iou[:, 0], target_iou, reduction="sum")
        if positive.any():
            masks = (labels[None] == ids[positive][:, None, None]).float()[:, None]
            up = to_window(logits[positive], size)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(up, masks,
                                                                       reduction="none")
            loss = loss + bce.mean((1, 2, 3)).sum()
        if backward_scale is not None:
            (loss * backward_scale).backward()
        total += float(loss)
    return total, len(points)


def build(data, settings, device, state_dir):
    """SAM + LoRA (only the adapters train), patch loaders, AdamW with a one-cycle schedule."""
    import math

    import torch

    from ._common import loaders
    from ._sam import LoopRun, encode, input_size, load_sam, lora_train_mode, one_cycle, to_sam

    options = settings["options"]
    sam, architecture, _ = load_sam(settings, device)
    _sam_with_lora(sam, options)
    train_loader, val_loader, record = loaders(data, settings, _NORMALIZATION, _instances)
    params = [p for p in sam.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], betas=(0.9, 0.999),
                                  weight_decay=options["weight_decay"])
    accumulate = int(options["accumulate"])
    total = settings["epochs"] * math.ceil(settings["steps_per_epoch"] / accumulate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                  one_cycle(total, peak=options["peak"]))

    def step_loss(batch, train):
        x, y = (t.to(device) for t in batch)
        size = x.shape[-1]
        seeds = torch.randint(0, 2**31 - 1, (len(x),)).tolist()  # seeded per epoch by train
        emb = encode(sam, to_sam(x, input_size(sam)))
        # the encoder runs once for all points of an image; the decoder per point batch,
        # with gradients gathered on a detached copy of the embedding and sent back once
        cut = emb.detach().requires_grad_(train)
        counts = [int(len(np.unique(yy[yy > 0].cpu().numpy()))) for yy in y[:, 0]]
        n_points = sum(min(c, options["max_positive"]) + options["max_negative"]
                       for c in counts) or 1
        total_loss, total_points = 0.0, 0
        for b in range(len(x)):
            loss, n = _point_losses(sam, cut[b:b + 1], y[b, 0], size, options, seeds[b],
                                    backward_scale=1.0 / (n_points * accumulate) if train
                                    else None)
            total_loss += loss
            total_points += n
        if train and cut.grad is not None:
            emb.backward(cut.grad)
        return total_loss / max(total_points, 1)

    return LoopRun(Net(sam, architecture), step_loss, optimizer, scheduler, train_loader,
                   val_loader, record, weights, state_dir, accumulate=accumulate,
                   train_mode=lora_train_mode)


def load_net(settings, state, device):
    """Rebuild SAM + LoRA (no download) and load the trained weights."""
    return load_sam_net(state, device,
                        prepare=lambda sam: _sam_with_lora(sam, settings["options"]))


def _window_masks(sam, window, size, options, device):
    """Candidate masks of one window from the point grid: list of (crop, y0, x0, score).

    A window smaller than `size` (the patch side) is reflect-padded to it,
    so SAM sees it at the training scale; the grid covers the padded window
    and its points outside the real one are dropped.
    """
    import torch

    from ._sam import decode, encode, input_size, pad_to, to_sam, to_window

    h, w = window.shape
    x = torch.from_numpy(np.ascontiguousarray(pad_to(window, size)))[None, None].to(device)
    scale = input_size(sam) / size
    emb = encode(sam, to_sam(x, input_size(sam)))
    n = int(options["grid"])
    offsets = (np.arange(n) + 0.5) / n * size
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    grid = np.stack([xx.ravel(), yy.ravel()], 1)  # xy in window pixels
    grid = grid[(grid[:, 0] < w) & (grid[:, 1] < h)]
    out = []
    chunk = int(options["points_per_batch"])
    for start in range(0, len(grid), chunk):
        xy = torch.as_tensor(grid[start:start + chunk], dtype=torch.float32, device=device)
        logits, iou = decode(sam, emb, points=(xy * scale)[:, None],
                             labels=torch.ones(len(xy), 1, device=device))
        prob = iou[:, 0].clamp(0, 1)
        keep = prob > options["min_probability"]
        if not keep.any():
            continue
        up = to_window(logits[keep], size)[:, 0, :h, :w]
        offset = float(options["stability_offset"])
        stability = (up > offset).sum((1, 2)) / (up > -offset).sum((1, 2)).clamp(min=1)
        score = prob[keep] * stability
        area = (up > 0).sum((1, 2))
        good = ((stability > options["min_stability"])
                & (area <= options["max_area_fraction"] * h * w)).cpu().numpy()
        masks = (up > 0).cpu().numpy()
        for mask, sc, ok in zip(masks, score.cpu().numpy(), good):
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            if ok and len(ys):
                crop = mask[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
                out.append((crop, int(ys[0]), int(xs[0]), float(sc)))
    return out


def predict(net: Net, image, settings, *, min_area=None, progress=False):
    """Automatic instance segmentation from a point grid: (labels, scores, normalisation).

    Windows of ``patch_shape`` overlapping by ``overlap`` (the training
    scale, hence no `tile_shape` option); a mask touching a window
    edge inside the image is left to the neighbouring window, then
    :func:`two_stage_nms` over all windows. Pixels claimed by two kept masks
    go to the higher score.
    """
    import torch
    from skimage.segmentation import relabel_sequential
    from tqdm.auto import tqdm

    from ._common import normalize
    from ._sam import window_starts

    options = settings["options"]
    size, overlap = settings["patch_shape"][0], options["overlap"]
    x, record = normalize(image, _NORMALIZATION)
    h, w = x.shape
    device = next(net.sam.parameters()).device
    starts = [(y0, x0) for y0 in window_starts(h, size, overlap)
              for x0 in window_starts(w, size, overlap)]
    candidates, scores = [], []
    was_training = net.sam.training
    net.sam.eval()
    try:
        with torch.no_grad():
            for y0, x0 in tqdm(starts, disable=not progress, desc="windows"):
                window = x[y0:y0 + size, x0:x0 + size]
                wh, ww = window.shape
                for crop, cy, cx, sc in _window_masks(net.sam, window, size, options, device):
                    inner_edge = ((cy == 0 and y0 > 0) or (cx == 0 and x0 > 0)
                                  or (cy + crop.shape[0] == wh and y0 + wh < h)
                                  or (cx + crop.shape[1] == ww and x0 + ww < w))
                    if not inner_edge:
                        candidates.append((y0 + cy, x0 + cx, crop))
                        scores.append(sc)
    finally:
        net.sam.train(was_training)
    keep = two_stage_nms(candidates, scores)
    labels = np.zeros((h, w), np.int32)
    for k in keep[::-1]:  # lowest score first: higher scores overwrite contested pixels
        cy, cx, crop = candidates[k]
        labels[cy:cy + crop.shape[0], cx:cx + crop.shape[1]][crop] = k + 1
    min_size = options["min_size"] if min_area is None else min_area
    small = np.bincount(labels.ravel()) < min_size
    small[0] = False
    labels[small[labels]] = 0
    labels, forward, _ = relabel_sequential(labels)
    found = {int(forward[k + 1]): float(scores[k]) for k in keep if forward[k + 1] > 0}
    return labels.astype(np.int32), found, record
