"""Training recipes of :func:`cellnb.train`, one module each.

=========  ========================================================  ====================
recipe     method                                                    trainer
=========  ========================================================  ====================
unet       torch_em U-Net, foreground + distances (baseline)         torch_em
microsam   μSAM: SAM + UNETR decoder                                 micro_sam / torch_em
samcell    SAMCell: distance-map regression + watershed              PyTorch loop
cellseg1   CellSeg1: LoRA, point prompts, grid + two-stage NMS       PyTorch loop
cellsam    CellSAM: neck fine-tuning, box prompts                    PyTorch loop
cellpose   Cellpose-SAM via ``cellpose.train.train_seg``             cellpose
maskrcnn   Mask R-CNN (Cell-APP's detector family): masks + class    PyTorch loop
=========  ========================================================  ====================

A recipe module defines ``DEFAULTS`` (epochs, batch_size, patch_shape, lr,
steps_per_epoch), ``OPTIONS`` (its own keyword options with defaults; a
``patience`` option turns on early stopping), ``USES_MODEL`` (whether it
starts from a pretrained model; ``train(model=)`` is refused otherwise),
``TILED`` (whether its trained model tiles large images, so that
``tile_shape`` / ``halo`` are segment options of it), optionally ``check(settings)`` (fails before
a run folder exists), ``build(data, settings, device, state_dir)`` returning
a run (``fit_epoch``, ``weights``, ``has_state`` / ``load_state``,
``set_epoch``, ``set_rank``, ``optimizer``; or ``whole_run`` + ``fit_all``),
``predict(net, image, settings, ...)`` returning ``(labels, scores,
normalization)``, and ``load_net(settings, state, device)``. Prompted
recipes (``PROMPTED = True``) also define ``box_prompts(labels)`` (the
validation prompts), ``prompt_model(net)`` (a :class:`cellnb.models.SamModel`
around the trained network, which keeps its embeddings) and
``segment(net, image, prompts, settings, model=...)`` (one cell per box at the
training scale; ``model`` is a kept prompt model). Recipes that predict each
cell's class (``CLASSES = True``: maskrcnn) also define
``predict_classes(net, image, settings, ...)`` returning ``(labels, scores,
classes, normalization)``; no separate TL classifier is trained for them.

The registry lives here and nowhere else; :mod:`cellnb.train` imports it.
"""

from importlib import import_module

__all__ = ["get", "RECIPES"]

#: Every recipe :func:`cellnb.train` knows, in the order the docs list them.
RECIPES = ("unet", "microsam", "samcell", "cellseg1", "cellsam", "cellpose", "maskrcnn")


def get(name: str):
    """Return the recipe module `name` (one of :data:`RECIPES`).

    Examples
    --------
    >>> get("unet").DEFAULTS["patch_shape"]
    (256, 256)
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {list(RECIPES)}.")
    return import_module(f"{__name__}.{name}")
