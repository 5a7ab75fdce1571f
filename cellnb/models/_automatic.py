"""μSAM without prompts: automatic instance segmentation through micro_sam's own code (private).

Three modes, each micro_sam's class chosen by
``micro_sam.instance_segmentation.get_instance_segmentation_generator``:

- ``"ais"``: the instance-segmentation decoder's foreground and distance maps,
  then a seeded watershed (models with a decoder: the ``*_lm`` / ``*_em_organelles``
  zoo models, or a checkpoint with ``decoder_state``);
- ``"apg"``: prompts derived from the decoder's output, decoded by SAM;
- ``"amg"``: SAM's grid of point prompts (any model; slow).

The embedding is cellnb's (:meth:`cellnb.models.SamModel.embed`): computed once,
kept, and shared with prompted calls on the same image; tiled images use
micro_sam's tiled classes. The options each mode takes are read off its micro_sam
class (``__init__`` and ``generate``), so an option micro_sam does not take is
an error here too.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

#: Modes of automatic segmentation, in micro_sam's names.
MODES = ("ais", "apg", "amg")
#: Modes that need the instance-segmentation decoder.
DECODER_MODES = ("ais", "apg")
# what cellnb sets itself (tiling, output form, progress), never a user option
_SET_HERE = {"self", "predictor", "decoder", "point_grids", "output_mode", "tile_shape", "halo",
             "optimize_memory", "segmentation", "prompt_function",
             "with_background", "image", "image_embeddings", "i", "verbose", "pbar_init",
             "pbar_update", "mask", "ndim"}


def _generator_class(mode: str, tiled: bool):
    from ._architectures import _micro_sam_util

    _micro_sam_util()  # micro_sam's first import, with its dependencies' noise silenced
    from micro_sam import instance_segmentation as ms

    return {("amg", False): ms.AutomaticMaskGenerator,
            ("amg", True): ms.TiledAutomaticMaskGenerator,
            ("ais", False): ms.InstanceSegmentationWithDecoder,
            ("ais", True): ms.TiledInstanceSegmentationWithDecoder,
            ("apg", False): ms.AutomaticPromptGenerator,
            ("apg", True): ms.TiledAutomaticPromptGenerator}[mode, tiled]


def mode_options(mode: str, *, tiled: bool = False) -> dict:
    """{option: default} that `mode` takes, from its micro_sam class.

    >>> sorted(mode_options("ais"))[:3]
    ['boundary_distance_threshold', 'center_distance_threshold', 'distance_smoothing']
    """
    check_mode(mode)
    cls = _generator_class(mode, tiled)
    options = {}
    for method, part in ((cls.__init__, "init"), (cls.generate, "generate")):
        for name, parameter in inspect.signature(method).parameters.items():
            if name not in _SET_HERE and parameter.kind is parameter.POSITIONAL_OR_KEYWORD:
                options[name] = parameter.default
    return options


def check_mode(mode, model=None) -> str:
    """`mode` checked, and that `model` (a SamModel) has the decoder the mode needs."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)} (micro_sam's automatic instance "
                         f"segmentation, automatic prompt generation, automatic mask "
                         f"generation), got {mode!r}.")
    if model is not None and mode in DECODER_MODES and model.decoder is None:
        from ._zoo import decoder_models

        raise ValueError(
            f"mode={mode!r} needs an instance-segmentation decoder and model {model.name!r} has "
            f"none. Models with one: {', '.join(decoder_models())} (or a checkpoint holding "
            "'decoder_state'); use mode='amg' for SAM's grid of point prompts, or pass prompts.")
    return mode


def _split(cls, options: dict) -> tuple[dict, dict]:
    init = set(inspect.signature(cls.__init__).parameters)
    return ({k: v for k, v in options.items() if k in init},
            {k: v for k, v in options.items() if k not in init})


def segment_automatic(model, image, *, mode: str = "ais", embedding=None, tile_shape=None,
                      halo=None, min_area=None, progress: bool = False, callback=None,
                      **options):
    """Cells of `image` found by `model` (a :class:`cellnb.models.SamModel`) without prompts.

    Returns a :class:`cellnb.segment.Segmentation` whose labels are micro_sam's
    result renumbered 1..N in its order (its ids can have gaps), all "kept";
    ``min_area`` drops smaller cells afterwards. Scores are NaN: AIS has none
    per cell, and micro_sam's instance output drops those of APG and AMG.
    """
    from micro_sam.instance_segmentation import get_instance_segmentation_generator
    from skimage.segmentation import relabel_sequential

    from .._shared.normalize import normalize_for_sam
    from ._result import Segmentation, _check_common

    check_mode(mode, model)
    _check_common(0.5, min_area)
    if embedding is None:
        embedding = model.embed(image, tile_shape=tile_shape, halo=halo, progress=progress)
    elif embedding.model != model.fingerprint or tuple(embedding.shape) != image.shape[:2]:
        raise ValueError("`embedding` was computed for another image or model; pass "
                         "model.embed(image) of this image.")
    tiled = embedding.tile_shape is not None
    takes = mode_options(mode, tiled=tiled)
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise TypeError(f"mode {mode!r} takes no option(s) {unknown}; it takes {sorted(takes)} "
                        "(micro_sam's own names and defaults).")
    cls = _generator_class(mode, tiled)
    init_options, generate_options = _split(cls, options)
    rgb = image if tiled else normalize_for_sam(image)[0]  # what the embedding was made of
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = get_instance_segmentation_generator(
            model.predictor, tiled, decoder=model.decoder, segmentation_mode=mode, **init_options)
        initialize = {"image": rgb, "image_embeddings": embedding.data, "verbose": progress}
        if tiled and mode in DECODER_MODES:  # as micro_sam's automatic_instance_segmentation
            initialize["batch_size"] = 1
            if mode == "ais":
                generate_options = {**generate_options, "tile_shape": embedding.tile_shape,
                                    "halo": embedding.halo}
        generator.initialize(**initialize)
        found = np.asarray(generator.generate(**generate_options))
    labels = relabel_sequential(found.astype(np.int64))[0].astype(np.int32)
    if min_area:
        areas = np.bincount(labels.ravel())
        labels[areas[labels] < min_area] = 0
        labels = relabel_sequential(labels)[0].astype(np.int32)
    result = Segmentation.from_labels(
        labels, {int(k): float("nan") for k in range(1, int(labels.max()) + 1)},
        normalization=embedding.normalization,
        model=f"{model.name}:{mode}")
    if callback is not None:
        callback(1, 1)
    return result
