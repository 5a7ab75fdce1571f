"""Cells as outlines for Fiji (ImageJ ROI zip) and QuPath (GeoJSON), and back (private).

Outlines run along pixel edges (ImageJ's and QuPath's convention: pixel (row r,
col c) covers x in [c, c + 1], y in [r, r + 1]), so they hold a cell exactly: filled
back by pixel centres with the even-odd rule, every ring of a cell (its outline,
its holes, a second piece) gives the very pixels it came from. Outer rings run
clockwise on screen and holes the other way, so a reader that fills by winding
number (java.awt's Area in ImageJ's ShapeRoi, JTS in QuPath) agrees.
"""

from __future__ import annotations

import numpy as np

#: Colour of each class in QuPath (RGB), cycling; "cell" (one class) is the first.
_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60)]


def rings(mask: np.ndarray) -> list[np.ndarray]:
    """The pixel-edge rings of a boolean mask: (N, 2) float arrays of (row, col) corners.

    Every boundary edge has the mask on its right when walked (clockwise around
    an outline on screen, anticlockwise around a hole). Where two pixels touch only
    at a corner, the walk turns so that they stay apart.

    >>> [r.tolist() for r in rings(np.array([[1]], bool))]
    [[[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]]
    """
    mask = np.pad(np.asarray(mask, bool), 1)
    nxt: dict = {}  # start corner -> list of end corners
    # four sides of each pixel whose neighbour is outside, walked with the pixel on the right
    for (dr, dc), (a, b) in (((-1, 0), ((0, 0), (0, 1))),    # top: left to right
                             ((0, 1), ((0, 1), (1, 1))),     # right: down
                             ((1, 0), ((1, 1), (1, 0))),     # bottom: right to left
                             ((0, -1), ((1, 0), (0, 0)))):   # left: up
        rows, cols = np.nonzero(mask & ~np.roll(mask, (-dr, -dc), axis=(0, 1)))
        for r, c in zip(rows.tolist(), cols.tolist()):
            nxt.setdefault((r + a[0] - 1, c + a[1] - 1), []).append(
                (r + b[0] - 1, c + b[1] - 1))
    out = []
    while nxt:
        start = next(iter(nxt))
        ring, here, heading = [start], start, None
        while True:
            ends = nxt[here]
            if len(ends) == 1 or heading is None:  # (how rings link never changes the fill)
                end = ends.pop()
            else:  # a corner shared by two diagonal pixels: turn right (keep them apart)
                right = (heading[1], -heading[0])
                end = next((e for e in ends if (e[0] - here[0], e[1] - here[1]) == right),
                           ends[0])
                ends.remove(end)
            if not ends:
                del nxt[here]
            heading = (end[0] - here[0], end[1] - here[1])
            here = end
            if here == start:  # closed (another way out of start, if any, is another ring)
                break
            ring.append(here)
        out.append(_simplify(np.array(ring, float)))
    return out


def _simplify(ring: np.ndarray) -> np.ndarray:
    """Drop corners that lie on a straight run (same outline, fewer points)."""
    before, after = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    cross = ((ring - before)[:, 0] * (after - ring)[:, 1]
             - (ring - before)[:, 1] * (after - ring)[:, 0])
    return ring[cross != 0]


def fill(ring_list, shape) -> np.ndarray:
    """Pixels whose centres lie inside an odd number of `ring_list`'s rings ((row, col))."""
    from skimage.draw import polygon

    mask = np.zeros(shape, bool)
    for ring in ring_list:
        ring = np.asarray(ring, float)
        if len(ring) < 3:
            continue
        rr, cc = polygon(ring[:, 0] - 0.5, ring[:, 1] - 0.5, shape)  # centres at integers
        inside = np.zeros(shape, bool)
        inside[rr, cc] = True
        mask ^= inside
    return mask


def _cells(labels):
    from scipy import ndimage

    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        offset = np.array([box[0].start, box[1].start], float)
        yield label, [ring + offset for ring in rings(labels[box] == label)]


