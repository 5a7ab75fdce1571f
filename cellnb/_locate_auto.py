"""The tuning-free ``locate(method="auto")``: nuclei found relative to their own brightness.

Steps, each measured from the image itself (no parameter to tune):

1. Scale and noise: the typical nucleus radius from a multi-scale Laplacian
   of Gaussian (:func:`estimate_nucleus_radius`) and the noise level from
   neighbour differences.
2. Background: a grey opening wider than any nucleus, smoothed.
3. Foreground: peaks of a scale-normalised LoG matched to the typical
   nucleus, on the log-compressed signal, seed a watershed whose basins are
   cut at 35 % of the signal *at their seed* (a nucleus centre, not the
   basin's brightest pixel, which may be light bled from a brighter
   neighbour), or kept where they hold a plateau of their own (a dim
   nucleus pressed against a bright one often makes no seed). Touching
   nuclei are one connected region at this point.
4. Splits (generous): a region is cut between two concave corners of its
   outline, or from one sharp corner at the narrowest passage
   (:func:`_split_at_corners`: two round nuclei that touch, pressed or a
   small one on a large one, meet at corners whatever their brightness;
   an elongated nucleus has none), or from one corner where the two parts
   differ in brightness (a nucleus pressed flat against a brighter one);
   then where it holds a dim blob beside a bright core
   (:func:`_split_at_steps`).
5. Merge (strict): touching pieces are joined again only when they are one
   nucleus (:func:`_merge_pieces`): no corners where their border meets
   their joint outline, and equally bright unless there is no corner at
   all. Thin strips (light bled into a neighbour, halves of a condensed
   bar) join their most similar neighbour (:func:`_absorb_slivers`); a
   bright elongated nucleus stays whole, a dim nucleus is never joined to a
   bright neighbour it meets at a corner.

The families of :func:`cellnb.data.synthetic_nuclei` are the tests of each
step (``benchmarks/bench_locate.py`` prints the F1 of each).
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
    foreground = signal > 3 * noise_s
    labels = watershed(-response, markers, mask=foreground)
    height = np.concatenate([[0.0], signal[tuple(seeds.T)]])
    # kept: above 35 % of the seed's height (the largest piece of each basin); and, touching
    # those, plateaus of their own (above 35 % of the brightest signal within half a
    # radius) above 20 % of the seed's height and of the brightest signal within 1.5
    # radii, no larger than three nuclei. A dim nucleus pressed into a bright one's basin
    # (no seed of its own) keeps its plateau; the skirt around a bright nucleus, noise and
    # background residue do not.
    seed_level = height[labels]
    basins = labels.copy()
    labels[signal < 0.35 * seed_level] = 0
    labels = _keep_seeded_piece(labels, seeds)
    near = ndimage.maximum_filter(signal, size=2 * max(1, int(round(0.5 * radius))) + 1)
    around = ndimage.maximum_filter(signal, size=2 * max(1, int(round(1.5 * radius))) + 1)
    plateau = (basins > 0) & (labels == 0) & (signal >= 0.35 * near) \
        & (signal >= 0.2 * np.maximum(seed_level, around))
    pieces, _ = ndimage.label(plateau)
    sizes = np.bincount(pieces.ravel())
    touching = np.zeros(len(sizes), bool)
    touching[np.unique(pieces[ndimage.binary_dilation(labels > 0) & plateau])] = True
    keep = touching & (sizes <= 3 * np.pi * radius ** 2)
    keep[0] = False
    labels[keep[pieces]] = basins[keep[pieces]]
    seed_height = height[labels]  # per pixel
    # the seeds measured each nucleus's height; where nuclei touch, the shape and the
    # brightness of the joint region part them (splits), not where two basins met
    labels = ndimage.label(labels > 0)[0]
    labels = _split_at_corners(labels, signal, radius)
    labels = _split_at_steps(labels, signal, signal >= 0.25 * seed_height, radius)
    labels = _merge_pieces(labels, signal, radius)
    labels = _absorb_slivers(labels, signal)
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
#: Summed concavity of two outline corners (radians) that parts two touching nuclei.
_CORNER_TURN = np.radians(24)

def outline_concavity(mask, window):
    """Points along the outline of `mask` and how sharply the outline turns inward at each.

    The outline (of the largest piece, smoothed over one pixel) is resampled
    every pixel; the concavity at a point is minus the outline's turning
    angle summed over `window` pixels around it, in radians: about 0 on
    straight or gently bent sides, negative on convex arcs, and the angle
    between the two outlines where two round nuclei meet (60-110 degrees for
    pressed pairs, a small nucleus on a large one), whatever their
    brightness.

    Returns ``(points, concavity)``: an (N, 2) array of (row, col) in the
    coordinates of `mask`, and an (N,) array.

    >>> yy, xx = np.mgrid[:40, :60]
    >>> pair = (np.hypot(yy - 20, xx - 22) < 10) | (np.hypot(yy - 20, xx - 38) < 8)
    >>> points, concavity = outline_concavity(pair, 6)
    >>> bool(np.degrees(concavity.max()) > 40), float(np.round(points[concavity.argmax(), 1]))
    (True, 31.0)
    >>> bool(np.degrees(outline_concavity(np.hypot(yy - 20, xx - 30) < 12, 6)[1].max()) < 5)
    True
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    pad = 3
    smooth = ndimage.gaussian_filter(np.pad(mask.astype(float), pad), 1.0)
    contours = find_contours(smooth, 0.5)
    if not contours:
        return np.zeros((0, 2)), np.zeros(0)
    c = max(contours, key=len)
    arc = np.r_[0, np.cumsum(np.hypot(*np.diff(c, axis=0).T))]
    n = int(arc[-1])
    if n < 8:
        return np.zeros((0, 2)), np.zeros(0)
    s = np.linspace(0, arc[-1], n, endpoint=False)
    points = np.c_[np.interp(s, arc, c[:, 0]), np.interp(s, arc, c[:, 1])]
    step = np.roll(points, -1, axis=0) - points
    heading = np.arctan2(step[:, 0], step[:, 1])
    turn = np.angle(np.exp(1j * (np.roll(heading, -1) - heading)))
    turn *= np.sign(turn.sum()) or 1.0  # convex turning positive, whichever way round
    k = max(1, int(round(window / 2)))
    summed = np.convolve(np.r_[turn[-k:], turn, turn[:k]], np.ones(2 * k + 1), "valid")
    return points - pad, -summed


