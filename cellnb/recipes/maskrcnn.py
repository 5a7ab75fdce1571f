"""``maskrcnn`` recipe: torchvision's Mask R-CNN, each cell's mask and class from TL alone.

The Cell-APP protocol, which cellnb automates, trains Detectron2's Mask R-CNN
(ViTDet: a plain ViT backbone with a simple feature pyramid) on the COCO
export, with the cells' classes (mitotic / non-mitotic) as COCO categories,
so that one network both segments and classifies every cell. Detectron2
cannot be installed from the package registries; this recipe trains the
same detector family from torchvision.

- Networks (``model=``): ``"maskrcnn_resnet50_fpn_v2"`` (default; torchvision's
  improved Mask R-CNN on a ResNet-50-FPN, starting from its COCO weights,
  read from torch's hub cache; the box and mask predictors are made anew for
  the dataset's classes and the backbone's batch norms are frozen, as
  Detectron2 does), or ``"maskrcnn_mini"``: the same torchvision classes on a
  ResNet-18 with a 64-channel FPN and narrower heads, from random init (the
  reduced architecture of the tests). ``checkpoint=`` starts either from a
  state-dict file instead; ``pretrained=False`` starts the ResNet-50 from
  random init.
- Classes: the dataset's categories (:attr:`cellnb.dataset.TrainingData.classes`)
  after the background; one class, ``"cell"``, when the dataset has none.
- Input: percentile normalisation, the grey image repeated to 3 channels,
  ImageNet mean / std (torchvision's); patches and whole images alike at one
  fixed ``scale`` (default 1: the pixels as they are), so inference sees
  cells at their training size.
- Optimiser: AdamW (lr 1e-4, weight decay 0.1), linear warm-up over 250
  steps from 0.1 %, then x0.1 at 89 % and x0.01 at 96 % of the steps
  (Detectron2's ViTDet schedule, :func:`vitdet_schedule`).
- Inference: the whole image in one pass (the network is convolutional); up
  to ``max_detections`` (500) detections with a score of at least
  ``min_score`` (0.7, Cell-APP's configuration); the 28 x 28 mask of each
  is resized to its box and thresholded at 0.5, pasted from the lowest score
  up, so a contested pixel goes to the more confident cell; cells left
  smaller than ``min_size`` pixels are dropped (:func:`paint_instances`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["paint_instances", "vitdet_schedule", "targets", "coco_weights_file", "MODELS"]

#: The networks ``train(recipe="maskrcnn", model=...)`` takes.
MODELS = ("maskrcnn_resnet50_fpn_v2", "maskrcnn_mini")
DEFAULT_MODEL = "maskrcnn_resnet50_fpn_v2"
DEFAULTS = {"epochs": 30, "batch_size": 2, "patch_shape": (512, 512), "lr": 1e-4,
            "steps_per_epoch": 25}
OPTIONS = {"checkpoint": None, "pretrained": True, "scale": 1.0, "weight_decay": 0.1,
           "warmup": 250, "min_score": 0.7, "mask_threshold": 0.5, "max_detections": 500,
           "min_size": 25, "patience": None}
USES_MODEL = True
#: Whether the trained model segments whole images at its training scale: tile_shape / halo are no options of its.
PROMPTED = False  # True: segments from box prompts (defines box_prompts, segment, ...)
CLASSES = True  # predicts each cell's class itself (no separate TL classifier)
_NORMALIZATION = "percentile"
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------
# pieces, each testable on its own
# ---------------------------------------------------------------------------
def vitdet_schedule(total: int, *, warmup: int = 250):
    """Learning-rate factor per step: Detectron2's ViTDet schedule.

    Linear warm-up from 0.001 over `warmup` steps, then 1 until 89 % of
    `total`, 0.1 until 96 %, then 0.01.

    Examples
    --------
    >>> f = vitdet_schedule(1000, warmup=100)
    >>> [round(f(s), 4) for s in (0, 50, 100, 889, 890, 959, 960, 999)]
    [0.001, 0.5005, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """
    if total < 1 or warmup < 0:
        raise ValueError(f"need total >= 1 and warmup >= 0, got total={total}, warmup={warmup}.")

    def factor(step):
        value = 1.0 if step < 0.89 * total else 0.1 if step < 0.96 * total else 0.01
        if step < warmup:
            value *= 0.001 + (1 - 0.001) * step / warmup
        return value

    return factor


def targets(labels, classes) -> dict:
    """torchvision's detection target of one patch: boxes, class ids and masks per cell.

    Parameters
    ----------
    labels : (H, W) int tensor or ndarray
        Cell labels, 0 = background.
    classes : (H, W) int tensor or ndarray
        Class id (1, 2, ...) of each cell's pixels, 0 on background.

    Returns
    -------
    target : dict
        ``boxes`` (N, 4) float ``x0, y0, x1, y1`` (``x1, y1`` one past the
        last pixel), ``labels`` (N,) int64 class ids, ``masks`` (N, H, W) uint8.

    Examples
    --------
    >>> labels = np.array([[0, 1, 1], [0, 1, 1], [2, 0, 0]])
    >>> t = targets(labels, np.where(labels == 2, 2, labels > 0))
    >>> t["boxes"].tolist(), t["labels"].tolist()
    ([[1.0, 0.0, 3.0, 2.0], [0.0, 2.0, 1.0, 3.0]], [1, 2])
    """
    import torch
    from torchvision.ops import masks_to_boxes

    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    classes = torch.as_tensor(np.asarray(classes) if not torch.is_tensor(classes) else classes)
    labels, classes = labels.long(), classes.long()
    ids = torch.unique(labels)
    ids = ids[ids > 0]
    masks = labels[None] == ids[:, None, None]
    boxes = masks_to_boxes(masks) if len(ids) else torch.zeros((0, 4))
    boxes = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0])
    kinds = (masks * classes[None]).amax(dim=(1, 2)) if len(ids) else torch.zeros(0, dtype=torch.long)
    return {"boxes": boxes.float(), "labels": kinds.long(), "masks": masks.to(torch.uint8)}


def paint_instances(boxes, masks, scores, kinds, shape, *, mask_threshold: float = 0.5,
                    min_size: int = 0):
    """One label image from Mask R-CNN detections (box-relative masks), highest score on top.

    Parameters
    ----------
    boxes : (N, 4) array, ``x0, y0, x1, y1`` in image pixels
    masks : (N, M, M) array of mask probabilities, each spanning its box
    scores : (N,) array
    kinds : (N,) int array of class ids
    shape : (int, int)
        The image's shape.
    mask_threshold : float, default=0.5
    min_size : int, default=0
        Cells with fewer pixels left after painting are dropped.

    Returns
    -------
    labels : (H, W) int32, ids 1..n
    scores : dict {label: score}
    kinds : dict {label: class id}

    Examples
    --------
    >>> boxes = np.array([[0, 0, 4, 4], [2, 0, 6, 4]], float)
    >>> masks = np.ones((2, 2, 2))
    >>> labels, scores, kinds = paint_instances(boxes, masks, [0.9, 0.8], [1, 2], (4, 6))
    >>> labels.tolist()
    [[1, 1, 1, 1, 2, 2], [1, 1, 1, 1, 2, 2], [1, 1, 1, 1, 2, 2], [1, 1, 1, 1, 2, 2]]
    >>> scores, kinds
    ({1: 0.9, 2: 0.8}, {1: 1, 2: 2})
    """
    import torch
    from skimage.segmentation import relabel_sequential

    boxes = np.asarray(boxes, float).reshape(-1, 4)
    masks = torch.as_tensor(np.asarray(masks, np.float32))
    scores = np.asarray(scores, float).ravel()
    kinds = np.asarray(kinds).ravel()
    if not (len(boxes) == len(masks) == len(scores) == len(kinds)):
        raise ValueError(f"boxes, masks, scores and kinds must have one entry per detection, got "
                         f"{len(boxes)}, {len(masks)}, {len(scores)}, {len(kinds)}.")
    h, w = shape
    out = np.zeros((h, w), np.int32)
    n = len(scores)
    order = np.argsort(scores, kind="stable")  # lowest first: higher scores paint over
    for j, i in enumerate(order):
        x0, y0, x1, y1 = boxes[i]
        c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        c1, r1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        if c1 <= c0 or r1 <= r0:
            continue
        # the mask spans the float box; sample it on the pixels the box covers
        full = torch.nn.functional.interpolate(
            masks[i][None, None], size=(max(1, int(np.ceil(y1 - np.floor(y0)))),
                                        max(1, int(np.ceil(x1 - np.floor(x0))))),
            mode="bilinear", align_corners=False)[0, 0].numpy()
        dy, dx = r0 - int(np.floor(y0)), c0 - int(np.floor(x0))
        inside = full[dy:dy + r1 - r0, dx:dx + c1 - c0] > mask_threshold
        out[r0:r0 + inside.shape[0], c0:c0 + inside.shape[1]][inside] = n - j  # 1: best score
    sizes = np.bincount(out.ravel(), minlength=n + 1)
    small = sizes < max(1, int(min_size))
    small[0] = False
    out[small[out]] = 0
    labels, forward, _ = relabel_sequential(out)
    kept = {int(forward[n - j]): int(i) for j, i in enumerate(order)
            if not small[n - j] and forward[n - j] > 0}
    return (labels.astype(np.int32), {k: float(scores[i]) for k, i in sorted(kept.items())},
            {k: int(kinds[i]) for k, i in sorted(kept.items())})


def coco_weights_file() -> Path:
    """Where torchvision keeps the COCO weights of ``maskrcnn_resnet50_fpn_v2`` (torch's hub cache).

    Examples
    --------
    >>> coco_weights_file().name
    'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth'
    """
    from ..weights import _torch_dir, _torch_file

    return _torch_dir() / _torch_file(DEFAULT_MODEL)[0]


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _fixed_scale_transform():
    """torchvision's detection transform at one fixed scale, masks left box-relative."""
    import torch
    from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

    class FixedScaleTransform(GeneralizedRCNNTransform):
        def __init__(self, scale: float):
            super().__init__(min_size=800, max_size=1333, image_mean=list(_MEAN),
                             image_std=list(_STD))
            self.scale = float(scale)

        def resize(self, image, target=None):
            if self.scale == 1.0:
                return image, target
            h, w = image.shape[-2:]
            size = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
            image = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear",
                                                    align_corners=False)[0]
            if target is not None:
                target = dict(target, boxes=resize_boxes(target["boxes"], (h, w), size))
                if "masks" in target:
                    target["masks"] = torch.nn.functional.interpolate(
                        target["masks"][:, None].float(), size=size)[:, 0].to(torch.uint8)
            return image, target

        def postprocess(self, result, image_shapes, original_image_sizes):
            if self.training:
                return result
            for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
                pred["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            return result  # masks stay (N, 1, 28, 28): paint_instances pastes them

    return FixedScaleTransform


def _network(model: str, n_classes: int, options):
    """The Mask R-CNN of `model` for `n_classes` (background included), random init."""
    from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    common = dict(box_detections_per_img=int(options["max_detections"]),
                  box_score_thresh=float(options["min_score"]))
    if model == "maskrcnn_mini":
        from torchvision.models import resnet18
        from torchvision.models.detection.backbone_utils import BackboneWithFPN

        layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
        backbone = BackboneWithFPN(resnet18(weights=None), layers, [64, 128, 256, 512], 64)
        net = MaskRCNN(backbone, None, box_head=TwoMLPHead(64 * 7 * 7, 256),
                       box_predictor=FastRCNNPredictor(256, n_classes),
                       mask_head=MaskRCNNHeads(64, [64, 64, 64, 64], 1),
                       mask_predictor=MaskRCNNPredictor(64, 64, n_classes), **common)
    elif model == "maskrcnn_resnet50_fpn_v2":
        net = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None,
                                       num_classes=n_classes, **common)
    else:
        raise ValueError(f"recipe 'maskrcnn' takes model= one of {list(MODELS)}, got {model!r}.")
    net.transform = _fixed_scale_transform()(options["scale"])
    return net


def _load_matching(net, state: dict, source) -> None:
    """Load every tensor of `state` whose name and shape the network shares (not the predictors)."""
    own = net.state_dict()
    if "model_state" in state and isinstance(state["model_state"], dict):
        state = state["model_state"]
    predictors = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")
    shared = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)
              and not k.startswith(predictors)}
    wanted = [k for k in own if not k.startswith(predictors)]
    if len(shared) < 0.9 * len(wanted):
        raise ValueError(f"{source} holds {len(shared)} of the {len(wanted)} tensors of this "
                         "network's backbone and heads; it is not a checkpoint of this "
                         "architecture.")
    net.load_state_dict(shared, strict=False)


