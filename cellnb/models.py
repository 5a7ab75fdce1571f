"""Load SAM / μSAM models: micro_sam's model zoo (cached by micro_sam) or a checkpoint.

``load("vit_b_lm")`` resolves a micro_sam model-zoo name; micro_sam downloads
the weights into its cache (``$MICROSAM_CACHEDIR`` or ``~/.cache/micro_sam``)
the first time. ``load(checkpoint=path)`` loads weights from a file. Either
way the weights go through ``micro_sam.util.get_sam_model``, the same code
path real and random-init (:func:`cellnb.testing.random_sam`) models use.

torch and micro_sam are imported inside the functions, so ``import cellnb``
stays light.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["SamModel", "load", "available", "cache_dir", "ModelNotAvailableError"]


class ModelNotAvailableError(FileNotFoundError):
    """Model weights are neither cached nor downloadable (e.g. offline)."""


@dataclass
class SamModel:
    """A loaded SAM model, ready for :func:`cellnb.segment`.

    Attributes
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
    """

    name: str
    predictor: Any
    decoder: Any
    weights_hash: str
    device: str
    checkpoint: Path | None = None

    def __post_init__(self):
        # micro_sam reads these off a predictor (its get_sam_model sets them; tiled embeddings
        # are signed with them): a predictor built another way gets them from here
        for attribute, value in (("model_type", "unknown"), ("model_name", self.name),
                                 ("_hash", self.weights_hash)):
            if not hasattr(self.predictor, attribute):
                setattr(self.predictor, attribute, value)

    @property
    def architecture(self) -> str:
        """Encoder architecture: ``"vit_t"``, ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``."""
        return self.predictor.model_type

    def __repr__(self) -> str:
        decoder = "with" if self.decoder is not None else "without"
        return (f"SamModel(name={self.name!r}, architecture={self.architecture!r}, "
                f"device={self.device!r}, {decoder} instance decoder, "
                f"weights_hash={self.weights_hash!r})")


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


def load(name: str = "vit_b_lm", *, checkpoint=None, device: str = "auto") -> SamModel:
    """Load a SAM / μSAM model by model-zoo name or from a checkpoint file.

    Parameters
    ----------
    name : str, default="vit_b_lm"
        micro_sam model-zoo name (see :func:`available`). With `checkpoint`,
        the architecture (``"vit_t"``, ``"vit_b"``, ...) or any name you want
        recorded; the architecture is read from the weights.
    checkpoint : str or Path, optional
        Weight file (SAM state dict, or micro_sam / torch_em training
        checkpoint, optionally with ``decoder_state``).
    device : str, default="auto"
        ``"auto"`` (GPU when available), ``"cpu"``, ``"cuda"``, ``"mps"``.

    Returns
    -------
    model : SamModel

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
    util = _micro_sam_util()
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, got {type(name).__name__}.")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist.")
        if name[:5] not in ("vit_t", "vit_b", "vit_l", "vit_h"):
            raise ValueError(f"with a checkpoint, `name` must start with the architecture "
                             f"(vit_t, vit_b, vit_l, vit_h), got {name!r}.")
        predictor, state = _get_sam_model(util, name[:5], checkpoint, device)
    else:
        names = _zoo_names(util)
        if name not in names:
            raise ValueError(f"unknown model {name!r}; micro_sam's model zoo has {names}, or "
                             "pass checkpoint=PATH for your own weights.")
        _ensure_cached(util, name)
        predictor, state = _get_sam_model(util, name, None, device)
        checkpoint = Path(predictor.checkpoint_path)
    decoder = None
    if "decoder_state" in state:
        from micro_sam.instance_segmentation import get_decoder

        decoder = get_decoder(predictor.model.image_encoder, state["decoder_state"],
                              device=predictor.device)
    return SamModel(name=name, predictor=predictor, decoder=decoder,
                    weights_hash=predictor._hash, device=str(predictor.device),
                    checkpoint=checkpoint)


def _get_sam_model(util, model_type, checkpoint, device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.load notices inside micro_sam
        return util.get_sam_model(model_type=model_type, checkpoint_path=checkpoint,
                                  device=device, return_state=True)


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
