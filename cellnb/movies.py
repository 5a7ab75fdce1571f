"""Time-lapse movies: segment every frame with any model, link cells into tracks, export.

Cell-APP's point is that a model trained on its annotations segments a movie
consistently enough to follow each cell (its paper tracks with Trackpy). The
steps, each a function:

1. :func:`segment_movie` runs :func:`cellnb.segment` on every frame of a
   (T, H, W) TL movie with any model of the protocol (a trained model, a
   SAM / μSAM model or the watershed baseline prompted from the nuclei of a
   fluorescence movie; tiled when large, through the model's own tiling);
2. :func:`track` links the cells of consecutive frames into tracks with
   `laptrack <https://github.com/yfukai/laptrack>`_ (linear-assignment
   tracking after Jaqaman et al. 2008: frame-to-frame links, gap closing for
   cells missed in a frame, and **divisions**), or with `trackpy
   <https://soft-matter.github.io/trackpy>`_, the Cell-APP paper's tracker
   (Crocker-Grier linking, no divisions); it returns the tracks table, the
   movie relabelled with one id per track, and the divisions;
3. :func:`track_summary` gives per-track numbers (duration, time in each
   class, e.g. how long each cell spends mitotic);
4. :func:`write_ctc` writes the Cell Tracking Challenge result format
   (``mask000.tif`` ..., ``res_track.txt``), read by CTC's evaluation tools,
   Fiji's TrackMate and napari plugins;
5. :func:`score_tracks` scores tracks against true ones with CTC's measures
   (TRA, DET, SEG, LNK, BC, CT, TF) through py-ctcmetrics; :func:`truth_tracks`
   gives the true tracks of :func:`cellnb.data.synthetic_movie`.

Why these trackers: both are maintained, pure-Python packages on pandas
(``pip install "cellnb[tracking]"``, with py-ctcmetrics), and linking
nucleus-sized objects that move less than their size per frame is what they
do well. laptrack is the default because Cell-APP's movies are about the cell
cycle, and only it links a mother to her daughters; trackpy reproduces the
paper's analysis. Trackastra (a learned tracker) needs pretrained weights,
which this project cannot download, so it is not offered.

Examples
--------
>>> from cellnb.data import synthetic_movie
>>> movie = synthetic_movie(5, shape=(96, 96), n_cells=5, seed=3)
>>> tracks = track(movie.labels)
>>> tracks.table["track_id"].nunique() == movie.truth["label"].nunique()
True
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._shared.validation import check_image, check_labels

__all__ = ["segment_movie", "MovieSegmentation", "track", "Tracks", "track_summary",
           "write_ctc", "truth_tracks", "score_tracks", "TRACK_COLUMNS", "CTC_METRICS"]

#: columns of :attr:`Tracks.table` (plus any per-cell column carried over)
TRACK_COLUMNS = ["track_id", "t", "label", "y", "x", "area"]


def _check_movie(movie, name: str, *, labels: bool = False) -> np.ndarray:
    movie = np.asarray(movie)
    if movie.ndim != 3:
        raise ValueError(f"`{name}` must be a (T, H, W) movie, got shape {movie.shape}"
                         + (" (an RGB movie is not supported; convert it to grey)"
                            if movie.ndim == 4 else "") + ".")
    if movie.shape[0] < 1:
        raise ValueError(f"`{name}` has no frames.")
    check = check_labels if labels else check_image
    return np.stack([check(frame, f"{name}[{t}]") for t, frame in enumerate(movie)])


@dataclass
class MovieSegmentation:
    """Result of :func:`segment_movie`.

    Attributes
    ----------
    labels : (T, H, W) int32 ndarray
        Cell labels per frame (ids are per frame; :func:`track` links them).
    table : DataFrame
        :attr:`cellnb.Segmentation.table` of every frame with a ``t`` column
        (kept cells only); for prompted models also the features
        (``nucleus_*``) and centroid (``nucleus_y, nucleus_x``) of the
        nucleus that prompted each cell.
    nuclei : (T, H, W) int32 ndarray or None
        The nuclei located in the fluorescence movie, if one was given.
    model : str
    """

    labels: np.ndarray
    table: pd.DataFrame
    nuclei: np.ndarray | None = None
    model: str = ""


def segment_movie(tl, *, model, fluorescence=None, config=None, progress: bool = True,
                  callback=None, **options) -> MovieSegmentation:
    """Segment every frame of a TL movie with any model of the protocol.

    With a fluorescence movie each frame goes through the chain
    :func:`cellnb.annotate` runs for single images (the same code): the
    nuclei that :func:`cellnb.locate` finds with the config's locate
    settings prompt a prompted model (SAM / μSAM, the watershed baseline,
    cellsam runs); an automatic model's cells (those :func:`cellnb.train`
    returns) take the id of the nucleus they hold; every cell gets its
    nucleus features and centroid (``nucleus_y``, ``nucleus_x``), which
    :func:`track` links. Automatic models also segment the TL movie alone.

    Parameters
    ----------
    tl : (T, H, W) ndarray
        Transmitted-light movie (uint8, uint16 or float32).
    model : model or "watershed"
        Any model :func:`cellnb.segment` takes.
    fluorescence : (T, H, W) ndarray, optional
        Nuclear fluorescence movie of the same frames; required by prompted
        models.
    config : cellnb.Config, optional
        Its ``locate``, ``prompt`` and ``measure`` sections (default Config()).
    progress : bool, default=True
        Progress bar over frames.
    callback : callable, optional
        Called as ``callback(done, total)`` after each frame.
    **options
        Passed to :func:`cellnb.segment` (``tile_shape``, ``halo``, ...).

    Returns
    -------
    result : MovieSegmentation

    Examples
    --------
    >>> from cellnb.data import synthetic_movie
    >>> movie = synthetic_movie(3, shape=(96, 96), n_cells=4, seed=0)
    >>> result = segment_movie(movie.tl, model="watershed", fluorescence=movie.fluorescence,
    ...                        progress=False)
    >>> result.labels.shape, sorted(result.table["t"].unique().tolist())
    ((3, 96, 96), [0, 1, 2])
    """
    from ._pipeline import segment_pair
    from ._shared.progress import Progress, check_callback
    from .config import Config
    from .models import as_model
    from .segment import segment

    config = Config() if config is None else config
    if not isinstance(config, Config):
        raise TypeError(f"`config` must be a cellnb.Config, got {type(config).__name__}.")
    check_callback(callback)
    tl = _check_movie(tl, "tl")
    model = as_model(model)
    if fluorescence is not None:
        fluorescence = _check_movie(fluorescence, "fluorescence")
        if fluorescence.shape != tl.shape:
            raise ValueError(f"`fluorescence` (shape {fluorescence.shape}) must match the TL "
                             f"movie frame for frame (shape {tl.shape}).")
    elif model.prompted:
        raise ValueError(f"model {model.name!r} is prompted: pass the nuclear `fluorescence` "
                         "movie, whose nuclei prompt it in every frame.")
    labels, tables, all_nuclei = [], [], []
    with Progress(len(tl), "segment movie", progress=progress, callback=callback,
                  unit="frame") as bar:
        for t, frame in enumerate(tl):
            if fluorescence is not None:  # annotate's chain, frame by frame
                found = segment_pair(frame, fluorescence[t], model, config, centroids=True,
                                     **options)
                all_nuclei.append(found.nuclei)
                result, cells = found.segmentation, found.cells
            else:
                result = segment(frame, model=model, **options)
                cells = result.table.set_index("label")
            table = cells[cells["status"] == "kept"]
            tables.append(table.reset_index().assign(t=t))
            labels.append(result.labels.astype(np.int32))
            bar.update()
    table = pd.concat(tables, ignore_index=True)
    table = table[["t", *[c for c in table.columns if c != "t"]]]
    return MovieSegmentation(np.stack(labels), table,
                             np.stack(all_nuclei) if all_nuclei else None, result.model)


@dataclass
class Tracks:
    """Result of :func:`track`.

    Attributes
    ----------
    table : DataFrame
        One row per cell and frame: :data:`TRACK_COLUMNS` (``track_id`` from
        1, ``t``, the cell's ``label`` in that frame's input, centroid ``y,
        x``, ``area``) plus the columns of the `table` given to :func:`track`
        (e.g. ``class_name``).
    labels : (T, H, W) int32 ndarray
        The movie relabelled: every cell carries its track id.
    parents : dict {track_id: parent track_id}
        Divisions (empty from :func:`track`, which does not link them;
        filled by :func:`truth_tracks` from a simulation's lineage).
    """

    table: pd.DataFrame
    labels: np.ndarray
    parents: dict = field(default_factory=dict)


def _cell_table(labels: np.ndarray) -> pd.DataFrame:
    from scipy import ndimage

    rows = []
    for t, frame in enumerate(labels):
        ids = np.unique(frame[frame > 0])
        if not len(ids):
            continue
        centres = np.array(ndimage.center_of_mass(np.ones_like(frame), frame, ids)).reshape(-1, 2)
        areas = np.bincount(frame.ravel())[ids]
        rows.append(pd.DataFrame({"t": t, "label": ids.astype(np.int64), "y": centres[:, 0],
                                  "x": centres[:, 1], "area": areas.astype(np.int64)}))
    return (pd.concat(rows, ignore_index=True) if rows
            else pd.DataFrame(columns=["t", "label", "y", "x", "area"]))


def track(labels, *, table=None, tracker: str = "laptrack", search_range: float | None = None,
          memory: int = 1, link_on="auto") -> Tracks:
    """Link the cells of a segmented movie into tracks (trackpy, or laptrack with divisions).

    Parameters
    ----------
    labels : (T, H, W) int ndarray
        Cell labels per frame (:attr:`MovieSegmentation.labels`).
    table : DataFrame, optional
        Per-cell columns to carry into the tracks table (e.g. ``class_name``),
        with ``t`` and ``label`` columns naming the cell
        (:attr:`MovieSegmentation.table`, after :func:`cellnb.classify`).
    tracker : {"laptrack", "trackpy"}, default="laptrack"
        `laptrack <https://github.com/yfukai/laptrack>`_ solves the linear
        assignment problem of Jaqaman et al. (2008) with **divisions**: a
        track may split into two within twice `search_range`, and
        :attr:`Tracks.parents` records it. trackpy (the Cell-APP paper's)
        links frame to frame without divisions. On a synthetic movie with 10
        divisions and perfect masks, CTC's BC(0) is 0.73 with laptrack and 0
        with trackpy, TRA 0.997 vs 0.995 (``tests/test_movies.py``).
    search_range : float, optional
        Farthest a cell's centroid moves between frames, in pixels. Default:
        half the median cell diameter (cells rarely move more per frame;
        raise it for fast cells or long intervals).
    memory : int, default=1
        Frames a cell may be missing (not segmented) and still keep its
        track.
    link_on : "auto", "cells" or (str, str), default="auto"
        Positions that are linked: the cells' centroids ("cells"), or two
        (y, x) columns of `table`. "auto" takes the nuclei
        (``nucleus_y, nucleus_x``) when `table` has them, because a nucleus
        moves more steadily than the outline of its cell (on
        :func:`cellnb.data.synthetic_movie` with watershed cells: 15 tracks
        for 15 cells from the nuclei, 17 from the cell centroids; a cell
        without a nucleus is linked at its own centroid), else the cells.
        ``y, x`` in the result are always the cells' centroids.

    Returns
    -------
    tracks : Tracks

    Raises
    ------
    ImportError
        If the tracker is not installed (``pip install "cellnb[tracking]"``).

    Examples
    --------
    >>> labels = np.zeros((3, 20, 20), np.int32)
    >>> labels[0, 2:6, 2:6] = 1; labels[1, 3:7, 3:7] = 5; labels[2, 4:8, 4:8] = 2
    >>> labels[:, 12:16, 12:16] = 3  # a cell that does not move
    >>> tracks = track(labels)
    >>> tracks.table.sort_values(["track_id", "t"])[["track_id", "t", "label"]].values.tolist()
    [[1, 0, 1], [1, 1, 5], [1, 2, 2], [2, 0, 3], [2, 1, 3], [2, 2, 3]]
    >>> tracks.labels[2, 5, 5], tracks.labels[2, 13, 13]
    (np.int32(1), np.int32(2))

    A division, found by laptrack:

    >>> labels = np.zeros((3, 30, 30), np.int32)
    >>> labels[:2, 10:18, 10:18] = 1; labels[2, 6:12, 10:18] = 1; labels[2, 16:22, 10:18] = 2
    >>> track(labels, tracker="laptrack", search_range=8).parents
    {2: 1, 3: 1}
    """
    if tracker not in ("trackpy", "laptrack"):
        raise ValueError(f"`tracker` must be 'trackpy' or 'laptrack', got {tracker!r}.")
    try:
        importlib.import_module(tracker)
    except ImportError:
        raise ImportError(f"track(tracker={tracker!r}) needs {tracker}: pip install "
                          "'cellnb[tracking]'.") from None
    labels = _check_movie(labels, "labels", labels=True)
    if isinstance(memory, bool) or not isinstance(memory, (int, np.integer)) or memory < 0:
        raise ValueError(f"`memory` must be an int >= 0 (frames), got {memory!r}.")
    cells = _cell_table(labels)
    if table is not None:
        if not isinstance(table, pd.DataFrame) or not {"t", "label"} <= set(table.columns):
            raise ValueError("`table` must be a DataFrame with 't' and 'label' columns (as "
                             "MovieSegmentation.table).")
        extra = table.drop(columns=[c for c in ("y", "x", "area", "track_id") if c in table])
        if extra.duplicated(["t", "label"]).any():
            raise ValueError("`table` has more than one row for some (t, label).")
        cells = cells.merge(extra, on=["t", "label"], how="left")
    auto = isinstance(link_on, str) and link_on == "auto"
    if auto:
        link_on = ("nucleus_y", "nucleus_x") if {"nucleus_y", "nucleus_x"} <= set(cells) \
            else "cells"
    if isinstance(link_on, str) and link_on == "cells":
        link_on = ("y", "x")
    if not (isinstance(link_on, (tuple, list)) and len(link_on) == 2
            and all(c in cells.columns for c in link_on)):
        raise ValueError(f"`link_on` must be 'auto', 'cells' or two (y, x) columns of `table`; "
                         f"got {link_on!r} (table columns: {sorted(cells.columns)}).")
    ys, xs = cells[link_on[0]], cells[link_on[1]]
    if auto:  # a cell without a nucleus is linked at its own centroid
        ys, xs = ys.fillna(cells["y"]), xs.fillna(cells["x"])
    if ys.isna().any() or xs.isna().any():
        raise ValueError(f"{list(link_on)} are missing for some cells; give every cell of "
                         "`labels` a row in `table`, or link_on='cells'.")
    if search_range is None:
        diameter = 2 * np.sqrt(np.median(cells["area"]) / np.pi) if len(cells) else 1.0
        search_range = max(0.5 * diameter, 1.0)
    if not (isinstance(search_range, (int, float, np.floating)) and search_range > 0):
        raise ValueError(f"`search_range` must be a number of pixels > 0, got "
                         f"{search_range!r}.")
    parents = {}
    if len(cells):
        link = _link_trackpy if tracker == "trackpy" else _link_laptrack
        positions = pd.DataFrame({"frame": cells["t"].to_numpy(), "_py": ys.to_numpy(),
                                  "_px": xs.to_numpy()})
        segment, links = link(positions, float(search_range), int(memory))
        cells = cells.assign(_segment=segment).sort_values(["t", "label"])
        # track ids from 1, in order of appearance
        first = cells.groupby("_segment")[["t", "label"]].min().sort_values(["t", "label"])
        ids = pd.Series(np.arange(1, len(first) + 1), index=first.index)
        cells["track_id"] = ids[cells["_segment"]].to_numpy()
        cells = cells.drop(columns="_segment").reset_index(drop=True)
        parents = {int(ids[child]): int(ids[parent]) for parent, child in links}
    else:
        cells["track_id"] = pd.Series(dtype=np.int64)
    cells = cells[TRACK_COLUMNS + [c for c in cells.columns if c not in TRACK_COLUMNS]]
    relabelled = np.zeros_like(labels)
    for t, group in cells.groupby("t"):
        lookup = np.zeros(int(labels[t].max()) + 1, np.int32)
        lookup[group["label"].to_numpy()] = group["track_id"].to_numpy()
        relabelled[t] = lookup[labels[t]]
    return Tracks(cells.astype({"t": np.int64, "label": np.int64, "track_id": np.int64}),
                  relabelled, dict(sorted(parents.items())))


def _link_trackpy(positions, search_range, memory):
    """trackpy's linking of (frame, _py, _px) rows: (track of each row, no divisions)."""
    import warnings

    import trackpy

    trackpy.quiet()
    with warnings.catch_warnings():  # trackpy's pandas deprecations are not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        linked = trackpy.link(positions, search_range, memory=memory,
                              pos_columns=["_py", "_px"], t_column="frame")
    return linked["particle"].reindex(positions.index).to_numpy(), []


def _link_laptrack(positions, search_range, memory):
    """laptrack's LAP linking with splitting: (track segment of each row, (parent, child)s)."""
    from laptrack import LapTrack

    lap = LapTrack(cutoff=search_range ** 2, gap_closing_cutoff=search_range ** 2 if memory
                   else False, gap_closing_max_frame_count=memory + 1,
                   splitting_cutoff=(2 * search_range) ** 2, merging_cutoff=False)
    linked, splits, _ = lap.predict_dataframe(positions, coordinate_cols=["_py", "_px"],
                                              frame_col="frame", only_coordinate_cols=False)
    links = (list(zip(splits["parent_track_id"], splits["child_track_id"])) if len(splits)
             else [])
    return linked["track_id"].to_numpy(), links


def track_summary(tracks, *, frame_interval: float = 1.0,
                  class_column: str = "class_name") -> pd.DataFrame:
    """Per-track numbers: when it starts and ends, how long, time in each class, speed.

    Parameters
    ----------
    tracks : Tracks or DataFrame
        :func:`track`'s result (or its table).
    frame_interval : float, default=1.0
        Time between frames, in the unit the durations are wanted in (e.g.
        minutes).
    class_column : str, default="class_name"
        Column of per-frame classes; with it, ``frames_<class>`` and
        ``time_<class>`` columns count each track's frames in each class.

    Returns
    -------
    summary : DataFrame
        Indexed by ``track_id``: ``first_t, last_t, n_frames, duration``
        (``(last_t - first_t + 1) * frame_interval``), ``speed`` (mean
        centroid displacement per unit time, NaN for one-frame tracks) and
        the class columns.

    Examples
    --------
    >>> table = pd.DataFrame({"track_id": [1, 1, 1, 2], "t": [0, 1, 2, 0], "label": [1, 1, 1, 2],
    ...                       "y": [0.0, 3.0, 6.0, 9.0], "x": [0.0, 4.0, 8.0, 9.0],
    ...                       "area": [9, 9, 9, 9],
    ...                       "class_name": ["interphase", "mitotic", "mitotic", "interphase"]})
    >>> track_summary(table, frame_interval=5.0)[["duration", "speed", "time_mitotic"]]
              duration  speed  time_mitotic
    track_id                               
    1             15.0    1.0          10.0
    2              5.0    NaN           0.0
    """
    table = tracks.table if isinstance(tracks, Tracks) else tracks
    if not isinstance(table, pd.DataFrame) or not set(TRACK_COLUMNS) <= set(table.columns):
        raise ValueError(f"`tracks` must be a Tracks or a table with columns {TRACK_COLUMNS}.")
    if not (isinstance(frame_interval, (int, float)) and frame_interval > 0):
        raise ValueError(f"`frame_interval` must be a number > 0, got {frame_interval!r}.")
    table = table.sort_values(["track_id", "t"])
    groups = table.groupby("track_id")
    summary = pd.DataFrame({"first_t": groups["t"].min(), "last_t": groups["t"].max(),
                            "n_frames": groups.size()})
    summary["duration"] = (summary["last_t"] - summary["first_t"] + 1) * float(frame_interval)
    step = np.hypot(groups["y"].diff(), groups["x"].diff())
    dt = groups["t"].diff() * float(frame_interval)
    moved = pd.DataFrame({"track_id": table["track_id"], "d": step, "dt": dt}).dropna()
    totals = moved.groupby("track_id")[["d", "dt"]].sum()
    summary["speed"] = (totals["d"] / totals["dt"]).reindex(summary.index)
    if class_column in table.columns:
        counts = pd.crosstab(table["track_id"], table[class_column]).reindex(summary.index,
                                                                              fill_value=0)
        for name in counts.columns:
            summary[f"frames_{name}"] = counts[name]
            summary[f"time_{name}"] = counts[name] * float(frame_interval)
    summary.index.name = "track_id"
    return summary


def write_ctc(tracks, folder, *, overwrite: bool = False) -> Path:
    """Write tracks in the Cell Tracking Challenge result format.

    ``folder`` gets ``mask000.tif``, ``mask001.tif`` ... (uint16, one id per
    track segment) and ``res_track.txt`` (``L B E P``: id, first and last
    frame, parent id or 0). CTC's format allows no gap inside a track, so a
    track that skips frames (trackpy's `memory`) is written as segments, each
    the parent of the next. The folder is written atomically.

    Parameters
    ----------
    tracks : Tracks
    folder : str or Path
        Folder to create (e.g. ``01_RES``).
    overwrite : bool, default=False
        Replace an existing folder (once the new one is complete).

    Returns
    -------
    folder : Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> labels = np.zeros((3, 8, 8), np.int32); labels[[0, 2], 2:5, 2:5] = 1
    >>> out = write_ctc(track(labels, memory=1), pathlib.Path(tempfile.mkdtemp()) / "01_RES")
    >>> (out / "res_track.txt").read_text()
    '1 0 0 0\\n2 2 2 1\\n'
    """
    from ._shared.files import atomic_dir

    if not isinstance(tracks, Tracks):
        raise TypeError(f"`tracks` must be the Tracks that track() returns, got "
                        f"{type(tracks).__name__}.")
    with atomic_dir(Path(folder), overwrite=overwrite) as tmp:
        _write_ctc_files(tracks, tmp, "mask", "res_track.txt")
    return Path(folder)


def _write_ctc_files(tracks: Tracks, folder: Path, mask_prefix: str, track_file) -> None:
    """CTC masks and track file of `tracks` in `folder` (gaps split into parent-linked segments)."""
    import tifffile

    table = tracks.table.sort_values(["track_id", "t"])
    # split tracks at gaps: a new segment id whenever t jumps by more than 1
    gap = (table.groupby("track_id")["t"].diff().fillna(1) > 1).astype(int)
    table = table.assign(piece=gap.groupby(table["track_id"]).cumsum())
    segments = table.groupby(["track_id", "piece"])["t"].agg(["min", "max"]).reset_index()
    segments["ctc_id"] = np.arange(1, len(segments) + 1)
    if len(segments) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(segments)} track segments do not fit CTC's 16-bit masks.")
    previous = segments.groupby("track_id")["ctc_id"].shift(1)
    last = segments.groupby("track_id")["ctc_id"].max()
    mother = segments["track_id"].map(tracks.parents).map(last)  # a division's mother
    segments["parent"] = previous.fillna(mother).fillna(0).astype(int)
    ids = table.merge(segments[["track_id", "piece", "ctc_id"]], on=["track_id", "piece"])
    width = max(3, len(str(len(tracks.labels) - 1)))
    for t, frame in enumerate(tracks.labels):
        rows = ids[ids["t"] == t]
        lookup = np.zeros(int(frame.max()) + 1, np.uint16)
        lookup[rows["track_id"].to_numpy()] = rows["ctc_id"].to_numpy()
        tifffile.imwrite(folder / f"{mask_prefix}{t:0{width}d}.tif", lookup[frame],
                         compression="zlib")
    if track_file is not None:  # (CTC's SEG truth is masks only)
        (folder / track_file).write_text("".join(
            f"{r.ctc_id} {r.min} {r.max} {r.parent}\n" for r in segments.itertuples()))