def _corners(concavity, window, floor=np.radians(8)):
    """Indices of the outline's concave corners: local maxima above `floor`, `window` apart."""
    n = len(concavity)
    order = np.argsort(-concavity)
    picked = []
    for i in order:
        if concavity[i] < floor:
            break
        if all(min(abs(i - j), n - abs(i - j)) > window for j in picked):
            picked.append(int(i))
    return picked


def _split_at_corners(labels, signal, radius, *, min_turn=_CORNER_TURN, min_step=1.3,
                      depth=3):
    """Cut regions between concave corners of their outline, or at a brightness step.

    Two round nuclei that touch (pressed together, or a small one on a
    large one) meet at two corners of their joint outline, one on each side,
    also where neither a dip nor a brightness step parts them. A region is
    cut (:func:`_corner_cut`), in this order of preference:

    1. along the shortest straight line between two corners whose
       concavities (:func:`outline_concavity`) sum to `min_turn` or more,
       when that line runs inside the region and leaves two parts of nucleus
       size (in a row of three nuclei, a neck, not the line along their top);
    2. from one sharp corner (1.5 `min_turn`; the other blurred away) along
       the shortest line that leaves two parts, when it is a neck (at most
       0.9 of the smaller part's width);
    3. from a corner of half `min_turn`, along the line to the outline
       point whose two parts differ most in median signal, when they differ
       by `min_step` or more (a nucleus pressed flat against a brighter
       one). Only on the first cut of a region: the light a bright nucleus
       bleeds into its neighbour is a step too.

    Each part is cut again (up to `depth` cuts deep). An elongated nucleus
    has no corners, a bent one at most a gentle concave side, and is evenly
    bright, so it stays whole.
    """
    out = labels.copy()
    next_id = int(labels.max()) + 1
    rules = {"window": _corner_window(radius), "min_turn": min_turn, "min_step": min_step,
             "min_part": max(3, 0.1 * np.pi * radius ** 2),
             "min_step_part": 0.35 * np.pi * radius ** 2}
    for _, box, region in _windows(labels, 2 * rules["min_part"]):
        parts = _cut_recursively(region, signal[box], rules, depth)
        if parts.max() > 1:
            next_id = _relabel_parts(out, box, parts, next_id)
    return out


