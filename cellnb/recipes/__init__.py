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

A recipe module follows one protocol (:data:`REQUIRED`, checked by :func:`get`).
It defines ``DEFAULTS`` (epochs, batch_size, patch_shape, lr,
steps_per_epoch), ``OPTIONS`` (its own keyword options with defaults; a
``patience`` option turns on early stopping), ``USES_MODEL`` (whether it
starts from a pretrained model; ``train(model=)`` is refused otherwise) and
``DEFAULT_MODEL`` (that model's default name, None when it uses none),
``PROMPTED`` and ``CLASSES`` (both below), optionally ``check(settings)`` (fails before
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

A trained model segments with one function of its recipe, :func:`inference`
(``segment``, ``predict_classes`` or ``predict``), and the options it takes
are that function's keyword-only parameters (:func:`segment_options`): a
recipe that tiles large images takes ``tile_shape`` / ``halo`` there, one
that does not has no such parameter, and passing it is an error.

The registry lives here and nowhere else; :mod:`cellnb.train` imports it.
"""

from importlib import import_module

__all__ = ["get", "RECIPES", "check_recipe", "REQUIRED", "inference", "segment_options"]

#: Every recipe :func:`cellnb.train` knows, in the order the docs list them.
RECIPES = ("unet", "microsam", "samcell", "cellseg1", "cellsam", "cellpose", "maskrcnn")


#: The recipe protocol: what every recipe module defines, and what ``PROMPTED`` and
#: ``CLASSES`` recipes define on top. :func:`get` checks it, so train.py and
#: :class:`cellnb.TrainedModel` read these names without per-recipe branches or defaults.
REQUIRED = {
    "every": ("DEFAULTS", "OPTIONS", "USES_MODEL", "DEFAULT_MODEL", "PROMPTED", "CLASSES",
              "build", "load_net", "predict"),
    "PROMPTED": ("box_prompts", "prompt_model", "segment"),
    "CLASSES": ("predict_classes",),
}


def check_recipe(module) -> None:
    """Raise a TypeError naming what `module` lacks of the recipe protocol (:data:`REQUIRED`).

    Examples
    --------
    >>> import types
    >>> check_recipe(types.SimpleNamespace(__name__="mine", DEFAULTS={}))
    Traceback (most recent call last):
    ...
    TypeError: recipe mine does not follow the recipe protocol: it lacks ['OPTIONS', ...
    """
    needed = list(REQUIRED["every"])
    for flag in ("PROMPTED", "CLASSES"):
        if getattr(module, flag, False):
            needed += REQUIRED[flag]
    missing = [n for n in needed if not hasattr(module, n)]
    if missing:
        raise TypeError(f"recipe {module.__name__} does not follow the recipe protocol: it lacks "
                        f"{missing} (see cellnb.recipes).")
    if module.USES_MODEL != (module.DEFAULT_MODEL is not None):
        raise TypeError(f"recipe {module.__name__}: DEFAULT_MODEL must be a model name exactly "
                        "when USES_MODEL is True.")


def get(name: str):
    """Return the recipe module `name` (one of :data:`RECIPES`), checked against the protocol.

    Examples
    --------
    >>> get("unet").DEFAULTS["patch_shape"]
    (256, 256)
    >>> get("cellsam").PROMPTED, get("maskrcnn").CLASSES
    (True, True)
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {list(RECIPES)}.")
    module = import_module(f"{__name__}.{name}")
    check_recipe(module)
    return module


def inference(module):
    """The function a trained model of recipe `module` segments an image with.

    ``segment`` for prompted recipes, ``predict_classes`` for recipes that
    predict classes, else ``predict``.

    Examples
    --------
    >>> inference(get("unet")).__name__, inference(get("cellsam")).__name__
    ('predict', 'segment')
    """
    if module.PROMPTED:
        return module.segment
    return module.predict_classes if module.CLASSES else module.predict


def segment_options(module) -> frozenset:
    """Keyword options a trained model of recipe `module` takes, read off :func:`inference`.

    Its keyword-only parameters, less ``model`` (the kept prompt model, not
    a user option), plus ``callback`` (every model's progress hook).

    Examples
    --------
    >>> sorted(segment_options(get("unet")))
    ['callback', 'halo', 'min_area', 'progress', 'tile_shape']
    >>> sorted(segment_options(get("samcell")))
    ['callback', 'min_area', 'progress']
    """
    from ..models._protocol import keyword_options

    return (keyword_options(inference(module)) - {"model"}) | {"callback"}