def _freeze_batch_norms(net) -> None:
    """Fine-tuning as Detectron2 does: frozen batch norms in the backbone, stem and layer1 fixed."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    body = net.backbone.body
    for name, module in list(body.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key).detach())
                setattr(module, child_name, frozen)
    for name, p in body.named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            p.requires_grad_(False)


def _start(settings, n_classes: int):
    """The network a run starts from: a checkpoint, COCO's weights, or random init."""
    from .._shared.torchutil import load_state

    options, model = settings["options"], settings["model"]
    net = _network(model, n_classes, options)
    if options["checkpoint"] is not None:
        _load_matching(net, load_state(options["checkpoint"]), options["checkpoint"])
        if model == "maskrcnn_resnet50_fpn_v2":
            _freeze_batch_norms(net)
    elif model == "maskrcnn_resnet50_fpn_v2" and options["pretrained"]:
        _load_matching(net, load_state(_check_coco_weights()), coco_weights_file())
        _freeze_batch_norms(net)
    return net


def _check_coco_weights() -> Path:
    path = coco_weights_file()
    if not path.is_file():
        raise FileNotFoundError(
            f"recipe 'maskrcnn' starts from torchvision's COCO weights, which are not cached: "
            f"download them to {path} (on a machine with internet: cellnb models fetch "
            f"{DEFAULT_MODEL}; on compute nodes set TORCH_HOME to where they are), pass "
            "checkpoint=, or pretrained=False to start from random init.")
    return path


