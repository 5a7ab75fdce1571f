"""Export annotated records as a COCO dataset (plus label TIFFs, Cell-APP and Cellpose layouts).

Layout of ``export(records, out, name="dataset")``::

    out/
      provenance.json                 config, model, versions, counts per split and class
      train/dataset_train.json        COCO instances (pycocotools / Detectron2 ready)
      train/images/<id>.png|.tif      the TL image, lossless, original bit depth
      train/labels/<id>.tif           int32 label image        (formats += "labels")
      train/annotations/<id>_cell<k>.png   one 0/255 mask per cell (formats += "cellapp")
      train/cellpose/<id>_img.tif, <id>_masks.tif            (formats += "cellpose")
      train/ome-zarr/<id>.ome.zarr    image + labels/cells, pixel size (formats += "ome-zarr")
      val/ ...  test/ ...

Detectron2: ``register_coco_instances(name, {}, out/"train/dataset_train.json",
out/"train/images")``; every ``file_name`` is relative to that images folder.
The whole folder is built beside `out` and renamed into place at the end, so
a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._shared.files import atomic_dir, atomic_path, recover
from ._shared.validation import BoundedPattern, as_generator, check_labels
from .classify import CLASS_COLUMN
from .io import check_pair_id

__all__ = ["export", "assign_splits", "FORMATS"]

#: What :func:`export` can write besides the COCO json (see the module docstring for the layout).
FORMATS = ("coco", "labels", "cellapp", "cellpose", "ome-zarr", "imagej-roi", "qupath-geojson")


# ---------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------
def _groups(ids, group) -> list[str]:
    if group is None:
        return list(ids)
    if callable(group):
        return [str(group(i)) for i in ids]
    if isinstance(group, Mapping):
        missing = [i for i in ids if i not in group]
        if missing:
            raise ValueError(f"`group` has no entry for record(s) {missing[:5]}.")
        return [str(group[i]) for i in ids]
    if isinstance(group, str):
        pattern = BoundedPattern(group, "group")
        out = []
        for i in ids:
            match = pattern.search(i)
            if not match:
                raise ValueError(f"`group` pattern {group!r} does not match record id {i!r}.")
            out.append(match.group(1) if match.groups() else match.group(0))
        return out
    raise TypeError("`group` must be a regex (its first group, or the match, names the "
                    f"group), a mapping id -> group, or a callable; got {type(group).__name__}.")


def assign_splits(ids: Sequence[str], splits, *, group=None, seed=0) -> dict[str, list[str]]:
    """Assign record ids to splits, keeping each group (well, plate) in one split.

    Parameters
    ----------
    ids : sequence of str
        Record ids.
    splits : mapping {split: fraction} or {split: [ids]}
        Fractions (normalised to sum 1; groups are shuffled with `seed` and
        dealt out by cumulative fraction) or explicit id lists, as Cell-APP's
        ranges. Every listed split must receive at least one record.
    group : str, mapping or callable, optional
        What keeps records together: a regex on the id (first group, e.g.
        ``r"^(plate\\d+_well\\w+)"``), a mapping id -> group, or a callable.
    seed : int or Generator, default=0

    Returns
    -------
    splits : dict {split: [ids]}

    Examples
    --------
    >>> ids = ["A1_t0", "A1_t1", "B2_t0", "B2_t1", "C3_t0", "C3_t1"]
    >>> out = assign_splits(ids, {"train": 2 / 3, "test": 1 / 3}, group=r"^(\\w\\d)_")
    >>> sorted(len(v) for v in out.values())
    [2, 4]
    >>> {i[:2] for i in out["test"]} & {i[:2] for i in out["train"]}
    set()
    """
    ids = [str(i) for i in ids]
    if not isinstance(splits, Mapping) or not splits:
        raise TypeError("`splits` must be a non-empty mapping {split: fraction or [ids]}.")
    for split in splits:
        if not (isinstance(split, str) and re.fullmatch(r"[A-Za-z0-9][\w\-]*", split)):
            raise ValueError(f"split name {split!r} must be a plain folder name (letters, "
                             "digits, '_', '-'; no '/', '.' or leading symbol), e.g. 'train'.")
    values = list(splits.values())
    if all(isinstance(v, (list, tuple)) for v in values):
        seen, out = set(), {}
        for split, members in splits.items():
            members = [str(m) for m in members]
            unknown = sorted(set(members) - set(ids))
            if unknown:
                raise ValueError(f"split {split!r} lists unknown record id(s) {unknown[:5]}.")
            twice = sorted(seen & set(members))
            if twice:
                raise ValueError(f"record id(s) {twice[:5]} are in more than one split.")
            if not members:
                raise ValueError(f"split {split!r} is empty.")
            seen |= set(members)
            out[split] = members
        return out
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
               for v in values) or sum(values) <= 0:
        raise ValueError(f"`splits` fractions must be numbers >= 0 with a positive sum, "
                         f"got {dict(splits)}.")
    keys = _groups(ids, group)
    unique = list(dict.fromkeys(keys))
    order = as_generator(seed).permutation(len(unique))
    shuffled = [unique[k] for k in order]
    fractions = np.array(values, float) / sum(values)
    bounds = np.round(np.cumsum(fractions) * len(shuffled)).astype(int)
    out, start = {}, 0
    for (split, fraction), stop in zip(splits.items(), bounds):
        chosen = set(shuffled[start:stop])
        start = stop
        if fraction > 0 and not chosen:
            raise ValueError(
                f"split {split!r} would be empty: {len(unique)} "
                f"{'group' if group is not None else 'record'}(s) cannot fill "
                f"{ {k: round(float(f), 3) for k, f in zip(splits, fractions)} }; add data, "
                "merge splits or list the ids per split explicitly.")
        out[split] = [i for i, k in zip(ids, keys) if k in chosen]
    return {k: v for k, v in out.items() if v}


# ---------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------
def _write_image(folder: Path, stem: str, image: np.ndarray) -> str:
    """Lossless, original bit depth: PNG for uint8/uint16, TIFF otherwise."""
    if image.dtype in (np.uint8, np.uint16):
        import imageio.v3 as iio

        name = f"{stem}.png"
        iio.imwrite(folder / name, image)
    else:
        import tifffile

        name = f"{stem}.tif"
        tifffile.imwrite(folder / name, image)
    return name


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a binary mask as COCO polygons ([x0, y0, x1, y1, ...])."""
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.uint8), 1)
    polygons = []
    for contour in find_contours(padded, 0.5):
        if len(contour) < 3:
            continue
        xy = np.flip(contour - 1, axis=1) + 0.5  # (row, col) -> (x, y), pixel-centre corners
        polygons.append(np.round(xy.ravel(), 2).tolist())
    return polygons


