"""``samcell`` recipe (VandeLoo, Malta et al., *SAMCell*, PLoS One 2025).

SAM's image encoder and mask decoder are fine-tuned (prompt encoder frozen,
SAM's default prompt: no sparse token, the no-mask dense embedding) to
regress each cell's distance to its border, normalised by the cell's own
maximum (:func:`distance_target`), through a sigmoid with an L2 loss.

- Input: CLAHE, then zero mean / unit variance; random 256 px patches
  upsampled to SAM's 1024 input (the network's input side); flips, rotation within ±180°, scale
  0.8-1.2, brightness 0.95-1.05, random inversion.
- Optimiser: AdamW (lr 1e-4, weight decay 0.1), 250-step linear warm-up,
  then linear decay to zero at the last step; early stopping after 7
  epochs without a better validation AP@0.5 (``patience``).
- Inference: sliding 256 px windows overlapping by 32 px (each window's
  centre kept), then :func:`watershed` from cell peaks above 0.47 inside
  the region above 0.09.
"""

from __future__ import annotations

import numpy as np

from ._sam import SamNet as Net, load_sam_net
from ._sam import sam_weights as weights  # noqa: F401  (the recipe interface)

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

    from .._shared.validation import check_labels

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
        small = np.bincount(labels.ravel()) < min_size
        small[0] = False
        labels[small[labels]] = 0
    return relabel_sequential(labels.astype(np.int32))[0]


# ---------------------------------------------------------------------------
# the recipe
# ---------------------------------------------------------------------------
DEFAULTS = {"epochs": 30, "batch_size": 4, "patch_shape": (256, 256), "lr": 1e-4,
            "steps_per_epoch": 25}
OPTIONS = {"checkpoint": None, "weight_decay": 0.1, "warmup": 250, "patience": 7,
           "overlap": 32, "peak": 0.47, "fill": 0.09, "min_size": 25}
USES_MODEL = True
#: Whether the trained model segments whole images at its training scale: tile_shape / halo are no options of its.
DEFAULT_MODEL = "vit_b_lm"  # what train() starts from when no model is named
PROMPTED = False  # True: segments from box prompts (defines box_prompts, segment, ...)
CLASSES = False  # predicts each cell's class itself (defines predict_classes)
_NORMALIZATION = "clahe_zscore"


def check(settings) -> None:
    """Fail early on an unknown model, a missing checkpoint or a non-square patch."""
    from ._sam import check as check_sam

    check_sam(settings)
    options = settings["options"]
    if not 0 <= options["fill"] < options["peak"] <= 1:
        raise ValueError(f"need 0 <= fill < peak <= 1, got fill={options['fill']}, "
                         f"peak={options['peak']}.")
    if not 0 <= options["overlap"] < settings["patch_shape"][0] // 2:
        raise ValueError(f"`overlap` must be in [0, patch side / 2), got {options['overlap']}.")


def _target(labels):
    return distance_target(labels)[None]


def _augment(image, labels, rng):
    """SAMCell's augmentations beyond flips: rotation, scale, brightness, inversion."""
    from scipy import ndimage

    angle = np.deg2rad(rng.uniform(-180, 180))
    scale = rng.uniform(0.8, 1.2)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    centre = (np.array(image.shape) - 1) / 2
    offset = centre - matrix @ centre
    # outside the patch: the image's mean (0 after z-scoring) and no cell
    image = ndimage.affine_transform(image, matrix, offset, order=1, mode="constant", cval=0.0)
    labels = ndimage.affine_transform(labels, matrix, offset, order=0, mode="constant", cval=0)
    image = image * rng.uniform(0.95, 1.05)
    if rng.random() < 0.5:
        image = -image
    return image, labels


def _forward(sam, x):
    """(B, 1, P, P) standardised windows -> (B, 1, P, P) distance-map logits."""
    import torch

    from ._sam import decode, encode, input_size, to_sam, to_window

    emb = encode(sam, to_sam(x, input_size(sam), normalize_pixels=False))
    logits = torch.cat([decode(sam, emb[b:b + 1])[0] for b in range(len(x))])
    return to_window(logits, x.shape[-1])


def build(data, settings, device, state_dir):
    """SAM (prompt encoder frozen), patch loaders, AdamW with warm-up + linear decay."""
    import torch

    from ._common import loaders
    from ._sam import LoopRun, load_sam, warmup_linear

    options = settings["options"]
    sam, architecture, _ = load_sam(settings, device)
    for p in sam.prompt_encoder.parameters():
        p.requires_grad_(False)
    train_loader, val_loader, record = loaders(data, settings, _NORMALIZATION, _target,
                                               extra_augment=_augment)
    params = [p for p in sam.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=options["weight_decay"])
    total = settings["epochs"] * settings["steps_per_epoch"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear(total, warmup=options["warmup"]))

    def step_loss(batch, train):
        x, y = (t.to(device) for t in batch)
        loss = torch.nn.functional.mse_loss(torch.sigmoid(_forward(sam, x)), y)
        if train:
            loss.backward()
        return float(loss)

    return LoopRun(Net(sam, architecture), step_loss, optimizer, scheduler, train_loader,
                   val_loader, record, weights, state_dir)


def load_net(settings, state, device):
    """Rebuild the architecture (no download) and load the trained weights."""
    return load_sam_net(state, device)


def predict_map(net: Net, image, settings, *, progress=False):
    """The predicted distance map of a whole image (sliding windows), and the normalisation."""
    import torch

    from .._shared.tiling import predict_windows
    from ._common import normalize

    size, overlap = settings["patch_shape"][0], settings["options"]["overlap"]
    device = next(net.sam.parameters()).device

    def forward(window):  # a (size, size) window: the training scale
        x = torch.from_numpy(np.ascontiguousarray(window))[None, None]
        with torch.no_grad():
            out = torch.sigmoid(_forward(net.sam, x.to(device)))
        return out[0].float().cpu().numpy()

    was_training = net.sam.training
    net.sam.eval()
    try:
        x, record = normalize(image, _NORMALIZATION)
        distance = predict_windows(forward, x, size, overlap, progress=progress)[0]
    finally:
        net.sam.train(was_training)
    return distance, record


def predict(net: Net, image, settings, *, min_area=None, progress=False):
    """Automatic instance segmentation: (labels, scores, normalisation).

    Windows are the recipe's (``patch_shape`` with ``overlap``), so the
    network sees cells at its training scale (hence no `tile_shape`
    option). A cell's score is its peak predicted distance.
    """
    from scipy import ndimage

    options = settings["options"]
    distance, record = predict_map(net, image, settings, progress=progress)
    min_size = options["min_size"] if min_area is None else min_area
    labels = watershed(distance, peak=options["peak"], fill=options["fill"], min_size=min_size)
    n = int(labels.max())
    peaks = ndimage.maximum(distance, labels, np.arange(1, n + 1)) if n else []
    return labels, {i + 1: float(v) for i, v in enumerate(np.atleast_1d(peaks))}, record
