"""Learned nucleus detectors behind ``locate``: StarDist and Cellpose.

For fluorescence that classical rules cannot handle (cytoplasmic markers,
very crowded tissue), ``locate(image, method="stardist" | "cellpose")`` runs
a pretrained network from that package and returns the same nuclei label
image as every other method.

- ``"stardist"``: StarDist's ``2D_versatile_fluo`` (nuclei in fluorescence),
  needs ``pip install 'cellnb[stardist]'`` (stardist + TensorFlow). The input
  is scaled to its 1st-99.8th percentiles (StarDist's own ``normalize``) for
  the network only; the returned labels are on the image's pixel grid.
- ``"cellpose"``: Cellpose-SAM (``cpsam``, cellpose 4's only model, which
  segments nuclei as well as cells), needs ``pip install 'cellnb[cellpose]'``.

Weights come from each package's cache (StarDist: Keras's
``~/.keras/models/StarDist2D/<name>/``; cellpose: ``~/.cellpose/models`` or
``$CELLPOSE_LOCAL_MODELS_PATH``); where they are missing and cannot be
downloaded, the error says which file to put where. ``model=`` also takes a
model folder / file, or a loaded ``StarDist2D`` / ``CellposeModel`` (for
example one at random initialisation, as the tests use), used as given.

StarDist runs on TensorFlow. Imported *before* PyTorch in one process,
TensorFlow makes torchvision's import crash (a segmentation fault, seen with
TensorFlow 2.21 and torch 2.x); cellnb imports torchvision first. If you
import tensorflow yourself, import torch (or cellnb's SAM models) before it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

#: Learned methods of :func:`cellnb.locate` and the pretrained model each uses by default.
LEARNED = {"stardist": "2D_versatile_fluo", "cellpose": "cpsam"}


def learned_available(method: str) -> bool:
    """Whether ``locate(image, method=method)`` can run here without downloading anything.

    True when the package is installed and its default pretrained model
    (``2D_versatile_fluo`` / ``cpsam``) is in that package's cache. Nothing
    is imported beyond the package check, and nothing is downloaded.

    Parameters
    ----------
    method : {"stardist", "cellpose"}

    Returns
    -------
    bool

    Examples
    --------
    >>> learned_available("stardist") in (True, False)
    True
    """
    from importlib.util import find_spec

    if method not in LEARNED:
        raise ValueError(f"`method` must be one of {list(LEARNED)}, got {method!r}.")
    if find_spec(method) is None:
        return False
    name = LEARNED[method]
    if method == "stardist":
        folder = _keras_home() / "models" / "StarDist2D" / name
        return folder.is_dir() and any(folder.iterdir())
    import os

    cache = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH", Path.home() / ".cellpose" / "models")
    return (Path(cache) / name).is_file()


def learned_nuclei(image: np.ndarray, method: str, model=None) -> np.ndarray:
    """Nuclei label image from a learned detector (int32, 0 = background).

    A name or path is loaded once per process (again when the file
    changes); a loaded network is used as given.
    """
    from skimage.segmentation import relabel_sequential

    if model is None or isinstance(model, (str, Path)):
        key = str(model if model is not None else LEARNED[method])
        net = _load_once(method, key, _stamp(key))
    else:
        net = load_stardist(model) if method == "stardist" else load_cellpose(model)
    labels = _stardist(image, net) if method == "stardist" else _cellpose(image, net)
    return relabel_sequential(np.asarray(labels).astype(np.int32))[0]


def _stamp(key: str):
    """What identifies the file (or folder) behind `key`: its modification time and size."""
    path = Path(key)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)


@functools.lru_cache(maxsize=4)
def _load_once(method, key, stamp):
    return load_stardist(key) if method == "stardist" else load_cellpose(key)


# ---------------------------------------------------------------------------
# StarDist
# ---------------------------------------------------------------------------
def _import_stardist():
    # PyTorch (torchvision) imported after TensorFlow in one process crashes the
    # interpreter (a segmentation fault in torchvision's import, seen with TF 2.21 and
    # torch 2.x); imported first, both work. cellnb needs torch anyway (SAM), so load it
    # before StarDist brings TensorFlow in.
    import torchvision  # noqa: F401

    try:
        from stardist.models import StarDist2D
    except ImportError as err:
        raise ImportError("locate(method='stardist') needs stardist and TensorFlow: pip "
                          "install 'cellnb[stardist]' (or pip install stardist "
                          "tensorflow).") from err
    return StarDist2D


def load_stardist(model=None):
    """A ``StarDist2D``: a registered pretrained name, a model folder, or the object itself.

    Parameters
    ----------
    model : str, path or StarDist2D, optional
        Default ``"2D_versatile_fluo"``. A folder holds StarDist's
        ``config.json`` and ``weights_best.h5`` (Keras weights; nothing in
        them runs code).

    Returns
    -------
    StarDist2D

    Examples
    --------
    >>> net = load_stardist()  # doctest: +SKIP
    """
    StarDist2D = _import_stardist()
    if isinstance(model, StarDist2D):
        return model
    if model is None:
        model = LEARNED["stardist"]
    if not isinstance(model, (str, Path)):
        raise TypeError(f"`model` for method='stardist' must be a StarDist2D, a pretrained "
                        f"name or a model folder, got {type(model).__name__}.")
    folder = Path(model)
    if folder.is_dir():
        weights = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.hdf5"))
        if not (folder / "config.json").is_file() or not weights:
            raise FileNotFoundError(f"{folder} is not a StarDist model folder: it needs "
                                    f"config.json and weights (*.h5), it holds "
                                    f"{sorted(p.name for p in folder.iterdir())}.")
        with _quiet_stdout():
            return StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    from csbdeep.models.pretrained import get_model_details, get_registered_models

    names = get_registered_models(StarDist2D)[0]
    if str(model) not in names:
        raise ValueError(f"unknown StarDist model {str(model)!r}; StarDist has {list(names)}, "
                         "or pass a model folder.")
    try:
        with _quiet_stdout():
            return StarDist2D.from_pretrained(str(model))
    except Exception as err:  # keras' get_file raises urllib / http / ssl errors
        url = get_model_details(StarDist2D, str(model))[2]["url"]
        target = _keras_home() / "models" / "StarDist2D" / str(model)
        raise FileNotFoundError(
            f"StarDist model {str(model)!r} is not cached and could not be downloaded "
            f"({type(err).__name__}: {err}). Download {url} on a machine with internet "
            f"access, unzip it and pass its folder as model=..., or put the zip in {target} "
            "(KERAS_HOME moves ~/.keras).") from err


def _quiet_stdout():
    """StarDist prints what it loads and which thresholds it uses; cellnb prints nothing."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def _keras_home() -> Path:
    import os

    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def _stardist(image, net):
    from csbdeep.utils import normalize

    scaled = normalize(np.asarray(image, np.float32), 1, 99.8, axis=(0, 1))
    with _quiet_stdout():
        labels, _ = net.predict_instances(scaled, show_tile_progress=False, verbose=False)
    return labels


