"""Annotate's record folders: found, read and checked in one place (private).

This module is the one owner of the folder layout: :func:`records_root`,
:func:`record_folders` and :func:`record_folder` find records, and every reader
goes through :func:`read_record_files` / :func:`read_record`. (Writes are
annotate's and curate's, each through an atomic folder swap.)

A record folder (``<out>/records/<pair_id>/``) holds ``record.json`` (provenance),
``cells.csv`` (one row per cell, indexed by ``label``, with its ``status``) and
``cells.tif`` (the int32 cell labels). Every reader of a record (``read_records``,
``curate``, the review widget, annotate's rerun check) goes through
:func:`read_record_files`, so a damaged or hand-edited folder gives one error that
names the file, what it should hold and what to do, instead of a ``KeyError``
from pandas or a ``JSONDecodeError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .._shared.validation import check_schema

#: What to do about a damaged record: annotate writes it again.
_FIX = ("run annotate again on the same pairs (it rewrites a damaged record), or delete the "
        "folder")


class Provenance(BaseModel):
    """The keys of ``record.json`` that readers rely on; others are kept as they are."""
    model_config = ConfigDict(strict=True, extra="allow")
    pair_id: Annotated[str, Field(min_length=1)]
    tl_path: Annotated[str, Field(min_length=1)]
    fl_path: Annotated[str, Field(min_length=1)]
    model: Any
    nuclei: Annotated[int, Field(ge=0)]
    cells: Annotated[int, Field(ge=0)]
    plane: Optional[dict] = None


def read_provenance(folder: Path) -> dict:
    """``record.json`` of `folder`, checked; ValueError naming the file otherwise."""
    path = Path(folder) / "record.json"
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"record file {path} is damaged (not JSON: {err}); {_FIX}.") from None
    if not isinstance(provenance, dict):
        raise ValueError(f"record file {path} must hold a JSON object, got "
                         f"{type(provenance).__name__}; {_FIX}.")
    check_schema(Provenance, provenance, f"record file {path} is damaged", _FIX)
    return provenance


def read_cells(folder: Path) -> pd.DataFrame:
    """``cells.csv`` of `folder` indexed by ``label`` (unique ids > 0), with a ``status``."""
    path = Path(folder) / "cells.csv"
    if not path.is_file():
        raise FileNotFoundError(f"record {Path(folder).name} has no cells.csv ({path}); {_FIX}.")
    try:
        cells = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"record table {path} is damaged ({err}); {_FIX}.") from None
    missing = [c for c in ("label", "status") if c not in cells.columns]
    if missing:
        raise ValueError(f"record table {path} has no column(s) {missing} (its columns: "
                         f"{list(cells.columns)[:8]}); {_FIX}.")
    ids = pd.to_numeric(cells["label"], errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any() or (ids <= 0).any() or ids.duplicated().any():
        raise ValueError(f"record table {path}: 'label' must hold unique integer ids > 0, got "
                         f"{cells['label'].tolist()[:8]}; {_FIX}.")
    return cells.assign(label=ids.astype("int64")).set_index("label")


def read_record_files(folder: Path):
    """(provenance, cells, labels) of a record folder, each checked."""
    from ._images import read_labels

    folder = Path(folder)
    provenance = read_provenance(folder)
    cells = read_cells(folder)
    path = folder / "cells.tif"
    if not path.is_file():
        raise FileNotFoundError(f"record {folder.name} has no cells.tif ({path}); {_FIX}.")
    try:
        labels = read_labels(path)
    except (TypeError, ValueError) as err:
        raise ValueError(f"record labels {path} are damaged ({err}); {_FIX}.") from None
    return provenance, cells, labels


def records_root(out) -> Path:
    """The folder that holds the records: ``<out>/records`` when it exists, else `out`.

    >>> records_root("/nowhere") == Path("/nowhere")
    True
    """
    root = Path(out)
    return root / "records" if (root / "records").is_dir() else root


def record_folders(out) -> list[Path]:
    """The record folders under `out` (an annotate folder or its ``records/``), sorted by id."""
    root = records_root(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{out} holds no annotate records (no records/ folder).")
    return sorted(p for p in root.iterdir()
                  if not p.name.startswith(".") and (p / "record.json").is_file())


def record_folder(out, pair_id) -> Path:
    """The folder of record `pair_id`; a FileNotFoundError lists the records there."""
    from ._pairs import check_pair_id

    root = records_root(out)
    folder = root / check_pair_id(pair_id)
    if not (folder / "record.json").is_file():
        there = sorted(p.name for p in root.glob("*") if (p / "record.json").is_file())
        raise FileNotFoundError(f"no record {pair_id!r} in {root}; the records there are "
                                f"{there[:10]}.")
    return folder


def read_record(folder: Path):
    """(provenance, cells, labels, automatic labels) of a record, as curation needs it.

    The automatic labels are annotate's originals (``cells_auto.tif``, kept by
    the first edit), or the labels themselves while the record is unedited.
    """
    from ._images import read_labels

    provenance, cells, labels = read_record_files(folder)
    auto_path = Path(folder) / "cells_auto.tif"
    auto = read_labels(auto_path) if auto_path.is_file() else labels.copy()
    return provenance, cells, labels, auto