# -- ImageJ ROI zip (roifile) -----------------------------------------------------------------
def write_rois(labels, path, classes=None) -> None:
    """One ImageJ ROI per cell into a zip Fiji's ROI Manager opens (polygon, or composite
    for cells with holes or several pieces); the ROI's name is the cell's label, its group
    the class index (1, 2, ... in sorted class order) when `classes` ({label: name}) is given."""
    import roifile

    names = sorted(set(classes.values())) if classes else []
    rois = []
    for label, cell in _cells(labels):
        xy = [ring[:, ::-1] for ring in cell]  # ImageJ: (x, y)
        if len(xy) == 1:
            roi = roifile.ImagejRoi.frompoints(xy[0], name=str(label))
        else:  # ImageJ's composite (ShapeRoi): a path of closed rings, absolute coordinates
            ops = _path(xy)
            corners = np.concatenate(xy)
            (left, top), (right, bottom) = corners.min(0), corners.max(0)
            roi = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, version=228,
                                    shape_roi_size=len(ops), multi_coordinates=ops,
                                    left=int(left), top=int(top), right=int(right),
                                    bottom=int(bottom), name=str(label))
        if classes and label in classes:
            roi.group = names.index(classes[label]) + 1
        rois.append(roi)
    roifile.roiwrite(path, rois, mode="w")


def _path(xy_rings) -> np.ndarray:
    """roifile's composite path: per ring MOVETO x y, LINETO x y ..., CLOSE."""
    ops = []
    for ring in xy_rings:
        ops += [0.0, *ring[0]]
        for x, y in ring[1:]:
            ops += [1.0, x, y]
        ops.append(4.0)
    return np.array(ops, np.float32)


def read_rois(path, shape) -> tuple[np.ndarray, dict]:
    """(labels, {label: group}) of an ImageJ ROI zip or .roi file: each area ROI filled by
    pixel centres (ImageJ's rule); names that are ids > 0 keep their id."""
    import roifile

    rois = roifile.roiread(path)
    rois = rois if isinstance(rois, list) else [rois]
    return _paint([(roi.name, _roi_rings(roi), roi.group) for roi in rois], shape, path)


def _roi_rings(roi) -> list[np.ndarray]:
    import roifile

    if roi.roitype in (roifile.ROI_TYPE.LINE, roifile.ROI_TYPE.POLYLINE,
                       roifile.ROI_TYPE.FREELINE, roifile.ROI_TYPE.ANGLE,
                       roifile.ROI_TYPE.POINT, roifile.ROI_TYPE.NOROI):
        return []  # no area
    if roi.multi_coordinates is not None and len(roi.multi_coordinates):
        return [np.asarray(xy, float)[:, ::-1] for xy in roi.coordinates(multi=True)]
    return [np.asarray(roi.coordinates(), float)[:, ::-1]]


