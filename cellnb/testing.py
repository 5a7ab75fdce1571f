"""Helpers for tests and benchmarks: real SAM architectures at random initialisation.

No pretrained weights are needed: :func:`random_sam` builds the genuine
network (same layers, same compute), writes its weights to a checkpoint and
loads them back through :func:`cellnb.models.load`, the code path real weights
take. Its masks are meaningless; its shapes, dtypes, memory and run time are
the real ones.
"""

from __future__ import annotations

from pathlib import Path

# the stand-ins for missing weights live with the models and weights they stand in for;
# tests, benchmarks and notebooks of earlier versions import them from here
from .models import random_checkpoint, random_sam
from .weights import train_base

__all__ = ["random_sam", "random_checkpoint", "train_base", "LEARNING_PLANS", "learning_image",
           "stand_in_checkpoint"]

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

    from .models._architectures import build_sam
    from ._shared.torchutil import load_state

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
