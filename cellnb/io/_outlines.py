"""Cells drawn in Fiji (ImageJ ROIs) or QuPath (GeoJSON), read back as label images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._shared.validation import check_pixels

__all__ = ["read_rois", "read_geojson"]


def _object_shape(shape) -> tuple[int, int]:
    ok = (isinstance(shape, (tuple, list)) and len(shape) >= 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                  for v in shape[:2]))
    if not ok:
        raise ValueError(f"`shape` must be the image's (height, width), got {shape!r}; pass "
                         "record.labels.shape or image.shape[:2].")
    check_pixels(shape[:2], np.int32, "`shape`")
    return int(shape[0]), int(shape[1])


def read_rois(path, shape) -> tuple[np.ndarray, pd.Series]:
    """Cells drawn or corrected in Fiji: an ImageJ ROI zip (ROI Manager > More > Save) or .roi.

    Area ROIs (polygons, freehand, traced, rectangles, ovals, composites with
    holes) are filled by pixel centres, as ImageJ fills them; lines and
    points are skipped. A ROI named by an id > 0 (cellnb's export names
    them so) keeps it; the others (drawn in Fiji) get the next free ids in
    file order. Pass the labels to :func:`cellnb.curate.replace_all` to keep the
    corrections in the record.

    Parameters
    ----------
    path : str or Path
        ``.zip`` of ROIs or one ``.roi``.
    shape : (int, int)
        The image's height and width (a ROI file does not hold it).

    Returns
    -------
    labels : (H, W) int32 ndarray
    groups : Series
        ImageJ's ROI group of each cell (cellnb writes 1, 2, ... for its
        classes in sorted order), indexed by label; cells without a group
        are absent.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cellnb.export import export
    >>> from cellnb.io import Record
    >>> labels = np.zeros((12, 12), np.int32); labels[2:6, 2:6] = 1; labels[3, 3] = 0
    >>> labels[6:10, 2:9] = 2
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = export([Record("a", np.zeros((12, 12), np.uint8), labels, pd.DataFrame())],
    ...            folder / "ds", splits={"train": 1}, formats=["imagej-roi"])
    >>> back, _ = read_rois(folder / "ds" / "train" / "imagej-roi" / "a.zip", labels.shape)
    >>> bool((back == labels).all())
    True
    """
    from ._objects import read_rois as read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ROI file {path} does not exist.")
    shape = _object_shape(shape)
    try:
        labels, groups = read(path, shape)
    except Exception as err:  # roifile on a damaged zip / roi: name the file, keep the cause
        raise ValueError(f"cannot read ImageJ ROIs from {path}: {err}") from err
    return labels, pd.Series(groups, dtype="Int64", name="group").rename_axis("label")


def read_geojson(path, shape) -> tuple[np.ndarray, pd.Series]:
    """Cells drawn or corrected in QuPath: a GeoJSON FeatureCollection (File > Export objects).

    Polygon and MultiPolygon features (holes included) are filled by pixel
    centres; a feature named by an id > 0 (cellnb's export names them so)
    keeps it, the others get the next free ids; classifications come back
    as class names. Pass
    the labels to :func:`cellnb.curate.replace_all` to keep the corrections.

    Parameters
    ----------
    path : str or Path
    shape : (int, int)
        The image's height and width.

    Returns
    -------
    labels : (H, W) int32 ndarray
    classes : Series
        QuPath classification name of each cell, indexed by label; cells
        without one are absent.

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> labels = np.zeros((8, 8), np.int32); labels[1:4, 1:6] = 7
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cells.geojson"
    >>> feature = {"type": "Feature", "properties": {"name": "7", "classification":
    ...            {"name": "mitotic"}}, "geometry": {"type": "Polygon",
    ...            "coordinates": [[[1, 1], [6, 1], [6, 4], [1, 4], [1, 1]]]}}
    >>> _ = path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    >>> back, classes = read_geojson(path, (8, 8))
    >>> bool((back == labels).all()), classes.to_dict()
    (True, {7: 'mitotic'})
    """
    from ._objects import read_geojson as read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GeoJSON file {path} does not exist.")
    shape = _object_shape(shape)
    labels, classes = read(path, shape)
    return labels, pd.Series(classes, dtype=object, name="class_name").rename_axis("label")
