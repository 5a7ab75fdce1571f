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

import collections
import functools
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._shared.files import sha256

__all__ = ["annotate", "read_records", "SUMMARY_COLUMNS"]

#: Columns of the summary table :func:`annotate` returns, one row per pair.
SUMMARY_COLUMNS = ["pair_id", "status", "nuclei", "cells", "seconds", "record", "error"]
# Models loaded in this process (each Dask worker loads its model once), keyed by the
# fingerprint of their weights, so a changed weight file is a new key, never a stale hit;
# the last _KEEP_LOADED are kept (a model on the GPU holds gigabytes), the oldest let go.
_LOADED: collections.OrderedDict = collections.OrderedDict()
_KEEP_LOADED = 2


def _model_spec(model, config, client) -> dict:
    """How each process gets the model: the object itself, or what to load it from.

    Nothing is loaded here: a name's fingerprint comes from micro_sam's registry or the
    checkpoint file, so pairs that turn out to be finished load nothing.
    """
    from .models import SamModel, as_model, fingerprint
    from .models._sam import SAM_OPTIONS
    from .models._watershed import WATERSHED_OPTIONS

    if model is None:
        model = config.segment.model
    if isinstance(model, str):
        kind = "watershed" if model == "watershed" else "zoo"
        return {"kind": kind, "name": model, "fingerprint": fingerprint(model),
                "options": WATERSHED_OPTIONS if kind == "watershed" else SAM_OPTIONS}
    model = as_model(model)
    spec = {"kind": "object", "name": model.name, "fingerprint": model.fingerprint,
            "options": model.segment_options, "object": model}
    if client is None:  # in this process the model is used as given (device kept)
        return spec
    from .trained import TrainedModel

    if isinstance(model, TrainedModel):
        return {"kind": "trained", "name": model.name, "path": str(model.path),
                "weights": model.weights, "device": model.device,
                "fingerprint": model.fingerprint, "options": model.segment_options}
    if isinstance(model, SamModel) and model.checkpoint is not None:
        return {"kind": "checkpoint", "name": model.name, "path": str(model.checkpoint),
                "device": model.device, "fingerprint": model.fingerprint,
                "options": model.segment_options}
    return spec  # in memory only: sent to every worker once


def _get_model(spec):
    """The model of `spec` in this process, loaded at most once per weights."""
    from .models import Watershed

    if spec["kind"] == "object":
        return spec["object"]
    if spec["kind"] == "watershed":
        return Watershed()
    key = (spec["kind"], spec["name"], spec.get("path"), spec.get("device"),
           spec["fingerprint"])
    if key not in _LOADED:
        if spec["kind"] == "trained":
            from .trained import load_trained

            model = load_trained(spec["path"], device=spec["device"], weights=spec["weights"])
        else:
            from .models import load

            model = load(spec["name"], checkpoint=spec.get("path"),
                         device=spec.get("device", "auto"))
        if model.fingerprint != spec["fingerprint"]:
            raise RuntimeError(f"the weights of {spec['name']!r} changed while annotating "
                               f"({spec['fingerprint']} when the run started, "
                               f"{model.fingerprint} now); start the run again.")
        _LOADED[key] = model
        while len(_LOADED) > _KEEP_LOADED:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(key)
    return _LOADED[key]


def _segment_options(spec, config) -> dict:
    """The config's segment options the model takes; a set option it does not take is an error."""
    from .config import SegmentConfig

    seg, default, takes = config.segment, SegmentConfig(), spec["options"]
    names = ("multimask", "batch_size", "tile_shape", "halo", "iou_threshold", "min_area")
    options = {k: getattr(seg, k) for k in names if k in takes}
    refused = [k for k in names if k not in takes and getattr(seg, k) != getattr(default, k)]
    if refused:
        raise TypeError(f"config.segment sets {refused}, which model {spec['name']!r} does not "
                        f"take (it takes {sorted(takes)}); reset them.")
    return options


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256(path)  # the planes of one microscope file hash it once


def _cached_sha256(path: Path) -> str:
    info = path.stat()
    return _file_sha256(str(path), info.st_mtime_ns, info.st_size)


