"""Corrections of automatic annotations, written back into the records of an annotate folder.

What a person decides after looking (reject a cell, bring it back, add a
missed cell, redraw one) is applied to the record's label image and cell
table, and logged in a ``curation`` section of its ``record.json``: every
edit with its prompt, the time and the cellnb version. The automatic labels
are kept beside them (``cells_auto.tif``), so a rejected cell can be
restored and any curation can be undone.

Each call rewrites the record folder atomically (the previous version stays
whole until the new one is complete). :func:`cellnb.annotate` never
overwrites a curated record silently; :func:`cellnb.annotate.read_records`
(and so export and train) read the curated labels, and each record's
``provenance["curation"]`` says what was changed.

A rejected cell keeps its row (``status`` ``"rejected"``): export leaves it
out, and its pixels are background in the curated labels.

Examples
--------
>>> import tempfile, numpy as np
>>> from cellnb import annotate, data
>>> from cellnb.annotate import read_records
>>> root = tempfile.mkdtemp()
>>> _ = data.write_pairs(data.synthetic_pairs(1, shape=(96, 96), n_cells=4, seed=0), root + "/p")
>>> _ = annotate(root + "/p", root + "/out", model="watershed", progress=False)
>>> record = read_records(root + "/out")[0]
>>> first = int(record.cells.index[0])
>>> reject(root + "/out", record.id, first)
>>> curated = read_records(root + "/out")[0]
>>> bool((curated.labels == first).any()), first in curated.cells.index
(False, False)
>>> [e["op"] for e in curated.provenance["curation"]["edits"]]
['reject']
>>> undo(root + "/out", record.id)
>>> int((read_records(root + "/out")[0].labels == first).sum()) > 0
True
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .io._records import read_record, record_folder

__all__ = ["reject", "restore", "add", "replace", "replace_all", "undo", "curation", "version",
           "StaleRecordError"]


class StaleRecordError(ValueError):
    """The record changed on disk since the caller read it (another review widget, or a
    curate call from code): the edit is refused instead of undoing that change."""


def version(out, pair_id: str) -> str:
    """The record's version: a hash of its ``record.json``, which every edit rewrites.

    Pass it back as ``version=`` to an edit to have the edit refused
    (:class:`StaleRecordError`) when the record changed in between.
    """
    from ._shared.files import sha256

    return sha256(record_folder(out, pair_id) / "record.json")[:16]


def _check_version(out, pair_id, expected) -> None:
    if expected is not None and version(out, pair_id) != expected:
        raise StaleRecordError(
            f"record {pair_id!r} changed since it was read (another review widget or a curate "
            "call edited it); nothing was changed. Reload the record (review: go to it again) "
            "and repeat the edit.")


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _link_or_copy(src: Path, dst: Path) -> None:
    import os
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # history files never change: share them between versions
    except OSError:
        shutil.copy2(src, dst)


def _save(folder: Path, provenance, cells, labels, auto, edits: dict | list) -> None:
    """Write the record folder again, atomically, with `edits` appended to its curation log.

    The version being replaced is kept under ``history/<n>/`` (for :func:`undo`:
    the edits of one call are undone together).
    """
    from ._shared.files import atomic_dir
    from ._shared.provenance import versions
    from .io import write_labels

    stamp = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "cellnb": versions(("cellnb",))["cellnb"]}
    curation = dict(provenance.get("curation") or {"edits": []})
    curation["edits"] = [*curation["edits"],
                         *({**edit, **stamp} for edit in
                           ([edits] if isinstance(edits, dict) else edits))]
    provenance = {**provenance, "cells": int((cells["status"] == "kept").sum()),
                  "curation": curation}
    history = sorted((folder / "history").glob("*/record.json")) if (folder / "history").is_dir() \
        else []
    with atomic_dir(folder, overwrite=True) as tmp:
        for old in (folder / "history").rglob("*") if history else []:
            if old.is_file():
                _link_or_copy(old, tmp / old.relative_to(folder))
        snapshot = tmp / "history" / f"{len(history):04d}"
        for name in ("cells.tif", "cells.csv", "record.json"):
            _link_or_copy(folder / name, snapshot / name)
        for name in ("nuclei.tif", "cells_auto.tif"):
            if (folder / name).is_file():
                _link_or_copy(folder / name, tmp / name)
        if not (folder / "cells_auto.tif").is_file():
            write_labels(tmp / "cells_auto.tif", auto)
        write_labels(tmp / "cells.tif", labels)
        cells.to_csv(tmp / "cells.csv")
        (tmp / "record.json").write_text(json.dumps(provenance, indent=2, default=str))


def _label(cells, label) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"`label` must be an int (a cell id), got {type(label).__name__}.")
    if int(label) not in cells.index:
        raise KeyError(f"no cell {int(label)} in this record; its cells are "
                       f"{cells.index.tolist()[:20]}{' ...' if len(cells) > 20 else ''}.")
    return int(label)


def _mask(mask, shape) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"`mask` must be a boolean array, got {mask.dtype}.")
    if mask.shape != tuple(shape):
        raise ValueError(f"`mask` has shape {mask.shape}; the record's image is {tuple(shape)}.")
    if not mask.any():
        raise ValueError("`mask` is empty: a cell needs at least one pixel.")
    return mask


def _set_cell(cells, label, mask, status, curated, score=np.nan):
    y0, x0, y1, x1 = _bbox(mask)
    row = {"score": score, "area": int(mask.sum()), "y0": y0, "x0": x0, "y1": y1, "x1": x1,
           "status": status, "curated": curated}
    cells = cells.copy()
    if "curated" not in cells:
        cells["curated"] = ""
    for key, value in row.items():
        cells.loc[label, key] = value
    cells["curated"] = cells["curated"].fillna("")
    return cells


def reject(out, pair_id: str, label, *, version: str | None = None) -> None:
    """Reject cell `label` of record `pair_id`: background in the labels, left out of export.

    Parameters
    ----------
    out : str or Path
        The :func:`cellnb.annotate` output folder (or its ``records/``).
    pair_id : str
    label : int or sequence of int
        The cell's id (its nucleus' id), or several: one rewrite, one
        :func:`undo` for all, one logged edit each.
    """
    folder = record_folder(out, pair_id)
    _check_version(out, pair_id, version)
    provenance, cells, labels, auto = read_record(folder)
    many = label if isinstance(label, (list, tuple, np.ndarray, pd.Index, pd.Series)) else [label]
    chosen = [_label(cells, one) for one in many]
    chosen = [one for one in dict.fromkeys(chosen) if cells.loc[one, "status"] != "rejected"]
    if not chosen:
        return
    cells = cells.copy()
    if "curated" not in cells:
        cells["curated"] = ""
    cells["curated"] = cells["curated"].fillna("")
    edits = [{"op": "reject", "label": one, "previous_status": str(cells.loc[one, "status"])}
             for one in chosen]
    cells.loc[chosen, "status"] = "rejected"
    cells.loc[chosen, "curated"] = "rejected"
    labels = np.where(np.isin(labels, chosen), 0, labels).astype(np.int32)
    _save(folder, provenance, cells, labels, auto, edits)


def restore(out, pair_id: str, label: int, *, version: str | None = None) -> None:
    """Bring back a rejected cell `label` with its automatic mask (pixels taken since stay taken)."""
    folder = record_folder(out, pair_id)
    _check_version(out, pair_id, version)
    provenance, cells, labels, auto = read_record(folder)
    label = _label(cells, label)
    if cells.loc[label, "status"] != "rejected":
        raise ValueError(f"cell {label} is not rejected (status {cells.loc[label, 'status']!r}); "
                         "only rejected cells can be restored.")
    previous = [e for e in (provenance.get("curation") or {}).get("edits", [])
                if e["op"] == "reject" and e["label"] == label]
    mask = (auto == label) & (labels == 0)
    cells = cells.copy()
    cells.loc[label, "status"] = previous[-1]["previous_status"] if previous else "kept"
    cells.loc[label, "curated"] = "restored"
    labels = np.where(mask, label, labels).astype(np.int32)
    _save(folder, provenance, cells, labels, auto, {"op": "restore", "label": label})


def add(out, pair_id: str, mask, *, prompt: dict | None = None, score: float = np.nan,
        version: str | None = None) -> int:
    """Add a missed cell from its `mask`; return its new id.

    The new cell takes only the pixels no other cell has (a click on a
    missed cell should not eat its neighbours).

    Parameters
    ----------
    out : str or Path
    pair_id : str
    mask : (H, W) bool ndarray
    prompt : dict, optional
        What made the mask (e.g. ``{"points": [[y, x]], "labels": [1]}``),
        logged with the edit.
    score : float, optional
        The model's score of the mask.
    version : str, optional
        The record's :func:`version` when it was read: the edit is refused
        (:class:`StaleRecordError`) if the record changed since. Every edit
        takes it.

    Returns
    -------
    label : int
    """
    folder = record_folder(out, pair_id)
    _check_version(out, pair_id, version)
    provenance, cells, labels, auto = read_record(folder)
    mask = _mask(mask, labels.shape) & (labels == 0)
    if not mask.any():
        raise ValueError("every pixel of `mask` belongs to another cell already; reject or "
                         "replace that cell instead.")
    label = int(max(cells.index.max() if len(cells) else 0, labels.max(), auto.max())) + 1
    cells = _set_cell(cells, label, mask, "kept", "added", score)
    labels = np.where(mask, label, labels).astype(np.int32)
    _save(folder, provenance, cells, labels, auto,
          {"op": "add", "label": label, "prompt": prompt, "area": int(mask.sum())})
    return label


def replace(out, pair_id: str, label: int, mask, *, prompt: dict | None = None,
            score: float = np.nan, version: str | None = None) -> None:
    """Redraw cell `label` with `mask` (e.g. re-segmented with a negative point)."""
    folder = record_folder(out, pair_id)
    _check_version(out, pair_id, version)
    provenance, cells, labels, auto = read_record(folder)
    label = _label(cells, label)
    mask = _mask(mask, labels.shape) & ((labels == 0) | (labels == label))
    if not mask.any():
        raise ValueError(f"every pixel of `mask` belongs to other cells; cell {label} would be "
                         "empty.")
    labels = np.where(labels == label, 0, labels)
    labels = np.where(mask, label, labels).astype(np.int32)
    cells = _set_cell(cells, label, mask, "kept", "edited", score)
    _save(folder, provenance, cells, labels, auto,
          {"op": "replace", "label": label, "prompt": prompt, "area": int(mask.sum())})


def replace_all(out, pair_id: str, labels, *, source=None, version: str | None = None) -> dict:
    """Make an edited label image the record's cells, as one curation step (one undo).

    For corrections made elsewhere (Fiji's ROI Manager, QuPath) and read back
    with :func:`cellnb.io.read_rois` / :func:`cellnb.io.read_geojson`: a cell
    whose id is gone is rejected, one whose pixels changed is edited, a
    rejected one that is back is restored, and an id the record does not
    have is a new cell (renumbered past the record's ids if needed).

    Parameters
    ----------
    out : str or Path
    pair_id : str
    labels : (H, W) int ndarray
        The record's image size; 0 is background.
    source : str or Path, optional
        Where the labels came from, logged with the edit.
    version : str, optional
        The record's :func:`version` when it was read (see :func:`add`).

    Returns
    -------
    changes : dict
        ``{"rejected": [...], "edited": [...], "restored": [...], "added": [...]}``
        (cell ids; added cells by their id in the record).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cellnb import annotate, data
    >>> from cellnb.annotate import read_records
    >>> root = tempfile.mkdtemp()
    >>> _ = data.write_pairs(data.synthetic_pairs(1, shape=(96, 96), n_cells=4, seed=0),
    ...                      root + "/p")
    >>> _ = annotate(root + "/p", root + "/out", model="watershed", progress=False)
    >>> record = read_records(root + "/out")[0]
    >>> edited = record.labels.copy()
    >>> edited[edited == record.cells.index[0]] = 0
    >>> replace_all(root + "/out", record.id, edited)["rejected"] == [record.cells.index[0]]
    True
    """
    from ._shared.validation import check_labels

    folder = record_folder(out, pair_id)
    _check_version(out, pair_id, version)
    provenance, cells, current, auto = read_record(folder)
    labels = check_labels(labels, "labels")
    if labels.shape != current.shape:
        raise ValueError(f"`labels` has shape {labels.shape}; record {pair_id!r} is "
                         f"{current.shape}. Read the file with the record's image shape.")
    new_ids = [int(v) for v in np.unique(labels) if v > 0]
    taken = set(cells.index.tolist()) | set(np.unique(auto).tolist())
    free = int(max(taken | {0})) + 1
    out_labels = np.zeros_like(current)
    changes: dict = {"rejected": [], "edited": [], "restored": [], "added": []}
    cells = cells.copy()
    if "curated" not in cells:
        cells["curated"] = ""
    cells["curated"] = cells["curated"].fillna("")
    for label in new_ids:
        mask = labels == label
        if label in cells.index:
            status = cells.loc[label, "status"]
            same = status == "kept" and np.array_equal(mask, current == label)
            if not same:
                kind = "restored" if status == "rejected" else "edited"
                cells = _set_cell(cells, label, mask, "kept", kind, float("nan"))
                changes[kind].append(label)
        else:
            if label in taken:  # an id the record used once: give the new cell a fresh one
                label, free = free, free + 1
            cells = _set_cell(cells, label, mask, "kept", "added", float("nan"))
            changes["added"].append(label)
        out_labels[mask] = label
    for label in cells.index[(cells["status"] == "kept")].tolist():
        if label not in set(new_ids) and not (out_labels == label).any():
            cells.loc[label, ["status", "curated"]] = ["rejected", "rejected"]
            changes["rejected"].append(int(label))
    _save(folder, provenance, cells, out_labels.astype(np.int32), auto,
          {"op": "replace_all", "source": None if source is None else str(source),
           **{k: v for k, v in changes.items()}})
    return changes


def undo(out, pair_id: str, *, version: str | None = None) -> None:
    """Undo the last curation edit of record `pair_id`: its previous version comes back whole."""
    import shutil

    from ._shared.files import atomic_dir

    folder = record_folder(out, pair_id)
    _check_version(out, pair_id, version)
    history = sorted((folder / "history").glob("*/record.json")) if (folder / "history").is_dir() \
        else []
    if not history:
        raise ValueError(f"record {pair_id!r} has no curation to undo.")
    last = history[-1].parent
    with atomic_dir(folder, overwrite=True) as tmp:
        for old in folder.rglob("*"):
            if old.is_file() and last not in old.parents:
                _link_or_copy(old, tmp / old.relative_to(folder))
        for name in ("cells.tif", "cells.csv", "record.json"):
            (tmp / name).unlink()
            _link_or_copy(last / name, tmp / name)
        if len(history) == 1:  # back to the automatic record
            shutil.rmtree(tmp / "history", ignore_errors=True)
            (tmp / "cells_auto.tif").unlink(missing_ok=True)


def curation(out) -> pd.DataFrame:
    """Every curation edit of an annotate folder: one row per edit (id, op, label, time, ...).

    Examples
    --------
    >>> import tempfile
    >>> from cellnb import annotate, data
    >>> root = tempfile.mkdtemp()
    >>> _ = data.write_pairs(data.synthetic_pairs(1, shape=(96, 96), n_cells=3, seed=0), root + "/p")
    >>> _ = annotate(root + "/p", root + "/out", model="watershed", progress=False)
    >>> curation(root + "/out").empty
    True
    """
    root = Path(out)
    root = root / "records" if (root / "records").is_dir() else root
    rows = []
    for record in sorted(root.glob("*/record.json")):
        provenance = json.loads(record.read_text())
        for edit in (provenance.get("curation") or {}).get("edits", []):
            rows.append({"id": provenance["pair_id"], **edit})
    return pd.DataFrame(rows, columns=["id", "op", "label", "time", "cellnb", "prompt", "area",
                                       "previous_status"])