# -- QuPath GeoJSON --------------------------------------------------------------------------
def to_geojson(labels, classes=None, object_type="annotation") -> dict:
    """A FeatureCollection as QuPath writes it: one Polygon / MultiPolygon feature per cell,
    ``properties.objectType``, ``properties.name`` (the label) and ``classification``."""
    names = sorted(set(classes.values())) if classes else []
    features = []
    for label, cell in _cells(labels):
        polygons = _polygons(cell)
        coordinates = [[_closed(ring[:, ::-1]) for ring in polygon] for polygon in polygons]
        geometry = ({"type": "Polygon", "coordinates": coordinates[0]} if len(coordinates) == 1
                    else {"type": "MultiPolygon", "coordinates": coordinates})
        properties = {"objectType": object_type, "name": str(label)}
        if classes and label in classes:
            colour = _COLOURS[names.index(classes[label]) % len(_COLOURS)]
            properties["classification"] = {"name": classes[label], "color": list(colour)}
        features.append({"type": "Feature", "id": f"cellnb-{label}", "geometry": geometry,
                         "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _closed(ring_xy) -> list:
    points = ring_xy.tolist()
    return points + points[:1]


def _area(ring) -> float:
    r, c = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(c, np.roll(r, -1)) - np.dot(r, np.roll(c, -1)))


def _polygons(cell) -> list[list[np.ndarray]]:
    """Rings grouped as GeoJSON wants them: each outline followed by its holes."""
    outer = [ring for ring in cell if _area(ring) > 0]
    holes = [ring for ring in cell if _area(ring) <= 0]
    groups = [[ring] for ring in outer]
    for hole in holes:
        # a pixel of the hole: left of its first edge (the cell is on the right)
        (r0, c0), (r1, c1) = hole[0], hole[1]
        dr, dc = np.sign(r1 - r0), np.sign(c1 - c0)
        probe = np.array([(r0 + r1) / 2 - dc * 0.5, (c0 + c1) / 2 + dr * 0.5])
        for group in groups:
            if _inside(probe, group[0]):
                group.append(hole)
                break
    return groups


def _inside(point, ring) -> bool:
    r, c = point
    rows, cols = ring[:, 0], ring[:, 1]
    r2, c2 = np.roll(rows, -1), np.roll(cols, -1)
    crosses = ((rows > r) != (r2 > r)) & (c < (c2 - cols) * (r - rows) / np.where(
        r2 != rows, r2 - rows, 1) + cols)
    return bool(crosses.sum() % 2)


def read_geojson(path, shape) -> tuple[np.ndarray, dict]:
    """(labels, {label: class name}) of a GeoJSON FeatureCollection (QuPath's export):
    every Polygon / MultiPolygon feature filled by pixel centres; names that are ids > 0
    keep their id; others get the next free ids."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a GeoJSON file: {err}") from None
    features = data.get("features") if isinstance(data, dict) else data
    if isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    if not isinstance(features, list):
        raise ValueError(f"{path} holds no GeoJSON features (expected a FeatureCollection or a "
                         "list of Features, as QuPath exports them).")
    objects = []
    for k, feature in enumerate(features):
        geometry = (feature or {}).get("geometry") or {}
        properties = feature.get("properties") or {}
        kind, coordinates = geometry.get("type"), geometry.get("coordinates")
        if kind not in ("Polygon", "MultiPolygon") or not isinstance(coordinates, list):
            continue  # points, lines: no area
        polygons = [coordinates] if kind == "Polygon" else coordinates
        try:
            cell = [np.asarray(ring, float)[:, :2][:, ::-1] for polygon in polygons
                    for ring in polygon]
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{path}: feature {k} has coordinates that are not [x, y] "
                             f"pairs: {err}") from None
        if any(not np.isfinite(ring).all() for ring in cell):
            raise ValueError(f"{path}: feature {k} holds a non-finite coordinate.")
        name = (properties.get("classification") or {}).get("name")
        objects.append((properties.get("name"), cell, name))
    return _paint(objects, shape, path)


def _paint(objects, shape, source) -> tuple[np.ndarray, dict]:
    """Label image of (name, rings, tag) objects: an object named by an int > 0 keeps it as
    its id (the first of repeated names), the others get the next free ids in file order;
    later objects draw over earlier ones."""
    ids: list = []
    for name, _, _ in objects:
        text = str(name).strip() if name is not None else ""
        named = int(text) if text.isdigit() and int(text) > 0 else None
        ids.append(named if named not in ids else None)
    free = max([i for i in ids if i is not None], default=0) + 1
    for k, label in enumerate(ids):
        if label is None:
            ids[k], free = free, free + 1
    labels = np.zeros(shape, np.int32)
    tags = {}
    for label, (_, cell, tag) in zip(ids, objects):
        mask = fill(cell, shape)
        if not mask.any():
            continue
        labels[mask] = label
        if tag not in (None, 0, ""):
            tags[label] = tag
    present = set(np.unique(labels).tolist())
    return labels, {k: v for k, v in tags.items() if k in present}
