"""Helpers for tests and benchmarks: real SAM architectures at random initialisation.

No pretrained weights are needed: :func:`random_sam` builds the genuine
network (same layers, same compute), writes its weights to a checkpoint and
loads them back through :func:`cellnb.models.load`, the code path real weights
take. Its masks are meaningless; its shapes, dtypes, memory and run time are
the real ones.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .models import SamModel, load

__all__ = ["random_sam", "random_checkpoint", "train_base"]

from ._architectures import ARCHITECTURES as _KINDS  # micro_sam's four and vit_mini


def random_sam(kind: str = "vit_t", *, seed: int = 0, decoder: bool = False,
               device: str = "cpu") -> SamModel:
    """Build a SAM model of architecture `kind` with random weights.

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
    if kind not in _KINDS:
        raise ValueError(f"`kind` must be one of {list(_KINDS)}, got {kind!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}.")
    import torch

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
    from ._architectures import CELLPOSE_ARCHITECTURES, build_cellpose_net, build_sam, build_unetr

    if kind not in _KINDS + CELLPOSE_ARCHITECTURES:
        raise ValueError(f"`kind` must be one of {list(_KINDS + CELLPOSE_ARCHITECTURES)}, got "
                         f"{kind!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}.")
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


def train_base(name: str, folder, *, kind: str = "vit_t") -> dict:
    """What a SAM recipe starts from: `name` when cached, else a random-init `kind`, said loudly.

    For notebooks and CI that must train with or without downloaded weights:
    returns the keyword arguments of :func:`cellnb.train` (``model=`` and,
    for the stand-in, ``checkpoint=`` of a random-init checkpoint written
    into `folder`, with micro_sam's decoder).

    Examples
    --------
    >>> import tempfile, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     base = train_base("vit_b_lm", tempfile.mkdtemp())  # doctest: +SKIP
    >>> base["model"] in ("vit_b_lm", "vit_t")  # doctest: +SKIP
    True
    """
    import warnings

    from .models import is_cached

    if is_cached(name):
        return {"model": name}
    path = Path(folder) / f"{kind}_random.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    warnings.warn(f"μSAM weights {name!r} are not in micro_sam's cache: training starts from a "
                  f"random-init {kind} (real architecture; its masks mean nothing until "
                  "trained far longer, or started from real weights).", UserWarning,
                  stacklevel=2)
    return {"model": kind, "checkpoint": str(random_checkpoint(kind, path, decoder=True))}