def _cut_recursively(region, values, rules, depth, steps=True):
    """Label image of `region` cut at corners (1 = no cut); `steps`: brightness cuts too."""
    from scipy import ndimage

    parts = region.astype(np.int32)
    cut = _corner_cut(region, values, rules, steps)
    if cut is None:
        return parts
    pieces, n = ndimage.label(region & ~cut)
    if depth > 1:
        for k in range(1, n + 1):
            # parts of a cut region are cut again at corner pairs only: the light a bright
            # nucleus bleeds into its neighbour is a step too
            sub = _cut_recursively(pieces == k, values, rules, depth - 1, steps=False)
            if sub.max() > 1:
                pieces[sub > 1] = sub[sub > 1] + pieces.max() - 1
    return _fill_cut(pieces, region)


def _corner_cut(region, values, rules, steps=True):
    """Pixels of the best cut of `region` (see :func:`_split_at_corners`), or None."""
    window, min_turn = rules["window"], rules["min_turn"]
    points, concavity = outline_concavity(region, window)
    corners = _corners(concavity, window)
    best = None  # shape: the shortest cut between two corners (a neck, not a chord)
    for i, p in enumerate(corners):
        for q in corners[i + 1:]:
            length = np.hypot(*(points[p] - points[q]))
            if concavity[p] + concavity[q] < min_turn or (best is not None
                                                          and length >= best[0]):
                continue
            cut = _straight_cut(region, points[p], points[q], rules["min_part"])
            if cut is not None:
                best = (length, cut[0])
    if best is not None:
        return best[1]
    n = len(points)
    for p in corners:  # shape: one sharp corner, and the narrowest passage from it
        if concavity[p] < 1.5 * min_turn:
            continue
        for q in range(0, n, 2):
            if min(abs(q - p), n - abs(q - p)) <= window:
                continue
            length = np.hypot(*(points[p] - points[q]))
            if best is not None and length >= best[0]:
                continue
            cut = _straight_cut(region, points[p], points[q], rules["min_part"])
            if cut is None:
                continue
            widths = [2 * np.sqrt((cut[1] == k).sum() / np.pi) for k in (1, 2)]
            if length <= 0.9 * min(widths):
                best = (length, cut[0])
    if best is not None:
        return best[1]
    for p in corners if steps else ():  # brightness: one corner, and a step across the cut
        if concavity[p] < min_turn / 2:
            continue
        for q in range(0, n, 2):
            if min(abs(q - p), n - abs(q - p)) <= window:
                continue
            cut = _straight_cut(region, points[p], points[q], rules["min_step_part"])
            if cut is None:
                continue
            pieces = cut[1]
            medians = [np.median(values[pieces == k]) for k in (1, 2)]
            step = max(medians) / max(min(medians), 1e-12)
            if step >= rules["min_step"] and (best is None or step > best[0]):
                best = (step, cut[0])
    return None if best is None else best[1]


def _straight_cut(region, start, end, min_part):
    """The straight cut from `start` to `end` and the two largest parts it leaves, or None.

    None when the line runs outside the region (it is not a cut across it)
    or the smaller of the two largest parts is under `min_part` pixels.
    Returns ``(cut mask, parts)`` with the two largest parts labelled 1, 2.
    """
    from scipy import ndimage
    from skimage.draw import line

    (r0, c0), (r1, c1) = np.round([start, end]).astype(int)
    rr, cc = line(r0, c0, r1, c1)
    inside = (rr >= 0) & (rr < region.shape[0]) & (cc >= 0) & (cc < region.shape[1])
    rr, cc = rr[inside], cc[inside]
    if len(rr) == 0 or region[rr, cc].mean() < 0.8:
        return None
    cut = np.zeros(region.shape, bool)
    cut[rr, cc] = True
    cut = ndimage.binary_dilation(cut, structure=np.ones((2, 2), bool))
    pieces, n = ndimage.label(region & ~cut)
    if n < 2:
        return None
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    first, second = np.argsort(sizes)[::-1][:2]
    if sizes[second] < min_part:
        return None
    parts = np.where(pieces == first, 1, np.where(pieces == second, 2, 0))
    return cut, parts


def _fill_cut(pieces, region):
    """Give the pixels of a cut (and stray fragments) to the nearest large piece."""
    from skimage.segmentation import expand_labels

    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    keep = np.flatnonzero(sizes >= max(3, 0.05 * sizes.max()))
    lookup = np.zeros(len(sizes), np.int32)
    lookup[keep] = np.arange(1, len(keep) + 1)
    grown = expand_labels(lookup[pieces], distance=4)
    grown[~region] = 0
    grown[region & (grown == 0)] = 1
    return grown


