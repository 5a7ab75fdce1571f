"""Synthetic nuclear fluorescence scenes where nucleus detectors fail.

Each *family* reproduces one failure seen on real crowded nuclear images
(DSB2018-style, Cell-APP's H2B / SiR-DNA case):

``"bright_dim"``
    Touching pairs whose brightness differs 1.3-3x (a mitotic or S/G2
    nucleus beside an interphase one); light of the bright one bleeds over
    the contact.
``"flat_contact"``
    Pressed pairs (centres 0.65-0.8 x the sum of radii apart) sharing a
    straight contact about as wide as the smaller nucleus, brightness ratio
    1.3-3x: no neck to cut at.
``"small_large"``
    A small nucleus (radius ratio 1.4-2, at least 3 px) touching a large one
    of similar brightness.
``"elongated"``
    Bright condensed bars (aspect 2.5-4, 3.5-5x an interphase nucleus, some
    of them slightly bent), alone or touching an interphase nucleus: one
    object each, never to be split.

The contact between two nuclei is their power-diagram line (the straight
border two pressed elastic disks share). Rendering is the fluorescence model
of :func:`cellnb.data.synthetic_pairs` (uneven background, texture, blur,
Poisson noise, camera offset), with no dark line between touching nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FAMILIES = ("bright_dim", "flat_contact", "small_large", "elongated")


def _group(family, rng, r_lo, r_hi):
    """Nuclei of one group around (0, 0): list of (cy, cx, a, b, angle, bend, brightness, kind)."""
    r = rng.uniform(r_lo, r_hi)
    theta = rng.uniform(0, np.pi)
    direction = np.array([np.sin(theta), np.cos(theta)])
    if family == "elongated":
        aspect = rng.uniform(2.5, 4.0)
        a = 1.3 * r
        bar = (0.0, 0.0, a, a / aspect, theta, rng.uniform(-0.25, 0.25), rng.uniform(3.5, 5.0),
               "elongated")
        if rng.random() < 0.5:
            return [bar]
        # an interphase nucleus touching the bar's side
        side = np.array([np.cos(theta), -np.sin(theta)])
        rb = rng.uniform(r_lo, r_hi)
        c = side * (a / aspect + rb) * rng.uniform(0.85, 0.95)
        return [bar, (c[0], c[1], rb, rb, 0.0, 0.0, rng.uniform(0.8, 1.2), "interphase")]
    if family == "small_large":
        r_big = 1.2 * r
        r_small = max(r_big / rng.uniform(1.4, 2.0), 3.0)
        distance = (r_small + r_big) * rng.uniform(0.8, 0.92)
        bright = rng.uniform(0.8, 1.2, 2)
        radii, kinds = (r_big, r_small), ("large", "small")
    else:
        ratio = rng.uniform(1.3, 3.0)
        base = rng.uniform(0.6, 1.0)
        bright = np.array([base * ratio, base])
        r2 = r * rng.uniform(0.85, 1.15)
        radii, kinds = (r, r2), ("bright", "dim")
        span = (0.85, 0.95) if family == "bright_dim" else (0.65, 0.8)
        distance = (r + r2) * rng.uniform(*span)
    c = direction * distance / 2
    out = []
    for sign, radius, b, kind in zip((-1, 1), radii, bright, kinds):
        e = rng.uniform(0, 0.15)
        out.append((sign * c[0], sign * c[1], radius * (1 + e), radius / (1 + e),
                    rng.uniform(0, np.pi), 0.0, b, kind))
    return out


def _paint(shape, groups):
    """Label image: inside each ellipse, overlaps split along the power-diagram line."""
    best = np.full(shape, np.inf)
    nuclei = np.zeros(shape, np.int32)
    brightness = np.zeros(shape)
    rows = []
    label = 0
    for centre, members in groups:
        for cy, cx, a, b, angle, bend, value, kind in members:
            label += 1
            y, x = centre[0] + cy, centre[1] + cx
            reach = int(np.ceil(a + 3))
            y0, y1 = max(int(y) - reach, 0), min(int(y) + reach + 2, shape[0])
            x0, x1 = max(int(x) - reach, 0), min(int(x) + reach + 2, shape[1])
            yy, xx = np.mgrid[y0:y1, x0:x1]
            u = (yy - y) * np.sin(angle) + (xx - x) * np.cos(angle)
            v = (yy - y) * np.cos(angle) - (xx - x) * np.sin(angle)
            v = v - bend * u ** 2 / a  # a gentle banana for bent bars
            rho = (u / a) ** 2 + (v / b) ** 2
            power = (rho - 1) * a * b  # < 0 inside; equal-power line between two nuclei
            win = (slice(y0, y1), slice(x0, x1))
            take = (rho < 1) & (power < best[win])
            best[win] = np.where(take, power, best[win])
            nuclei[win] = np.where(take, label, nuclei[win])
            brightness[win] = np.where(take, value, brightness[win])
            rows.append((label, y, x, np.sqrt(a * b), value, kind))
    present = np.unique(nuclei[nuclei > 0])
    table = pd.DataFrame(rows, columns=["label", "y", "x", "radius", "brightness", "kind"])
    table = table[table["label"].isin(present)].set_index("label")
    return nuclei, brightness, table


@dataclass
class SyntheticNuclei:
    """One simulated nuclear fluorescence image of a hard family, and its truth.

    Attributes
    ----------
    family : str
        One of :data:`cellnb.data.NUCLEUS_FAMILIES`.
    fluorescence : (H, W) uint16 ndarray
        Nuclear fluorescence image.
    nuclei : (H, W) int32 ndarray
        Nucleus labels, 0 = background.
    truth : DataFrame
        Indexed by ``label``: ``y, x`` (centre), ``radius``, ``brightness``
        (relative; 1 is a typical interphase nucleus) and ``kind``
        (``"bright"``/``"dim"``, ``"large"``/``"small"``, ``"elongated"``/
        ``"interphase"``).
    """

    family: str
    fluorescence: np.ndarray
    nuclei: np.ndarray
    truth: pd.DataFrame


def synthetic_nuclei(family, n=1, *, shape=(256, 256), nucleus_radius=(6.0, 10.0),
                     seed=0):
    """Simulate nuclear fluorescence images of one hard `family`, with truth.

    Groups (a touching pair, or one bar) sit on a jittered grid, one per
    cell of about six nucleus radii, so groups never touch each other.

    Parameters
    ----------
    family : {"bright_dim", "flat_contact", "small_large", "elongated"}
        Which failure to reproduce (see :data:`cellnb.data.NUCLEUS_FAMILIES` and the module
        docstring of ``cellnb.data._nuclei_scenes``).
    n : int, default=1
        Number of images.
    shape : (int, int), default=(256, 256)
        Image shape (rows, cols), each >= 64.
    nucleus_radius : (float, float), default=(6.0, 10.0)
        Range of the typical nucleus radius in pixels.
    seed : int or numpy.random.Generator, default=0
        Same seed, same images.

    Returns
    -------
    scenes : list of SyntheticNuclei

    Examples
    --------
    >>> scene = synthetic_nuclei("bright_dim", shape=(128, 128), seed=0)[0]
    >>> scene.fluorescence.dtype, scene.nuclei.dtype, sorted(set(scene.truth["kind"]))
    (dtype('uint16'), dtype('int32'), ['bright', 'dim'])
    >>> int(scene.nuclei.max()) == len(scene.truth)
    True
    """
    from .._shared.validation import as_generator
    from ._synthetic import _render_fluorescence

    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {list(FAMILIES)}, got {family!r}.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}.")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 64
                   for s in shape)):
        raise ValueError(f"`shape` must be two ints >= 64 (rows, cols), got {shape!r}.")
    r_lo, r_hi = nucleus_radius
    if not 2 <= r_lo <= r_hi:
        raise ValueError(f"`nucleus_radius` must be (low, high) with 2 <= low <= high, "
                         f"got {nucleus_radius!r}.")
    rng = as_generator(seed)
    shape = (int(shape[0]), int(shape[1]))
    step = 6.2 * r_hi
    scenes = []
    for _ in range(n):
        groups = []
        for gy in np.arange(step / 2, shape[0] - step / 2 + 1, step):
            for gx in np.arange(step / 2, shape[1] - step / 2 + 1, step):
                jitter = rng.uniform(-0.1, 0.1, 2) * step
                groups.append((np.array([gy, gx]) + jitter, _group(family, rng, r_lo, r_hi)))
        nuclei, brightness, truth = _paint(shape, groups)
        fluorescence = _render_fluorescence(nuclei, brightness, rng)
        scenes.append(SyntheticNuclei(family, fluorescence, nuclei, truth))
    return scenes
