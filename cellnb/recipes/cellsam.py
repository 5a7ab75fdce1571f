"""``cellsam`` recipe: CellSAM's prompt engineering (Israel, Marks et al., *CellSAM*).

CellSAM found that SAM, prompted with a cell's bounding box, segments it
well once only the **neck** (the convolutions between the ViT trunk and the
mask decoder) is fine-tuned on cellular images; the trunk, prompt encoder
and mask decoder stay frozen. Training prompts SAM with the boxes of the
true cells of each patch (at most ``n_objects_per_batch``) and fits the
masks with binary cross-entropy + Dice; AdamW without gradient clipping.

Inference segments from boxes: from :func:`cellnb.prompt` on the nuclei of
a paired fluorescence image (``kind="boxes"``), or from any detector's boxes
as a prompt table (:func:`box_prompts` makes one from a label image). It goes
through a :class:`cellnb.models.SamModel` around the fine-tuned SAM
(``prompt_model``), so statuses, overlap resolution, batching and the
kept embedding are the same as for annotation. Validation during
training prompts with the true cells' boxes (CellSAM's oracle-box setting).

CellSAM's detector (CellFinder, Anchor DETR on the ViT) is not part of this
recipe; the boxes come from ``locate`` or the user's detector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._sam import SamNet as Net, instance_target as _instances, load_sam_net
from ._sam import sam_weights as weights  # noqa: F401  (the recipe interface)

__all__ = ["box_prompts"]

DEFAULTS = {"epochs": 10, "batch_size": 1, "patch_shape": (512, 512), "lr": 1e-4,
            "steps_per_epoch": 25}
OPTIONS = {"checkpoint": None, "weight_decay": 0.01, "n_objects_per_batch": 25, "overlap": 64,
           "min_size": 25}
USES_MODEL = True
#: Whether the trained model tiles large images (tile_shape / halo are its segment options).
DEFAULT_MODEL = "vit_b_lm"  # what train() starts from when no model is named
CLASSES = False  # predicts each cell's class itself (defines predict_classes)
PROMPTED = True
_NORMALIZATION = "minmax255"


def box_prompts(labels) -> pd.DataFrame:
    """A box prompt table (as :func:`cellnb.prompt` makes) from the cells of a label image.

    Each cell's tight bounding box becomes a box prompt and its most
    interior pixel the point; rows keep the cell's label.

    Parameters
    ----------
    labels : (H, W) int ndarray

    Returns
    -------
    prompts : DataFrame
        Columns ``label, y, x, y0, x0, y1, x1, clipped, kind, negatives``.

    Examples
    --------
    >>> labels = np.zeros((10, 10), np.int32); labels[2:5, 3:9] = 4
    >>> box_prompts(labels)[["label", "y", "x", "y0", "x0", "y1", "x1"]].values.tolist()
    [[4, 3, 4, 2, 3, 5, 9]]
    """
    from scipy import ndimage

    from .._shared.validation import check_labels

    labels = check_labels(labels, "labels")
    rows = []
    for lab, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        cell = np.pad(labels[window] == lab, 1)
        dist = ndimage.distance_transform_edt(cell)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        rows.append((lab, int(y + window[0].start), int(x + window[1].start), window[0].start,
                     window[1].start, window[0].stop, window[1].stop, False, "boxes", ()))
    return pd.DataFrame(rows, columns=["label", "y", "x", "y0", "x0", "y1", "x1", "clipped",
                                       "kind", "negatives"])


def check(settings) -> None:
    from ._sam import check as check_sam

    check_sam(settings)
    if not 0 <= settings["options"]["overlap"] < settings["patch_shape"][0] // 2:
        raise ValueError(f"`overlap` must be in [0, patch side / 2), got "
                         f"{settings['options']['overlap']}.")


def _mask_loss(logits, masks):
    """Binary cross-entropy + soft Dice, averaged over the prompted cells."""
    import torch

    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, masks)
    prob = torch.sigmoid(logits).flatten(1)
    flat = masks.flatten(1)
    dice = 1 - (2 * (prob * flat).sum(1) + 1) / (prob.sum(1) + flat.sum(1) + 1)
    return bce + dice.mean()


def _boxes(masks):
    """(N, P, P) bool tensor -> (N, 4) xyxy boxes (half-open) in pixels."""
    import torch

    rows, cols = masks.any(2), masks.any(1)
    idx = torch.arange(masks.shape[-1], device=masks.device)
    big = masks.shape[-1]
    y0 = torch.where(rows, idx, big).min(1).values
    y1 = torch.where(rows, idx, -1).max(1).values + 1
    x0 = torch.where(cols, idx, big).min(1).values
    x1 = torch.where(cols, idx, -1).max(1).values + 1
    return torch.stack([x0, y0, x1, y1], 1).float()


def build(data, settings, device, state_dir):
    """SAM with only the neck trainable, patch loaders, AdamW."""
    import torch

    from ._common import loaders
    from ._sam import LoopRun, decode, encode, input_size, load_sam, to_sam, to_window

    options = settings["options"]
    sam, architecture, _ = load_sam(settings, device)
    for p in sam.parameters():
        p.requires_grad_(False)
    neck = sam.image_encoder.neck
    for p in neck.parameters():
        p.requires_grad_(True)
    train_loader, val_loader, record = loaders(data, settings, _NORMALIZATION, _instances)
    optimizer = torch.optim.AdamW(neck.parameters(), lr=settings["lr"],
                                  weight_decay=options["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    n_objects = options["n_objects_per_batch"]

    def step_loss(batch, train):
        x, y = (t.to(device) for t in batch)
        size = x.shape[-1]
        with torch.no_grad():  # the frozen trunk
            trunk = encode(sam, to_sam(x, input_size(sam)), neck=False)
        emb = neck(trunk)
        losses = []
        for b in range(len(x)):
            ids = torch.unique(y[b, 0])
            ids = ids[ids > 0]
            if len(ids) == 0:
                continue
            ids = ids[torch.randperm(len(ids), device=ids.device)[:n_objects]]
            masks = y[b, 0][None] == ids[:, None, None]
            boxes = _boxes(masks) * (input_size(sam) / size)
            logits, _ = decode(sam, emb[b:b + 1], boxes=boxes)
            losses.append(_mask_loss(to_window(logits, size), masks[:, None].float()))
        if not losses:
            return 0.0
        loss = torch.stack(losses).mean()
        if train:
            loss.backward()
        return float(loss)

    def train_mode(module):  # trunk, prompt encoder and decoder frozen, with their statistics
        module.eval()
        neck.train()

    return LoopRun(Net(sam, architecture), step_loss, optimizer, scheduler, train_loader,
                   val_loader, record, weights, state_dir, train_mode=train_mode)


def load_net(settings, state, device):
    """Rebuild the architecture (no download) and load the trained weights."""
    return load_sam_net(state, device)


def segment_defaults(settings, shape) -> dict:
    """Tiling and minimum area of a cellsam segmentation of an image of `shape`.

    The scale rule of the SAM recipes: SAM sees windows of ``patch_shape``,
    the scale the neck was trained at. Images larger than the patch are
    embedded per tile of ``patch_shape - overlap`` seen with ``overlap / 2``
    pixels of context (windows of the patch side); smaller ones are padded
    to the patch (:func:`segment`).
    """
    size, overlap = settings["patch_shape"][0], settings["options"]["overlap"]
    tiled = max(shape[:2]) > size
    return {"tile_shape": (size - overlap, size - overlap) if tiled else None,
            "halo": (overlap // 2, overlap // 2) if tiled else None,
            "min_area": settings["options"]["min_size"]}


def prompt_model(net: Net):
    """A :class:`cellnb.models.SamModel` around the fine-tuned SAM (segments from boxes)."""
    from ._sam import sam_predictor

    return sam_predictor(net.sam, net.architecture, f"cellsam ({net.architecture} neck)")


def _padded(image, settings):
    """The image reflect-padded (bottom / right) so every SAM window has the patch's side.

    micro_sam resizes each window's longer side to SAM's input: an image
    smaller than the patch is padded to it; a tiled image is padded to whole
    tiles, so no border tile is a sliver blown up to SAM's input (the corner
    tiles, with context on two sides only, are ``overlap / 2`` short).
    """
    from ._sam import pad_to

    size, overlap = settings["patch_shape"][0], settings["options"]["overlap"]
    h, w = image.shape
    if max(h, w) <= size:
        return pad_to(image, size)
    tile = size - overlap
    target = (-(-h // tile) * tile, -(-w // tile) * tile)
    return np.pad(image, ((0, max(target[0] - h, 0)), (0, max(target[1] - w, 0))),
                  mode="reflect" if min(h, w) > 1 else "edge")


def _crop(seg, shape):
    """A Segmentation of a padded image cut back to `shape` (areas and boxes recomputed)."""
    from scipy import ndimage

    h, w = shape
    labels = np.ascontiguousarray(seg.labels[:h, :w])
    table = seg.table.copy()
    boxes = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=len(boxes) + 1)
    for i, lab in zip(table.index, table["label"].astype(int)):
        if table.at[i, "status"] != "kept":
            continue
        box = boxes[lab - 1] if 0 < lab <= len(boxes) else None
        if box is None:  # all of it was in the padding
            table.loc[i, ["area", "status"]] = [0, "empty"]
            continue
        table.loc[i, ["area", "y0", "x0", "y1", "x1"]] = [int(areas[lab]), box[0].start,
                                                          box[1].start, box[0].stop, box[1].stop]
    seg.labels, seg.table = labels, table
    return seg


def segment(net: Net, image, prompts, settings, *, model=None, tile_shape=None, halo=None,
            min_area=None, batch_size="auto", iou_threshold=0.85, multimask=False,
            progress=False, callback=None):
    """One cell per box prompt with the fine-tuned SAM, at the training scale.

    `model` is a kept ``prompt_model`` (a loaded :class:`cellnb.TrainedModel`
    keeps one, so embeddings are reused); without it a fresh one is made
    (during training the weights change between calls). Without
    `tile_shape`, the image is padded and tiled by the scale rule
    (:func:`segment_defaults`, :func:`_padded`) and the result cut back.
    """
    defaults = segment_defaults(settings, image.shape)
    shape = image.shape
    if tile_shape is None:
        tile_shape, halo = defaults["tile_shape"], defaults["halo"]
        image = _padded(image, settings)
    was_training = net.sam.training
    net.sam.eval()
    try:
        seg = (model or prompt_model(net)).segment(
            image, prompts, kind="boxes", tile_shape=tile_shape, halo=halo,
            min_area=defaults["min_area"] if min_area is None else min_area,
            batch_size=batch_size, iou_threshold=iou_threshold, multimask=multimask,
            progress=progress, callback=callback)
    finally:
        net.sam.train(was_training)
    return _crop(seg, shape) if seg.labels.shape != shape else seg


def predict(net: Net, image, settings, *, prompts, tile_shape=None, halo=None, min_area=None,
            progress=False):
    """(labels, scores, normalisation) from box `prompts` (used for validation)."""
    seg = segment(net, image, prompts, settings, tile_shape=tile_shape, halo=halo,
                  min_area=min_area, progress=progress)
    scores = dict(zip(seg.table["label"].astype(int), seg.table["score"].astype(float)))
    return seg.labels, scores, seg.normalization
