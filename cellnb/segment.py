"""Segment whole cells in the transmitted-light image: the verb.

:func:`segment` is the verb every model goes through (the model protocol of
:mod:`cellnb.models`): it checks the image, resolves the model and refuses
options the model does not take, then calls ``model.segment``. A
:class:`Segmentation` (label image + one row per cell or prompt) comes back
whatever the model.

The SAM path (:meth:`cellnb.models.SamModel.segment`, :func:`segment_prompts`;
the code lives in ``cellnb.models._sam``, this module re-exports it):

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

from ._shared.normalize import normalize_for_sam
from ._shared.validation import check_image, check_tiling
from .models import _result
from .models._result import Segmentation, check_prompts, resolve_overlaps
from .models._sam import segment_click, segment_prompts
from .models._watershed import segment_watershed

__all__ = ["segment", "segment_prompts", "segment_watershed", "resolve_overlaps",
           "Segmentation", "normalize_for_sam", "check_prompts", "segment_click", "STATUSES",
           "TABLE_COLUMNS"]

#: Status of each prompt in ``Segmentation.table``.
STATUSES = _result.STATUSES
#: Columns of ``Segmentation.table``, one row per prompt (automatic models: per cell).
TABLE_COLUMNS = _result.TABLE_COLUMNS

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
    from ._shared.progress import check_callback
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