# ---------------------------------------------------------------------------
# the recipe
# ---------------------------------------------------------------------------
def check(settings) -> None:
    """Fail before a run folder exists: model, checkpoint or COCO weights, and the options."""
    options, model = settings["options"], settings["model"]
    if model not in MODELS:
        raise ValueError(f"recipe 'maskrcnn' takes model= one of {list(MODELS)}, got {model!r}.")
    if options["checkpoint"] is not None:
        if not Path(options["checkpoint"]).is_file():
            raise FileNotFoundError(f"checkpoint {options['checkpoint']} does not exist.")
    elif model == "maskrcnn_resnet50_fpn_v2" and options["pretrained"]:
        _check_coco_weights()
    if not (isinstance(options["scale"], (int, float)) and options["scale"] > 0):
        raise ValueError(f"`scale` must be a positive number, got {options['scale']!r}.")
    for key in ("min_score", "mask_threshold"):
        if not 0 <= options[key] < 1:
            raise ValueError(f"`{key}` must be in [0, 1), got {options[key]!r}.")
    if isinstance(options["max_detections"], bool) or not isinstance(
            options["max_detections"], int) or options["max_detections"] < 1:
        raise ValueError(f"`max_detections` must be a positive int, got "
                         f"{options['max_detections']!r}.")


