"""The tuning-free ``locate(method="auto")``: nuclei found relative to their own brightness.

Steps, each measured from the image itself (no parameter to tune):

1. Scale and noise: the typical nucleus radius from a multi-scale Laplacian
   of Gaussian (:func:`estimate_nucleus_radius`) and the noise level from
   neighbour differences.
2. Background: a grey opening wider than any nucleus, smoothed.
3. Seeds: peaks of a scale-normalised LoG matched to the typical nucleus,
   on the log-compressed signal so that a dim nucleus beside a bright one
   makes its own peak; the watershed of the LoG response gives each seed a
   region, cut at 35 % of the signal *at its seed* (the nucleus centre, not
   the region's brightest pixel, which may be light bled from a brighter
   neighbour).
4. Splits (generous): a region is split at every centre of its outline
   (:func:`_split_at_necks`: a pressed pair, a small nucleus on a large one)
   and where it holds a dim blob beside a bright core
   (:func:`_split_at_steps`: a dim nucleus pressed against a bright one has
   no dip and no peak of its own).
5. Merge (strict): touching pieces are joined again only when they are one
   nucleus (:func:`_merge_pieces`): equally bright, or parted by a border
   that lies inside the brighter one, and not meeting at a neck. The halves
   of an elongated mitotic nucleus are joined; a dim nucleus is never joined
   to a bright neighbour.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


# ---------------------------------------------------------------------------
# scale and noise
# ---------------------------------------------------------------------------
def noise_sigma(image: np.ndarray) -> float:
    """Robust noise estimate from neighbour differences (MAD, Gaussian-consistent)."""
    d = np.diff(image, axis=1).ravel()
    mad = np.median(np.abs(d - np.median(d)))
    return float(max(1.4826 * mad / np.sqrt(2), 1e-6 * (image.max() - image.min())))


def estimate_nucleus_radius(fluorescence) -> float:
    """Typical nucleus radius in pixels, from a multi-scale Laplacian of Gaussian.

    Every bright blob votes with the scale at which its scale-normalised LoG
    response peaks; the median vote (x sqrt 2) is the radius. The estimate
    does not depend on how bright the nuclei are. Images larger than 512²
    are measured on four 256² windows spread over the image.

    Parameters
    ----------
    fluorescence : (H, W) ndarray
        Nuclear fluorescence image.

    Returns
    -------
    radius : float
        Between 1.5 and 40 px. NaN when no blob stands out of the noise.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :96]
    >>> image = np.zeros((96, 96), np.float32)
    >>> for cy, cx in [(24, 24), (24, 70), (70, 40)]:
    ...     image += 100 * (np.hypot(yy - cy, xx - cx) < 8)
    >>> 6 < estimate_nucleus_radius(image) < 10
    True
    """
    from scipy import ndimage

    from .locate import _as_float

    image = _as_float(fluorescence)
    noise = noise_sigma(image)
    sigmas = np.geomspace(1.1, 28, 13)
    gain = np.array([_filtered_noise_gain(s) for s in sigmas])
    votes = []
    for window in _crops(image.shape, 256 if image.size > 512 * 512 else max(image.shape)):
        crop = image[window]
        stack = np.stack([-s ** 2 * ndimage.gaussian_laplace(crop, s)
                          for s in sigmas])
        best, scale = stack.max(axis=0), stack.argmax(axis=0)
        peaks = (best == ndimage.maximum_filter(best, size=5)) & (best > 8 * noise * gain[scale])
        votes.append(sigmas[scale[peaks]])  # one vote per blob, not per pixel
    votes = np.concatenate(votes)
    if votes.size == 0:
        return float("nan")
    return float(np.sqrt(2) * np.median(votes))


def _crops(shape, side):
    """Up to four windows of `side` px spread over the image (the whole image if small)."""
    h, w = shape
    if h <= 2 * side and w <= 2 * side:
        return [(slice(0, h), slice(0, w))]
    ys = [int(f * (h - side)) for f in (0.25, 0.75)] if h > side else [0]
    xs = [int(f * (w - side)) for f in (0.25, 0.75)] if w > side else [0]
    return [(slice(y, y + side), slice(x, x + side)) for y in ys for x in xs]


def _filtered_noise_gain(sigma: float) -> float:
    """Std of the scale-normalised LoG response to unit white noise (exact, by filtering)."""
    from scipy import ndimage

    size = int(8 * sigma + 9)
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1
    kernel = -sigma ** 2 * ndimage.gaussian_laplace(impulse, sigma)
    return float(np.sqrt((kernel ** 2).sum()))


# ---------------------------------------------------------------------------
# the auto mode
# ---------------------------------------------------------------------------
def auto_nuclei(image, radius=None):
    """Nuclei label image and the radius used (see the module docstring).

    >>> yy, xx = np.mgrid[:60, :90]
    >>> image = np.zeros((60, 90), np.float32)
    >>> image[np.hypot(yy - 30, xx - 30) < 10] = 900         # bright
    >>> image[np.hypot(yy - 30, xx - 47) < 10] = 400         # dim, pressed against it
    >>> labels, _ = auto_nuclei(image + 100)
    >>> int(labels.max()), bool(labels[30, 28] != labels[30, 50])
    (2, True)
    """
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential, watershed

    if radius is None:
        radius = estimate_nucleus_radius(image)
    if not np.isfinite(radius):
        return np.zeros(image.shape, np.int32), radius
    noise = noise_sigma(image)
    smooth_sigma = max(0.7, radius / 4)
    smooth = ndimage.gaussian_filter(image, smooth_sigma)
    # background at the measured scale: opening wider than any nucleus, then smoothed
    size = int(2 * np.ceil(3 * radius) + 1)
    background = ndimage.gaussian_filter(ndimage.grey_opening(smooth, size=(size, size)),
                                         radius)
    signal = smooth - background
    noise_s = noise / (2 * np.sqrt(np.pi) * smooth_sigma)  # noise left after smoothing
    compressed = np.log1p(np.clip(image - background, 0, None) / (3 * noise))
    response, seeds = _blob_seeds(compressed, radius)
    seeds = seeds[signal[tuple(seeds.T)] > 4 * noise_s] if len(seeds) else seeds
    if len(seeds) == 0:
        return np.zeros(image.shape, np.int32), radius
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    labels = watershed(-response, markers, mask=signal > 3 * noise_s)
    height = np.concatenate([[0.0], signal[tuple(seeds.T)]])
    labels[signal < 0.35 * height[labels]] = 0
    labels = _keep_largest_piece(labels)
    seed_height = height[labels]  # per pixel, before splits add labels without a seed
    labels = _split_at_necks(labels, signal >= 0.5 * seed_height, radius)
    labels = _split_at_steps(labels, signal, signal >= 0.25 * seed_height, radius)
    labels = _merge_pieces(labels, signal)
    min_area = max(3, 0.1 * np.pi * radius ** 2)
    areas = np.bincount(labels.ravel())
    labels[areas[labels] < min_area] = 0
    return relabel_sequential(labels)[0].astype(np.int32), radius


def _blob_seeds(image, radius):
    """Peaks of a scale-normalised LoG matched to the typical nucleus, and the response."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    s = radius / np.sqrt(2)
    response = -s ** 2 * ndimage.gaussian_laplace(image, s)
    seeds = peak_local_max(response, min_distance=max(1, int(round(0.6 * radius))),
                           threshold_abs=0.3, exclude_border=False)
    return response, seeds


