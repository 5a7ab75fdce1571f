"""Segmentation models: one protocol, the SAM / μSAM models, the watershed baseline.

The model protocol
------------------
Every segmenter in cellnb answers the same calls, so :func:`cellnb.segment`,
:func:`cellnb.annotate`, the review widget and the CLI take any of them:

===========================================  ==================================================
``name``                                     str recorded in every result
``fingerprint``                              str identifying the weights (annotate compares it)
``prompted``                                 True: one cell per prompt; False: automatic
``segment_options``                          the keyword options its ``segment`` takes
``segment(image, prompts=None, **options)``  -> :class:`cellnb.segment.Segmentation`
===========================================  ==================================================

A :class:`SamModel` also segments without prompts (``mode="ais"``, ``"apg"``
or ``"amg"``: μSAM's automatic instance segmentation, automatic prompt
generation and SAM's automatic mask generation, through micro_sam's own
classes); :func:`automatic` wraps it as an automatic model of the protocol
for :func:`cellnb.annotate` and :func:`cellnb.compare`.

Three kinds implement it:

- :class:`SamModel` (``load("vit_b_lm")``, ``load(arch, checkpoint=path)``,
  :func:`cellnb.models.random_sam`): prompted. It adds an explicit
  embedding step, :meth:`SamModel.embed`, whose result is kept in memory
  (the last few images, keyed by image hash and tiling) and optionally on
  disk (micro_sam's zarr embedding files), so segmenting an image again,
  with other prompts or one more click, decodes without re-encoding.
- :class:`Watershed` (``"watershed"``): the classical baseline, prompted by
  the nuclei; never used silently in place of SAM.
- :class:`cellnb.TrainedModel` (:func:`cellnb.train`,
  :func:`cellnb.load_trained`): automatic, or prompted by boxes (cellsam).

Loading
-------
``load("vit_b_lm")`` resolves a micro_sam model-zoo name; micro_sam downloads
the weights into its cache (``$MICROSAM_CACHEDIR`` or ``~/.cache/micro_sam``)
the first time. ``load(arch, checkpoint=path)`` loads weights from a file.
Either way the weights go through ``micro_sam.util.get_sam_model``, the same
code path real and random-init models use. :func:`resolve` is the one place
that turns a name (and checkpoint) into what micro_sam loads; the training
recipes use it too.

torch and micro_sam are imported inside the functions, so ``import cellnb``
stays light.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["random_sam", "random_checkpoint", "zoo_reachable", "Segmenter", "SamModel", "AutomaticSam", "CellposeSam", "Watershed", "ImageEmbedding",
           "as_model", "load", "automatic", "zero_shot", "decoder_models", "AUTOMATIC_MODES",
           "CELLPOSE_NAMES",
           "load_cached", "resolve", "fingerprint", "available", "is_cached", "cache_dir",
           "ModelNotAvailableError", "ARCHITECTURES"]

from . import _architectures  # noqa: E402
from ._architectures import TEST_ARCHITECTURE, architecture_of  # noqa: E402
from ._cellpose_model import CellposeSam  # noqa: E402  (zero-shot Cellpose-SAM)

#: SAM architectures :func:`load` builds: micro_sam's, then cellnb's reduced ``vit_mini``.
ARCHITECTURES = _architectures.ARCHITECTURES

#: Cellpose's model names :func:`load` gives as :class:`CellposeSam` (zero-shot Cellpose-SAM);
#: ``cpsam_mini`` is cellnb's reduced test network (random weights from a checkpoint).
CELLPOSE_NAMES = ("cpsam", "cpsam_v2", "cpsam_mini")
#: Options :meth:`SamModel.segment` takes (and, without prompts, those of its `mode`).
SAM_OPTIONS = frozenset({"embedding", "kind", "multimask", "batch_size", "tile_shape", "halo",
                         "iou_threshold", "min_area", "progress", "callback", "mode"})
#: Modes of :meth:`SamModel.segment` without prompts: μSAM's automatic instance segmentation
#: (decoder), automatic prompt generation (decoder + SAM), SAM's automatic mask generation.
AUTOMATIC_MODES = ("ais", "apg", "amg")
#: Options of :class:`AutomaticSam` (what its mode takes comes on top).
AUTOMATIC_SAM_OPTIONS = frozenset({"embedding", "tile_shape", "halo", "min_area", "progress",
                                   "callback"})
#: Options :meth:`Watershed.segment` takes.
WATERSHED_OPTIONS = frozenset({"nuclei", "iou_threshold", "min_area", "progress", "callback"})


@runtime_checkable
class Segmenter(Protocol):
    """What :func:`cellnb.segment` and :func:`cellnb.annotate` need of a model."""

    name: str
    fingerprint: str
    prompted: bool
    segment_options: frozenset

    def segment(self, image, prompts=None, **options):
        """Segment `image` (from `prompts` when the model is prompted); returns a Segmentation."""
        ...


class ModelNotAvailableError(FileNotFoundError):
    """Model weights are neither cached nor downloadable (e.g. offline)."""


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
    segment_options = SAM_OPTIONS

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
        from ._validation import check_image, check_tiling
        from .segment import normalize_for_sam

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
        from ._validation import check_image

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
        from ._sam_automatic import mode_options

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
        from .segment import segment_prompts

        if prompts is None and (mode is not None or self.decoder is not None):
            from ._sam_automatic import segment_automatic

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
    segment_options = AUTOMATIC_SAM_OPTIONS

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


def automatic(model, mode: str = "ais", **options) -> AutomaticSam:
    """A SAM model as an automatic segmenter: μSAM's AIS, APG or SAM's AMG, no prompts.

    Parameters
    ----------
    model : SamModel or str
        A loaded model, or a model-zoo name for :func:`load`.
    mode : {"ais", "apg", "amg"}, default="ais"
        "ais" and "apg" need the model's instance-segmentation decoder
        (:func:`decoder_models` lists the zoo models that ship one).
    **options
        The mode's options, micro_sam's names (``SamModel.mode_options``).

    Returns
    -------
    model : AutomaticSam

    Raises
    ------
    ValueError
        Unknown mode, or a decoder mode for a model without a decoder.
    TypeError
        An option the mode does not take.

    Examples
    --------
    >>> from cellnb.models import random_sam
    >>> ais = automatic(random_sam("vit_mini", decoder=True), "ais", foreground_threshold=0.6)
    >>> ais.name, ais.prompted
    ('random_vit_mini:ais', False)
    >>> automatic(random_sam("vit_mini"), "ais")
    Traceback (most recent call last):
    ...
    ValueError: mode='ais' needs an instance-segmentation decoder and model 'random_vit_mini' has none. ...
    """
    from ._sam_automatic import check_mode, mode_options

    sam = load(model) if isinstance(model, str) else model
    if not isinstance(sam, SamModel):
        raise TypeError(f"`model` must be a SamModel or a model-zoo name, got "
                        f"{type(model).__name__}.")
    check_mode(mode, sam)
    takes = set(mode_options(mode)) | set(mode_options(mode, tiled=True))
    unknown = sorted(set(options) - takes)
    if unknown:
        raise TypeError(f"mode {mode!r} takes no option(s) {unknown}; it takes {sorted(takes)}.")
    return AutomaticSam(sam, mode, dict(options))


def zero_shot(sam="vit_b_lm", cellpose="cpsam", *, device: str = "auto") -> dict:
    """The pretrained generalists, out of the box: the "do I need to train?" rows.

    Parameters
    ----------
    sam : str or SamModel or None, default="vit_b_lm"
        A μSAM zoo name (used when micro_sam's cache holds it; nothing is
        downloaded here: ``cellnb models fetch vit_b_lm``), or a loaded model.
    cellpose : str or CellposeSam or None, default="cpsam"
        A cellpose model name (used when cellpose's cache holds it), or a
        loaded one.
    device : str, default="auto"

    Returns
    -------
    models : dict {row name: model or str}
        ``"<sam> AIS"`` and ``"<sam> APG"`` (:func:`automatic`; SAM models
        with a decoder), ``"<sam> AMG"`` (SAM's grid of point prompts, at
        micro_sam's defaults: slow on a CPU), ``"<sam> prompted"`` (the SAM
        model itself, to be
        prompted from the nuclear fluorescence) and ``"<cellpose>"``
        (:class:`CellposeSam`). A model that cannot be had is a str saying
        why and what to do, which :func:`cellnb.compare` keeps as a row.

    Examples
    --------
    >>> rows = zero_shot("no_such_model", None)
    >>> rows["no_such_model AIS"]
    "not available: 'no_such_model' is not in micro_sam's cache (cellnb models fetch no_such_model)"
    """
    rows: dict = {}
    if sam is not None:
        name = sam if isinstance(sam, str) else sam.name
        model = sam
        if isinstance(sam, str):
            model = (load(sam, device=device) if is_cached(sam) else
                     f"not available: {sam!r} is not in micro_sam's cache (cellnb models fetch "
                     f"{sam})")
        for mode in AUTOMATIC_MODES:
            if isinstance(model, str):
                rows[f"{name} {mode.upper()}"] = model
            elif mode != "amg" and model.decoder is None:
                rows[f"{name} {mode.upper()}"] = (f"not available: {name!r} has no instance "
                                                  "decoder")
            else:
                rows[f"{name} {mode.upper()}"] = automatic(model, mode)
        rows[f"{name} prompted"] = model
    if cellpose is not None:
        name = cellpose if isinstance(cellpose, str) else cellpose.name
        model = cellpose
        if isinstance(cellpose, str):
            from .recipes.cellpose import cached

            found = cached(cellpose)
            model = (load(cellpose, device=device) if found else
                     "not available: pip install 'cellnb[cellpose]'" if found is None else
                     f"not available: {cellpose!r} is not in cellpose's cache (cellnb models "
                     f"fetch {cellpose})")
        rows[name] = model
    return rows


def decoder_models() -> list[str]:
    """Model-zoo names that ship an instance-segmentation decoder (AIS, APG).

    >>> "vit_b_lm" in decoder_models()
    True
    """
    util = _micro_sam_util()
    registry = util.models().registry
    return [name for name in _zoo_names(util) if f"{name}_decoder" in registry]


@dataclass
class Watershed:
    """The classical baseline: a seeded watershed of the TL image from the nuclei.

    Cells grow from the nuclei (its prompts) over the TL image's gradient,
    inside a foreground of textured pixels. Use it for comparison and
    offline demos; cellnb never uses it silently in place of SAM.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> from cellnb import locate, prompt
    >>> pair = synthetic_pairs(1, shape=(96, 96), n_cells=4, seed=0)[0]
    >>> nuclei = locate(pair.fluorescence)
    >>> seg = Watershed().segment(pair.tl, prompt(nuclei), nuclei=nuclei)
    >>> int(seg.labels.max()) > 0
    True
    """

    name = "watershed"
    fingerprint = "watershed"
    prompted = True
    segment_options = WATERSHED_OPTIONS

    def segment(self, image, prompts=None, *, nuclei=None, iou_threshold=0.85, min_area=None,
                progress=False, callback=None):
        """One cell per prompt, grown from its nucleus (see :func:`cellnb.segment`)."""
        from .segment import segment_watershed

        return segment_watershed(image, prompts, nuclei=nuclei, iou_threshold=iou_threshold,
                                 min_area=min_area, progress=progress, callback=callback)


def as_model(model) -> Segmenter:
    """The model behind `model`: a model of the protocol as it is, ``"watershed"`` as
    :class:`Watershed`.

    Raises
    ------
    ValueError
        Another string (load a model-zoo name with :func:`load` first).
    TypeError
        Anything else.

    Examples
    --------
    >>> as_model("watershed").name
    'watershed'
    """
    if isinstance(model, str):
        if model == "watershed":
            return Watershed()
        raise ValueError(f"`model` {model!r} is a name, not a loaded model; load it first with "
                         f"cellnb.models.load({model!r}), or pass 'watershed' for the "
                         "classical baseline.")
    if not isinstance(model, Segmenter):
        raise TypeError(f"`model` must be a model of cellnb's protocol (cellnb.models.load, "
                        f"cellnb.load_trained, 'watershed'), got {type(model).__name__}.")
    return model


def _micro_sam_util():
    """Import micro_sam.util, silencing the deprecation noise of its dependencies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import micro_sam.util as util
    return util


def cache_dir() -> Path:
    """Folder where micro_sam keeps model-zoo weights (honours ``MICROSAM_CACHEDIR``)."""
    return Path(_micro_sam_util().models().path)


def _zoo_names(util) -> list[str]:
    return [n for n in util.models().registry if not n.endswith("_decoder")]


def available() -> pd.DataFrame:
    """micro_sam model-zoo names and whether their weights are cached here.

    Returns
    -------
    models : DataFrame
        Columns ``name``, ``architecture``, ``has_decoder`` (an
        instance-segmentation decoder exists), ``cached`` (bool) and
        ``path`` (where micro_sam keeps or will keep the weights).

    Examples
    --------
    >>> table = available()
    >>> "vit_b_lm" in set(table["name"])
    True
    """
    util = _micro_sam_util()
    registry = util.models().registry
    folder = cache_dir()
    rows = []
    for name in _zoo_names(util):
        path = folder / name
        decoder = f"{name}_decoder"
        cached = path.is_file() and (decoder not in registry or (folder / decoder).is_file())
        rows.append({"name": name, "architecture": name[:5], "has_decoder": decoder in registry,
                     "cached": cached, "path": path})
    return pd.DataFrame(rows)


def load(name: str = "vit_b_lm", *, checkpoint=None, device: str = "auto") -> Segmenter:
    """Load a SAM / μSAM model (or a Cellpose-SAM one) by name or from a checkpoint file.

    Parameters
    ----------
    name : str, default="vit_b_lm"
        micro_sam model-zoo name (see :func:`available`). With `checkpoint`,
        the architecture (``"vit_t"``, ``"vit_b"``, ...) or any name you want
        recorded; the architecture is read from the weights. Cellpose's
        names (``"cpsam"``, ``"cpsam_v2"``; ``"cpsam_mini"`` with a
        checkpoint, for tests) load a zero-shot Cellpose-SAM model
        (:class:`CellposeSam`, needs ``cellnb[cellpose]``).
    checkpoint : str or Path, optional
        Weight file (SAM state dict, or micro_sam / torch_em training
        checkpoint, optionally with ``decoder_state``).
    device : str, default="auto"
        ``"auto"`` (GPU when available), ``"cpu"``, ``"cuda"``, ``"mps"``.

    Returns
    -------
    model : SamModel or CellposeSam
        A model of the protocol: :class:`SamModel` for SAM / μSAM, which
        segments from prompts or, without them, automatically;
        :class:`CellposeSam` for cellpose's models, automatic only.

    Raises
    ------
    ValueError
        Unknown model name.
    FileNotFoundError
        `checkpoint` does not exist.
    ModelNotAvailableError
        Weights neither cached nor downloadable; the message names the file
        and the folder to put it in.

    Examples
    --------
    >>> model = load("vit_b_lm")  # doctest: +SKIP
    >>> model.architecture  # doctest: +SKIP
    'vit_b'
    """
    if isinstance(name, str) and name in CELLPOSE_NAMES:
        from ._cellpose_model import load_cellpose

        return load_cellpose(name, checkpoint=checkpoint, device=device)
    model_type, checkpoint = resolve(name, checkpoint=checkpoint)
    if checkpoint is not None:
        _check_safe(checkpoint)
    from ._architectures import instance_decoder, load_predictor

    predictor, state = load_predictor(model_type, checkpoint, device)
    if checkpoint is None:
        checkpoint = Path(predictor.checkpoint_path)
    decoder = None
    if "decoder_state" in state:
        decoder = instance_decoder(predictor.model.image_encoder, architecture_of(model_type),
                                   state["decoder_state"], predictor.device)
    return SamModel(name=name, predictor=predictor, decoder=decoder,
                    weights_hash=predictor._hash, device=str(predictor.device),
                    checkpoint=Path(checkpoint))


def resolve(name: str, *, checkpoint=None, download: bool = True) -> tuple[str, str | None]:
    """What micro_sam loads for `name`: ``(model_type, checkpoint path or None)``.

    The one place a model name (and checkpoint) is checked: a zoo name must
    be in micro_sam's registry (and is downloaded unless cached, when
    `download`); with a checkpoint, `name` must start with the architecture
    and the file must exist. Used by :func:`load` and the training recipes.

    Raises
    ------
    TypeError, ValueError, FileNotFoundError, ModelNotAvailableError

    Examples
    --------
    >>> resolve("vit_b_lm", download=False)
    ('vit_b_lm', None)
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, got {type(name).__name__}.")
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist.")
        architecture = architecture_of(name)
        if architecture is None:
            raise ValueError(f"with a checkpoint, `name` must start with the "
                             f"architecture ({', '.join(ARCHITECTURES)}), got {name!r}.")
        return architecture, str(checkpoint)
    if architecture_of(name) == TEST_ARCHITECTURE:
        raise ValueError(f"{TEST_ARCHITECTURE!r} is cellnb's reduced test architecture and has "
                         "no pretrained weights: pass checkpoint=PATH "
                         "(cellnb.models.random_checkpoint writes a random-init one).")
    util = _micro_sam_util()
    names = _zoo_names(util)
    if name not in names:
        raise ValueError(f"unknown model {name!r}; micro_sam's model zoo has {names}, or pass "
                         "checkpoint=PATH (with the architecture, e.g. 'vit_b', as the name) "
                         "for your own weights.")
    if download:
        _ensure_cached(util, name)
    return name, None


def _check_safe(checkpoint) -> None:
    """Refuse a checkpoint that holds anything but tensors and plain containers.

    micro_sam reads checkpoints with a plain ``torch.load`` (no ``weights_only``), which
    runs whatever code a crafted file carries; cellnb reads the file with
    ``weights_only=True`` first (memory-mapped, nothing copied), so only
    files of weights ever reach micro_sam.
    """
    from ._torch import load_state

    try:
        load_state(checkpoint, mmap=True)
    except ValueError as err:
        raise ValueError(f"{err} A micro_sam / torch_em training checkpoint also pickles its "
                         "training set-up: export the weights first (micro_sam.util."
                         "export_custom_sam_model, or cellnb.recipes.microsam."
                         "export_checkpoint).") from err


def fingerprint(name: str, *, checkpoint=None) -> str:
    """The weights hash :func:`load` would give, without loading the model.

    micro_sam's registry hash for a zoo name, the xxh128 of the file (as
    micro_sam computes it) for a checkpoint, ``"watershed"`` for the baseline.

    Examples
    --------
    >>> fingerprint("watershed")
    'watershed'
    """
    if name == "watershed" and checkpoint is None:
        return "watershed"
    util = _micro_sam_util()
    model_type, checkpoint = resolve(name, checkpoint=checkpoint, download=False)
    if checkpoint is not None:
        return util._compute_hash(checkpoint)
    return util.models().registry[model_type]


def is_cached(name: str) -> bool:
    """Whether micro_sam's cache holds the zoo model `name` (and its decoder).

    Examples
    --------
    >>> is_cached("no_such_model")
    False
    """
    table = available()
    return bool(table.loc[table["name"] == name, "cached"].any())


def zoo_reachable(name: str = "vit_b_lm", *, timeout: float = 3.0) -> bool:
    """Whether the server of micro_sam's model zoo answers for `name` (a connection, no download).

    What :func:`load_cached` asks before it downloads: on an offline node it
    costs at most `timeout` seconds, once per process.

    Examples
    --------
    >>> zoo_reachable("no_such_model")
    False
    """
    return _zoo_reachable(name, float(timeout))


@functools.lru_cache(maxsize=None)
def _zoo_reachable(name: str, timeout: float) -> bool:
    import socket
    from urllib.parse import urlparse

    try:
        url = _micro_sam_util().models().get_url(name)
    except (ValueError, KeyError):
        return False
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or (
                443 if parsed.scheme == "https" else 80)), timeout=timeout):
            return True
    except OSError:
        return False


def load_cached(name: str = "vit_b_lm", *, fallback="watershed", device: str = "auto",
                download="auto"):
    """`name` from micro_sam's cache, downloaded when the network allows, else `fallback`.

    For notebooks, demos and CI that must run with or without the weights:
    μSAM when it is cached here or can be downloaded now (micro_sam's zoo,
    verified by its hash), else the fallback, announced with a
    :class:`UserWarning` that says how to get the real weights, and recorded
    in every result through the model's name.

    Parameters
    ----------
    name : str, default="vit_b_lm"
        micro_sam model-zoo name.
    fallback : "watershed", "random_vit_t" or a model, default="watershed"
        Used when `name` is neither cached nor downloadable: the classical
        baseline, a random-init vit_t (real architecture, meaningless
        masks, :func:`random_sam`), or any model.
    device : str, default="auto"
    download : "auto", bool, default="auto"
        ``"auto"``: download when the zoo's server answers
        (:func:`zoo_reachable`, a few seconds at most offline), unless the
        environment variable ``CELLNB_DOWNLOAD`` is ``0`` (the test suite
        sets it, so CI never depends on the network); True: try to download
        whatever; False: never download.

    Returns
    -------
    model : SamModel, Watershed or `fallback`

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model = load_cached("vit_b_lm", download=False)
    >>> model.name in ("vit_b_lm", "watershed")
    True
    """
    if download not in ("auto", True, False):
        raise ValueError(f"`download` must be 'auto', True or False, got {download!r}.")
    if is_cached(name):
        return load(name, device=device)
    if download == "auto" and os.environ.get("CELLNB_DOWNLOAD") == "0":
        download = False
    if download is False:
        why = "downloading is switched off (download=False or CELLNB_DOWNLOAD=0)"
    elif download == "auto" and not zoo_reachable(name):
        why = "micro_sam's model zoo cannot be reached from here"
    else:
        try:
            return load(name, device=device)  # downloads into micro_sam's cache, verified
        except Exception as err:  # noqa: BLE001  (any failure: the fallback, said loudly)
            why = f"the download failed ({type(err).__name__}: {err})"
    if fallback == "random_vit_t":
        model, what = random_sam("vit_t", device="cpu" if device == "auto" else device), (
            "a random-init vit_t (real architecture, meaningless masks)")
    else:
        model = as_model(fallback)
        what = ("the classical watershed baseline" if model.name == "watershed"
                else repr(model.name))
    warnings.warn(f"μSAM weights {name!r} are not in micro_sam's cache ({cache_dir()}) and "
                  f"{why}: using {what} instead. To use μSAM, run `cellnb models fetch {name}` "
                  "where there is internet access (on a cluster: the login node) and run this "
                  "again.", UserWarning, stacklevel=2)
    return model


def _ensure_cached(util, name: str) -> None:
    """Download `name` (and its decoder) unless cached; explain what to do when offline."""
    registry = util.models()
    needed = [name] + ([f"{name}_decoder"] if f"{name}_decoder" in registry.registry else [])
    folder = Path(registry.path)
    for item in needed:
        if (folder / item).is_file():
            continue
        try:
            registry.fetch(item, progressbar=True)
        except Exception as err:  # network errors come in many types (requests, urllib, ssl)
            raise ModelNotAvailableError(
                f"model weights {item!r} are not cached and could not be downloaded "
                f"({type(err).__name__}: {err}). Download {registry.urls[item]} on a machine "
                f"with internet access and save it as {folder / item} (set MICROSAM_CACHEDIR "
                f"to use another cache folder), or pass checkpoint=PATH."
            ) from err


def random_sam(kind: str = "vit_t", *, seed: int = 0, decoder: bool = False,
               device: str = "cpu") -> SamModel:
    """Build a SAM model of architecture `kind` with random weights: the stand-in for weights.

    No pretrained weights are needed: the genuine network (same layers, same
    compute) is written to a checkpoint and loaded back through :func:`load`,
    the code path real weights take. Its masks are meaningless; its shapes,
    dtypes, memory and run time are the real ones (what tests, benchmarks and
    :func:`load_cached`'s ``fallback="random_vit_t"`` use).

    Parameters
    ----------
    kind : {"vit_t", "vit_b", "vit_l", "vit_h", "vit_mini"}, default="vit_t"
        Encoder architecture (vit_t is MobileSAM's TinyViT, as in micro_sam;
        vit_mini is cellnb's reduced SAM with a 256 px input, for CPU tests).
    seed : int, default=0
        Seed of the initialisation; the global torch RNG is left untouched.
    decoder : bool, default=False
        Also build micro_sam's instance-segmentation (UNETR) decoder at
        random init and store it in the checkpoint as ``decoder_state``.
    device : str, default="cpu"
        Torch device.

    Returns
    -------
    model : SamModel
        Named ``"random_<kind>"``; ``weights_hash`` identifies the weights.

    Examples
    --------
    >>> model = random_sam("vit_t", seed=0)  # doctest: +SKIP
    >>> model.architecture  # doctest: +SKIP
    'vit_t'
    """
    import tempfile

    import torch

    from ._architectures import ARCHITECTURES
    from ._validation import check_seed

    if kind not in ARCHITECTURES:
        raise ValueError(f"`kind` must be one of {list(ARCHITECTURES)}, got {kind!r}.")
    check_seed(seed)

    # micro_sam builds the network again before loading the weights, which draws from
    # torch's global RNG: fork it around the whole construction so callers are unaffected.
    with torch.random.fork_rng(devices=[]), \
            tempfile.TemporaryDirectory(prefix="cellnb-random-sam-") as tmp:
        checkpoint = random_checkpoint(kind, Path(tmp) / f"random_{kind}_seed{seed}.pt",
                                       seed=seed, decoder=decoder)
        model = load(kind, checkpoint=checkpoint, device=device)
    model.name = f"random_{kind}"
    model.checkpoint = None  # the temporary file is gone; the hash identifies the weights
    return model


def random_checkpoint(kind: str, path, *, seed: int = 0, decoder: bool = False) -> Path:
    """Write a random-init SAM of architecture `kind` as a micro_sam checkpoint file.

    The file has micro_sam's layout (``model_state``, plus ``decoder_state``
    when `decoder`), so anything that takes a checkpoint (``models.load``,
    ``train(..., recipe="microsam", model=kind, checkpoint=path)``) takes it.
    Cellpose's networks (``"cpsam"``, the reduced ``"cpsam_mini"``) are
    written as cellpose saves them (the state dict), for
    ``train(..., recipe="cellpose", model=kind, checkpoint=path)``.

    Parameters
    ----------
    kind : {"vit_t", "vit_b", "vit_l", "vit_h", "vit_mini", "cpsam", "cpsam_mini"}
    path : str or Path
        File to write.
    seed : int, default=0
        Seed of the initialisation; the global torch RNG is left untouched.
    decoder : bool, default=False
        Include micro_sam's instance-segmentation (UNETR) decoder.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile
    >>> path = random_checkpoint("vit_t", tempfile.mkdtemp() + "/vit_t.pt")  # doctest: +SKIP
    """
    from ._architectures import (ARCHITECTURES, CELLPOSE_ARCHITECTURES, build_cellpose_net,
                                 build_sam, build_unetr)
    from ._validation import check_seed

    if kind not in ARCHITECTURES + CELLPOSE_ARCHITECTURES:
        raise ValueError(f"`kind` must be one of {list(ARCHITECTURES + CELLPOSE_ARCHITECTURES)}, "
                         f"got {kind!r}.")
    check_seed(seed)
    import torch

    if kind in CELLPOSE_ARCHITECTURES:  # cellpose's layout: the network's state dict
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            state = build_cellpose_net(kind).state_dict()
        path = Path(path)
        torch.save(state, path)
        return path

    # Building the network draws from torch's global RNG: fork it so callers are unaffected.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam(kind)
        state = {"model_state": sam.state_dict()}
        if decoder:
            unetr = build_unetr(sam.image_encoder, kind, device="cpu")
            state["decoder_state"] = {k: v for k, v in unetr.state_dict().items()
                                      if not k.startswith("encoder")}
    path = Path(path)
    torch.save(state, path)
    return path