def _class_names(data) -> list:
    """The classes the network learns, after the background: the dataset's, else ``["cell"]``."""
    return list(data.classes) if len(data.classes) > 1 else ["cell"]


def _class_images(names):
    """Record -> per-pixel class ids (1..K), from the record's ``class_name`` column."""
    from ..classify import CLASS_COLUMN

    index = {name: k for k, name in enumerate(names, start=1)}

    def class_image(record):
        labels = record.labels
        if len(names) == 1:
            return (labels > 0).astype(np.int32)
        column = (record.cells[CLASS_COLUMN] if CLASS_COLUMN in record.cells.columns
                  else None)
        lut = np.zeros(int(labels.max()) + 1, np.int32)
        if column is not None:
            for label, name in column.dropna().items():
                if 0 < int(label) < len(lut):
                    lut[int(label)] = index.get(str(name), 0)
        present = np.unique(labels[labels > 0])
        missing = present[lut[present] == 0]
        if len(missing):
            raise ValueError(f"image {record.id!r}: cells {missing[:5].tolist()} have no class "
                             f"among {names} (column {CLASS_COLUMN!r}); a 'maskrcnn' run on a "
                             "classed dataset needs every cell's class.")
        return lut[labels]

    return class_image


def _as_input(x):
    """(B, 1, H, W) normalised grey -> the list of (3, H, W) images torchvision takes."""
    return [im.expand(3, -1, -1) for im in x]