def _annotations(record, image_id, start_id, categories, masks_kind):
    from pycocotools import mask as mask_utils
    from scipy import ndimage

    from .io._coco import label_rles

    labels = record.labels
    classes = record.cells[CLASS_COLUMN].astype(str) if CLASS_COLUMN in record.cells else None
    scores = record.cells["score"] if "score" in record.cells.columns else None
    anns = []
    for k, (lab, window, rle) in enumerate(label_rles(labels)):
        cell = labels[window] == lab
        if masks_kind == "rle" or not np.array_equal(ndimage.binary_fill_holes(cell), cell):
            # exact; also for cells with holes, which COCO polygons (outer contours) would fill
            segmentation = {"size": rle["size"], "counts": rle["counts"]}
        else:
            mask = np.zeros(labels.shape, np.uint8)
            mask[window] = cell
            segmentation = _polygons(mask)
        name = classes.get(lab, "cell") if classes is not None else "cell"
        ann = {"id": start_id + k, "image_id": image_id, "category_id": categories[name],
               "iscrowd": 0, "segmentation": segmentation,
               "area": float(mask_utils.area(rle)),
               "bbox": [float(v) for v in mask_utils.toBbox(rle)], "cellnb_label": int(lab)}
        if scores is not None and lab in scores.index:
            ann["score"] = float(scores[lab])
        anns.append(ann)
    return anns


def _check_records(records):
    from .io import Record

    if isinstance(records, (str, Path)):
        from .annotate import read_records

        records = read_records(records)
    records = list(records)
    if not records:
        raise ValueError("`records` is empty: nothing to export.")
    for k, r in enumerate(records):
        if not isinstance(r, Record):
            raise TypeError(f"records[{k}] must be a cellnb.io.Record, got {type(r).__name__}.")
        if r.image is None:
            raise ValueError(f"record {r.id!r} has no image; read it with images=True.")
        labels = check_labels(r.labels, f"record {r.id!r} labels")
        if labels.shape != r.image.shape[:2]:
            raise ValueError(f"record {r.id!r}: labels (shape {labels.shape}) do not match its "
                             f"image (shape {r.image.shape}); each label image must cover its "
                             "image pixel for pixel.")
        try:
            check_pair_id(r.id)
        except ValueError:
            raise ValueError(f"record id {r.id!r} cannot be a file name; use letters, digits, "
                             "'_', '-', '.', spaces (and '/' for sub-folders).") from None
    ids = [r.id for r in records]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"duplicate record ids {twice[:5]}; every record needs its own id.")
    return records