def _corner_window(radius):
    """Outline length (px) over which a corner's turning is summed: 3/4 of a nucleus radius."""
    return max(4.0, 0.75 * radius)


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


def _merge_pieces(labels, signal, radius, *, max_ratio=1.25, inside=0.9,
                  min_turn=_CORNER_TURN):
    """Join touching pieces of one nucleus.

    The corners of the two pieces' joint outline where their border meets
    it (:func:`_border_corners`) decide first:

    - a corner at both ends, summing to `min_turn` or more (or one of
      `min_turn` where only one end is seen, :func:`_two_nuclei`): two
      nuclei (two round nuclei that touch, a small one on a large one);
      never joined;
    - no corner at the ends seen (all under a quarter of `min_turn`): one
      nucleus whatever the brightness (the halves of an elongated or bent
      nucleus, a piece lit by a bright neighbour's bleed, its faint skirt);
    - in between (one corner: a nucleus pressed flat against another),
      brightness decides: joined when their median signals differ by less
      than `max_ratio`, or the signal on their border is at least `inside`
      times the brighter one's median (the border lies inside the brighter
      object). A dim nucleus beside a bright one meets it at a step, below
      that.

    The pairs with the weakest corners are joined first (then the most
    alike); a joined region is measured again before it joins further.
    """
    from scipy import ndimage

    window = _corner_window(radius)
    while True:
        pairs = _borders(labels, signal)
        if pairs.empty:
            return labels
        level = _region_median(signal, labels)
        la, lb = level[pairs["a"]], level[pairs["b"]]
        pairs["ratio"] = np.maximum(la, lb) / np.maximum(np.minimum(la, lb), 1e-12)
        pairs["inside"] = pairs["border"] / np.maximum(la, lb)
        similar = (pairs["ratio"] < max_ratio) | (pairs["inside"] >= inside)
        pairs["similar"] = similar
        boxes = ndimage.find_objects(labels)
        ends = [_border_corners(labels, boxes, a, b, window)
                for a, b in pairs[["a", "b"]].to_numpy()]
        pairs["stronger"] = [max(e, default=0.0) for e in ends]
        two = np.array([_two_nuclei(e, min_turn) for e in ends], bool)
        no_corner = np.array([len(e) > 0 and max(e) < min_turn / 4 for e in ends], bool)
        join = ~two & (no_corner | pairs["similar"].to_numpy())
        merged = set()
        parent = np.arange(labels.max() + 1)
        # the most clearly one nucleus first (no corner, then alike); then measure again
        for a, b in pairs[join].sort_values(["stronger", "ratio"])[["a", "b"]].to_numpy():
            if a in merged or b in merged:
                continue
            parent[b] = a
            merged.update((a, b))
        if not merged:
            return labels
        labels = parent[labels]


def _absorb_slivers(labels, signal, *, brighter=1.25):
    """Join each thin piece to its most similar neighbour, unless it is the brightest.

    A strip (a piece covering at least 6 times its inscribed radius
    squared) less than half as wide as its widest neighbour is a sliver
    (the light a bright nucleus bleeds into its neighbour, the halves of a
    split condensed bar), unless it is `brighter` times brighter than every
    piece it touches: a bright elongated nucleus. A sliver goes to the
    touching piece whose median signal is closest to its own.
    """
    for _ in range(10):
        pairs = _borders(labels, signal)
        if pairs.empty:
            return labels
        inner = _inscribed_radius(labels)
        level = _region_median(signal, labels)
        both = pd.concat([pairs[["a", "b"]], pairs[["b", "a"]].set_axis(["a", "b"], axis=1)])
        both["ratio"] = level[both["a"]] / np.maximum(level[both["b"]], 1e-12)
        both["likeness"] = np.abs(np.log(np.maximum(both["ratio"], 1e-12)))
        areas = np.bincount(labels.ravel(), minlength=len(inner))
        widest = both.assign(w=inner[both["b"]]).groupby("a")["w"].max()
        strip = (areas >= 6 * inner ** 2) & (inner < 0.5 * widest.reindex(
            np.arange(len(inner)), fill_value=0).to_numpy())
        thin_ids = np.flatnonzero(strip)
        candidates = both[both["a"].isin(thin_ids)]
        bright = candidates.groupby("a")["ratio"].min() >= brighter
        candidates = candidates[~candidates["a"].map(bright)]
        if candidates.empty:
            return labels
        target = candidates.sort_values("likeness").drop_duplicates("a")
        parent = np.arange(labels.max() + 1)
        taken = set()
        for a, b in target[["a", "b"]].to_numpy():
            if a in taken or b in taken:
                continue
            parent[a] = b
            taken.update((a, b))
        labels = parent[labels]
    return labels


