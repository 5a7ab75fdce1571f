"""Annotate many image pairs: locate -> prompt -> segment -> measure, one record per pair.

Records on disk (``<out>/records/<pair_id>/``): ``record.json`` (provenance:
source paths and their sha256, config, model name and hash, versions),
``cells.tif`` (int32 cell labels), ``nuclei.tif`` and ``cells.csv`` (one row per
prompt: segmentation status and score, nucleus features). Each record folder
is written atomically; a rerun skips pairs whose record exists with the same
input files, config and model, so an interrupted run resumes where it
stopped. :func:`read_records` loads them back as :class:`cellnb.io.Record`.

With a ``dask.distributed`` Client (LocalCluster, or dask-jobqueue's
SLURMCluster on HPC) pairs are spread over the workers, and each worker loads
its model once.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._files import sha256

__all__ = ["annotate", "read_records", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ["pair_id", "status", "nuclei", "cells", "seconds", "record", "error"]
_MODELS: dict = {}  # per-process model cache: each Dask worker loads its model once


def _model_spec(model, config) -> dict:
    """A picklable description of the model, so workers can load it themselves."""
    if model is None:
        model = config.segment.model
    if isinstance(model, str):
        return {"name": model, "checkpoint": None}
    if hasattr(model, "predictor"):
        if model.checkpoint is None:
            return {"name": model.name, "object": model}
        return {"name": model.name, "checkpoint": str(model.checkpoint),
                "hash": model.weights_hash}
    raise TypeError(f"`model` must be a SamModel, a model-zoo name or 'watershed', got "
                    f"{type(model).__name__}.")


def _get_model(spec):
    if "object" in spec:
        return spec["object"]
    if spec["name"] == "watershed":
        return "watershed"
    key = (spec["name"], spec["checkpoint"])
    if key not in _MODELS:
        from .models import load

        _MODELS[key] = load(spec["name"], checkpoint=spec["checkpoint"])
    return _MODELS[key]


def _fingerprint(tl_path, fl_path, config, spec) -> dict:
    model = _get_model(spec)
    return {"tl_sha256": sha256(tl_path), "fl_sha256": sha256(fl_path),
            "config_sha256": hashlib.sha256(
                json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest(),
            "model": spec["name"],
            "model_hash": getattr(model, "weights_hash", None)}


def _annotate_or_report(pair_id, tl_path, fl_path, out, config, spec, errors) -> dict:
    """:func:`_annotate_one`; with ``errors="skip"`` a failure becomes a "failed" row."""
    t0 = time.perf_counter()
    try:
        return _annotate_one(pair_id, tl_path, fl_path, out, config, spec)
    except Exception as err:
        if errors == "raise":
            raise
        return {"pair_id": pair_id, "status": "failed", "nuclei": 0, "cells": 0,
                "seconds": time.perf_counter() - t0, "record": "",
                "error": f"{type(err).__name__}: {err}"}


def _annotate_one(pair_id, tl_path, fl_path, out, config, spec) -> dict:
    """Annotate one pair and write its record; skip it when an identical record exists."""
    from ._files import atomic_dir
    from .io import read_pair, write_labels
    from .locate import locate
    from .measure import measure
    from .prompt import prompt
    from .segment import segment

    t0 = time.perf_counter()
    folder = Path(out) / "records" / pair_id
    tl_path, fl_path = Path(tl_path), Path(fl_path)
    fingerprint = _fingerprint(tl_path, fl_path, config, spec)
    existing = folder / "record.json"
    if existing.is_file():
        old = json.loads(existing.read_text())
        if all(old.get(k) == v for k, v in fingerprint.items()):
            return {"pair_id": pair_id, "status": "skipped", "nuclei": old["nuclei"],
                    "cells": old["cells"], "seconds": time.perf_counter() - t0,
                    "record": str(folder), "error": ""}
    tl, fl = read_pair((tl_path, fl_path))
    loc = config.locate
    nuclei = locate(fl, method=loc.method, threshold_division=loc.threshold_division,
                    sigma=loc.sigma, tophat_size=loc.tophat_size,
                    erosion_radius=loc.erosion_radius, min_area=loc.min_area,
                    max_area=loc.max_area)
    pro = config.prompt
    prompts = prompt(nuclei, kind=pro.kind, box_scale=pro.box_scale, box_size=pro.box_size,
                     negatives=pro.negatives)
    seg = config.segment
    result = segment(tl, prompts, model=_get_model(spec), nuclei=nuclei,
                     multimask=seg.multimask, batch_size=seg.batch_size,
                     tile_shape=seg.tile_shape, halo=seg.halo,
                     iou_threshold=seg.iou_threshold, min_area=seg.min_area)
    cells = result.table.set_index("label")
    if len(cells):
        fluorescence = measure(nuclei, fl, properties=[
            p for p in config.measure.properties])
        cells = cells.join(fluorescence.add_prefix("nucleus_"))
    import importlib.metadata as md

    from . import __version__

    provenance = {**fingerprint, "pair_id": pair_id, "tl_path": str(tl_path),
                  "fl_path": str(fl_path), "config": config.to_dict(),
                  "model_name": result.model, "normalization": result.normalization,
                  "nuclei": int(nuclei.max()), "cells": int((cells["status"] == "kept").sum())
                  if len(cells) else 0,
                  "versions": {"cellnb": __version__, "micro_sam": md.version("micro_sam")}}
    with atomic_dir(folder, overwrite=True) as tmp:
        write_labels(tmp / "cells.tif", result.labels)
        write_labels(tmp / "nuclei.tif", nuclei)
        cells.to_csv(tmp / "cells.csv")
        (tmp / "record.json").write_text(json.dumps(provenance, indent=2, default=str))
    return {"pair_id": pair_id, "status": "done", "nuclei": provenance["nuclei"],
            "cells": provenance["cells"], "seconds": time.perf_counter() - t0,
            "record": str(folder), "error": ""}


def annotate(pairs, out, *, config=None, model=None, client=None, errors: str = "raise",
             progress: bool = True) -> pd.DataFrame:
    """Annotate every pair: locate nuclei, prompt, segment cells, measure; write records.

    Parameters
    ----------
    pairs : DataFrame or folder
        A :func:`cellnb.io.find_pairs` table, or a folder searched with the
        config's file patterns.
    out : str or Path
        Output folder; records go to ``<out>/records/<pair_id>/``.
    config : cellnb.Config, optional
        Every parameter (default: ``Config()``, Cell-APP's defaults).
    model : SamModel, str or None
        A loaded model, a micro_sam model-zoo name (loaded once per process
        or Dask worker), ``"watershed"`` (classical baseline), or None for
        ``config.segment.model``.
    client : dask.distributed.Client, optional
        Spread pairs over the cluster's workers. A zoo name or a model
        loaded from a checkpoint is loaded by each worker, once; a model
        that exists only in memory (``cellnb.testing.random_sam``) is
        sent to every worker once.
    errors : {"raise", "skip"}, default="raise"
        What a pair that cannot be annotated (unreadable file, mismatched
        shapes, ...) does: stop the run (records already written stay;
        a rerun resumes) or become a "failed" row, with a warning, while
        the other pairs go on.
    progress : bool, default=True

    Returns
    -------
    summary : DataFrame
        One row per pair: ``pair_id, status`` ("done", "skipped" when an
        identical record already existed, or "failed"), ``nuclei, cells,
        seconds, record, error`` (the error message of a failed pair).

    Examples
    --------
    >>> import tempfile
    >>> from cellnb.data import synthetic_pairs, write_pairs
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_pairs(synthetic_pairs(2, shape=(96, 96), n_cells=4), folder)
    >>> summary = annotate(folder, folder + "/out", model="watershed", progress=False)
    >>> summary["status"].tolist()
    ['done', 'done']
    >>> annotate(folder, folder + "/out", model="watershed", progress=False)["status"].tolist()
    ['skipped', 'skipped']
    """
    from tqdm.auto import tqdm

    from .config import Config
    from .io import find_pairs

    config = config if config is not None else Config()
    if not isinstance(config, Config):
        raise TypeError(f"`config` must be a cellnb.Config, got {type(config).__name__}.")
    if isinstance(pairs, (str, Path)):
        pairs = find_pairs(pairs, tl=config.pairs.tl, fl=config.pairs.fl)
    if not isinstance(pairs, pd.DataFrame) or not {"pair_id", "tl_path", "fl_path"} <= set(
            pairs.columns):
        raise TypeError("`pairs` must be a find_pairs() table or a folder of pairs.")
    if errors not in ("raise", "skip"):
        raise ValueError(f"`errors` must be 'raise' or 'skip', got {errors!r}.")
    spec = _model_spec(model, config)
    out = Path(out)
    (out / "records").mkdir(parents=True, exist_ok=True)
    jobs = [(str(r.pair_id), str(r.tl_path), str(r.fl_path)) for r in pairs.itertuples()]
    rows = []
    if client is None:
        for job in tqdm(jobs, desc="annotate", disable=not progress):
            rows.append(_annotate_or_report(*job, out, config, spec, errors))
    else:
        from dask.distributed import as_completed

        if "object" in spec:  # an in-memory model: ship it to every worker once, not per task
            spec = {**spec, "object": client.scatter(spec["object"], broadcast=True,
                                                     hash=False)}
        futures = [client.submit(_annotate_or_report, *job, str(out), config, spec, errors,
                                 pure=False,
                                 key=f"annotate-{job[0]}-{time.time_ns()}") for job in jobs]
        for future in tqdm(as_completed(futures), total=len(futures), desc="annotate",
                           disable=not progress):
            rows.append(future.result())
        order = {job[0]: k for k, job in enumerate(jobs)}
        rows.sort(key=lambda r: order[r["pair_id"]])
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    failed = summary[summary["status"] == "failed"]
    if len(failed):
        import warnings

        warnings.warn(f"{len(failed)} of {len(summary)} pair(s) failed and have no record: "
                      + "; ".join(f"{p}: {e}" for p, e in zip(failed["pair_id"], failed["error"])),
                      stacklevel=2)
    return summary


def read_records(out, *, images: bool = True) -> list:
    """Load the records of an :func:`annotate` output folder.

    Parameters
    ----------
    out : str or Path
        The folder given to :func:`annotate` (or its ``records/`` folder).
    images : bool, default=True
        Read each TL image from its source path.

    Returns
    -------
    records : list of cellnb.io.Record
        Sorted by pair id; ``cells`` holds the kept cells only.
    """
    from .io import Record, read_image, read_labels

    root = Path(out)
    root = root / "records" if (root / "records").is_dir() else root
    if not root.is_dir():
        raise FileNotFoundError(f"{out} holds no annotate records (no records/ folder).")
    records = []
    for folder in sorted(p for p in root.iterdir() if (p / "record.json").is_file()):
        provenance = json.loads((folder / "record.json").read_text())
        cells = pd.read_csv(folder / "cells.csv", index_col="label")
        cells = cells[cells["status"] == "kept"]
        image = read_image(provenance["tl_path"], rgb=True) if images else None
        records.append(Record(id=provenance["pair_id"], image=image,
                              labels=read_labels(folder / "cells.tif"), cells=cells,
                              provenance={k: v for k, v in provenance.items()
                                          if k not in ("config",)} |
                              {"model": provenance["model"]}))
    if not records:
        raise FileNotFoundError(f"no records in {root}.")
    return records
