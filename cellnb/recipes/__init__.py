"""Training recipes of :func:`cellnb.train`, one module each.

A recipe module defines ``DEFAULTS`` (epochs, batch_size, patch_shape, lr,
steps_per_epoch), ``OPTIONS`` (its own keyword options with defaults),
``USES_MODEL`` (whether it starts from a SAM model), ``build(data, settings,
device, state_dir)`` returning a run with ``fit_epoch``, ``predict(net, image,
settings, ...)`` returning ``(labels, scores, normalization)``, and
``load_net(settings, state, device)``.
"""

from importlib import import_module

__all__ = ["get"]


def get(name: str):
    """Return the recipe module `name` ("unet", "microsam").

    Examples
    --------
    >>> get("unet").DEFAULTS["patch_shape"]
    (256, 256)
    """
    from ..train import RECIPES

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {list(RECIPES)}.")
    return import_module(f"{__name__}.{name}")
