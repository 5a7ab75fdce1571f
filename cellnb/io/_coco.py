"""COCO instance-segmentation files as :class:`Record` objects (one per image).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._shared.validation import check_labels
from ._images import read_image

__all__ = ["Record", "read_coco", "label_rles", "CLASS_COLUMN"]

#: Column of a cell table that holds each cell's class name.
CLASS_COLUMN = "class_name"


@dataclass
class Record:
    """One annotated image.

    Attributes
    ----------
    id : str
        Unique name of the image (a pair id, or a COCO file name stem).
    image : ndarray or None
        The transmitted-light image (None when not loaded).
    labels : (H, W) int32 ndarray
        Cell label image, 0 = background.
    cells : DataFrame
        One row per cell, indexed by ``label`` (features, class, score, ...).
    provenance : dict
        Where the record came from (source paths, config, model, versions).
    """

    id: str
    image: np.ndarray | None
    labels: np.ndarray
    cells: pd.DataFrame
    provenance: dict = field(default_factory=dict)


def _coco_source(source):
    """Return (coco dict, json path or None) for a path, split folder or dict."""
    if isinstance(source, Mapping):
        return dict(source), None
    if not isinstance(source, (str, Path)):
        raise TypeError(f"a COCO source is a .json path, a split folder or a dict, got "
                        f"{type(source).__name__}.")
    path = Path(source)
    if path.is_dir():
        candidates = sorted(path.glob("*.json"))
        if len(candidates) != 1:
            raise ValueError(f"{path} must hold exactly one COCO .json file, found "
                             f"{[c.name for c in candidates]}; pass the json path instead.")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"COCO file {path} does not exist.")

    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"{path} is not a valid COCO file: key(s) {twice} appear twice in "
                             "one object; keep one.")
        return dict(pairs)

    try:
        coco = json.loads(path.read_text(), object_pairs_hook=no_repeats)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a text (UTF-8) JSON file: {err}") from err
    return coco, path


def label_rles(labels):
    """COCO run-length encoding of every cell of a label image.

    Yields ``(label, window, rle)`` per cell in label order: the cell's
    bounding-box slices and its exact RLE (counts as a str, JSON-ready), as
    pycocotools encodes a Fortran-ordered uint8 mask.

    Examples
    --------
    >>> labels = np.zeros((3, 4), np.int32); labels[1, 1:3] = 5
    >>> [(lab, rle["size"], rle["counts"]) for lab, _, rle in label_rles(labels)]
    [(5, [3, 4], '41202')]
    """
    from pycocotools import mask as mask_utils
    from scipy import ndimage

    labels = check_labels(labels, "labels")
    windows = ndimage.find_objects(labels)
    for lab in np.unique(labels[labels > 0]):
        window = windows[lab - 1]
        mask = np.zeros(labels.shape, np.uint8, order="F")
        mask[window] = labels[window] == lab
        rle = mask_utils.encode(mask)
        rle["counts"] = rle["counts"].decode("ascii")
        yield int(lab), window, rle


def read_coco(source, *, image_root=None, images: bool = True) -> list[Record]:
    """Read a COCO instance-segmentation dataset (one split) into records.

    Label images are rebuilt from RLE or polygon masks. COCO allows
    instances to overlap, a label image does not: contested pixels go to the
    **smaller** instance (so small cells stay visible), and the number of such
    pixels is kept in ``record.provenance["overlap_pixels"]``.

    Parameters
    ----------
    source : str, Path or dict
        A COCO ``.json`` file, a split folder holding exactly one, or the
        parsed dict.
    image_root : str or Path, optional
        Folder the ``file_name`` of each image is relative to (as Detectron2's
        ``register_coco_instances`` takes it). Default: ``images/`` beside the
        json if that exists, else the json's folder.
    images : bool, default=True
        Read the images too (set False to read annotations only).

    Returns
    -------
    records : list of Record
        One per COCO image, in the file's order. ``cells`` is indexed by
        label (1..n in annotation order, or the original labels of a cellnb
        export, kept in ``cellnb_label``) with columns ``annotation_id``,
        ``category_id``, ``class_name`` (the category's name), ``area`` (pixels
        in the label image),
        ``score`` (when present) and the box ``y0, x0, y1, x1``.

    Examples
    --------
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 5}],
    ...         "categories": [{"id": 1, "name": "cell"}],
    ...         "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0,
    ...                          "segmentation": [[1, 1, 3, 1, 3, 2, 1, 2]],
    ...                          "bbox": [1, 1, 2, 1], "area": 2}]}
    >>> record = read_coco(coco, images=False)[0]
    >>> record.labels  # pycocotools rasterises the polygon
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 0, 0],
           [0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0]], dtype=int32)
    >>> record.cells[["annotation_id", "class_name"]]
           annotation_id class_name
    label                          
    1                  7       cell
    """
    from pycocotools import mask as mask_utils


    coco, json_path = _coco_source(source)
    # checked before pycocotools (C) sees anything: it crashes on what it does not expect
    from . import _coco_schema

    _coco_schema.check(coco, f"COCO file {json_path}" if json_path else "the COCO dict")
    if image_root is None and json_path is not None:
        image_root = json_path.parent / "images"
        if not image_root.is_dir():
            image_root = json_path.parent
    if images and image_root is None:
        raise ValueError("pass image_root= to read images of a COCO dict, or images=False.")
    categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
    by_image: dict = {im["id"]: [] for im in coco["images"]}
    crowd = 0
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0):  # a region COCO tells evaluators to ignore: not a cell
            crowd += 1
            continue
        by_image[ann["image_id"]].append(ann)
    if crowd:
        import warnings

        warnings.warn(f"{crowd} annotation(s) with iscrowd=1 (groups that COCO marks as "
                      "regions to ignore) are not cells and were left out of the records.",
                      UserWarning, stacklevel=2)
    records = []
    for info in coco["images"]:
        h, w = int(info["height"]), int(info["width"])
        anns = by_image[info["id"]]
        rles = []
        for ann in anns:
            seg = ann["segmentation"]
            if isinstance(seg, list):  # polygons
                rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed
                rles.append(mask_utils.frPyObjects(seg, h, w))
            else:
                rles.append(seg)
        # cellnb's own exports carry each cell's original label; others get 1..n
        ids = [int(ann.get("cellnb_label", i + 1)) for i, ann in enumerate(anns)]
        if len(set(ids)) != len(ids):
            ids = list(range(1, len(anns) + 1))
        labels = np.zeros((h, w), np.int32)
        coverage = np.zeros((h, w), np.uint16)
        if rles:
            mask_areas = mask_utils.area(rles)
            boxes_xywh = np.asarray(mask_utils.toBbox(rles)).reshape(-1, 4).astype(int)
            for i in np.argsort(-mask_areas, kind="stable"):  # large first, small on top
                x, y, bw, bh = boxes_xywh[i]
                window = (slice(y, y + bh + 1), slice(x, x + bw + 1))
                mask = mask_utils.decode(rles[i])[window].astype(bool)
                labels[window][mask] = ids[i]
                coverage[window] += mask
        from scipy import ndimage

        top = max(ids, default=0)
        areas = np.bincount(labels.ravel(), minlength=top + 1)
        boxes = ndimage.find_objects(labels, max_label=top)
        rows = []
        for i, ann in enumerate(anns):
            row = {"label": ids[i], "annotation_id": ann.get("id"),
                   "category_id": ann.get("category_id"),
                   CLASS_COLUMN: categories.get(ann.get("category_id")),
                   "area": int(areas[ids[i]])}
            if "score" in ann:
                row["score"] = float(ann["score"])
            box = boxes[ids[i] - 1]
            row.update(zip(("y0", "x0", "y1", "x1"), (box[0].start, box[1].start, box[0].stop,
                                                      box[1].stop) if box else (0, 0, 0, 0)))
            rows.append(row)
        cells = pd.DataFrame(rows, columns=None if rows else ["label"]).set_index("label")
        image = read_image(Path(image_root) / info["file_name"], rgb=True) if images else None
        if image is not None and image.shape[:2] != (h, w):
            raise ValueError(f"image {info['file_name']} has shape {image.shape[:2]}, but the "
                             f"COCO file says ({h}, {w}).")
        records.append(Record(
            id=info.get("cellnb_id", Path(info["file_name"]).with_suffix("").as_posix()),
            image=image, labels=labels, cells=cells,
            provenance={"source": str(json_path) if json_path else None,
                        "file_name": info["file_name"], "coco_image_id": info["id"],
                        "overlap_pixels": int((coverage > 1).sum())}))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"COCO file lists the same image more than once: "
                         f"{sorted({i for i in ids if ids.count(i) > 1})}.")
    return records