def _fingerprint(tl_path, fl_path, plane, config, spec) -> dict:
    return {"tl_sha256": _cached_sha256(tl_path), "fl_sha256": _cached_sha256(fl_path),
            "plane": plane, "labels_from": None,  # None: annotated, not a reused plane
            "config_sha256": hashlib.sha256(
                json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest(),
            "model": spec["name"],
            "model_hash": None if spec["kind"] == "watershed" else spec["fingerprint"]}


def _reported(pair_id, out, errors, make) -> dict:
    """``make()``'s summary row; with ``errors="skip"`` a failure becomes a "failed" row."""
    from ._shared.files import remove_dir
    from .io import check_pair_id

    t0 = time.perf_counter()
    try:
        return make()
    except Exception as err:
        # a record that cannot be made again from its inputs is stale: never serve it
        remove_dir(Path(out) / "records" / check_pair_id(pair_id))
        if errors == "raise":
            raise
        return {"pair_id": pair_id, "status": "failed", "nuclei": 0, "cells": 0,
                "seconds": time.perf_counter() - t0, "record": "",
                "error": f"{type(err).__name__}: {err}"}


def _annotate_or_report(pair_id, source, out, config, spec, errors, embeddings=None) -> dict:
    """:func:`_annotate_one`, failures reported as :func:`_reported` says."""
    return _reported(pair_id, out, errors,
                     lambda: _annotate_one(pair_id, source, out, config, spec, embeddings))


def _source(row) -> dict:
    """What a pair row says about where its images are: paths, plane, position, pixel size."""
    from .io import plane_of

    source = {"tl_path": str(row["tl_path"]), "fl_path": str(row["fl_path"]),
              "plane": plane_of(row)}
    if source["plane"] is not None:
        source["position"] = str(row["position"])
        sizes = [row.get("pixel_size_y_um"), row.get("pixel_size_x_um")]
        if all(pd.notna(v) for v in sizes):
            source["pixel_size_um"] = [float(v) for v in sizes]
    return source


def _annotate_one(pair_id, source, out, config, spec, embeddings=None) -> dict:
    """Annotate one pair and write its record; skip it when an identical record exists."""
    from ._shared.files import atomic_dir
    from ._pipeline import segment_pair
    from .io import read_pair, write_labels

    t0 = time.perf_counter()
    from ._shared.files import atomic_path
    from .io import check_pair_id

    folder = Path(out) / "records" / check_pair_id(pair_id)
    tl_path, fl_path = Path(source["tl_path"]).resolve(), Path(source["fl_path"]).resolve()
    plane = source["plane"]
    fingerprint = _fingerprint(tl_path, fl_path, plane, config, spec)
    existing = folder / "record.json"
    if existing.is_file():
        from .io._records import read_record_files

        try:
            old = read_record_files(folder)[0]
        except (ValueError, FileNotFoundError):  # a damaged record of ours: written again
            old = {}
        if old and all(old.get(k) == v for k, v in fingerprint.items()):
            moved = {"tl_path": str(tl_path), "fl_path": str(fl_path)}
            relocated = any(old.get(k) != v for k, v in moved.items())
            if relocated:  # same files, new place
                with atomic_path(existing) as tmp:
                    tmp.write_text(json.dumps({**old, **moved}, indent=2, default=str))
            return {"pair_id": pair_id, "status": "skipped", "nuclei": old["nuclei"],
                    "cells": old["cells"], "seconds": time.perf_counter() - t0,
                    "record": str(folder), "error": "", "relocated": relocated}
        if old.get("curation"):  # a person corrected it: never replaced behind their back
            return {"pair_id": pair_id, "status": "curated", "nuclei": old["nuclei"],
                    "cells": old["cells"], "seconds": time.perf_counter() - t0,
                    "record": str(folder), "error": ""}
    tl, fl = read_pair({"tl_path": tl_path, "fl_path": fl_path, **(plane or {})})
    if tl.min() == tl.max():
        raise ValueError(f"transmitted-light image {tl_path} is constant (every pixel "
                         f"{tl.flat[0]}): there are no cells to segment; check that the file "
                         "holds the right channel and exposure.")
    model = _get_model(spec)
    options = _segment_options(spec, config)
    if embeddings is not None and hasattr(model, "embed"):
        from .models._sam import image_key

        name = f"{model.fingerprint.replace(':', '-')}/{image_key(tl)}.zarr"
        options["embedding"] = model.embed(tl, tile_shape=config.segment.tile_shape,
                                           halo=config.segment.halo,
                                           save_path=Path(embeddings) / name)
    found = segment_pair(tl, fl, model, config, **options)
    nuclei, result, cells = found.nuclei, found.segmentation, found.cells
    from ._shared.provenance import versions

    provenance = {**fingerprint, "pair_id": pair_id, "tl_path": str(tl_path),
                  "fl_path": str(fl_path),
                  **{k: source[k] for k in ("position", "pixel_size_um") if k in source},
                  "config": config.to_dict(),
                  "model_name": result.model, "normalization": result.normalization,
                  "nuclei": int(nuclei.max()), "cells": int((cells["status"] == "kept").sum())
                  if len(cells) else 0,
                  "versions": {k: v for k, v in versions(("cellnb", "micro_sam")).items()
                               if k != "python"}}
    with atomic_dir(folder, overwrite=True) as tmp:
        write_labels(tmp / "cells.tif", result.labels)
        write_labels(tmp / "nuclei.tif", nuclei)
        cells.to_csv(tmp / "cells.csv")
        (tmp / "record.json").write_text(json.dumps(provenance, indent=2, default=str))
    return {"pair_id": pair_id, "status": "done" if provenance["cells"] else "empty",
            "nuclei": provenance["nuclei"],
            "cells": provenance["cells"], "seconds": time.perf_counter() - t0,
            "record": str(folder), "error": ""}


def annotate(pairs, out, *, config=None, model=None, client=None, errors: str = "raise",
             embeddings=None, worker_timeout: float = 300, focus=None, progress: bool = True,
             callback=None) -> pd.DataFrame:
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
    model : model of the protocol, str or None
        Any model :func:`cellnb.segment` takes, used as given (device kept):
        a SAM / μSAM model, a :class:`cellnb.TrainedModel` (annotate ->
        train -> annotate again: its cells take the id of the nucleus they
        hold most of), the watershed baseline; or a micro_sam model-zoo name
        (loaded once per process or Dask worker, and only when a pair needs
        it), ``"watershed"``, or None for ``config.segment.model``.
    client : dask.distributed.Client, optional
        Spread pairs over the cluster's workers. A zoo name, a SAM model
        loaded from a checkpoint or a trained model is loaded by each worker
        once, on the model's device; a model that exists only in memory
        (``cellnb.models.random_sam``) is sent to every worker once.
    errors : {"raise", "skip"}, default="raise"
        What a pair that cannot be annotated (unreadable file, mismatched
        shapes, ...) does: stop the run (records already written stay;
        a rerun resumes) or become a "failed" row, with a warning, while
        the other pairs go on.
    worker_timeout : float, default=300
        With a `client`: seconds the cluster may have no worker at all (all
        gone, or none started: a SLURM queue, a crash) before annotate gives
        up with an error instead of waiting for ever (the error lists the
        SLURM jobs' states from ``squeue``). Records already written stay; a
        rerun resumes. A dask-jobqueue ``SLURMCluster`` whose job script can
        never start (more memory or cores than any node has, an unknown
        partition) fails sooner, after 10 s without workers, with sbatch's
        reason (``sbatch --test-only``, which submits nothing).
    embeddings : str or Path, optional
        SAM models: keep each TL image's embedding on disk in this folder
        (micro_sam's zarr files, one per model fingerprint and image hash),
        so a rerun with other locate / prompt settings decodes without
        encoding again. Written atomically; shared safely between runs.
    focus : None, "best" or int, optional
        Focus series (planes of one position and time point that differ in
        z, from :func:`cellnb.io.find_pairs`): annotate one plane of each,
        the sharpest by :func:`cellnb.io.microscope.focus_score` ("best") or
        plane ``z=focus``, and give every other plane of the series the same
        cells (status "reused"; ``provenance["labels_from"]`` names the
        source). Defocused TL planes with in-focus labels are the
        augmentation Cell-APP's protocol acquires them for. Default: every
        plane is annotated on its own.
    progress : bool, default=True
        Progress bar over pairs.
    callback : callable, optional
        Called as ``callback(done, total)`` after each pair.

    Returns
    -------
    summary : DataFrame
        One row per pair: ``pair_id, status`` ("done", "empty" for a record
        written with no cell kept (a model that finds none, e.g. an
        under-trained one; listed in a warning), "skipped" when an
        identical record already existed, "reused" for the defocused
        planes of `focus`, "curated" for a record a person corrected
        (:mod:`cellnb.curate`), kept as it is even when the settings
        changed, with a warning, or "failed"), ``nuclei, cells,
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
    from ._shared.progress import Progress, check_callback
    from .config import Config
    from .io import find_pairs

    config = config if config is not None else Config()
    if not isinstance(config, Config):
        raise TypeError(f"`config` must be a cellnb.Config, got {type(config).__name__}.")
    if isinstance(pairs, (str, Path)):
        pairs = find_pairs(pairs, tl=config.pairs.tl, fl=config.pairs.fl,
                           files=config.pairs.files, channels=config.pairs.channels)
    if not isinstance(pairs, pd.DataFrame) or not {"pair_id", "tl_path", "fl_path"} <= set(
            pairs.columns):
        raise TypeError("`pairs` must be a find_pairs() table or a folder of pairs.")
    if errors not in ("raise", "skip"):
        raise ValueError(f"`errors` must be 'raise' or 'skip', got {errors!r}.")
    check_callback(callback)
    spec = _model_spec(model, config, client)
    _segment_options(spec, config)  # options the model does not take fail before any pair
    if embeddings is not None and "embedding" not in spec["options"]:  # never ignored
        raise ValueError(f"`embeddings` keeps SAM's image embeddings on disk, but the model "
                         f"{spec['name']!r} computes none (it takes {sorted(spec['options'])}); "
                         f"leave `embeddings` out for it.")
    from ._shared.files import recover
    from .io import check_pair_id

    out = Path(out)
    (out / "records").mkdir(parents=True, exist_ok=True)
    recover(out / "records")  # what an interrupted run left: unfinished writes, moved-aside copies
    jobs = [(str(row["pair_id"]), _source(row)) for _, row in pairs.iterrows()]
    folders = {check_pair_id(job[0]) for job in jobs}  # an id that cannot be a folder fails here
    reuse = _focus_sources(pairs, focus, progress)
    later = [job for job in jobs if job[0] in reuse]
    jobs = [job for job in jobs if job[0] not in reuse]
    orphans = sorted(p.name for p in (out / "records").iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in folders)
    rows = []
    bar = Progress(len(jobs) + len(later), "annotate", progress=progress, callback=callback,
                   unit="pair")
    with bar:
        if client is None:
            for job in jobs:
                rows.append(_annotate_or_report(*job, out, config, spec, errors, embeddings))
                bar.update()
        else:
            if "object" in spec:  # an in-memory model: ship it to every worker once
                spec = {**spec, "object": client.scatter(spec["object"], broadcast=True,
                                                         hash=False)}
            before = _record_stamps(out, jobs)
            futures = [client.submit(_annotate_or_report, *job, str(out), config, spec, errors,
                                     None if embeddings is None else str(embeddings),
                                     pure=False, key=f"annotate-{job[0]}-{time.time_ns()}")
                       for job in jobs]
            for row in _gather(client, futures, worker_timeout):
                # a worker killed after writing a record but before it reported: dask ran
                # the pair again elsewhere, which found the record; it was made in this run
                if (row["status"] == "skipped" and not row.get("relocated")
                        and before[row["pair_id"]] != _record_stamp(out, row["pair_id"])):
                    row = {**row, "status": "done" if row["cells"] else "empty"}
                rows.append(row)
                bar.update()
            # a worker killed mid-write (scancel, walltime, out of memory) left its temporary
            # folder; another worker wrote the record since
            recover(out / "records")
        status = {row["pair_id"]: row["status"] for row in rows}
        for pair_id, source in later:  # defocused planes: copies of their in-focus record
            rows.append(_reuse_or_report(pair_id, source, reuse[pair_id],
                                         status[reuse[pair_id]], out, errors))
            bar.update()
    order = {str(pair_id): k for k, pair_id in enumerate(pairs["pair_id"])}
    rows.sort(key=lambda r: order[r["pair_id"]])
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if orphans:
        import warnings

        warnings.warn(f"{out / 'records'} holds {len(orphans)} record(s) of pairs that are not "
                      f"in this run ({', '.join(orphans[:5])}); read_records returns them too. "
                      "Delete their folders if those pairs are gone.", UserWarning, stacklevel=2)
    curated = summary[summary["status"] == "curated"]
    if len(curated):
        import warnings

        warnings.warn(f"{len(curated)} curated record(s) were kept although the pair or the "
                      f"settings changed ({', '.join(curated['pair_id'][:5])}): annotate never "
                      "replaces corrections. To annotate them again, undo their curation "
                      "(cellnb.curate.undo) or delete their record folders.", UserWarning,
                      stacklevel=2)
    empty = summary[summary["status"] == "empty"]
    if len(empty):
        import warnings

        warnings.warn(f"{len(empty)} of {len(summary)} pair(s) have a record with no cell kept "
                      f"({', '.join(empty['pair_id'][:5])}{', ...' if len(empty) > 5 else ''}): "
                      "the model found no cell there (an under-trained model, or settings such "
                      "as segment.min_area that drop every cell). Their records are written "
                      "and export leaves them without annotations.", UserWarning, stacklevel=2)
    failed = summary[summary["status"] == "failed"]
    if len(failed):
        import warnings

        warnings.warn(f"{len(failed)} of {len(summary)} pair(s) failed and have no record: "
                      + "; ".join(f"{p}: {e}" for p, e in zip(failed["pair_id"], failed["error"])),
                      stacklevel=2)
    return summary


def _focus_sources(pairs, focus, progress) -> dict:
    """{pair id of a defocused plane: pair id of the in-focus plane of its series}."""
    if focus is None:
        return {}
    if not (focus == "best" or (isinstance(focus, (int, np.integer))
                                and not isinstance(focus, bool) and focus >= 0)):
        raise ValueError(f"`focus` must be None, 'best' or a z index >= 0, got {focus!r}.")
    if "position" not in pairs or pairs["z"].isna().all():
        raise ValueError("`focus` needs planes with z (a find_pairs table of microscope files "
                         "or stacks); these pairs are single images.")
    from .io.microscope import choose_focus

    chosen = choose_focus(pairs, z=None if focus == "best" else int(focus), progress=progress)
    reuse = {}
    planes = chosen[chosen["t"].notna()]
    for _, series in planes.groupby(["position", "t"], sort=False):
        best = str(series.loc[series["in_focus"], "pair_id"].iloc[0])
        reuse.update({str(p): best for p in series["pair_id"] if str(p) != best})
    return reuse


def _reuse_or_report(pair_id, source, from_id, from_status, out, errors) -> dict:
    """:func:`_reuse_record`; a "failed" row too when its in-focus plane has no record."""
    def make():
        if from_status == "failed":
            raise ValueError(f"its in-focus plane {from_id} failed, so there are no labels to "
                             "reuse.")
        return _reuse_record(pair_id, source, from_id, out)

    return _reported(pair_id, out, errors, make)


def _reuse_record(pair_id, source, from_id, out) -> dict:
    """The record of a defocused plane: its own TL plane, the cells of the in-focus record."""
    import shutil

    from ._shared.files import atomic_dir
    from .io import check_pair_id, read_labels

    t0 = time.perf_counter()
    records = Path(out) / "records"
    origin = records / check_pair_id(from_id)
    folder = records / check_pair_id(pair_id)
    tl_path, fl_path = Path(source["tl_path"]).resolve(), Path(source["fl_path"]).resolve()
    fingerprint = {"tl_sha256": _cached_sha256(tl_path), "plane": source["plane"],
                   "labels_from": from_id,
                   "labels_from_sha256": sha256(origin / "record.json")}
    existing = folder / "record.json"
    if existing.is_file():
        from .io._records import read_record_files

        try:
            old = read_record_files(folder)[0]
        except (ValueError, FileNotFoundError):  # a damaged record of ours: written again
            old = {}
        if old and all(old.get(k) == v for k, v in fingerprint.items()):
            return {"pair_id": pair_id, "status": "skipped", "nuclei": old["nuclei"],
                    "cells": old["cells"], "seconds": time.perf_counter() - t0,
                    "record": str(folder), "error": ""}
        if old.get("curation"):  # this plane itself was corrected: kept
            return {"pair_id": pair_id, "status": "curated", "nuclei": old["nuclei"],
                    "cells": old["cells"], "seconds": time.perf_counter() - t0,
                    "record": str(folder), "error": ""}
    original = json.loads((origin / "record.json").read_text())
    original.pop("curation", None)  # the source's edits are its own; its labels come along
    tl = _read_tl({"tl_path": str(tl_path), "plane": source["plane"]})
    labels = read_labels(origin / "cells.tif")
    if tl.shape[:2] != labels.shape:
        raise ValueError(f"plane {pair_id} (shape {tl.shape[:2]}) does not match its in-focus "
                         f"plane {from_id} (shape {labels.shape}).")
    provenance = {**original, **fingerprint, "pair_id": pair_id, "tl_path": str(tl_path),
                  "fl_path": str(fl_path),
                  **{k: source[k] for k in ("position", "pixel_size_um") if k in source}}
    with atomic_dir(folder, overwrite=True) as tmp:
        for name in ("cells.tif", "nuclei.tif", "cells.csv"):
            shutil.copyfile(origin / name, tmp / name)
        (tmp / "record.json").write_text(json.dumps(provenance, indent=2, default=str))
    return {"pair_id": pair_id, "status": "reused", "nuclei": provenance["nuclei"],
            "cells": provenance["cells"], "seconds": time.perf_counter() - t0,
            "record": str(folder), "error": ""}


def _record_stamp(out: Path, pair_id: str):
    """(size, mtime) of a pair's record.json, or None when it has none."""
    try:
        stat = (Path(out) / "records" / pair_id / "record.json").stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _record_stamps(out: Path, jobs) -> dict:
    return {pair_id: _record_stamp(out, pair_id) for pair_id, _ in jobs}


def _gather(client, futures, worker_timeout):
    """Results of `futures` as they finish; an error once the cluster has had no worker
    for `worker_timeout` seconds (dask would otherwise wait for ever), or at once when
    the batch system says that the cluster's worker jobs can never start."""
    if not (isinstance(worker_timeout, (int, float)) and worker_timeout > 0):
        raise ValueError(f"`worker_timeout` must be a number of seconds > 0, got "
                         f"{worker_timeout!r}.")
    pending = list(futures)
    seen_worker = time.monotonic()
    asked = False  # the batch system is asked once per spell without workers
    while pending:
        finished = [f for f in pending if f.done()]
        for future in finished:
            pending.remove(future)
            yield future.result()
        if finished:
            continue
        if client.nthreads():
            seen_worker, asked = time.monotonic(), False
        else:
            waited = time.monotonic() - seen_worker
            if not asked and waited > min(_ASK_AFTER, worker_timeout / 2):
                asked = True
                problem = _jobs_cannot_start(client)
                if problem:
                    client.cancel(pending)
                    _mark_refused_jobs_failed(client)
                    raise RuntimeError(
                        f"the cluster's worker jobs can never start; the batch system says: "
                        f"{problem}\nAsk SLURMCluster(...) for what a node has (memory, cores, "
                        f"walltime, partition) and run annotate again: finished records stay "
                        f"and are skipped ({len(futures) - len(pending)} of {len(futures)}).")
            if waited > worker_timeout:
                client.cancel(pending)
                raise RuntimeError(
                    f"the Dask cluster has had no worker for {worker_timeout:g} s, with "
                    f"{len(pending)} of {len(futures)} pair(s) unfinished{_jobs_state(client)}; "
                    "start workers (or check why they died: memory, walltime) and run "
                    "annotate again: finished records stay and are skipped.")
        time.sleep(0.1)


#: Seconds without a worker before annotate asks the batch system whether its jobs can start.
_ASK_AFTER = 10.0


def _slurm_cluster(client):
    """The client's dask-jobqueue SLURMCluster, or None (another cluster, or a bare address)."""
    cluster = getattr(client, "cluster", None)
    job_cls = getattr(cluster, "job_cls", None)
    if job_cls is None or getattr(job_cls, "submit_command", None) != "sbatch":
        return None
    return cluster


def _jobs_cannot_start(client) -> str:
    """sbatch's reason why the cluster's job script can never run ('' when it can, or when
    there is no SLURM cluster to ask): ``sbatch --test-only`` submits nothing."""
    import subprocess

    cluster = _slurm_cluster(client)
    if cluster is None:
        return ""
    try:
        done = subprocess.run(["sbatch", "--test-only"], input=cluster.job_script(),
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    if done.returncode == 0:
        return ""
    return " ".join(line.removeprefix("sbatch: error: ").strip()
                    for line in done.stderr.splitlines() if line.strip())


def _mark_refused_jobs_failed(client) -> None:
    """Worker jobs sbatch refused (no job id) are failed, not "created": distributed's
    ``SpecCluster.close`` asserts on workers that never left "created"."""
    from distributed.core import Status

    cluster = _slurm_cluster(client)
    for job in getattr(cluster, "workers", {}).values():
        if getattr(job, "job_id", True) is None and job.status == Status.created:
            job.status = Status.failed


def _jobs_state(client) -> str:
    """', its jobs: 12 PENDING (Resources), ...' from squeue, for a SLURM cluster."""
    import subprocess

    cluster = _slurm_cluster(client)
    if cluster is None:
        return ""
    ids = [str(job.job_id) for job in cluster.workers.values() if getattr(job, "job_id", None)]
    if not ids:
        return (f"; none of the cluster's {len(cluster.workers)} worker job(s) was accepted "
                "by sbatch (the cluster's log says why)")
    try:
        done = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T (%r)"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    states = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return f"; its SLURM jobs: {', '.join(states) or 'none left in the queue'}"


def _read_tl(provenance) -> np.ndarray:
    """A record's TL image: its file, or its plane of a microscope file."""
    plane = provenance.get("plane")
    if plane:
        from .io.microscope import read_plane

        return read_plane(provenance["tl_path"], scene=plane["scene"], t=plane["t"],
                          z=plane["z"], channel=plane["tl_channel"],
                          name="transmitted-light image")
    from .io import read_image

    return read_image(provenance["tl_path"], rgb=True)


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
        Sorted by pair id; ``cells`` holds the kept cells only. A record a
        person corrected (:mod:`cellnb.curate`) has its curated labels, a
        ``curated`` column ("added", "edited", "restored") and
        ``provenance["curation"]``, the log of its edits.
    """
    from .io import Record
    from .io._records import read_record_files, record_folders, records_root

    records = []
    for folder in record_folders(out):
        provenance, cells, labels = read_record_files(folder)
        if images and not Path(provenance["tl_path"]).is_file():
            raise FileNotFoundError(f"record {folder.name}: its TL image {provenance['tl_path']} "
                                    "is gone; run annotate again on the pairs' new folder (it "
                                    "updates the paths without re-annotating), or pass "
                                    "images=False.")
        cells = cells[cells["status"] == "kept"]
        image = _read_tl(provenance) if images else None
        records.append(Record(id=provenance["pair_id"], image=image, labels=labels, cells=cells,
                              provenance={k: v for k, v in provenance.items()
                                          if k not in ("config",)} |
                              {"model": provenance["model"]}))
    if not records:
        raise FileNotFoundError(f"no records in {records_root(out)}.")
    return records