def truth_tracks(movie) -> Tracks:
    """The true tracks of a :func:`cellnb.data.synthetic_movie`, divisions included.

    Examples
    --------
    >>> from cellnb.data import synthetic_movie
    >>> movie = synthetic_movie(6, shape=(96, 96), n_cells=6, divide=True, mitosis_frames=2,
    ...                         seed=1)
    >>> truth = truth_tracks(movie)
    >>> len(truth.parents), truth.table["track_id"].nunique() == len(movie.lineage)
    (6, True)
    """
    from .data import SyntheticMovie

    if not isinstance(movie, SyntheticMovie):
        raise TypeError(f"`movie` must be a cellnb.data.SyntheticMovie, got "
                        f"{type(movie).__name__}.")
    cells = _cell_table(movie.labels).merge(movie.truth[["t", "label", "class_name"]],
                                           on=["t", "label"], how="left")
    cells["track_id"] = cells["label"]
    cells = cells[TRACK_COLUMNS + ["class_name"]]
    parents = {int(k): int(v) for k, v in movie.lineage["parent"].items() if v > 0}
    return Tracks(cells, movie.labels.astype(np.int32), parents)


#: CTC measures :func:`score_tracks` reports by default (py-ctcmetrics' names)
CTC_METRICS = ("DET", "SEG", "TRA", "LNK", "BC(0)", "CT", "TF")