def _inscribed_radius(labels):
    """Radius of the largest circle inside each label (distance to its outline), by label."""
    from scipy import ndimage

    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[1:, :] |= labels[:-1, :] != labels[1:, :]
    distance = ndimage.distance_transform_edt(~edge & (labels > 0)) + 0.5
    n = int(labels.max())
    out = np.zeros(n + 1)
    present = np.unique(labels[labels > 0])
    out[present] = ndimage.maximum(distance, labels, present)
    return out


def _two_nuclei(ends, min_turn):
    """Whether the corners at the ends of a border (radians) part two nuclei.

    With both ends seen: a corner at each, a third of `min_turn` at least,
    summing to `min_turn`. With one end seen (the other beside a third
    region): a corner of `min_turn` there.
    """
    if len(ends) and max(ends) >= 1.5 * min_turn:
        return True  # one sharp corner (see _corner_cut)
    if len(ends) >= 2:
        weaker, stronger = sorted(ends)[-2:]
        return weaker >= min_turn / 3 and weaker + stronger >= min_turn
    return len(ends) == 1 and ends[0] >= min_turn


def _border_corners(labels, boxes, a, b, window):
    """Concavity of the joint outline of `a` and `b` at each end of their border.

    The border between them reaches the joint outline at (usually) two
    ends; the outline's strongest concavity (:func:`outline_concavity`)
    within half a `window` of each end is taken at each. Two round nuclei
    that touch have a corner at both ends (each the angle between their
    outlines); pieces of one nucleus have none. An end within reach of a
    third region is not seen (that region's contact makes a corner there).
    Returns the concavity (radians, at least 0) at each end seen.
    """
    from scipy import ndimage

    sa, sb = boxes[a - 1], boxes[b - 1]
    box = tuple(slice(max(min(p.start, q.start) - 2, 0), max(p.stop, q.stop) + 2)
                for p, q in zip(sa, sb))
    crop = labels[box]
    ra, rb = crop == a, crop == b
    union = ra | rb
    border = (ra & ndimage.binary_dilation(rb)) | (rb & ndimage.binary_dilation(ra))
    ends, n = ndimage.label(border & ndimage.binary_dilation(~union), np.ones((3, 3), bool))
    if n == 0:
        return []
    points, concavity = outline_concavity(union, window)
    if len(points) == 0:
        return []
    others = np.argwhere((crop > 0) & ~union)
    reach = window / 2 + 1
    seen = []
    for k in range(1, n + 1):
        at = np.argwhere(ends == k)
        if len(others) and np.min(np.hypot(others[:, :1] - at[:, 0],
                                           others[:, 1:] - at[:, 1])) <= reach:
            continue  # a third nucleus is there: its contact makes that corner
        gap = np.min(np.hypot(points[:, :1] - at[:, 0], points[:, 1:] - at[:, 1]), axis=1)
        near = gap <= reach
        seen.append(float(max(concavity[near].max(), 0.0)) if near.any() else 0.0)
    return seen


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


def _keep_seeded_piece(labels, seeds):
    """Drop fragments: keep, of each label, the connected piece that holds its seed.

    `seeds` is the (N, 2) array of label 1..N's seed pixels (each seed is
    above its own cut, so its piece exists).
    """
    from scipy import ndimage

    pieces, n = ndimage.label(labels > 0)
    if n == 0:
        return labels
    keep = np.zeros(n + 1, bool)
    keep[pieces[tuple(np.asarray(seeds).T)]] = True
    keep[0] = False
    out = labels.copy()
    out[~keep[pieces]] = 0
    # a piece holding two seeds keeps both labels; a label's stray pieces go
    own = np.zeros(labels.max() + 1, np.int64)
    own[np.arange(1, len(seeds) + 1)] = pieces[tuple(np.asarray(seeds).T)]
    out[(out > 0) & (own[out] != pieces)] = 0
    return out
