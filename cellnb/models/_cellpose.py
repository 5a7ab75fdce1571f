"""Cellpose-SAM out of the box: a cellpose model as an automatic model of the protocol (private).

``cellnb.models.load("cpsam")`` gives :class:`CellposeSam`: cellpose's own
``CellposeModel.eval`` (its normalisation, 256 px tiling, flows and dynamics)
on the pretrained Cellpose-SAM weights, or on any cellpose 4 checkpoint, with no
training. Its options are cellpose's (``diameter``, ``flow_threshold``,
``cellprob_threshold``, ``min_size`` as cellnb's ``min_area``) at cellpose's
defaults; anything else is an error.
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import warnings

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._protocol import keyword_options


@dataclass
class CellposeSam:
    """A cellpose model that segments without prompts (zero-shot Cellpose-SAM).

    Attributes
    ----------
    name : str
        ``"cpsam"``, or the name given with a checkpoint.
    net : cellpose ``CellposeModel``
    weights_hash : str
        ``sha256:`` of the weight file.
    device : str
    checkpoint : Path
        The weight file.

    Examples
    --------
    >>> model = cellnb.models.load("cpsam")  # doctest: +SKIP
    >>> cells = cellnb.segment(tl, model=model, diameter=30)  # doctest: +SKIP
    """

    name: str
    net: Any = field(repr=False)
    weights_hash: str
    device: str
    checkpoint: Path

    prompted = False

    @property
    def fingerprint(self) -> str:
        """The weights' hash: two models with the same fingerprint segment alike."""
        return self.weights_hash

    def segment(self, image, prompts=None, *, diameter=None, flow_threshold=0.4,
                cellprob_threshold=0.0, min_area=15, progress=False, callback=None):
        """All cells of a TL image by ``CellposeModel.eval`` (see :func:`cellnb.segment`).

        Parameters are cellpose's, at its defaults: `diameter` (None: the
        network's own scale, 30 px for Cellpose-SAM), `flow_threshold`,
        `cellprob_threshold`, `min_area` (cellpose's ``min_size``).
        Every cell scores NaN: cellpose gives no per-cell score.
        """
        from skimage.segmentation import relabel_sequential

        from .._shared.validation import check_image
        from ._result import Segmentation, _check_common

        if prompts is not None:
            raise ValueError(f"model {self.name!r} (cellpose) segments without prompts; pass "
                             "prompts=None.")
        image = check_image(image, "image", rgb=True)
        _check_common(0.5, min_area)
        for name, value in (("flow_threshold", flow_threshold),
                            ("cellprob_threshold", cellprob_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not np.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
        if diameter is not None and not (isinstance(diameter, (int, float)) and
                                         not isinstance(diameter, bool) and diameter > 0):
            raise ValueError(f"`diameter` must be a number > 0 or None, got {diameter!r}.")
        with quiet():
            masks = self.net.eval(np.asarray(image, np.float32), diameter=diameter,
                                  flow_threshold=flow_threshold,
                                  cellprob_threshold=cellprob_threshold,
                                  min_size=15 if min_area is None else min_area)[0]
        labels = relabel_sequential(np.asarray(masks).astype(np.int64))[0].astype(np.int32)
        result = Segmentation.from_labels(
            labels, {k: float("nan") for k in range(1, int(labels.max()) + 1)},
            normalization={"method": "cellpose (1st-99th percentile per image)"},
            model=self.name)
        if callback is not None:
            callback(1, 1)
        return result

    #: read off the signature above, so it cannot drift from what segment takes
    segment_options = keyword_options(segment)


#: Options :meth:`CellposeSam.segment` takes.
CELLPOSE_OPTIONS = CellposeSam.segment_options


def load_cellpose(name: str, *, checkpoint=None, device: str = "auto") -> CellposeSam:
    """:class:`CellposeSam` of cellpose's model `name` or a cellpose 4 `checkpoint`."""
    from ._architectures import cellpose_model
    from .._shared.files import sha256
    from .._shared.torchutil import resolve_device

    path = Path(weights_path(name, checkpoint))
    device = resolve_device(device)
    architecture = "cpsam_mini" if name == "cpsam_mini" else "cpsam"
    with quiet():
        net = cellpose_model(architecture, path, device)
    return CellposeSam(name=name, net=net, weights_hash=f"sha256:{sha256(path)}",
                       device=str(device), checkpoint=path)


def import_cellpose():
    try:
        from cellpose import io as cp_io
        from cellpose import models, train
    except ImportError as err:
        raise ImportError("the 'cellpose' recipe needs cellpose >= 4: pip install "
                          "'cellnb[cellpose]' (or pip install cellpose).") from err
    return models, train, cp_io


def cached(name: str = "cpsam") -> bool | None:
    """Whether cellpose's cache holds the model `name`; None when cellpose is not installed.

    Examples
    --------
    >>> cached("no_such_model") in (False, None)
    True
    """
    try:
        from cellpose import models
    except ImportError:
        return None
    return (models.MODEL_DIR / name).is_file()


def weights_path(name: str, checkpoint=None) -> str:
    """The cellpose model file of `name` (cellpose's cache, downloaded by cellpose when
    missing) or `checkpoint`, checked to hold tensors only; errors say where to put it."""
    models, _, _ = import_cellpose()
    if checkpoint is None and name == "cpsam_mini":
        raise ValueError("'cpsam_mini' is cellnb's reduced test network and has no pretrained "
                         "weights: pass checkpoint=PATH (cellnb.models.random_checkpoint("
                         "'cpsam_mini', PATH) writes a random-init one).")
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist.")
        from ._zoo import _check_safe

        _check_safe(checkpoint)  # cellpose reads it with a plain torch.load
        return str(checkpoint)
    if name not in models.MODEL_NAMES:
        raise ValueError(f"unknown cellpose model {name!r}; cellpose has {models.MODEL_NAMES}, "
                         "or pass checkpoint=PATH (a cellpose 4 model file).")
    path = models.MODEL_DIR / name
    if not path.is_file():
        try:
            models.cache_model_path(name)
        except Exception as err:  # urllib / ssl / http errors
            raise FileNotFoundError(
                f"cellpose model {name!r} is not cached and could not be downloaded "
                f"({type(err).__name__}: {err}). Download {models._MODEL_URL + name} on a "
                f"machine with internet access and save it as {path} (or set "
                "CELLPOSE_LOCAL_MODELS_PATH; `cellnb models fetch cpsam` does both), or pass "
                "checkpoint=PATH.") from err
    from ._zoo import _check_safe

    _check_safe(path)
    return str(path)


@contextlib.contextmanager
def quiet():
    logger = logging.getLogger("cellpose")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(_io.StringIO()), \
                contextlib.redirect_stderr(_io.StringIO()), \
                warnings.catch_warnings():  # cellpose's own tqdm bars and torch notices
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)
