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

from ._validation import check_seed
from .models import SamModel, load

__all__ = ["random_sam", "random_checkpoint", "train_base", "LEARNING_PLANS", "learning_image",
           "stand_in_checkpoint"]

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
    check_seed(seed)
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


def train_base(name: str, folder, *, kind: str = "vit_t") -> dict | None:
    """What a recipe starts from: `name` when its weights are cached, else a random-init `kind`.

    For notebooks and CI that must train with or without downloaded weights:
    returns the keyword arguments of :func:`cellnb.train` (``model=`` and,
    for the stand-in, ``checkpoint=`` of a random-init checkpoint written
    into `folder`; SAM stand-ins carry micro_sam's decoder). The stand-in is
    announced with a :class:`UserWarning`. `name` is a μSAM zoo name, or a
    cellpose model (``"cpsam"``, with a cellpose `kind` such as
    ``"cpsam_mini"``); a cellpose name gives None when cellpose is not
    installed.

    Examples
    --------
    >>> import tempfile, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     base = train_base("vit_b_lm", tempfile.mkdtemp(), kind="vit_mini")
    >>> base["model"] in ("vit_b_lm", "vit_mini")
    True
    """
    import warnings

    from ._architectures import CELLPOSE_ARCHITECTURES
    from .models import is_cached

    if kind in CELLPOSE_ARCHITECTURES:
        from .recipes.cellpose import cached

        found = cached(name)
        if found is None:  # cellpose is not installed
            return None
        if found:
            return {"model": name}
        what = f"cellpose weights {name!r} are not in cellpose's cache"
    else:
        if is_cached(name):
            return {"model": name}
        what = f"μSAM weights {name!r} are not in micro_sam's cache"
    path = Path(folder) / f"{kind}_random.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    warnings.warn(f"{what}: training starts from a random-init {kind} (real architecture; its "
                  "masks mean nothing until trained far longer, or started from real weights).",
                  UserWarning, stacklevel=2)
    decoder = kind not in CELLPOSE_ARCHITECTURES
    return {"model": kind, "checkpoint": str(random_checkpoint(kind, path, decoder=decoder))}


#: Settings with which each recipe learns one synthetic image from random initialisation on the
#: reduced architectures (``vit_mini`` / ``cpsam_mini``, 2 CPU cores), validated by
#: tests/test_learning.py and timed by benchmarks/bench_learning.py. Learning rates are for
#: training from scratch (the recipes' defaults are for fine-tuning pretrained weights); the rest
#: shrinks a run to CPU minutes. ``image``: the synthetic image's side and cell count;
#: ``start``: "random" (a random-init checkpoint), or "stand-in" (the microsam run's SAM,
#: the stand-in for pretrained weights; ``reinitialise``: parameters drawn afresh first).
#: The stand-in is the microsam run after ``stand_in_after`` of its epochs (the run then goes on:
#: a resumed run ends where an uninterrupted one does); trained longer, its SAM already
#: segments the image as well as CellSeg1's LoRA could make it, and there is nothing to learn.
LEARNING_PLANS = {
    "unet": {"image": (128, 6), "start": None,
             "settings": dict(epochs=4, steps_per_epoch=10, batch_size=4,
                              patch_shape=(128, 128))},
    "microsam": {"image": (128, 6), "start": "random", "stand_in_after": 4,
                 "settings": dict(epochs=8, steps_per_epoch=50, batch_size=1, lr=1e-3,
                                  n_sub_iteration=1, overlap=32, patch_shape=(128, 128))},
    "samcell": {"image": (256, 12), "start": "random",
                "settings": dict(epochs=8, steps_per_epoch=100, batch_size=2, lr=1e-3,
                                 weight_decay=0.01, warmup=20, overlap=32, patience=None,
                                 patch_shape=(256, 256))},
    "cellsam": {"image": (128, 6), "start": "stand-in", "reinitialise": "image_encoder.neck",
                "settings": dict(epochs=2, steps_per_epoch=25, batch_size=1, lr=1e-3,
                                 overlap=32, patch_shape=(128, 128))},
    "cellseg1": {"image": (128, 6), "start": "stand-in",
                 "settings": dict(epochs=8, steps_per_epoch=50, batch_size=1, accumulate=1,
                                  overlap=32, patch_shape=(128, 128),
                                  # the stand-in's frozen IoU head scores right masks 0.75-0.9
                                  min_probability=0.5)},
    "cellpose": {"image": (256, 12), "start": "random",
                 "settings": dict(epochs=80, steps_per_epoch=8, batch_size=1, lr=1e-3,
                                  weight_decay=0.01, patch_shape=(256, 256))},
    # the reduced Mask R-CNN starts from random init by itself (no checkpoint to write)
    "maskrcnn": {"image": (128, 6), "start": None,
                 "settings": dict(model="maskrcnn_mini", epochs=3, steps_per_epoch=30,
                                  batch_size=2, lr=1e-3, warmup=20, patch_shape=(128, 128))},
}


def learning_image(recipe: str):
    """The synthetic pair a recipe's learning plan trains on (:data:`LEARNING_PLANS`).

    Examples
    --------
    >>> learning_image("unet").tl.shape
    (128, 128)
    """
    from .data import synthetic_pairs

    side, cells = LEARNING_PLANS[recipe]["image"]
    return synthetic_pairs(1, shape=(side, side), n_cells=cells, seed=3)[0]


def stand_in_checkpoint(microsam_run, path, *, reinitialise: str | None = None,
                        seed: int = 1) -> Path:
    """The SAM of a trained ``microsam`` run as a checkpoint: a stand-in for pretrained weights.

    Recipes that train part of a pretrained SAM (cellsam's neck, cellseg1's
    LoRA) cannot learn on a random network; their learning tests start from a
    SAM trained briefly by the full-model path (μSAM's) on the same data.
    `reinitialise` draws the parameters whose names start with it afresh
    (seeded by `seed`), so what the recipe then segments is what its own
    trained part learned.

    Parameters
    ----------
    microsam_run : TrainedModel or str or Path
        A ``microsam`` run (its last weights are used).
    path : str or Path
        Checkpoint to write (``model_state``).
    reinitialise : str, optional
        Parameter-name prefix, e.g. ``"image_encoder.neck"``.
    seed : int, default=1

    Returns
    -------
    path : Path

    Examples
    --------
    >>> stand_in_checkpoint(run, "base.pt", reinitialise="image_encoder.neck")  # doctest: +SKIP
    """
    import torch

    from ._architectures import build_sam
    from ._torch import load_state

    folder = Path(getattr(microsam_run, "path", microsam_run))
    state = load_state(folder / "weights" / "last.pt")
    model_state = dict(state["model_state"])
    if reinitialise:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = build_sam(state["architecture"]).state_dict()
        hit = [k for k in model_state if k.startswith(reinitialise)]
        if not hit:
            raise ValueError(f"no parameter of the run's SAM starts with {reinitialise!r}.")
        model_state.update({k: fresh[k] for k in hit})
    path = Path(path)
    torch.save({"model_state": model_state}, path)
    return path
