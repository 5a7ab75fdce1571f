"""Synthetic time-lapse movies with ground-truth tracks, and an OME-TIFF writer (private).

Exposed through :mod:`cellnb.data`. The movie is one simulated field
(:func:`cellnb.data.synthetic_pairs`' cells) whose cells take a random walk;
some interphase cells go through mitosis for a few frames (their nucleus
condenses: 4x brighter) and, optionally, divide; with a margin cells enter
and leave the image. Tracks carry a class per frame and a lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._shared.files import atomic_path
from .._shared.validation import as_generator
from ._synthetic import _renamed


@dataclass
class SyntheticMovie:
    """A simulated time-lapse of one field and its ground truth.

    Attributes
    ----------
    tl, fluorescence : (T, H, W) uint16 ndarray
        Transmitted-light and nuclear fluorescence frames.
    labels, nuclei : (T, H, W) int32 ndarray
        Cell and nucleus labels (``cells`` is the old name of `labels`,
        deprecated); a cell keeps its label in every frame (the
        label *is* the true track id; daughters of a division get new ones).
    truth : DataFrame
        One row per cell and frame: ``t, label, y, x`` (nucleus centroid) and
        ``class_name`` ("interphase" or "mitotic").
    lineage : DataFrame
        One row per track, indexed by ``label``: ``first_t, last_t`` (frames
        it is in the image) and ``parent`` (the mother's label, 0 for none),
        as the Cell Tracking Challenge's ``man_track.txt``.
    """

    tl: np.ndarray
    fluorescence: np.ndarray
    labels: np.ndarray
    nuclei: np.ndarray
    truth: pd.DataFrame
    lineage: pd.DataFrame

    @property
    def cells(self) -> np.ndarray:
        """Deprecated: the old name of ``labels`` (the cell label image)."""
        _renamed("SyntheticMovie")
        return self.labels


@dataclass
class _Object:
    """One simulated cell in reference coordinates, and when it lives."""

    ys: np.ndarray
    xs: np.ndarray
    thickness: np.ndarray
    nucleus: np.ndarray      # bool per pixel
    brightness: np.ndarray   # nucleus brightness per pixel (0 outside)
    born: int
    died: int                # first frame it no longer exists
    parent: int = 0


def _objects(cells, nuclei, thickness, brightness, n_frames) -> dict:
    objects = {}
    for lab in np.unique(cells[cells > 0]):
        ys, xs = np.nonzero(cells == lab)
        objects[int(lab)] = _Object(ys, xs, thickness[ys, xs], nuclei[ys, xs] == lab,
                                    brightness[ys, xs], 0, n_frames)
    return objects


def _daughters(mother: _Object, rng, t: int, n_frames: int):
    """Split a cell along a random line through its centre; each half gets a round nucleus."""
    cy, cx = mother.ys.mean(), mother.xs.mean()
    angle = rng.uniform(0, np.pi)
    side = (mother.ys - cy) * np.cos(angle) - (mother.xs - cx) * np.sin(angle) > 0
    level = float(np.median(mother.brightness[mother.nucleus])) / 4.0  # back to interphase
    radius = 0.75 * np.sqrt(mother.nucleus.sum() / np.pi / 2)
    out = []
    for half in (side, ~side):
        ys, xs = mother.ys[half], mother.xs[half]
        ny, nx = ys.mean(), xs.mean()
        nucleus = np.hypot(ys - ny, xs - nx) < radius
        out.append(_Object(ys, xs, mother.thickness[half], nucleus,
                           np.where(nucleus, level, 0.0), t, n_frames))
    return out


def synthetic_movie(n_frames: int = 8, *, shape=(256, 256), n_cells: int = 20,
                    step: float = 1.5, mitosis_frames: int = 3, divide: bool = False,
                    margin: int = 0, seed=0) -> SyntheticMovie:
    """Simulate a time-lapse of moving cells, some passing through mitosis.

    Cells of one :func:`synthetic_pairs` field take a Gaussian random walk
    (`step` pixels per frame per axis, standard deviation); every other
    interphase cell condenses its nucleus (4x brighter, the mitotic class)
    for `mitosis_frames` consecutive frames at a random time. With `divide`
    it then splits into two daughter cells (new labels, the mother as their
    parent in `lineage`). With a `margin`, cells are simulated on a field
    that much larger on every side and the movie shows its centre, so cells
    enter and leave the image. Noise is drawn anew in every frame.

    Parameters
    ----------
    n_frames : int, default=8
    shape : (int, int), default=(256, 256)
    n_cells : int, default=20
        Cells requested on the simulated field (including its margin).
    step : float, default=1.5
        Random-walk step in pixels (per axis, per frame).
    mitosis_frames : int, default=3
        Frames a dividing cell spends in the mitotic class (0: none divide).
    divide : bool, default=False
        Mitotic cells split into two daughters after their mitotic frames.
    margin : int, default=0
        Extra simulated field on every side, outside the image.
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
    >>> movie = synthetic_movie(8, shape=(96, 96), n_cells=6, divide=True, mitosis_frames=2,
    ...                         seed=1)
    >>> int((movie.lineage["parent"] > 0).sum())  # two daughters per division
    6
    """
    from scipy import ndimage

    from ._synthetic import _render_fluorescence, _render_tl, _simulate

    for key, value, low in (("n_frames", n_frames, 1), ("n_cells", n_cells, 1),
                            ("mitosis_frames", mitosis_frames, 0), ("margin", margin, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{key}` must be an int >= {low}, got {value!r}.")
    if not (isinstance(step, (int, float)) and step >= 0):
        raise ValueError(f"`step` must be a number of pixels >= 0, got {step!r}.")
    rng = as_generator(seed)
    shape = (int(shape[0]), int(shape[1]))
    field = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    cells0, nuclei0, thickness0, brightness0, _, present = _simulate(
        field, n_cells, 0.0, (6.0, 9.0), (0.7, 1.3), rng)
    top = int(cells0.max())
    walk = np.cumsum(rng.normal(0, step, (n_frames, top + 1, 2)), axis=0)
    walk -= walk[0]  # frame 0 is the simulated field
    dividing = {int(lab): int(rng.integers(0, max(n_frames - mitosis_frames, 0) + 1))
                for k, lab in enumerate(present) if mitosis_frames and k % 2 == 1}
    objects = _objects(cells0, nuclei0, thickness0, brightness0, n_frames)
    offsets = {lab: walk[:, lab] for lab in objects}
    if divide:
        for lab, start in sorted(dividing.items()):
            end = start + mitosis_frames
            if end >= n_frames:
                continue  # still mitotic when the movie ends
            objects[lab].died = end
            for daughter in _daughters(objects[lab], rng, end, n_frames):
                new = max(objects) + 1
                daughter.parent = lab
                objects[new] = daughter
                drift = np.cumsum(rng.normal(0, step, (n_frames, 2)), axis=0)
                offsets[new] = offsets[lab][end] + drift - drift[end]
    frames = {key: [] for key in ("tl", "fluorescence", "cells", "nuclei")}
    rows = []
    for t in range(n_frames):
        cells = np.zeros(field, np.int32)
        nuclei = np.zeros(field, np.int32)
        thickness = np.zeros(field)
        brightness = np.zeros(field)
        in_mitosis = [lab for lab, start in dividing.items() if start <= t < start + mitosis_frames]
        for lab, obj in objects.items():  # objects painted later win where they overlap
            if not obj.born <= t < obj.died:
                continue
            dy, dx = np.round(offsets[lab][t]).astype(int)
            ys, xs = obj.ys + dy, obj.xs + dx
            keep = (ys >= 0) & (ys < field[0]) & (xs >= 0) & (xs < field[1])
            ys, xs = ys[keep], xs[keep]
            cells[ys, xs] = lab
            thickness[ys, xs] = obj.thickness[keep]
            nuclei[ys, xs] = np.where(obj.nucleus[keep], lab, 0)
            gain = 4.0 if lab in in_mitosis else 1.0
            brightness[ys, xs] = obj.brightness[keep] * gain
        nuclei[nuclei != cells] = 0  # a nucleus covered by a neighbour's cell is hidden
        brightness[nuclei == 0] = 0
        window = (slice(margin, margin + shape[0]), slice(margin, margin + shape[1]))
        cells, nuclei = cells[window], nuclei[window]
        thickness, brightness = thickness[window], brightness[window]
        cells[~np.isin(cells, np.unique(nuclei))] = 0  # a cell is seen with its nucleus
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
    seen = truth.groupby("label")["t"].agg(["min", "max"])
    lineage = pd.DataFrame({"first_t": seen["min"], "last_t": seen["max"],
                            "parent": [objects[lab].parent for lab in seen.index]},
                           index=pd.Index(seen.index, name="label"))
    lineage.loc[~lineage["parent"].isin(lineage.index), "parent"] = 0  # mother never seen
    return SyntheticMovie(*(np.stack(frames[k]) for k in ("tl", "fluorescence", "cells",
                                                           "nuclei")), truth=truth,
                          lineage=lineage.astype(np.int64))


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
