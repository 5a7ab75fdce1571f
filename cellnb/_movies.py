"""Synthetic time-lapse movies with ground-truth tracks, and an OME-TIFF writer (private).

Exposed through :mod:`cellnb.data`. The movie is one simulated field
(:func:`cellnb.data.synthetic_pairs`' cells) whose cells take a random walk;
some interphase cells go through mitosis for a few frames (their nucleus
condenses: 4x brighter), so tracks carry a class per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._files import atomic_path
from ._validation import as_generator


@dataclass
class SyntheticMovie:
    """A simulated time-lapse of one field and its ground truth.

    Attributes
    ----------
    tl, fluorescence : (T, H, W) uint16 ndarray
        Transmitted-light and nuclear fluorescence frames.
    cells, nuclei : (T, H, W) int32 ndarray
        Cell and nucleus labels; a cell keeps its label in every frame (the
        label *is* the true track id).
    truth : DataFrame
        One row per cell and frame: ``t, label, y, x`` (nucleus centroid) and
        ``class_name`` ("interphase" or "mitotic").
    """

    tl: np.ndarray
    fluorescence: np.ndarray
    cells: np.ndarray
    nuclei: np.ndarray
    truth: pd.DataFrame


def _shift_labels(arrays, labels, offsets):
    """Move every labelled object of `labels` by its integer offset; objects painted later win."""
    h, w = labels.shape
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    ny, nx = ys + offsets[ids, 0], xs + offsets[ids, 1]
    keep = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    out = [np.zeros_like(a) for a in arrays]
    for src, dst in zip(arrays, out):
        dst[ny[keep], nx[keep]] = src[ys[keep], xs[keep]]
    return out


def synthetic_movie(n_frames: int = 8, *, shape=(256, 256), n_cells: int = 20,
                    step: float = 1.5, mitosis_frames: int = 3, seed=0) -> SyntheticMovie:
    """Simulate a time-lapse of moving cells, some passing through mitosis.

    Cells of one :func:`synthetic_pairs` field take a Gaussian random walk
    (`step` pixels per frame per axis, standard deviation); every other
    interphase cell condenses its nucleus (4x brighter, the mitotic class)
    for `mitosis_frames` consecutive frames at a random time. Cells that
    walk out of the image leave it. Noise is drawn anew in every frame.

    Parameters
    ----------
    n_frames : int, default=8
    shape : (int, int), default=(256, 256)
    n_cells : int, default=20
    step : float, default=1.5
        Random-walk step in pixels (per axis, per frame).
    mitosis_frames : int, default=3
        Frames a dividing cell spends in the mitotic class (0: none divide).
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    movie : SyntheticMovie

    Examples
    --------
    >>> movie = synthetic_movie(4, shape=(96, 96), n_cells=4, seed=1)
    >>> movie.tl.shape, movie.tl.dtype
    ((4, 96, 96), dtype('uint16'))
    >>> sorted(movie.truth.columns)
    ['class_name', 'label', 't', 'x', 'y']
    """
    from scipy import ndimage

    from .data import _render_fluorescence, _render_tl, _simulate

    for key, value, low in (("n_frames", n_frames, 1), ("n_cells", n_cells, 1),
                            ("mitosis_frames", mitosis_frames, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{key}` must be an int >= {low}, got {value!r}.")
    if not (isinstance(step, (int, float)) and step >= 0):
        raise ValueError(f"`step` must be a number of pixels >= 0, got {step!r}.")
    rng = as_generator(seed)
    shape = (int(shape[0]), int(shape[1]))
    cells0, nuclei0, thickness0, brightness0, mitotic, present = _simulate(
        shape, n_cells, 0.0, (6.0, 9.0), (0.7, 1.3), rng)
    top = int(cells0.max())
    walk = np.cumsum(rng.normal(0, step, (n_frames, top + 1, 2)), axis=0)
    walk -= walk[0]  # frame 0 is the simulated field
    offsets = np.round(walk).astype(np.int64)
    dividing = {int(lab): int(rng.integers(0, max(n_frames - mitosis_frames, 0) + 1))
                for k, lab in enumerate(present) if mitosis_frames and k % 2 == 1}
    frames = {key: [] for key in ("tl", "fluorescence", "cells", "nuclei")}
    rows = []
    for t in range(n_frames):
        cells, nuclei, thickness, brightness = _shift_labels(
            (cells0, nuclei0, thickness0, brightness0), cells0, offsets[t])
        nuclei[nuclei != cells] = 0  # a nucleus covered by a neighbour's cell is hidden
        in_mitosis = [lab for lab, start in dividing.items() if start <= t < start + mitosis_frames]
        condensed = np.isin(nuclei, in_mitosis)
        brightness = np.where(condensed, brightness * 4.0, brightness)
        brightness[nuclei == 0] = 0
        frames["tl"].append(_render_tl(cells, nuclei, thickness, rng))
        frames["fluorescence"].append(_render_fluorescence(nuclei, brightness, rng))
        frames["cells"].append(cells)
        frames["nuclei"].append(nuclei)
        labels = np.unique(nuclei[nuclei > 0])
        centres = np.array(ndimage.center_of_mass(np.ones_like(nuclei), nuclei, labels)
                           ).reshape(-1, 2)
        for lab, (y, x) in zip(labels, centres):
            rows.append({"t": t, "label": int(lab), "y": float(y), "x": float(x),
                         "class_name": "mitotic" if int(lab) in in_mitosis else "interphase"})
    truth = pd.DataFrame(rows, columns=["t", "label", "y", "x", "class_name"])
    return SyntheticMovie(*(np.stack(frames[k]) for k in ("tl", "fluorescence", "cells",
                                                           "nuclei")), truth=truth)


def write_ome_tiff(path, data, *, channels, pixel_size_um: float | None = None,
                   z_step_um: float | None = None) -> Path:
    """Write (T, C, Z, Y, X) arrays as an OME-TIFF, one series per scene.

    For examples, tests and for saving a movie cellnb simulated; the file is
    what a microscope's OME-TIFF export holds (channel names, pixel sizes).
    Written atomically with tifffile.

    Parameters
    ----------
    path : str or Path
        Target file; its name must end in ``.ome.tif`` or ``.ome.tiff``.
    data : (T, C, Z, Y, X) ndarray, or a list of them (one per scene)
    channels : sequence of str
        Channel names, C of them.
    pixel_size_um, z_step_um : float, optional
        Physical pixel size (Y and X) and z step in micrometres.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = write_ome_tiff(pathlib.Path(tempfile.mkdtemp()) / "a.ome.tif",
    ...                       np.zeros((1, 2, 1, 8, 8), np.uint16), channels=["BF", "H2B"])
    >>> path.name
    'a.ome.tif'
    """
    import tifffile

    path = Path(path)
    if not path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        raise ValueError(f"an OME-TIFF's name ends in .ome.tif; got {path.name}.")
    scenes = list(data) if isinstance(data, (list, tuple)) else [data]
    channels = [str(c) for c in channels]
    for k, scene in enumerate(scenes):
        if not isinstance(scene, np.ndarray) or scene.ndim != 5:
            raise ValueError(f"scene {k}: expected a (T, C, Z, Y, X) array, got "
                             f"{getattr(scene, 'shape', type(scene).__name__)}.")
        if scene.shape[1] != len(channels):
            raise ValueError(f"scene {k} has {scene.shape[1]} channels but {len(channels)} "
                             f"names were given ({channels}).")
    metadata = {"axes": "TCZYX", "Channel": {"Name": channels}}
    if pixel_size_um is not None:
        metadata.update(PhysicalSizeX=float(pixel_size_um), PhysicalSizeY=float(pixel_size_um),
                        PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    if z_step_um is not None:
        metadata.update(PhysicalSizeZ=float(z_step_um), PhysicalSizeZUnit="µm")
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, ome=True) as tif:
            for scene in scenes:
                tif.write(scene, metadata=metadata, photometric="minisblack")
    return path
