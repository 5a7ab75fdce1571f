"""The tuning-free ``locate(method="auto")``, measured on real nuclei.

Every quantity is measured from the image; the few fixed constants are
fractions of the measured nucleus scale or of a peak's own height, so they
carry over between magnifications, cameras and stains:

1. Scale (:func:`estimate_nucleus_radius`): the size of the single nuclei
   of a rough foreground (Otsu on the log-compressed image), not of blob
   votes, which the chromatin texture of large nuclei would win.
2. Background: a grey opening wider than any nucleus, smoothed; the signal
   is the smoothed image above it.
3. Seeds: maxima of a scale-normalised Laplacian of Gaussian at 0.7 of the
   nucleus scale (fine enough to part touching nuclei) on the
   log-compressed signal (so a dim nucleus makes a peak beside a bright
   one), with *h-maxima suppression*: a peak that rises less than 5 % above
   the saddle to a higher peak is a bump of texture on one nucleus, not a
   nucleus of its own (:func:`_merge_shallow`).
4. Each seed's basin is cut at 35 % of its own peak signal, so dim and
   bright nuclei are outlined alike.
5. Merge: touching pieces join when their border shows no intensity dip
   (90 % of the dimmer piece's peak) and is no neck (wider than 3/4 of the
   smaller piece), i.e. when neither intensity nor shape says two
   (:func:`_merge_without_dip`).
6. Shape split: a piece whose (hole-filled) outline holds two domes of its
   distance transform, parted by a saddle deeper than 0.12 nucleus radii, is
   cut between them (:func:`_split_by_shape`): two touching nuclei that the
   blurred intensity did not part. A convex nucleus has one dome whatever
   its texture, so it is never cut; a two-lobed nucleus has a shallower
   waist (0.10 on the real CHO images) than two touching nuclei (0.14 and
   deeper on both real sets).

Real-image numbers before and after each change are in
``docs/benchmarks.md`` (``benchmarks/bench_locate.py --real``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Seeds are found at this fraction of the nucleus scale.
SEED_SCALE = 0.7
#: A seed's peak must rise this fraction of its height above the saddle to a higher peak.
SEED_DYNAMIC = 0.05
#: Each nucleus is outlined at this fraction of its peak signal.
CUT = 0.35
#: Distance-transform saddle (in nucleus radii) that parts two touching nuclei. Measured on
#: the real sets of ``benchmarks/bench_locate.py --real``: the cuts between two true nuclei
#: had saddles 0.14-0.33 deep, the cuts through one (a two-lobed CHO nucleus) 0.10.
SHAPE_DEPTH = 0.12
#: Gaussian smoothing (px) of the rough foreground that measures the nucleus scale.
_SCALE_SMOOTH = 1.0


# ---------------------------------------------------------------------------
# scale and noise
# ---------------------------------------------------------------------------
def noise_sigma(image: np.ndarray) -> float:
    """Robust noise estimate from neighbour differences (MAD, Gaussian-consistent)."""
    d = np.diff(image, axis=1).ravel()
    mad = np.median(np.abs(d - np.median(d)))
    return float(max(1.4826 * mad / np.sqrt(2), 1e-6 * (image.max() - image.min())))


def estimate_nucleus_radius(fluorescence) -> float:
    """Typical nucleus radius in pixels, from the single nuclei of a rough foreground.

    The image is log-compressed above its dark level (a camera offset or the
    background does not matter, nor how bright each nucleus is), smoothed
    lightly, freed of uneven illumination (a grey opening a quarter of the
    image wide: nuclei must be narrower than that) and thresholded with
    Otsu's method; holes are filled. Objects
    that stand out of the noise and are convex (solidity >= 0.9: one
    nucleus, not a cluster) measure the radius: the median of their
    equivalent radius, each capped at 1.25 x its inscribed radius (a
    cluster that passes as convex is measured by one of its nuclei). Where
    fewer than three objects are convex, all of them measure it. Images
    larger than 1024² are measured on four 512² windows spread over them.

    Textured nuclei (bright chromatin speckles, dark nucleoli) are measured
    whole: a blob detector's votes would go to the speckles.

    Parameters
    ----------
    fluorescence : (H, W) ndarray
        Nuclear fluorescence image.

    Returns
    -------
    radius : float
        At least 1.5 px. NaN when no object stands out of the noise.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :96]
    >>> image = np.zeros((96, 96), np.float32)
    >>> for cy, cx in [(24, 24), (24, 70), (70, 40)]:
    ...     image += 100 * (np.hypot(yy - cy, xx - cx) < 8)
    >>> round(estimate_nucleus_radius(image + 10), 1)
    8.0
    """
    from .fluorescence import as_float

    image = as_float(fluorescence)
    return _estimate_radius(image, noise_sigma(image))


def _estimate_radius(image, noise) -> float:
    """:func:`estimate_nucleus_radius` of a float image whose noise is known."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops

    compressed = np.log1p(np.clip(image - np.percentile(image, 2), 0, None) / (3 * noise))
    # noise left after smoothing on the background (compressed noise is ~1/3 there)
    significant = 6 * (1 / 3) / (2 * np.sqrt(np.pi) * _SCALE_SMOOTH)
    radii, convex = [], []
    for window in _crops(image.shape, 512 if image.size > 1024 * 1024 else max(image.shape)):
        crop = ndimage.gaussian_filter(compressed[window], _SCALE_SMOOTH)
        # uneven illumination: an opening a quarter of the field wide (wider than a nucleus)
        side = max(15, min(crop.shape) // 4) | 1
        crop = crop - _opening(crop, side)
        if crop.max() == crop.min():
            continue
        foreground = ndimage.binary_fill_holes(crop > threshold_otsu(crop))
        objects = ndimage.label(foreground)[0]
        inscribed = ndimage.distance_transform_edt(foreground)
        peak = _region_max(crop, objects)
        for p in regionprops(objects, intensity_image=inscribed):
            if p.area < 12 or peak[p.label] < significant:
                continue
            radii.append(min(np.sqrt(p.area / np.pi), 1.25 * (p.intensity_max + 0.5)))
            convex.append(p.solidity >= 0.9)
    radii, convex = np.array(radii), np.array(convex, bool)
    if radii.size == 0:
        return float("nan")
    use = radii[convex] if convex.sum() >= 3 else radii
    return float(max(1.5, np.median(use)))


def _opening(image, size):
    """Grey opening with a `size` square, the image extended by its edge values first.

    scipy pads each of the erosion and the dilation on its own, so an opening
    of a ramp falls below it near the image edge; extended once, a ramp that
    rises to the edge is its own opening there too.

    >>> ramp = np.tile(np.arange(12.0), (5, 1))
    >>> bool(np.allclose(_opening(ramp, 5), ramp))
    True
    """
    from scipy import ndimage

    pad = size // 2 + 1
    opened = ndimage.grey_opening(np.pad(image, pad, mode="edge"), size=(size, size))
    return opened[pad:-pad, pad:-pad]


def _crops(shape, side):
    """Up to four windows of `side` px spread over the image (the whole image if small)."""
    h, w = shape
    if h <= 2 * side and w <= 2 * side:
        return [(slice(0, h), slice(0, w))]
    ys = [int(f * (h - side)) for f in (0.25, 0.75)] if h > side else [0]
    xs = [int(f * (w - side)) for f in (0.25, 0.75)] if w > side else [0]
    return [(slice(y, y + side), slice(x, x + side)) for y in ys for x in xs]


# ---------------------------------------------------------------------------
# the auto mode
# ---------------------------------------------------------------------------
def auto_nuclei(image, radius=None):
    """Nuclei label image and the radius used (see the module docstring).

    >>> yy, xx = np.mgrid[:60, :90]
    >>> image = np.zeros((60, 90), np.float32)
    >>> image[np.hypot(yy - 30, xx - 30) < 10] = 900         # bright
    >>> image[np.hypot(yy - 30, xx - 52) < 10] = 400         # dim, touching it
    >>> labels, _ = auto_nuclei(image + 100)
    >>> int(labels.max()), bool(labels[30, 28] != labels[30, 54])
    (2, True)
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import relabel_sequential, watershed

    noise = noise_sigma(image)
    if radius is None:
        radius = _estimate_radius(image, noise)
    if not np.isfinite(radius):
        return np.zeros(image.shape, np.int32), radius
    seed_radius = SEED_SCALE * radius
    smooth_sigma = max(0.7, seed_radius / 4)
    smooth = ndimage.gaussian_filter(image, smooth_sigma)
    size = int(2 * np.ceil(3 * radius) + 1)
    background = ndimage.gaussian_filter(_opening(smooth, size), radius, mode="nearest")
    signal = smooth - background
    noise_s = noise / (2 * np.sqrt(np.pi) * smooth_sigma)  # noise left after smoothing
    compressed = np.log1p(np.clip(image - background, 0, None) / (3 * noise))
    s = seed_radius / np.sqrt(2)
    response = -s ** 2 * ndimage.gaussian_laplace(compressed, s)
    floor = 0.3  # response of a blob 0.3 log units above its surroundings
    peaks = peak_local_max(response, min_distance=1, threshold_abs=floor, exclude_border=False)
    if len(peaks):
        peaks = peaks[signal[tuple(peaks.T)] > 4 * noise_s]
    if len(peaks) == 0:
        return np.zeros(image.shape, np.int32), radius
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    foreground = signal > 3 * noise_s
    basins = watershed(-response, markers, mask=foreground)
    height = np.maximum(response, floor)
    top = np.concatenate([[0.0], height[tuple(peaks.T)]])
    basins = _merge_shallow(basins, height, top, SEED_DYNAMIC * top)
    peak = _region_max(signal, basins)
    basins[signal < CUT * peak[basins]] = 0
    labels = _keep_largest_piece(basins)
    labels = _merge_without_dip(labels, signal)
    labels = _split_by_shape(labels, radius)
    areas = np.bincount(labels.ravel())
    labels[areas[labels] < max(3, 0.15 * np.pi * radius ** 2)] = 0
    return relabel_sequential(labels)[0].astype(np.int32), radius


# ---------------------------------------------------------------------------
# basins and their dynamics
# ---------------------------------------------------------------------------
def _region_max(values, labels):
    """Maximum of `values` in each label, indexed by label (0 and absent labels: 0)."""
    inside = labels > 0
    out = np.zeros(int(labels.max()) + 1)
    if inside.any():
        top = pd.Series(values[inside]).groupby(labels[inside]).max()
        out[top.index.to_numpy()] = top.to_numpy()
    return out


def _borders(labels, values, how="max"):
    """One row per pair of touching labels: ``a < b``, ``value`` and ``length`` of the border.

    The value of a border pixel pair is the lower of its two `values`;
    ``how`` aggregates them ("max": the saddle, the highest pass between the
    two labels).
    """
    parts = []
    for a, b, va, vb in ((labels[:, :-1], labels[:, 1:], values[:, :-1], values[:, 1:]),
                         (labels[:-1, :], labels[1:, :], values[:-1, :], values[1:, :])):
        edge = (a != b) & (a > 0) & (b > 0)
        parts.append(pd.DataFrame({"a": np.minimum(a[edge], b[edge]),
                                   "b": np.maximum(a[edge], b[edge]),
                                   "v": np.minimum(va[edge], vb[edge])}))
    table = pd.concat(parts)
    return (table.groupby(["a", "b"])["v"].agg(value=how, length="size").reset_index())


def _merge_shallow(basins, values, top, depth):
    """Join each basin whose peak rises less than its `depth` above the saddle to a higher one.

    The h-maxima partition without morphological reconstruction: the borders
    are visited from the highest saddle down (the order in which a falling
    water level would join the basins); where two groups of basins meet, the
    one with the lower peak keeps its own label only if that peak rises at
    least its `depth` above this saddle. `top` and `depth` are indexed by
    label (``top[k]``: the peak of basin k).

    >>> basins = np.array([[1, 1, 2, 2, 3, 3]])
    >>> values = np.array([[5., 4.9, 4.8, 4.0, 3.0, 6.0]])
    >>> _merge_shallow(basins, values, np.array([0, 5, 4.8, 6]), np.full(4, 0.5))
    array([[1, 1, 1, 1, 3, 3]])
    """
    borders = _borders(basins, values)
    if borders.empty:
        return basins
    n = int(basins.max()) + 1
    group = np.arange(n)          # merge-tree groups (union-find)
    best = np.arange(n)           # each group's highest-peaked basin
    label = np.arange(n)          # what each basin's label becomes

    def find(x):
        while group[x] != x:
            group[x] = group[group[x]]
            x = group[x]
        return x

    for a, b, saddle in borders.sort_values("value", ascending=False)[
            ["a", "b", "value"]].itertuples(index=False):
        ga, gb = find(int(a)), find(int(b))
        if ga == gb:
            continue
        low, high = (ga, gb) if top[best[ga]] <= top[best[gb]] else (gb, ga)
        if top[best[low]] - saddle < depth[best[low]]:
            label[best[low]] = best[high]   # a bump on the higher one: no nucleus of its own
        group[low] = high
    # follow the chains (a basin joined to one that was joined in turn)
    for _ in range(n):
        nxt = label[label]
        if np.array_equal(nxt, label):
            break
        label = nxt
    return label[basins]


def _keep_largest_piece(labels):
    """Drop fragments: keep the largest connected piece of each label."""
    from scipy import ndimage

    pieces, n = ndimage.label(labels > 0)
    if n == 0:
        return labels
    inside = labels > 0
    sizes = pd.DataFrame({"label": labels[inside], "piece": pieces[inside]}).value_counts()
    best = sizes.reset_index().drop_duplicates("label")  # value_counts sorts by size
    keep = np.zeros(n + 1, bool)
    keep[best["piece"].to_numpy()] = True
    out = labels.copy()
    out[~keep[pieces]] = 0
    return out


def _merge_without_dip(labels, signal, *, ratio=0.9, neck=0.75):
    """Join touching pieces that are one nucleus: no intensity dip and no neck between them.

    Two pieces of one textured or elongated nucleus share a border nearly as
    bright as the dimmer piece's peak (`ratio`) and about as wide as that
    piece (`neck`, in equivalent diameters); two touching nuclei meet at a
    dip or at a neck.

    >>> labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    >>> flat = np.ones((2, 4))
    >>> _merge_without_dip(labels, flat)
    array([[1, 1, 1, 1],
           [1, 1, 1, 1]])
    >>> dip = np.array([[5., 1., 1., 5.], [5., 1., 1., 5.]])
    >>> _merge_without_dip(labels, dip)
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]])
    """
    if labels.max() < 2:
        return labels
    border = _borders(labels, signal)
    if border.empty:
        return labels
    peak = _region_max(signal, labels)
    area = np.bincount(labels.ravel(), minlength=len(peak))
    a, b = border["a"].to_numpy(), border["b"].to_numpy()
    no_dip = border["value"].to_numpy() > ratio * np.minimum(peak[a], peak[b])
    wide = border["length"].to_numpy() > neck * 2 * np.sqrt(np.minimum(area[a], area[b]) / np.pi)
    parent = np.arange(len(peak))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a[no_dip & wide], b[no_dip & wide]):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return np.array([find(i) for i in range(len(parent))])[labels]


def _split_by_shape(labels, radius, *, depth=SHAPE_DEPTH, min_part=0.25):
    """Cut pieces whose outline holds two nuclei: two domes of the distance transform.

    Each piece is filled (nucleoli are no outline) and its distance to the
    outline computed (touching pieces are kept apart); every dome of that
    distance is a candidate nucleus, and domes parted by a saddle less than
    `depth` nucleus radii deep are one (:func:`_merge_shallow`). Parts under
    `min_part` of a typical nucleus join their neighbour. A convex piece has
    one dome (its distance transform is concave), so only pieces pinched
    between two nuclei are cut.

    >>> yy, xx = np.mgrid[:30, :50]
    >>> pair = ((np.hypot(yy - 15, xx - 15) < 10) | (np.hypot(yy - 15, xx - 34) < 10)).astype(int)
    >>> parts = _split_by_shape(pair, 10)
    >>> int(parts.max()), bool(parts[15, 12] != parts[15, 37])
    (2, True)
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    if labels.max() == 0:
        return labels
    labels = labels.astype(np.int32, copy=False)  # (int64 from the merges: filters run slower)
    holes, n_holes = ndimage.label(ndimage.binary_fill_holes(labels > 0) & (labels == 0))
    if n_holes:  # each hole takes the label around it
        around = ndimage.maximum(ndimage.grey_dilation(labels, size=3), holes,
                                 np.arange(1, n_holes + 1))
        labels = np.where(holes > 0, np.concatenate([[0], around]).astype(labels.dtype)[holes],
                          labels)
    edge = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        step = np.diff(labels, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= step
        edge[tuple(hi)] |= step
    inner = (labels > 0) & ~edge
    # float32: the filters below run faster, and distances within a nucleus stay exact enough
    distance = ndimage.distance_transform_edt(np.pad(inner, 1))[1:-1, 1:-1].astype(np.float32)
    domes = inner & (distance == ndimage.maximum_filter(distance, size=3))
    markers = ndimage.label(domes, np.ones((3, 3), bool))[0]
    basins = watershed(-distance, markers, mask=inner)
    n = int(basins.max()) + 1
    top = _region_max(distance, basins)
    basins = _merge_shallow(basins, distance, top, np.full(n, depth * radius))
    # small parts join their neighbour across the highest saddle
    min_area = min_part * np.pi * radius ** 2
    for _ in range(5):
        area = np.bincount(basins.ravel(), minlength=n)
        borders = _borders(basins, distance)
        if borders.empty:
            break
        both = pd.concat([borders, borders.rename(columns={"a": "b", "b": "a"})])
        small = both[(area[both["a"]] < min_area) & (area[both["a"]] < area[both["b"]])]
        if small.empty:
            break
        target = small.sort_values("value", ascending=False).drop_duplicates("a")
        lookup = np.arange(n)
        lookup[target["a"].to_numpy()] = target["b"].to_numpy()
        basins = lookup[basins]
    # one label per basin; the edge pixels go to a neighbouring basin of their piece
    owner = np.zeros(n, np.int64)
    inside = basins > 0
    owner[basins[inside]] = labels[inside]
    out = basins.copy()
    for _ in range(2):
        grown = ndimage.grey_dilation(out, size=3)
        fill = (labels > 0) & (out == 0) & (owner[grown] == labels)
        out[fill] = grown[fill]
    stray = (labels > 0) & ((out == 0) | (owner[out] != labels))
    if stray.any():  # nearer another piece's basin (or none): its own piece's largest basin
        area = np.bincount(basins.ravel(), minlength=n)
        ids = np.flatnonzero((area > 0) & (owner > 0))
        ids = ids[np.lexsort((-area[ids], owner[ids]))]
        main = np.zeros(int(labels.max()) + 1, np.int64)
        first = np.unique(owner[ids], return_index=True)[1]
        main[owner[ids][first]] = ids[first]
        out[stray] = main[labels[stray]]
    return out
