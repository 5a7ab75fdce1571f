"""From a name, a checkpoint or an object to a model of the protocol.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ._architectures import architecture_of
from ._automatic import MODES as AUTOMATIC_MODES
from ._protocol import Segmenter
from ._sam import AutomaticSam, SamModel
from ._watershed import Watershed
from ._zoo import CELLPOSE_NAMES, _check_safe, cache_dir, is_cached, resolve, zoo_reachable


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
            from ._cellpose import cached

            found = cached(cellpose)
            model = (load(cellpose, device=device) if found else
                     "not available: pip install 'cellnb[cellpose]'" if found is None else
                     f"not available: {cellpose!r} is not in cellpose's cache (cellnb models "
                     f"fetch {cellpose})")
        rows[name] = model
    return rows


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
        from ._cellpose import load_cellpose

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
    from ._automatic import check_mode, mode_options

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
    from .._shared.validation import check_seed

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
    from .._shared.validation import check_seed

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