def build(data, settings, device, state_dir):
    """Mask R-CNN, class-carrying patch loaders, AdamW with the ViTDet schedule."""
    import torch

    from ._common import loaders
    from ._sam import LoopRun

    options = settings["options"]
    names = _class_names(data)
    class_image = _class_images(names)
    net = _start(settings, len(names) + 1).to(device)
    net.classes = names
    stack = lambda labels, classes: np.stack([labels, classes]).astype(np.float32)  # noqa: E731
    train_loader, val_loader, record = loaders(data, settings, _NORMALIZATION, stack,
                                               class_images=class_image)
    # (loaders apply class_image to every record first: an unclassed cell fails before a step)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=options["weight_decay"])
    total = settings["epochs"] * settings["steps_per_epoch"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, vitdet_schedule(total, warmup=options["warmup"]))

    def step_loss(batch, train):
        x, y = batch
        images = [im.to(device) for im in _as_input(x)]
        goals = [{k: v.to(device) for k, v in targets(t[0], t[1]).items()} for t in y]
        if train:
            loss = sum(net(images, goals).values())
            loss.backward()
            return float(loss)
        # torchvision computes its losses in training mode only: the validation loss runs
        # in training mode with the batch norms in eval mode (their statistics untouched)
        net.train()
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        try:
            with torch.no_grad():
                return float(sum(net(images, goals).values()))
        finally:
            net.eval()

    return LoopRun(net, step_loss, optimizer, scheduler, train_loader, val_loader, record,
                   weights, state_dir)


def weights(net) -> dict:
    """The trained state: every tensor, and the class names (no pickled objects)."""
    return {"model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "classes": list(net.classes)}


def load_net(settings, state, device):
    """Rebuild the network (no download) and load the trained weights, in eval mode."""
    names = list(state["classes"])
    net = _network(settings["model"], len(names) + 1, settings["options"])
    if settings["model"] == "maskrcnn_resnet50_fpn_v2" and (
            settings["options"]["checkpoint"] is not None or settings["options"]["pretrained"]):
        _freeze_batch_norms(net)  # the trained layout: frozen batch norms hold their statistics
    net.load_state_dict(state["model_state"])
    net.classes = names
    return net.to(device).eval()


def predict_classes(net, image, settings, *, min_area=None, progress=False):
    """Cells and their classes: (labels, scores, classes {label: name}, normalisation).

    The whole image goes through the network at once (no `tile_shape`
    option; `progress` is accepted for the protocol and shows nothing).
    """
    import torch

    from ._common import normalize

    options = settings["options"]
    x, record = normalize(image, _NORMALIZATION)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            tensor = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None]
            out = net(_as_input(tensor.to(device)))[0]
    finally:
        net.train(was_training)
    min_size = options["min_size"] if min_area is None else min_area
    labels, scores, kinds = paint_instances(
        out["boxes"].cpu().numpy(), out["masks"][:, 0].cpu().numpy(),
        out["scores"].cpu().numpy(), out["labels"].cpu().numpy(), x.shape,
        mask_threshold=options["mask_threshold"], min_size=min_size)
    names = list(net.classes)
    return labels, scores, {k: names[v - 1] for k, v in kinds.items()}, record


def predict(net, image, settings, *, min_area=None, progress=False):
    """Automatic instance segmentation: (labels, scores, normalisation)."""
    labels, scores, _, record = predict_classes(net, image, settings, min_area=min_area,
                                                progress=progress)
    return labels, scores, record