def export(records, out, *, name=None, splits=None, group=None, seed=None, classes=None,
           masks=None, formats=None, zip: bool = False, overwrite: bool = False, config=None,
           progress: bool = True, callback=None) -> Path:
    """Write annotated records as a COCO dataset with train/val/test splits.

    Parameters
    ----------
    records : sequence of cellnb.io.Record, or an annotate output folder
        Annotated images (TL image, cell labels, per-cell table with an
        optional class column ``class_name`` and ``score``), or the folder
        :func:`cellnb.annotate` wrote (read with
        :func:`cellnb.annotate.read_records`).
    out : str or Path
        Dataset folder to create.
    name : str, optional
        Dataset name: ``<split>/<name>_<split>.json``. Default
        ``config.export.name``, else ``"dataset"``.
    splits : mapping, optional
        Fractions or explicit id lists (see :func:`assign_splits`). Default
        ``config.export.splits``, else ``{"train": 0.8, "val": 0.1, "test": 0.1}``.
    group : str, mapping or callable, optional
        Keeps a well / plate in one split (see :func:`assign_splits`), so
        train and test never share one. Default ``config.export.group``,
        else each record's *position* (``provenance["position"]``, set for
        the planes of a microscope file: every time point and z plane of one
        field of view lands in one split, as Cell-APP's general notes ask,
        because they show the same cells), else each record alone.
    seed : int, optional
        Seed of the split assignment. Default ``config.seed``, else 0.
    classes : sequence of str, optional
        Category names in id order (1, 2, ...). Default: the classes found
        in the records (sorted), or one category ``"cell"``.
    masks : {"rle", "polygon"}, optional
        COCO segmentation encoding. RLE is exact; polygons trace outer
        contours, so cells with holes are written as RLE even then (COCO
        allows both in one file; the count is in ``provenance.json`` and a
        warning). Default ``config.export.masks``, else "rle".
    formats : sequence of {"coco", "labels", "cellapp", "cellpose", "ome-zarr", \
"imagej-roi", "qupath-geojson"}, optional
        What to write per split (COCO json and images are always written).
        ``"imagej-roi"``: one ROI zip per image for Fiji's ROI Manager
        (polygons along pixel edges; composite ROIs for cells with holes;
        named by cell id, grouped by class). ``"qupath-geojson"``: one
        GeoJSON FeatureCollection per image as QuPath imports objects (class
        = QuPath classification). Both read back exactly with
        :func:`cellnb.io.read_rois` / :func:`cellnb.io.read_geojson`; napari
        opens the ``labels`` TIFFs and ``ome-zarr`` as label layers.
        Default ``config.export.formats``, else ``("coco", "labels")``.
    zip : bool, default=False
        Also write ``<out>.zip`` holding the dataset under one top folder.
    overwrite : bool, default=False
        Replace an existing `out` (only once the new dataset is complete).
    config : cellnb.Config, optional
        Its ``export`` section gives the defaults of the options above
        (explicit arguments win); recorded in ``provenance.json``.
    progress : bool, default=True
        Progress bar over records (on by default, as for every verb that loops over
        many pairs, files or epochs).
    callback : callable, optional
        Called as ``callback(done, total)`` after each record is written.

    Returns
    -------
    out : Path

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, pandas as pd
    >>> from cellnb.io import Record, read_coco
    >>> labels = np.zeros((32, 32), np.int32); labels[4:12, 4:12] = 1; labels[20:28, 8:16] = 2
    >>> records = [Record(f"im{i}", np.zeros((32, 32), np.uint16), labels, pd.DataFrame())
    ...            for i in range(3)]
    >>> out = export(records, pathlib.Path(tempfile.mkdtemp()) / "ds",
    ...              splits={"train": 2, "test": 1})
    >>> sorted(p.name for p in out.iterdir())
    ['provenance.json', 'test', 'train']
    >>> back = read_coco(out / "test")
    >>> bool((back[0].labels == labels).all())
    True
    """
    from ._shared.progress import Progress, check_callback
    from .config import Config, ExportConfig

    if config is not None and not isinstance(config, Config):
        raise TypeError(f"`config` must be a cellnb.Config, got {type(config).__name__}.")
    check_callback(callback)
    defaults = config.export if config is not None else ExportConfig()
    name = defaults.name if name is None else name
    splits = dict(defaults.splits) if splits is None else splits
    group = defaults.group if group is None else group
    seed = (config.seed if config is not None else 0) if seed is None else seed
    masks = defaults.masks if masks is None else masks
    formats = defaults.formats if formats is None else formats
    records = _check_records(records)
    if masks not in ("rle", "polygon"):
        raise ValueError(f"`masks` must be 'rle' or 'polygon', got {masks!r}.")
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {list(FORMATS)}.")
    if not re.fullmatch(r"[\w.\-]+", name):
        raise ValueError(f"`name` {name!r} must be usable in a file name.")
    if group is None:  # planes of one field of view (all t and z) stay in one split
        group = {r.id: str(r.provenance.get("position") or r.id) for r in records}
    by_split = assign_splits([r.id for r in records], splits, group=group, seed=seed)

    found = sorted({str(c) for r in records if CLASS_COLUMN in r.cells
                    for c in r.cells[CLASS_COLUMN]})
    if classes is None:
        classes = found or ["cell"]
    classes = [str(c) for c in classes]
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"class name(s) {unknown} in the records are not in `classes` "
                         f"{classes}; add them or rename the classes.")
    categories = {c: k for k, c in enumerate(classes, start=1)}
    if not found:
        categories.setdefault("cell", len(categories) + 1)

    by_id = {r.id: r for r in records}
    out = Path(out)
    key = _export_key(records, by_split, name, masks, formats, categories)
    recover(out.parent, out.name)  # what an interrupted export of `out` left beside it
    if out.exists():
        previous = _provenance_of(out)
        if previous is None:
            raise FileExistsError(f"{out} exists and is not a dataset cellnb.export wrote (no "
                                  "provenance.json of one); export replaces only its own "
                                  "datasets, even with overwrite=True: choose another `out`.")
        if previous.get("key") == key and not overwrite:  # the same export, finished before
            if zip and not _zip_is_ours(out.with_name(out.name + ".zip"), out.name):
                _check_zip_target(out, overwrite=False)  # a missing zip is written again
                _zip(out)
            return out
        if not overwrite:
            raise FileExistsError(f"{out} already holds a dataset made from other records or "
                                  "settings; pass overwrite=True to replace it.")
    if zip:
        _check_zip_target(out, overwrite)
    counts, as_rle = {}, 0
    with atomic_dir(out, overwrite=overwrite) as tmp, Progress(
            len(records), "export", progress=progress, callback=callback,
            unit="image") as bar:
        for split, ids in by_split.items():
            root = tmp / split
            (root / "images").mkdir(parents=True)
            images, anns = [], []
            for image_id, rid in enumerate(ids, start=1):
                record = by_id[rid]
                stem = check_pair_id(rid)
                file_name = _write_image(root / "images", stem, record.image)
                h, w = record.labels.shape
                images.append({"id": image_id, "file_name": file_name, "height": h, "width": w,
                               "cellnb_id": rid})
                anns += _annotations(record, image_id, len(anns) + 1, categories, masks)
                _write_extra(root, stem, record, formats)
                bar.update()
            coco = {"info": {"description": name, "split": split, "version": "1.0",
                             "contributor": "cellnb"},
                    "licenses": [], "images": images, "annotations": anns,
                    "categories": [{"id": k, "name": c} for c, k in categories.items()]}
            (root / f"{name}_{split}.json").write_text(json.dumps(coco))
            as_rle += sum(isinstance(a["segmentation"], dict) for a in anns)
            per_class = pd.Series([a["category_id"] for a in anns], dtype=int).value_counts()
            counts[split] = {"images": len(images), "cells": len(anns),
                             "cells_per_class": {c: int(per_class.get(k, 0))
                                                 for c, k in categories.items()}}
        (tmp / "provenance.json").write_text(json.dumps(
            {**_provenance(records, by_split, counts, name, masks, formats, config, seed),
             "key": key, "rle_for_cells_with_holes": as_rle if masks == "polygon" else None},
            indent=2, default=str))
    if masks == "polygon" and as_rle:
        import warnings

        warnings.warn(f"{as_rle} cell(s) have holes, which COCO polygons cannot hold: they are "
                      "written as exact RLE instead (masks='rle' writes every cell that way).",
                      UserWarning, stacklevel=2)
    if zip:
        _zip(out)
    return out


