"""Quality control of automatic annotations: per-cell flags, so that people look at the worst first.

Cell-APP asks the user to inspect the generated annotations before training
(its section G). With hundreds of images that means looking where something
is likely wrong. :func:`flag_cells` marks each cell of a record from what
annotation already knows, and :func:`triage` orders the pairs by how much was
flagged:

============== ==============================================================
flag           the cell (or its prompt) ...
============== ==============================================================
``dropped``    was never drawn: its prompt was dropped (duplicate of a
               neighbour's mask, empty mask, too small, covered)
``no_nucleus`` does not contain its own nucleus (needs ``nuclei=``)
``low_score``  has a SAM predicted IoU below ``min_score``
``area``       is far larger or smaller than the image's other cells
               (log area beyond ``area_mads`` median absolute deviations)
``crowded``    touches ``max_neighbours`` or more other cells (merges and
               leaks happen in crowds)
``border``     is cut by the image border
============== ==============================================================

Examples
--------
>>> import numpy as np, pandas as pd
>>> from cellnb.io import Record
>>> labels = np.zeros((20, 20), np.int32); labels[2:6, 2:6] = 1; labels[10:20, 5:9] = 2
>>> cells = pd.DataFrame({"score": [0.95, 0.4], "status": ["kept", "kept"]},
...                      index=pd.Index([1, 2], name="label"))
>>> flags = flag_cells(Record("a", None, labels, cells))
>>> flags[["low_score", "border", "n_flags"]]
       low_score  border  n_flags
label                            
1          False   False        0
2           True    True        2
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ._shared.validation import check_labels

__all__ = ["FLAGS", "flag_cells", "triage", "reject_flagged"]

#: The QC flags :func:`flag_cells` may raise on a cell, in the order they are reported.
FLAGS = ("dropped", "no_nucleus", "low_score", "area", "crowded", "border")


def _neighbour_counts(labels: np.ndarray) -> pd.Series:
    """Number of other cells each cell touches (8-connectivity), indexed by label."""
    h, w = labels.shape
    pairs = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = labels[:h - dy, max(0, -dx):w - max(0, dx)]
        b = labels[dy:, max(0, dx):w - max(0, -dx)]
        touch = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([a[touch], b[touch]], axis=1))
    pairs = np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)
    return pd.Series(np.concatenate([pairs[:, 0], pairs[:, 1]])).value_counts()


def _unknown(n: int) -> pd.arrays.BooleanArray:
    return pd.array([pd.NA] * n, dtype="boolean")


def flag_cells(record, *, nuclei=None, min_score: float = 0.7, area_mads: float = 4.0,
               max_neighbours: int = 5) -> pd.DataFrame:
    """Flag the cells of one annotated record that are likely wrong.

    Parameters
    ----------
    record : cellnb.io.Record
        An annotated image (:func:`cellnb.annotate.read_records`): its
        ``labels`` and its ``cells`` table (``status`` and ``score`` are used
        when present).
    nuclei : (H, W) int ndarray, optional
        The record's nuclei (:func:`cellnb.locate`; cell ids are nucleus ids).
        Without it ``no_nucleus`` is not checked (NA).
    min_score : float, default=0.7
        SAM predicted IoU below which a cell is ``low_score``.
    area_mads : float, default=4
        How many (normal-scaled) median absolute deviations of log area from
        the median make an ``area`` outlier; checked with 5 or more cells.
    max_neighbours : int, default=5
        Touching this many other cells or more is ``crowded``.

    Returns
    -------
    flags : DataFrame
        Indexed by ``label`` (every row of ``record.cells``, and any cell of
        the label image missing from it); one boolean column per flag of
        :data:`FLAGS` (NA where it cannot be checked), ``n_flags`` and
        ``cell_area`` (pixels).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from cellnb.io import Record
    >>> labels = np.zeros((16, 16), np.int32); labels[4:8, 4:8] = 1
    >>> nuclei = np.zeros((16, 16), np.int32); nuclei[5:7, 5:7] = 1; nuclei[12:14, 1:3] = 2
    >>> cells = pd.DataFrame({"status": ["kept", "overlap"]}, index=pd.Index([1, 2], name="label"))
    >>> flag_cells(Record("a", None, labels, cells), nuclei=nuclei)[["dropped", "no_nucleus"]]
           dropped  no_nucleus
    label                     
    1        False       False
    2         True        True
    """
    from scipy import ndimage

    labels = check_labels(record.labels, "record.labels")
    if not (isinstance(min_score, (int, float)) and 0 <= min_score <= 1):
        raise ValueError(f"`min_score` must be in [0, 1], got {min_score!r}.")
    if not (isinstance(area_mads, (int, float)) and area_mads > 0):
        raise ValueError(f"`area_mads` must be a positive number, got {area_mads!r}.")
    if isinstance(max_neighbours, bool) or not isinstance(max_neighbours, int) or max_neighbours < 1:
        raise ValueError(f"`max_neighbours` must be an int >= 1, got {max_neighbours!r}.")
    table = record.cells if record.cells is not None else pd.DataFrame()
    if "status" in table:  # cells a person rejected are decided, not suspects
        table = table[table["status"] != "rejected"]
    ids = np.union1d(np.asarray(table.index, dtype=np.int64),
                     np.unique(labels[labels > 0])).astype(np.int64)
    index = pd.Index(ids, name="label")
    area = np.bincount(labels.ravel(), minlength=int(ids.max(initial=0)) + 1)[ids]
    drawn = pd.Series(area > 0, index=index)
    flags = pd.DataFrame(index=index)

    status = table["status"].reindex(index).fillna("kept") if "status" in table else "kept"
    flags["dropped"] = ~drawn | (status != "kept")

    if nuclei is None:
        flags["no_nucleus"] = _unknown(len(ids))
    else:
        nuclei = check_labels(nuclei, "nuclei")
        if nuclei.shape != labels.shape:
            raise ValueError(f"`nuclei` (shape {nuclei.shape}) must match the record's labels "
                             f"{labels.shape}.")
        size = np.asarray(ndimage.sum_labels(np.ones_like(nuclei), nuclei, index=ids))
        inside = np.asarray(ndimage.sum_labels(labels == nuclei, nuclei, index=ids))
        # most of the nucleus must lie in its cell; a cell whose id is no nucleus: unknown
        flags["no_nucleus"] = pd.array(np.where(size > 0, inside < 0.5 * size, None),
                                       dtype="boolean")

    if "score" in table:
        score = table["score"].reindex(index)
        flags["low_score"] = pd.array(np.where(score.notna(), score < min_score, None),
                                      dtype="boolean")
    else:
        flags["low_score"] = _unknown(len(ids))

    if int(drawn.sum()) >= 5:
        log_area = np.log(np.where(drawn, area, 1).astype(float))
        median = np.median(log_area[drawn])
        mad = max(np.median(np.abs(log_area[drawn] - median)), 0.05)  # never divide by ~0
        flags["area"] = drawn & (np.abs(log_area - median) > area_mads * 1.4826 * mad)
    else:
        flags["area"] = _unknown(len(ids))

    touching = _neighbour_counts(labels).reindex(index).fillna(0)
    flags["crowded"] = drawn & (touching >= max_neighbours)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    flags["border"] = index.isin(np.unique(edge[edge > 0]))

    flags = flags[list(FLAGS)].astype("boolean")
    flags["n_flags"] = flags.fillna(False).sum(axis=1).astype(int)
    flags["cell_area"] = area.astype(int)
    return flags


def _from_folder(out) -> tuple[list, dict]:
    """Records of an annotate folder with every prompt's row (dropped ones too) and their nuclei."""
    from .io import Record, read_labels
    from .io._records import read_record_files, record_folders

    records, nuclei = [], {}
    for folder in record_folders(out):
        provenance, cells, labels = read_record_files(folder)
        pair_id = provenance["pair_id"]
        records.append(Record(pair_id, None, labels, cells, provenance))
        if (folder / "nuclei.tif").is_file():
            nuclei[pair_id] = read_labels(folder / "nuclei.tif")
    return records, nuclei


