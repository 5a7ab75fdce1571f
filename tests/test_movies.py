"""Movies: the synthetic time-lapse, segment_movie, track (trackpy), summaries, CTC export."""

import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellnb import Config, movies
from cellnb.data import synthetic_movie
from cellnb.segment import Segmentation

pytest.importorskip("trackpy")


@pytest.fixture(scope="module")
def movie():
    return synthetic_movie(10, shape=(192, 192), n_cells=15, seed=4)


def _shuffled(labels, seed=0):
    """The same cells with unrelated ids in every frame (what a segmenter gives)."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for t, frame in enumerate(labels):
        lookup = np.zeros(int(frame.max()) + 1, np.int32)
        lookup[1:] = rng.permutation(np.arange(1, int(frame.max()) + 1)) + 100
        out[t] = lookup[frame]
    return out


def test_synthetic_movie_truth(movie):
    assert movie.tl.shape == movie.fluorescence.shape == movie.labels.shape == (10, 192, 192)
    assert movie.tl.dtype == np.uint16 and movie.labels.dtype == np.int32
    per_cell = movie.truth.groupby("label")
    assert per_cell.size().eq(10).all()  # nobody leaves this field in 10 frames
    mitotic = movie.truth[movie.truth["class_name"] == "mitotic"].groupby("label")["t"]
    assert len(mitotic) == 7 and mitotic.size().eq(3).all()
    assert (mitotic.max() - mitotic.min()).eq(2).all()  # three consecutive frames
    # condensed nuclei are ~4x brighter in the frames they are mitotic
    row = movie.truth[movie.truth["class_name"] == "mitotic"].iloc[0]
    lab, t = int(row["label"]), int(row["t"])
    other = int(movie.truth[(movie.truth["label"] == lab) &
                            (movie.truth["class_name"] == "interphase")]["t"].iloc[0])
    bright = movie.fluorescence[t][movie.nuclei[t] == lab].mean()
    dim = movie.fluorescence[other][movie.nuclei[other] == lab].mean()
    assert bright > 2.5 * dim


def test_track_recovers_true_identities_from_shuffled_labels(movie):
    tracks = movies.track(_shuffled(movie.labels))
    assert tracks.parents == {}  # nobody divides in this movie
    table = tracks.table
    assert table["track_id"].nunique() == 15
    truth = [movie.labels[r.t][tracks.labels[r.t] == r.track_id][0] for r in table.itertuples()]
    table = table.assign(true=truth)
    assert table.groupby("track_id")["true"].nunique().eq(1).all()
    assert table.groupby("true")["track_id"].nunique().eq(1).all()
    assert tracks.labels.dtype == np.int32 and set(np.unique(tracks.labels)) == set(range(16))


def test_track_exact_small_case_memory_and_table_columns():
    labels = np.zeros((4, 30, 30), np.int32)
    labels[0, 2:6, 2:6] = 1
    labels[1, 3:7, 3:7] = 7
    labels[3, 5:9, 5:9] = 4  # frame 2 missed
    labels[:, 20:24, 20:24] = 2
    table = pd.DataFrame({"t": [0, 1, 3, 0, 1, 2, 3], "label": [1, 7, 4, 2, 2, 2, 2],
                          "class_name": ["a", "b", "b", "a", "a", "a", "a"]})
    kept = movies.track(labels, table=table, memory=1, search_range=5)
    assert list(kept.table.columns) == movies.TRACK_COLUMNS + ["class_name"]
    assert kept.table.sort_values(["track_id", "t"])[["track_id", "t", "label"]].values.tolist() \
        == [[1, 0, 1], [1, 1, 7], [1, 3, 4], [2, 0, 2], [2, 1, 2], [2, 2, 2], [2, 3, 2]]
    assert kept.table.set_index(["t", "label"]).loc[(3, 4), "class_name"] == "b"
    split = movies.track(labels, memory=0, search_range=5)
    assert split.table["track_id"].nunique() == 3
    assert kept.table[["y", "x", "area"]].iloc[0].tolist() == [3.5, 3.5, 16]


def test_track_errors():
    labels = np.zeros((2, 8, 8), np.int32)
    with pytest.raises(ValueError, match=r"must be a \(T, H, W\) movie, got shape \(8, 8\)"):
        movies.track(labels[0])
    with pytest.raises(ValueError, match="`memory` must be an int >= 0"):
        movies.track(labels, memory=-1)
    with pytest.raises(ValueError, match="'t' and 'label' columns"):
        movies.track(labels, table=pd.DataFrame({"label": [1]}))
    with pytest.raises(ValueError, match="more than one row for some"):
        movies.track(labels, table=pd.DataFrame({"t": [0, 0], "label": [1, 1]}))
    with pytest.raises(ValueError, match="`link_on` must be 'auto', 'cells' or two"):
        movies.track(labels, link_on=("a", "b"))
    with pytest.raises(ValueError, match="`search_range` must be a number of pixels > 0"):
        movies.track(labels, search_range=0)
    assert movies.track(labels).table.empty  # an empty movie has no tracks, not an error


@pytest.mark.parametrize("tracker", ["trackpy", "laptrack"])
def test_track_without_the_tracker_names_the_extra(monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)
    with pytest.raises(ImportError, match=rf"needs {tracker}: pip install 'cellnb\[tracking\]'"):
        movies.track(np.zeros((2, 8, 8), np.int32), tracker=tracker)
    with pytest.raises(ValueError, match="`tracker` must be 'trackpy' or 'laptrack'"):
        movies.track(np.zeros((2, 8, 8), np.int32), tracker="btrack")


@pytest.fixture(scope="module")
def dividing():
    return synthetic_movie(12, shape=(192, 192), n_cells=22, divide=True, margin=24, seed=5)


def test_synthetic_movie_divisions_and_cells_entering_and_leaving(dividing):
    lineage = dividing.lineage
    children = lineage[lineage["parent"] > 0]
    assert len(children) == 10 and children.groupby("parent").size().eq(2).all()
    for parent, pair in children.groupby("parent"):
        assert (pair["first_t"] > lineage.loc[parent, "last_t"]).all()  # born after she ends
    assert set(np.unique(dividing.labels)) - {0} == set(lineage.index)
    mothers = set(children["parent"])
    leave = lineage[(lineage["last_t"] < 11) & ~lineage.index.isin(mothers)]
    enter = lineage[(lineage["first_t"] > 0) & (lineage["parent"] == 0)]
    assert len(leave) >= 1 and len(enter) >= 1
    per_frame = dividing.truth.groupby(["t", "label"]).size()
    assert per_frame.eq(1).all()


def test_score_tracks_with_ctc_measures(dividing):
    truth = movies.truth_tracks(dividing)
    assert len(truth.parents) == 10
    perfect = movies.score_tracks(truth, truth)
    assert perfect.drop("CT").eq(1.0).all() and perfect["CT"] == pytest.approx(1.0)
    lap = movies.score_tracks(movies.track(dividing.labels, tracker="laptrack"), truth)
    tp = movies.score_tracks(movies.track(dividing.labels, tracker="trackpy"), truth)
    # the numbers in track()'s docstring
    assert lap["DET"] == tp["DET"] == 1.0 and lap["SEG"] == tp["SEG"] == 1.0
    assert lap["BC(0)"] == pytest.approx(0.727, abs=0.001) and tp["BC(0)"] == 0.0
    assert lap["TRA"] == pytest.approx(0.997, abs=0.001)
    assert tp["TRA"] == pytest.approx(0.995, abs=0.001)
    assert list(lap.index) == list(movies.CTC_METRICS)
    with pytest.raises(ValueError, match=r"unknown CTC measure\(s\) \['XYZ'\]"):
        movies.score_tracks(truth, truth, metrics=["XYZ"])
    with pytest.raises(ValueError, match="must cover the same frames"):
        movies.score_tracks(movies.track(dividing.labels[:3]), truth)
    with pytest.raises(TypeError, match="`truth` must be a Tracks"):
        movies.score_tracks(truth, dividing)


def test_score_tracks_without_py_ctcmetrics(monkeypatch, dividing):
    truth = movies.truth_tracks(dividing)
    monkeypatch.setitem(sys.modules, "ctc_metrics.metrics", None)
    with pytest.raises(ImportError, match=r"py-ctcmetrics: pip install 'cellnb\[tracking\]'"):
        movies.score_tracks(truth, truth)


def test_segment_movie_then_track_links_on_nuclei(movie):
    config = Config()
    config.locate.method = "auto"
    result = movies.segment_movie(movie.tl, model="watershed", fluorescence=movie.fluorescence,
                                  config=config, progress=False)
    assert result.labels.shape == movie.tl.shape and result.nuclei.shape == movie.tl.shape
    assert sorted(result.table["t"].unique()) == list(range(10))
    assert {"nucleus_y", "nucleus_x", "nucleus_intensity_mean"} <= set(result.table.columns)
    on_nuclei = movies.track(result.labels, table=result.table)
    on_cells = movies.track(result.labels, table=result.table, link_on="cells")
    # the claim in track()'s docstring: nuclei move more steadily than watershed outlines
    assert on_nuclei.table["track_id"].nunique() == 15
    assert on_cells.table["track_id"].nunique() > 15  # 17: broken tracks where outlines jump
    at_nucleus = [movie.labels[r.t, round(r.nucleus_y), round(r.nucleus_x)]
                  for r in on_nuclei.table.itertuples()]
    pure = on_nuclei.table.assign(true=at_nucleus).groupby("track_id")["true"].nunique()
    assert pure.eq(1).all()


class _Threshold:
    """An automatic model of the protocol for plumbing tests: Otsu threshold + connected parts."""

    name = fingerprint = "threshold"
    prompted = False
    segment_options = frozenset({"min_area"})

    def segment(self, image, prompts=None, **options):
        from scipy import ndimage
        from skimage.filters import threshold_otsu

        labels, _ = ndimage.label(image < threshold_otsu(image))
        return Segmentation.from_labels(labels.astype(np.int32), model=self.name)


def test_segment_movie_with_an_automatic_model_and_its_errors(movie):
    result = movies.segment_movie(movie.tl[:2], model=_Threshold(), progress=False)
    assert result.nuclei is None and result.labels.shape == (2, 192, 192)
    assert result.table["t"].tolist() == sorted(result.table["t"].tolist())
    with pytest.raises(ValueError, match="is prompted: pass the nuclear `fluorescence`"):
        movies.segment_movie(movie.tl[:2], model="watershed", progress=False)
    with pytest.raises(ValueError, match="must match the TL movie frame for frame"):
        movies.segment_movie(movie.tl[:2], model="watershed", fluorescence=movie.fluorescence[:3],
                             progress=False)
    with pytest.raises(ValueError, match="`tl` must be a"):
        movies.segment_movie(movie.tl[0], model=_Threshold(), progress=False)
    seen = []
    movies.segment_movie(movie.tl[:2], model=_Threshold(), progress=False,
                         callback=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]


def test_an_automatic_model_with_fluorescence_runs_annotates_chain(movie, tmp_path):
    """segment_movie and annotate share one per-image chain (issue 33): an automatic model's
    cells take the id of the nucleus they hold, get its features, and the frame's labels are
    the ones annotate writes for the same pair."""
    import tifffile as tf

    from cellnb import annotate
    from cellnb.annotate import read_records

    config = Config()
    config.locate.method = "auto"
    result = movies.segment_movie(movie.tl[:2], model=_Threshold(),
                                  fluorescence=movie.fluorescence[:2], config=config,
                                  progress=False)
    nuclei, labels, table = result.nuclei[0], result.labels[0], result.table
    first = table[table["t"] == 0].set_index("label")
    with_nucleus = first.index[first.index <= nuclei.max()]
    assert len(with_nucleus) and first.loc[with_nucleus, "nucleus_area"].notna().all()
    for label in with_nucleus:  # the id of the nucleus the cell holds most of
        inside = nuclei[labels == label]
        assert np.bincount(inside[inside > 0]).argmax() == label
    without = first.index[first.index > nuclei.max()]
    assert first.loc[without, "nucleus_y"].isna().all()
    tracks = movies.track(result.labels, table=table)  # nucleus centroids, cell ones if none
    assert tracks.table["track_id"].notna().all()
    (tmp_path / "pairs").mkdir()
    tf.imwrite(tmp_path / "pairs" / "f0_phs.tif", movie.tl[0])
    tf.imwrite(tmp_path / "pairs" / "f0_Texas Red.tif", movie.fluorescence[0])
    annotate(tmp_path / "pairs", tmp_path / "out", model=_Threshold(), config=config,
             progress=False)
    record = read_records(tmp_path / "out")[0]
    np.testing.assert_array_equal(record.labels, labels)


def test_track_summary_time_in_each_class(movie):
    tracks = movies.track(movie.labels, table=movie.truth[["t", "label", "class_name"]])
    summary = movies.track_summary(tracks, frame_interval=10.0)
    assert summary["n_frames"].eq(10).all() and summary["duration"].eq(100.0).all()
    assert sorted(summary["time_mitotic"].unique().tolist()) == [0.0, 30.0]
    assert (summary["time_mitotic"] > 0).sum() == 7
    assert (summary["time_interphase"] + summary["time_mitotic"]).eq(100.0).all()
    with pytest.raises(ValueError, match="`frame_interval` must be a number > 0"):
        movies.track_summary(tracks, frame_interval=0)


def test_write_ctc_format_and_gaps(tmp_path):
    labels = np.zeros((4, 30, 30), np.int32)
    labels[[0, 1, 3], 2:6, 2:6] = 1  # missing in frame 2: two CTC segments
    labels[:, 20:24, 20:24] = 2
    tracks = movies.track(labels, memory=1)
    out = movies.write_ctc(tracks, tmp_path / "01_RES")
    assert sorted(p.name for p in out.iterdir()) == ["mask000.tif", "mask001.tif",
                                                     "mask002.tif", "mask003.tif",
                                                     "res_track.txt"]
    assert (out / "res_track.txt").read_text() == "1 0 1 0\n2 3 3 1\n3 0 3 0\n"
    masks = np.stack([tifffile.imread(out / f"mask00{t}.tif") for t in range(4)])
    assert masks.dtype == np.uint16
    assert masks[3, 3, 3] == 2 and masks[1, 3, 3] == 1 and masks[2, 3, 3] == 0
    assert set(np.unique(masks[:, 21, 21])) == {3}
    with pytest.raises(FileExistsError):
        movies.write_ctc(tracks, tmp_path / "01_RES")
    movies.write_ctc(tracks, tmp_path / "01_RES", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["01_RES"]  # nothing half-written beside it
    with pytest.raises(TypeError, match="must be the Tracks"):
        movies.write_ctc(tracks.table, tmp_path / "x")


def test_track_plots(movie):
    import matplotlib

    matplotlib.use("Agg")
    from cellnb import plot

    tracks = movies.track(movie.labels, table=movie.truth[["t", "label", "class_name"]])
    ax = plot.tracks(tracks, movie.tl[-1], tail=5)
    assert ax.get_title() == "15 tracks" and len(ax.get_lines()) == 30
    ax = plot.track_classes(tracks)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["interphase", "mitotic"]
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (15, 10) and int((grid == 1).sum()) == 21  # 7 cells x 3 mitotic frames
    with pytest.raises(ValueError, match="has no 'phase' column"):
        plot.track_classes(tracks, class_column="phase")
    with pytest.raises(ValueError, match="no colour for class"):
        plot.track_classes(tracks, colors={"interphase": "grey"})
    with pytest.raises(ValueError, match="must be cellnb.movies.track's result"):
        plot.tracks(pd.DataFrame({"t": [0]}))


def test_write_ctc_links_daughters_to_their_mother(tmp_path):
    labels = np.zeros((3, 30, 30), np.int32)
    labels[:2, 10:18, 10:18] = 1
    labels[2, 6:12, 10:18] = 1
    labels[2, 16:22, 10:18] = 2
    tracks = movies.track(labels, search_range=8)
    assert tracks.parents == {2: 1, 3: 1}
    out = movies.write_ctc(tracks, tmp_path / "01_RES")
    assert (out / "res_track.txt").read_text() == "1 0 1 0\n2 2 2 1\n3 2 2 1\n"
