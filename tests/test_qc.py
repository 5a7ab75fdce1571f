import numpy as np
import pandas as pd
import pytest

from cellnb import Config, annotate, locate
from cellnb.annotate import read_records
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import Record
from cellnb.qc import FLAGS, _neighbour_counts, flag_cells, triage


def _record(labels, **columns):
    ids = np.unique(labels[labels > 0])
    table = pd.DataFrame(columns or {"status": ["kept"] * len(ids)},
                         index=pd.Index(ids if not columns else
                                        range(1, len(next(iter(columns.values()))) + 1),
                                        name="label"))
    return Record("r", None, labels, table)


def test_neighbours_of_a_grid():
    grid = np.zeros((14, 14), np.int32)
    for i in range(3):
        for j in range(3):
            grid[1 + 4 * i:5 + 4 * i, 1 + 4 * j:5 + 4 * j] = 1 + 3 * i + j
    counts = _neighbour_counts(grid).sort_index()
    assert counts.tolist() == [3, 5, 3, 5, 8, 5, 3, 5, 3]
    flags = flag_cells(_record(grid), max_neighbours=5)
    assert flags.index[flags["crowded"]].tolist() == [2, 4, 5, 6, 8]
    assert not flags["border"].any()  # a one-pixel margin all round


def test_area_outlier_is_the_one_far_larger_cell():
    labels = np.zeros((40, 40), np.int32)
    for k in range(6):
        labels[2:6, 1 + 6 * k:5 + 6 * k] = k + 1  # six 4x4 cells
    labels[15:25, 5:15] = 7  # one 10x10
    flags = flag_cells(_record(labels))
    assert flags.index[flags["area"]].tolist() == [7]
    assert flags.loc[7, "cell_area"] == 100 and flags.loc[1, "cell_area"] == 16
    # fewer than five cells: not judged
    assert flag_cells(_record(labels * (labels >= 5)))["area"].isna().all()


def test_nucleus_outside_its_cell_and_dropped_prompts():
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 1
    labels[10:16, 10:16] = 2
    nuclei = np.zeros_like(labels)
    nuclei[4:6, 4:6] = 1            # inside cell 1
    nuclei[9:13, 9:13] = 2          # 9 of 16 pixels inside cell 2: still its nucleus
    nuclei[16:20, 2:6] = 3          # a nucleus whose prompt was dropped
    labels_3 = labels.copy()
    labels_3[14:17, 2:6] = 3        # ... or a cell holding only a quarter of its nucleus
    record = _record(labels, status=["kept", "kept", "overlap"], score=[0.9, 0.5, np.nan])
    flags = flag_cells(record, nuclei=nuclei)
    assert flags["dropped"].tolist() == [False, False, True]
    assert flags["no_nucleus"].tolist() == [False, False, True]
    assert flags["low_score"].isna().tolist() == [False, False, True]
    assert flags["low_score"].iloc[:2].tolist() == [False, True]
    assert flags["border"].tolist() == [False, False, False]
    assert flags["n_flags"].tolist() == [0, 1, 2]
    half = flag_cells(Record("h", None, labels_3, record.cells.assign(status="kept")),
                      nuclei=nuclei)
    assert half["no_nucleus"].tolist() == [False, False, True]
    assert half["dropped"].tolist() == [False, False, False]
    # without nuclei the flag is unknown, not False
    assert flag_cells(record)["no_nucleus"].isna().all()


def test_flag_cells_refuses_bad_input():
    labels = np.zeros((8, 8), np.int32)
    labels[2:4, 2:4] = 1
    record = _record(labels)
    with pytest.raises(ValueError, match=r"`nuclei` \(shape \(4, 4\)\) must match"):
        flag_cells(record, nuclei=np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="`min_score` must be in"):
        flag_cells(record, min_score=2)
    with pytest.raises(ValueError, match="`max_neighbours` must be an int"):
        flag_cells(record, max_neighbours=0)
    with pytest.raises(TypeError):
        flag_cells(Record("f", None, labels.astype(float), record.cells))


def test_triage_an_annotate_folder(tmp_path):
    pairs = synthetic_pairs(3, shape=(128, 128), n_cells=8, seed=2)
    write_pairs(pairs, tmp_path / "pairs")
    config = Config.from_dict({"locate": {"method": "auto"}})
    annotate(tmp_path / "pairs", tmp_path / "out", config=config, model="watershed",
             progress=False)
    records = read_records(tmp_path / "out")
    by_pair, cells = triage(tmp_path / "out")  # the records' own nuclei and every prompt
    assert list(by_pair.columns) == ["id", "cells", "flagged", *FLAGS]
    assert sorted(by_pair["id"]) == sorted(r.id for r in records)
    assert by_pair["flagged"].is_monotonic_decreasing
    assert cells["n_flags"].is_monotonic_decreasing
    for row in by_pair.itertuples():
        mine = cells[cells["id"] == row.id]
        assert row.flagged == (mine["n_flags"] > 0).sum()
        assert row.border == mine["border"].sum()
        assert row.cells == (mine["cell_area"] > 0).sum()
    # the watershed cells contain their nuclei: no_nucleus was checked and is rare
    assert cells["no_nucleus"].notna().all() and cells["no_nucleus"].mean() < 0.1
    # records in memory (kept cells only) with the same nuclei: the same flags for those cells
    nuclei = {p.id: locate(p.fluorescence, method="auto") for p in pairs}
    _, again = triage(records, nuclei=nuclei)
    both = cells.merge(again, on=["id", "label"], suffixes=("", "_mem"))
    assert len(both) == len(again) > 0
    for flag in ("no_nucleus", "low_score", "area", "crowded", "border"):
        pd.testing.assert_series_equal(both[flag], both[f"{flag}_mem"], check_names=False)
    with pytest.raises(ValueError, match="no records to triage"):
        triage([])