def score_tracks(tracks, truth, *, metrics=CTC_METRICS) -> pd.Series:
    """Score tracks against true ones with the Cell Tracking Challenge measures.

    Both are written in CTC's layout in a temporary folder (removed
    afterwards) and scored by `py-ctcmetrics
    <https://github.com/CellTrackingChallenge/py-ctcmetrics>`_, which
    reimplements CTC's evaluation software: DET (detection), SEG (Jaccard of
    matched cells), TRA (tracking: the acyclic-oriented-graph match, which
    counts missed and wrong links and divisions), LNK (links), and the
    biological measures BC(0) (branching correctness: divisions found in the
    right frame; ``BC(i)`` allows i frames off), CT (complete tracks), TF
    (track fractions). All lie in [0, 1], higher is better.

    Parameters
    ----------
    tracks : Tracks
        What :func:`track` returns.
    truth : Tracks
        The true tracks (:func:`truth_tracks` of a synthetic movie), with the
        same number of frames and frame shape.
    metrics : sequence of str, default=CTC_METRICS
        Any measure py-ctcmetrics knows (``ctc_metrics.metrics.ALL_METRICS``).

    Returns
    -------
    scores : Series
        One value per measure (NaN where a measure does not apply).

    Raises
    ------
    ImportError
        Without py-ctcmetrics (``pip install "cellnb[tracking]"``).

    Examples
    --------
    >>> from cellnb.data import synthetic_movie
    >>> movie = synthetic_movie(4, shape=(96, 96), n_cells=5, seed=3)
    >>> truth = truth_tracks(movie)
    >>> score_tracks(track(movie.labels), truth, metrics=("DET", "SEG", "TRA")).round(3).tolist()
    [1.0, 1.0, 1.0]
    """
    import contextlib
    import io
    import re
    import tempfile

    try:
        from ctc_metrics.metrics import ALL_METRICS
        from ctc_metrics.scripts.evaluate import evaluate_sequence
    except ImportError:
        raise ImportError("score_tracks() uses py-ctcmetrics: pip install "
                          "'cellnb[tracking]'.") from None
    for name, value in (("tracks", tracks), ("truth", truth)):
        if not isinstance(value, Tracks):
            raise TypeError(f"`{name}` must be a Tracks, got {type(value).__name__}.")
    if tracks.labels.shape != truth.labels.shape:
        raise ValueError(f"`tracks` (movie shape {tracks.labels.shape}) and `truth` (shape "
                         f"{truth.labels.shape}) must cover the same frames.")
    metrics = list(metrics)
    unknown = sorted(m for m in metrics if m not in ALL_METRICS
                     and not re.fullmatch(r"BC\([0-3]\)", m))
    if unknown:
        raise ValueError(f"unknown CTC measure(s) {unknown}; choose from {ALL_METRICS}.")
    with tempfile.TemporaryDirectory(prefix="cellnb-ctc-") as tmp:
        res, gt = Path(tmp) / "RES", Path(tmp) / "GT"
        for folder in (res, gt / "TRA", gt / "SEG"):
            folder.mkdir(parents=True)
        _write_ctc_files(tracks, res, "mask", "res_track.txt")
        _write_ctc_files(truth, gt / "TRA", "man_track", "man_track.txt")
        _write_ctc_files(truth, gt / "SEG", "man_seg", None)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints every step
            scores = evaluate_sequence(str(res), str(gt), metrics=list(metrics), threads=1)
    return pd.Series({m: float(scores[m]) if scores.get(m) is not None else float("nan")
                      for m in metrics}, name="score")