# ---------------------------------------------------------------------------
# Cellpose
# ---------------------------------------------------------------------------
def load_cellpose(model=None, *, device="cpu"):
    """A ``CellposeModel``: a cellpose model name, a model file, or the object itself.

    Parameters
    ----------
    model : str, path or CellposeModel, optional
        Default ``"cpsam"`` from cellpose's cache. A file is checked to hold
        only weights before cellpose reads it (cellpose uses a plain
        ``torch.load``).
    device : str, default="cpu"
        Torch device of the network.

    Returns
    -------
    CellposeModel

    Examples
    --------
    >>> net = load_cellpose()  # doctest: +SKIP
    """
    from ..models._cellpose import import_cellpose, quiet
    from ..recipes.cellpose import _base

    models, _, _ = import_cellpose()
    if isinstance(model, models.CellposeModel):
        return model
    if model is None:
        model = LEARNED["cellpose"]
    if not isinstance(model, (str, Path)):
        raise TypeError(f"`model` for method='cellpose' must be a CellposeModel, a cellpose "
                        f"model name or a model file, got {type(model).__name__}.")
    is_file = Path(model).is_file()
    path = _base({"model": None if is_file else str(model),
                  "options": {"checkpoint": str(model) if is_file else None}})
    import torch

    with quiet():
        return models.CellposeModel(pretrained_model=path, device=torch.device(device),
                                    use_bfloat16=False)


def _cellpose(image, net):
    from ..models._cellpose import quiet

    with quiet():
        masks = net.eval(np.asarray(image, np.float32), channel_axis=None)[0]
    return masks
