"""Synthetic TL / fluorescence pairs with their ground truth (the teaching and test dataset).

The renderers here (:func:`_simulate`, :func:`_render_fluorescence`,
:func:`_render_tl`) also draw the scenes of ``cellnb.data._nuclei_scenes`` and
``cellnb.data._movies``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._shared.files import atomic_path
from .._shared.validation import as_generator

__all__ = ["synthetic_pairs", "write_pairs", "read_pairs", "SyntheticPair", "CLASS_NAMES"]


#: Class ids of the synthetic cells.
CLASS_NAMES = {0: "interphase", 1: "mitotic"}


@dataclass
class SyntheticPair:
    """One simulated field of view and its ground truth.

    Attributes
    ----------
    id : str
        Stem used in file names, e.g. ``"synthetic_000"``.
    tl : (H, W) uint16 ndarray
        Phase-contrast-like transmitted-light image.
    fluorescence : (H, W) uint16 ndarray
        Nuclear fluorescence image.
    labels : (H, W) int32 ndarray
        Cell labels, 0 = background (``cells`` is its old name, deprecated:
        ``Record.cells`` is a table).
    nuclei : (H, W) int32 ndarray
        Nucleus labels with the id of the cell that holds them.
    truth : DataFrame
        Indexed by ``label``: nucleus centroid ``y, x``, ``class_id``
        (0 interphase, 1 mitotic) and ``class_name``.
    """

    id: str
    tl: np.ndarray
    fluorescence: np.ndarray
    labels: np.ndarray
    nuclei: np.ndarray
    truth: pd.DataFrame

    @property
    def cells(self) -> np.ndarray:
        """Deprecated: the old name of ``labels`` (the cell label image)."""
        _renamed("SyntheticPair")
        return self.labels


def _renamed(kind: str) -> None:
    import warnings

    warnings.warn(f"{kind}.cells is now {kind}.labels, the cell label image (as Record.labels; "
                  "Record.cells is a table). .cells works until the next release.",
                  FutureWarning, stacklevel=3)


def _smooth_field(shape, rng, scale: int) -> np.ndarray:
    """Smooth random field in [0, 1], varying over about `scale` pixels."""
    from scipy import ndimage

    small = (max(2, shape[0] // scale + 2), max(2, shape[1] // scale + 2))
    coarse = ndimage.gaussian_filter(rng.standard_normal(small), 1.0)
    field = ndimage.zoom(coarse, (shape[0] / small[0], shape[1] / small[1]), order=3)
    field = field[:shape[0], :shape[1]]
    field = np.pad(field, ((0, shape[0] - field.shape[0]), (0, shape[1] - field.shape[1])),
                   mode="edge")
    field -= field.min()
    return field / max(field.max(), 1e-12)


def _place_cells(shape, n_cells, radii, rng):
    """Centres with limited overlap (cells may touch, nuclei never do)."""
    centres, kept = [], []
    attempts = 0
    while len(centres) < n_cells and attempts < 200 * n_cells:
        attempts += 1
        c = rng.uniform((0, 0), shape)
        r = radii[len(centres)]
        if all(np.hypot(*(c - c2)) > 0.8 * (r + r2) for c2, r2 in zip(centres, kept)):
            centres.append(c)
            kept.append(r)
    return np.array(centres).reshape(-1, 2), np.array(kept)


def _simulate(shape, n_cells, mitotic_fraction, nucleus_radius, brightness_range, rng):
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    h, w = shape
    rn = rng.uniform(*nucleus_radius, size=n_cells)
    mitotic = rng.random(n_cells) < mitotic_fraction
    r_cell = rn * rng.uniform(2.0, 2.6, size=n_cells)
    r_cell[mitotic] = rn[mitotic] * rng.uniform(1.4, 1.7, size=mitotic.sum())
    centres, r_cell = _place_cells(shape, n_cells, r_cell, rng)
    n = len(centres)
    rn, mitotic = rn[:n], mitotic[:n]

    best = np.full(shape, 1.0)  # normalised distance of the owning cell (< 1 inside)
    cells = np.zeros(shape, np.int32)
    nuclei = np.zeros(shape, np.int32)
    thickness = np.zeros(shape)  # optical path of the cell, for the phase image
    nuc_brightness = np.zeros(shape)
    rows = []
    for i in range(n):
        label = i + 1
        (cy, cx), rc = centres[i], r_cell[i]
        y0, y1 = int(max(cy - rc * 1.4, 0)), int(min(cy + rc * 1.4 + 1, h))
        x0, x1 = int(max(cx - rc * 1.4, 0)), int(min(cx + rc * 1.4 + 1, w))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        theta = np.arctan2(dy, dx)
        wobble = 0.02 if mitotic[i] else 0.12
        shape_r = np.ones_like(theta)
        for k in (2, 3, 4):
            shape_r += rng.uniform(0, wobble) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        d = np.hypot(dy, dx) / (rc * shape_r)
        win = (slice(y0, y1), slice(x0, x1))
        take = d < best[win]
        best[win] = np.where(take, d, best[win])
        cells[win] = np.where(take, label, cells[win])
        dome = np.clip(1 - d ** 2, 0, None) ** 0.5 * (1.8 if mitotic[i] else 1.0)
        thickness[win] = np.where(take, dome, thickness[win])

        # nucleus: ellipse near the centre (a condensed bar for mitotic cells)
        angle = rng.uniform(0, np.pi)
        if mitotic[i]:
            a, b, off = rn[i] * 0.95, rn[i] * 0.4, np.zeros(2)
        else:
            e = rng.uniform(0, 0.3)
            a, b = rn[i] * (1 + e), rn[i] / (1 + e)
            off = rng.uniform(-0.3, 0.3, 2) * b
        u = (dy - off[0]) * np.cos(angle) + (dx - off[1]) * np.sin(angle)
        v = -(dy - off[0]) * np.sin(angle) + (dx - off[1]) * np.cos(angle)
        inside = (u / a) ** 2 + (v / b) ** 2 < 1
        brightness = (rng.uniform(3.5, 5.0) if mitotic[i] else rng.uniform(*brightness_range))
        nuclei[win] = np.where(inside & take, label, np.where(take, 0, nuclei[win]))
        nuc_brightness[win] = np.where(inside & take, brightness,
                                       np.where(take, 0, nuc_brightness[win]))
        rows.append((label, int(mitotic[i])))

    # nuclei stay inside their cell, away from its border
    inner = ndimage.binary_erosion(cells > 0) & ~find_boundaries(cells, mode="inner")
    nuclei[~inner | (nuclei != cells)] = 0
    nuc_brightness[nuclei == 0] = 0
    labels_present = np.unique(nuclei[nuclei > 0])
    cells[~np.isin(cells, labels_present)] = 0  # a cell whose nucleus vanished is dropped
    return cells, nuclei, thickness, nuc_brightness, dict(rows), labels_present


def _render_fluorescence(nuclei, nuc_brightness, rng):
    from scipy import ndimage

    shape = nuclei.shape
    background = 60 + 120 * _smooth_field(shape, rng, 128)  # uneven background
    texture = 1 + 0.25 * (ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) * 3)
    edge = np.clip(ndimage.distance_transform_edt(nuclei > 0) / 2.5, 0, 1)
    signal = 700 * nuc_brightness * np.clip(texture, 0.5, 1.5) * edge
    expected = ndimage.gaussian_filter(background + signal, 1.2)
    counts = rng.poisson(expected) + rng.normal(100, 3, shape)  # camera offset + read noise
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def _render_tl(cells, nuclei, thickness, rng):
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    shape = cells.shape
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    r2 = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / (max(shape) / 2) ** 2
    illumination = 2500 * (1 - 0.2 * r2) * (0.9 + 0.2 * _smooth_field(shape, rng, 256))
    granules = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0) * 2.0
    phase = thickness * (1 + 0.35 * granules) + 0.25 * (nuclei > 0)
    phase = ndimage.gaussian_filter(phase, 0.8)
    # phase contrast is a high-pass of the optical path: dark cells, bright halos
    contrast = phase - ndimage.gaussian_filter(phase, 6)
    rims = ndimage.gaussian_filter(find_boundaries(cells, mode="thick").astype(float), 0.7)
    image = illumination * (1 - 0.45 * contrast - 0.35 * rims)
    image = rng.poisson(np.clip(image, 1, None)) + rng.normal(0, 15, shape)
    return np.clip(np.round(image), 0, 65535).astype(np.uint16)


def synthetic_pairs(n: int = 1, *, shape=(512, 512), n_cells: int = 60,
                    mitotic_fraction: float = 0.15, nucleus_radius=(6.0, 10.0),
                    brightness_range=(0.6, 1.4), seed=0) -> list[SyntheticPair]:
    """Simulate `n` TL / fluorescence pairs of the same cells, with ground truth.

    Cells are irregular, partly touching blobs; each holds one nucleus.
    A fraction of cells is mitotic: rounded (a bright halo in TL) with a
    condensed, elongated nucleus 3.5-5x brighter than a typical interphase
    nucleus, whose brightness itself spreads over `brightness_range`.

    The TL image is phase-contrast-like (dark cells with bright halos, dark
    rims where cells touch, granular cytoplasm, vignetted uneven
    illumination, Poisson + read noise); the fluorescence image has an uneven
    background, blur, textured nuclei, Poisson noise and a camera offset.
    Both are uint16, as from a 16-bit camera.

    Parameters
    ----------
    n : int, default=1
        Number of pairs.
    shape : (int, int), default=(512, 512)
        Image shape (rows, cols).
    n_cells : int, default=60
        Cells requested per image; fewer are placed (with a warning) if they
        do not fit.
    mitotic_fraction : float, default=0.15
        Expected fraction of mitotic cells.
    nucleus_radius : (float, float), default=(6.0, 10.0)
        Range of nucleus radii in pixels; cells are 2-2.6x larger.
    brightness_range : (float, float), default=(0.6, 1.4)
        Relative brightness of interphase nuclei (uniform); (0.3, 1.5) gives
        a 5x spread.
    seed : int or numpy.random.Generator, default=0
        Same seed, same pairs.

    Returns
    -------
    pairs : list of SyntheticPair
        Ids ``synthetic_000``, ``synthetic_001``, ...

    Examples
    --------
    >>> pair = synthetic_pairs(1, shape=(128, 128), n_cells=8, seed=1)[0]
    >>> pair.tl.shape, pair.tl.dtype, pair.labels.dtype
    ((128, 128), dtype('uint16'), dtype('int32'))
    >>> bool(((pair.nuclei == 0) | (pair.nuclei == pair.labels)).all())
    True
    """
    import warnings

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}.")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or any(not isinstance(s, (int, np.integer)) or s < 32 for s in shape)):
        raise ValueError(f"`shape` must be two ints >= 32 (rows, cols), got {shape!r}.")
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 1:
        raise ValueError(f"`n_cells` must be a positive int, got {n_cells!r}.")
    if not 0 <= mitotic_fraction <= 1:
        raise ValueError(f"`mitotic_fraction` must be in [0, 1], got {mitotic_fraction}.")
    lo, hi = nucleus_radius
    if not 2 <= lo <= hi:
        raise ValueError(f"`nucleus_radius` must be (low, high) with 2 <= low <= high, "
                         f"got {nucleus_radius!r}.")
    b_lo, b_hi = brightness_range
    if not 0 < b_lo <= b_hi:
        raise ValueError(f"`brightness_range` must be (low, high) with 0 < low <= high, "
                         f"got {brightness_range!r}.")
    rng = as_generator(seed)
    shape = (int(shape[0]), int(shape[1]))
    pairs = []
    for i in range(n):
        cells, nuclei, thickness, brightness, mitotic, present = _simulate(
            shape, n_cells, mitotic_fraction, (lo, hi), (b_lo, b_hi), rng)
        if len(present) < n_cells:
            warnings.warn(f"pair {i}: only {len(present)} of {n_cells} cells fit in an image "
                          f"of shape {shape}; lower `n_cells` or enlarge `shape`.",
                          stacklevel=2)
        fluorescence = _render_fluorescence(nuclei, brightness, rng)
        tl = _render_tl(cells, nuclei, thickness, rng)
        truth = _truth_table(nuclei, mitotic)
        pairs.append(SyntheticPair(f"synthetic_{i:03d}", tl, fluorescence, cells, nuclei, truth))
    return pairs


def _truth_table(nuclei, mitotic) -> pd.DataFrame:
    from scipy import ndimage

    labels = np.unique(nuclei[nuclei > 0])
    centres = np.array(ndimage.center_of_mass(np.ones_like(nuclei), nuclei, labels)).reshape(-1, 2)
    class_id = np.array([mitotic[int(lb)] for lb in labels], dtype=np.int64)
    table = pd.DataFrame({"y": centres[:, 0], "x": centres[:, 1], "class_id": class_id,
                          "class_name": [CLASS_NAMES[c] for c in class_id]},
                         index=pd.Index(labels.astype(np.int64), name="label"))
    return table


def write_pairs(pairs, folder, *, tl_suffix: str = "_phs.tif",
                fl_suffix: str = "_Texas Red.tif", truth: bool = True) -> pd.DataFrame:
    """Write synthetic pairs as 16-bit TIFFs with Cell-APP naming.

    Files: ``<id>_phs.tif`` and ``<id>_Texas Red.tif`` in `folder`; with
    `truth`, ``truth/<id>_cells.tif``, ``truth/<id>_nuclei.tif`` (int32
    labels) and ``truth/<id>_classes.csv``. Every file is written atomically.

    Returns
    -------
    pairs : DataFrame
        As :func:`cellnb.io.find_pairs` returns (``pair_id, tl_path,
        fl_path``), plus ``cells_path`` and ``nuclei_path`` with `truth`.

    Examples
    --------
    >>> import tempfile
    >>> table = write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3), tempfile.mkdtemp())
    >>> table["tl_path"].iloc[0].name
    'synthetic_000_phs.tif'
    """
    import tifffile

    from ..io import write_labels

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for pair in pairs:
        if not isinstance(pair, SyntheticPair):
            raise TypeError(f"write_pairs takes SyntheticPair objects, got {type(pair).__name__}.")
        row = {"pair_id": pair.id, "tl_path": folder / f"{pair.id}{tl_suffix}",
               "fl_path": folder / f"{pair.id}{fl_suffix}"}
        for key, image in (("tl_path", pair.tl), ("fl_path", pair.fluorescence)):
            with atomic_path(row[key]) as tmp:
                tifffile.imwrite(tmp, image)
        if truth:
            row["cells_path"] = folder / "truth" / f"{pair.id}_cells.tif"
            row["nuclei_path"] = folder / "truth" / f"{pair.id}_nuclei.tif"
            write_labels(row["cells_path"], pair.labels)
            write_labels(row["nuclei_path"], pair.nuclei)
            with atomic_path(folder / "truth" / f"{pair.id}_classes.csv") as tmp:
                pair.truth.to_csv(tmp)
        rows.append(row)
    return pd.DataFrame(rows)


def read_pairs(folder, *, tl_suffix: str = "_phs.tif",
               fl_suffix: str = "_Texas Red.tif") -> list[SyntheticPair]:
    """Read pairs and their ground truth back from a :func:`write_pairs` folder.

    The inverse of :func:`write_pairs` with ``truth=True``: the images are
    found with :func:`cellnb.io.find_pairs` and read with
    :func:`cellnb.io.read_pair`; each pair's cells, nuclei and classes come
    from ``truth/<id>_cells.tif``, ``truth/<id>_nuclei.tif`` and
    ``truth/<id>_classes.csv``. This is how a notebook hands simulated data
    with its truth on to the next one. For your own images (no truth) use
    :func:`cellnb.io.find_pairs`.

    Parameters
    ----------
    folder : str or Path
        A folder :func:`write_pairs` wrote.
    tl_suffix, fl_suffix : str
        The file-name endings given to :func:`write_pairs`.

    Returns
    -------
    pairs : list of SyntheticPair
        Sorted by id; arrays and tables equal to those written.

    Raises
    ------
    FileNotFoundError
        If `folder` holds no pairs, or a pair's truth files are missing.
    ValueError
        If a pair's images or truth labels differ in shape, or its class table
        lacks the columns of ``SyntheticPair.truth``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> written = synthetic_pairs(2, shape=(64, 64), n_cells=3, seed=1)
    >>> _ = write_pairs(written, folder)
    >>> back = read_pairs(folder)
    >>> [p.id for p in back]
    ['synthetic_000', 'synthetic_001']
    >>> bool((back[1].labels == written[1].labels).all()), back[1].truth.equals(written[1].truth)
    (True, True)
    """
    from .._shared.validation import check_same_shape
    from ..io import find_pairs, read_labels, read_pair

    folder = Path(folder)
    table = find_pairs(folder, tl=f"*{tl_suffix}", fl=f"*{fl_suffix}")
    pairs = []
    for _, row in table.iterrows():
        pair_id = row["pair_id"]
        truth = {kind: folder / "truth" / f"{pair_id}_{kind}"
                 for kind in ("cells.tif", "nuclei.tif", "classes.csv")}
        missing = [path.name for path in truth.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"pair {pair_id!r} in {folder} has no truth file(s) {missing} in "
                f"{folder / 'truth'}; read_pairs reads what write_pairs(..., truth=True) wrote. "
                "For images without truth use cellnb.io.find_pairs and read_pair.")
        tl, fluorescence = read_pair(row)
        labels, nuclei = read_labels(truth["cells.tif"]), read_labels(truth["nuclei.tif"])
        for name, image in (("cell labels", labels), ("nucleus labels", nuclei)):
            check_same_shape(fluorescence, image, f"fluorescence image of {pair_id}",
                             f"{name} of {pair_id}")
        classes = pd.read_csv(truth["classes.csv"], index_col="label")
        if list(classes.columns) != ["y", "x", "class_id", "class_name"]:
            raise ValueError(f"{truth['classes.csv']} must have the columns label, y, x, "
                             f"class_id, class_name; it has label, {', '.join(classes.columns)}.")
        pairs.append(SyntheticPair(pair_id, tl, fluorescence, labels, nuclei, classes))
    return pairs