def _windows(labels, min_area=0):
    """(label, padded window, region mask) for each label covering at least `min_area` px."""
    from scipy import ndimage

    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        window = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        region = labels[window] == i
        if region.sum() >= min_area:
            yield i, window, region


def _relabel_parts(out, window, parts, next_id):
    """Give parts 2, 3, ... of one split region new ids in `out`; returns the next free id."""
    view = out[window]
    for k in range(2, int(parts.max()) + 1):
        view[parts == k] = next_id
        next_id += 1
    return next_id


# ---------------------------------------------------------------------------
# splits (generous) and merge (strict)
# ---------------------------------------------------------------------------
def _split_at_necks(labels, core, radius):
    """Split each region larger than a typical nucleus at every peak of its core's distance transform.

    A pressed pair, or a small nucleus on a large one, that got one seed has
    two centres. The split is generous (the ridge of an elongated nucleus
    has several peaks too): :func:`_merge_pieces` joins again the pieces
    that do not meet at a neck. `core` (the pixels above half the seed's
    height) gives the shape, without the faint skirt a region may flood;
    regions whose core covers at most 1.2 typical nuclei are left alone.
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    out = labels.copy()
    next_id = int(labels.max()) + 1
    spacing = max(2, int(round(0.3 * radius)))
    for _, window, region in _windows(labels):
        inner = region & core[window]
        if inner.sum() <= 1.2 * np.pi * radius ** 2:
            continue
        distance = ndimage.distance_transform_edt(inner)
        peaks = peak_local_max(distance, labels=inner.astype(np.int32), min_distance=spacing,
                               exclude_border=False)
        if len(peaks) < 2:
            continue
        markers = np.zeros(region.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        surface = -ndimage.distance_transform_edt(region)
        next_id = _relabel_parts(out, window, watershed(surface, markers, mask=region), next_id)
    return out


def _split_at_steps(labels, signal, core, radius, *, min_step=1.3):
    """Split off a dim nucleus that shares a region with a brighter one.

    Without a dip between them, a dim nucleus pressed against a bright one
    is a shoulder of the bright one's region, not a peak of its own. In each
    region of at least 0.8 typical nuclei, Otsu's threshold splits the
    signal in two, first over the region's `core` (above a quarter of its
    seed's height, without the faint skirt: a much dimmer nucleus falls in
    the lower class, with the rim), then over its plateau (above half its
    90th percentile, without the rim: a nucleus only a little dimmer). Where
    the lower class holds a compact blob of nucleus size (it survives an
    opening with a disk of 0.4 nucleus radii and covers at least 35 % of a
    typical nucleus) and the classes differ by `min_step` or more, the blob
    and the bright core become separate regions, divided where the signal
    is steepest. Texture and the rim of a single nucleus make no such blob.
    """
    from skimage.filters import sobel
    from skimage.morphology import disk
    from skimage.segmentation import watershed

    out = labels.copy()
    next_id = int(labels.max()) + 1
    footprint = disk(max(1, int(round(0.4 * radius))))
    min_blob = 0.35 * np.pi * radius ** 2
    for _, window, region in _windows(labels, 0.8 * np.pi * radius ** 2):
        values = signal[window]
        inner = region & core[window]
        if not inner.any():
            continue
        plateau = inner & (values >= 0.5 * np.quantile(values[inner], 0.9))
        for part in (inner, plateau):
            markers = _step_markers(part, values, footprint, min_blob, min_step)
            if markers is not None:
                next_id = _relabel_parts(out, window, watershed(sobel(values), markers,
                                                                mask=region), next_id)
                break
    return out


def _step_markers(mask, values, footprint, min_blob, min_step):
    """Markers of the bright core(s) and the dim blobs beside them in `mask`, or None."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    inside = values[mask]
    if inside.size < 2 * min_blob or inside.min() == inside.max():
        return None
    t = threshold_otsu(inside)
    low, high = mask & (values < t), mask & (values >= t)
    if values[high].mean() < min_step * values[low].mean():
        return None
    blobs, n = ndimage.label(ndimage.binary_opening(low, footprint))
    sizes = np.bincount(blobs.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = np.flatnonzero(sizes >= min_blob)
    core, m = ndimage.label(ndimage.binary_opening(high, footprint))
    if len(keep) == 0 or m == 0:
        return None
    markers = core.astype(np.int32)
    for j, blob in enumerate(keep, start=1):
        markers[blobs == blob] = m + j
    return markers


def _merge_pieces(labels, signal, *, max_ratio=1.25, inside=0.9, min_pass=0.8):
    """Join touching pieces of one nucleus.

    Two touching regions are one nucleus when both hold:

    - brightness: their median signals differ by less than `max_ratio`, or
      the signal on their border is at least `inside` times the brighter
      one's median (the border lies inside the brighter object: the dimmer
      piece is its tapered end). A dim nucleus beside a bright one meets it
      at a step, below that.
    - shape: they do not meet at a neck (:func:`_neck` at least `min_pass`).
      Halves of an elongated or bent nucleus share one ridge of the distance
      transform; two pressed round nuclei, or a small one on a large one, do
      not.

    The most similar pairs are joined first; a joined region is measured
    again before it joins further.
    """
    from scipy import ndimage

    while True:
        pairs = _borders(labels, signal)
        if pairs.empty:
            return labels
        level = _region_median(signal, labels)
        la, lb = level[pairs["a"]], level[pairs["b"]]
        pairs["ratio"] = np.maximum(la, lb) / np.maximum(np.minimum(la, lb), 1e-12)
        pairs["inside"] = pairs["border"] / np.maximum(la, lb)
        pairs = pairs[(pairs["ratio"] < max_ratio) | (pairs["inside"] >= inside)]
        boxes = ndimage.find_objects(labels)
        merged = set()
        parent = np.arange(labels.max() + 1)
        for a, b in zip(*pairs.sort_values("ratio")[["a", "b"]].to_numpy().T):
            if a in merged or b in merged or _neck(labels, boxes, a, b) < min_pass:
                continue
            parent[b] = a
            merged.update((a, b))
        if not merged:
            return labels
        labels = parent[labels]


def _neck(labels, boxes, a, b):
    """Narrowest width of the union of `a` and `b` between their centres, relative.

    Each region's centre is the middle of its inscribed circle. Flooding the
    union's distance transform from the two centres, the floods meet at the
    narrowest passage between them, wherever the regions' own border runs;
    the distance transform's highest value there (half the passage's width)
    over its lower value at the two centres is about 1 when the union has one
    middle (halves of an elongated nucleus), well below 1 at a neck (two
    round nuclei that touch).
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    sa, sb = boxes[a - 1], boxes[b - 1]
    window = tuple(slice(max(min(p.start, q.start) - 1, 0), max(p.stop, q.stop) + 1)
                   for p, q in zip(sa, sb))
    crop = labels[window]
    union = (crop == a) | (crop == b)
    distance = ndimage.distance_transform_edt(union)
    markers = np.zeros(crop.shape, np.int32)
    centres = []
    for k, label in enumerate((a, b), start=1):
        centre = np.unravel_index(np.argmax(ndimage.distance_transform_edt(crop == label)),
                                  crop.shape)
        markers[centre] = k
        centres.append(distance[centre])
    floods = watershed(-distance, markers, mask=union)
    meet = (floods == 1) & ndimage.binary_dilation(floods == 2)
    if not meet.any():
        return 0.0
    return float(distance[meet].max() / min(centres))


def _borders(labels, signal):
    """One row per pair of touching labels: ``a < b`` and the median signal on their border."""
    parts = []
    for a, b, va, vb in ((labels[:, :-1], labels[:, 1:], signal[:, :-1], signal[:, 1:]),
                         (labels[:-1, :], labels[1:, :], signal[:-1, :], signal[1:, :])):
        edge = (a != b) & (a > 0) & (b > 0)
        parts.append(pd.DataFrame({"a": np.minimum(a[edge], b[edge]),
                                   "b": np.maximum(a[edge], b[edge]),
                                   "v": np.minimum(va[edge], vb[edge])}))
    table = pd.concat(parts)
    return table.groupby(["a", "b"])["v"].median().rename("border").reset_index()


def _region_median(values, labels):
    """Median of `values` in each label, indexed by label (labels absent: inf).

    One sort of the labelled pixels (``scipy.ndimage.median`` selects per
    label and is ~20x slower on a 2048² image with a thousand nuclei).
    """
    n = int(labels.max())
    out = np.full(n + 1, np.inf)
    inside = labels > 0
    ids, vals = labels[inside], values[inside]
    if ids.size == 0:
        return out
    order = np.lexsort((vals, ids))
    ids, vals = ids[order], vals[order]
    present, start, count = np.unique(ids, return_index=True, return_counts=True)
    low, high = vals[start + (count - 1) // 2], vals[start + count // 2]
    out[present] = (low + high) / 2
    return out


def _keep_largest_piece(labels):
    """Drop fragments: keep the largest connected piece of each label."""
    from scipy import ndimage

    pieces, n = ndimage.label(labels > 0)
    if n == 0:
        return labels
    table = pd.DataFrame({"label": labels.ravel(), "piece": pieces.ravel()})
    table = table[table["label"] > 0]
    sizes = table.groupby(["label", "piece"]).size().reset_index(name="n")
    best = sizes.sort_values("n").drop_duplicates("label", keep="last")
    keep = np.zeros(n + 1, bool)
    keep[best["piece"].to_numpy()] = True
    out = labels.copy()
    out[~keep[pieces]] = 0
    return out