def _export_key(records, by_split, name, masks, formats, categories) -> str:
    """What identifies an export: its settings and every record's pixels, labels and classes."""
    import hashlib

    from .models._sam import image_key

    digest = hashlib.sha256(json.dumps([name, masks, list(formats), categories, by_split],
                                       sort_keys=True, default=str).encode())
    for r in sorted(records, key=lambda r: r.id):
        classes = (r.cells[CLASS_COLUMN].astype(str).to_dict() if CLASS_COLUMN in r.cells
                   else {})
        digest.update(f"{r.id}|{image_key(r.image)}|{image_key(r.labels)}|"
                      f"{sorted(classes.items())}".encode())
    return digest.hexdigest()


def _provenance_of(out: Path) -> dict | None:
    """The provenance of a dataset cellnb.export wrote, or None for any other folder."""
    path = Path(out) / "provenance.json"
    if not path.is_file():
        return None
    try:
        provenance = json.loads(path.read_text())
    except ValueError:
        return None
    return provenance if isinstance(provenance, dict) and "splits" in provenance else None


def _zip_is_ours(target: Path, top: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(target) as archive:
            return f"{top}/provenance.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _check_zip_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace `out`.zip unless it is ours and `overwrite`."""
    target = out.with_name(out.name + ".zip")
    if not target.exists():
        return
    if not _zip_is_ours(target, out.name):
        raise FileExistsError(f"{target} exists and is not a zip cellnb.export wrote; export "
                              "does not replace it: move it, or choose another `out`.")
    if not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")

def _write_extra(root, stem, record, formats):
    import tifffile

    from .io import write_labels

    if "labels" in formats:
        write_labels(root / "labels" / f"{stem}.tif", record.labels)
    if "cellapp" in formats:
        import imageio.v3 as iio

        (root / "annotations").mkdir(exist_ok=True)
        for lab in np.unique(record.labels[record.labels > 0]):
            iio.imwrite(root / "annotations" / f"{stem}_cell{lab}.png",
                        ((record.labels == lab) * 255).astype(np.uint8))
    if "ome-zarr" in formats:  # NGFF: the image, labels/cells, the pixel size if known
        from .io.microscope import write_ome_zarr

        size = record.provenance.get("pixel_size_um")
        image = record.image if record.image.ndim == 2 else None
        if image is None:
            raise ValueError(f"record {record.id!r}: the ome-zarr format takes grey images; "
                             "this one is RGB.")
        write_ome_zarr(root / "ome-zarr" / f"{stem}.ome.zarr", image, record.labels,
                       pixel_size_um=size[1] if size else None)
    if "imagej-roi" in formats or "qupath-geojson" in formats:  # objects for Fiji / QuPath
        from .io import _objects
        from .classify import CLASS_COLUMN

        classes = None
        if CLASS_COLUMN in record.cells.columns:
            classes = {int(k): str(v) for k, v in record.cells[CLASS_COLUMN].items()
                       if isinstance(v, str) and v}
        if "imagej-roi" in formats:
            (root / "imagej-roi").mkdir(exist_ok=True)
            _objects.write_rois(record.labels, root / "imagej-roi" / f"{stem}.zip", classes)
        if "qupath-geojson" in formats:
            import json

            (root / "qupath-geojson").mkdir(exist_ok=True)
            (root / "qupath-geojson" / f"{stem}.geojson").write_text(
                json.dumps(_objects.to_geojson(record.labels, classes)))
    if "cellpose" in formats:
        (root / "cellpose").mkdir(exist_ok=True)
        tifffile.imwrite(root / "cellpose" / f"{stem}_img.tif", record.image)
        tifffile.imwrite(root / "cellpose" / f"{stem}_masks.tif", record.labels.astype(np.int32),
                         compression="zlib")


def _provenance(records, by_split, counts, name, masks, formats, config, seed):
    from ._shared.provenance import versions

    models = sorted({(r.provenance.get("model"), r.provenance.get("model_hash"))
                     for r in records if r.provenance.get("model")}, key=str)
    return {"name": name, "masks": masks, "formats": list(formats), "seed": seed,
            "splits": by_split, "counts": counts,
            "models": [{"name": m, "hash": h} for m, h in models],
            "config": config.to_dict() if config is not None else None,
            "versions": versions(),
            "overlaps_resolved": {r.id: r.provenance["overlap_pixels"] for r in records
                                  if r.provenance.get("overlap_pixels")},
            "records": {r.id: {k: v for k, v in r.provenance.items()
                               if isinstance(v, (str, int, float, bool, type(None)))}
                        for r in records}}


def _zip(out: Path) -> Path:
    """Write `out`.zip (the dataset under one top folder), atomically; callers checked it."""
    import zipfile

    target = out.with_name(out.name + ".zip")
    recover(out.parent, target.name)
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    archive.write(path, Path(out.name) / path.relative_to(out))
    return target
