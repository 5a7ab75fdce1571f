"""Model names and weights: micro_sam's model zoo and cache, checkpoints, fingerprints.

:func:`resolve` is the one place that turns a name (and checkpoint) into what
micro_sam loads; the training recipes use it too. Nothing here builds a network.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from ._architectures import ARCHITECTURES, TEST_ARCHITECTURE, _micro_sam_util, architecture_of


class ModelNotAvailableError(FileNotFoundError):
    """Model weights are neither cached nor downloadable (e.g. offline)."""


#: Cellpose's model names :func:`load` gives as :class:`CellposeSam` (zero-shot Cellpose-SAM);
#: ``cpsam_mini`` is cellnb's reduced test network (random weights from a checkpoint).
CELLPOSE_NAMES = ("cpsam", "cpsam_v2", "cpsam_mini")


def decoder_models() -> list[str]:
    """Model-zoo names that ship an instance-segmentation decoder (AIS, APG).

    >>> "vit_b_lm" in decoder_models()
    True
    """
    util = _micro_sam_util()
    registry = util.models().registry
    return [name for name in _zoo_names(util) if f"{name}_decoder" in registry]


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
    from .._shared.torchutil import load_state

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