def triage(records: Iterable, *, nuclei=None, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flag the cells of many records; order the pairs so the most flagged come first.

    Parameters
    ----------
    records : iterable of cellnb.io.Record, or an annotate output folder
        From a folder, every prompt's row is read (dropped ones too, which
        :func:`cellnb.annotate.read_records` leaves out) and each record's
        nuclei with it.
    nuclei : mapping of record id -> (H, W) int ndarray, optional
        Each record's nuclei, for ``no_nucleus``.
    **options
        Thresholds of :func:`flag_cells`.

    Returns
    -------
    pairs : DataFrame
        One row per record, most flagged first: ``id``, ``cells``,
        ``flagged`` (cells with any flag), one count per flag.
    cells : DataFrame
        :func:`flag_cells` of every record, with an ``id`` column, most
        flagged cells first.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from cellnb.io import Record
    >>> good = np.zeros((20, 20), np.int32); good[4:9, 4:9] = 1
    >>> bad = good.copy(); bad[0:4, 12:20] = 2
    >>> t = pd.DataFrame({"status": ["kept"]}, index=pd.Index([1], name="label"))
    >>> pairs, cells = triage([Record("good", None, good, t), Record("bad", None, bad, t)])
    >>> pairs[["id", "cells", "flagged", "border"]]
         id  cells  flagged  border
    0   bad      2        1       1
    1  good      1        0       0
    """
    if isinstance(records, (str, bytes)) or hasattr(records, "is_dir"):
        records, found = _from_folder(records)
        nuclei = found if nuclei is None else nuclei
    tables, rows = [], []
    for record in records:
        flags = flag_cells(record, nuclei=None if nuclei is None else nuclei.get(record.id),
                           **options)
        flagged = flags["n_flags"] > 0
        row = {"id": record.id, "cells": int((flags["cell_area"] > 0).sum()),
               "flagged": int(flagged.sum())}
        row.update({flag: int(flags[flag].fillna(False).sum()) for flag in FLAGS})
        rows.append(row)
        tables.append(flags.reset_index().assign(id=record.id))
    if not rows:
        raise ValueError("no records to triage.")
    pairs = (pd.DataFrame(rows).sort_values(["flagged", "id"], ascending=[False, True])
             .reset_index(drop=True))
    cells = (pd.concat(tables, ignore_index=True)
             .sort_values(["n_flags", "id", "label"], ascending=[False, True, True])
             .reset_index(drop=True))
    return pairs, cells[["id", "label", *FLAGS, "n_flags", "cell_area"]]


def reject_flagged(out, flags, *, min_flags: int = 1, **options) -> pd.DataFrame:
    """Reject, in the records of an annotate folder, every drawn cell with any of `flags`.

    The way to leave flagged cells out of export and training: nothing is
    rejected unless you name the flags, and each record's rejections are
    one :func:`cellnb.curate.undo`. Rejected cells become background in the
    curated labels (as when you reject them by hand), so prefer the flags
    that mark wrong masks (``no_nucleus``, ``area``) over those that mark
    hard places (``border``, ``crowded``).

    Parameters
    ----------
    out : str or Path
        The :func:`cellnb.annotate` output folder.
    flags : sequence of str
        Names from :data:`FLAGS` (``dropped`` cells have no pixels to reject
        and are skipped).
    min_flags : int, default=1
        Reject a cell when it has at least this many of `flags`.
    **options
        Thresholds of :func:`flag_cells`.

    Returns
    -------
    rejected : DataFrame
        ``id``, ``label`` and the flags of each rejected cell.

    Examples
    --------
    >>> import tempfile
    >>> from cellnb import annotate, data
    >>> root = tempfile.mkdtemp()
    >>> _ = data.write_pairs(data.synthetic_pairs(1, shape=(96, 96), n_cells=4, seed=0), root + "/p")
    >>> _ = annotate(root + "/p", root + "/out", model="watershed", progress=False)
    >>> list(reject_flagged(root + "/out", ["border"]).columns)
    ['id', 'label', 'border']
    """
    from . import curate

    if isinstance(flags, str) or not flags or not set(flags) <= set(FLAGS):
        raise ValueError(f"`flags` must be a non-empty list of names from {list(FLAGS)}, got "
                         f"{flags!r}.")
    if isinstance(min_flags, bool) or not isinstance(min_flags, int) or \
            not 1 <= min_flags <= len(flags):
        raise ValueError(f"`min_flags` must be an int from 1 to {len(flags)}, got {min_flags!r}.")
    _, cells = triage(out, **options)
    chosen = list(flags)
    hits = cells[chosen].fillna(False).astype(bool).sum(axis=1) >= min_flags
    rejected = cells[hits & (cells["cell_area"] > 0)][["id", "label", *chosen]]
    for pair_id, group in rejected.groupby("id", sort=True):
        curate.reject(out, pair_id, group["label"].astype(int).tolist())
    return rejected.sort_values(["id", "label"]).reset_index(drop=True)
