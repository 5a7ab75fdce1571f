import numpy as np
import pandas as pd
import pytest

from cellnb.prompt import PROMPT_COLUMNS, prompt, prompt_counts


@pytest.fixture
def nuclei():
    n = np.zeros((20, 20), np.int32)
    n[4:8, 4:8] = 1        # 4 x 4 square: centroid (5.5, 5.5)
    n[12:16, 10:14] = 2    # centroid (13.5, 11.5)
    n[17:20, 0:2] = 3      # at the border
    return n


def test_points_and_boxes_exact(nuclei):
    table = prompt(nuclei, kind="points+boxes", box_scale=2)
    assert list(table.columns) == PROMPT_COLUMNS
    assert table["label"].tolist() == [1, 2, 3]
    assert table[["y", "x"]].values.tolist() == [[5.5, 5.5], [13.5, 11.5], [18.0, 0.5]]
    # median major axis of the three (4.47, 4.47, 3.46) -> side 8.94: [1, 11) around 5.5
    assert table.loc[0, ["y0", "x0", "y1", "x1"]].tolist() == [1, 1, 11, 11]
    assert table["clipped"].tolist() == [False, False, True]
    assert table.loc[2, ["y0", "x0", "y1", "x1"]].tolist() == [14, 0, 20, 6]
    assert (table["kind"] == "points+boxes").all()


def test_per_cell_box_size(nuclei):
    table = prompt(nuclei, kind="boxes", box_scale=2, box_size="per-cell")
    sides = (table["y1"] - table["y0"]).tolist()
    assert sides[0] == 10 and sides[1] == 10  # 4.47 * 2 = 8.9 -> 10 pixels after rounding out
    assert table.loc[2, "clipped"]


def test_point_moves_inside_nonconvex_nucleus():
    ring = np.zeros((21, 21), np.int32)
    yy, xx = np.mgrid[:21, :21]
    r = np.hypot(yy - 10, xx - 10)
    ring[(r > 5) & (r < 9) & (xx < 15)] = 1  # a C shape: centroid in the hole
    table = prompt(ring)
    y, x = table.loc[0, ["y", "x"]]
    assert ring[int(y), int(x)] == 1


def test_negatives_are_nearest_other_nuclei(nuclei):
    table = prompt(nuclei, negatives=1)
    assert table["negatives"].tolist() == [(2,), (1,), (2,)]  # 2 is 10 px from 1, 11.9 from 3
    assert prompt(nuclei, negatives=5)["negatives"][0] == (2, 3)  # capped at n - 1
    assert prompt(nuclei)["negatives"].tolist() == [(), (), ()]


def test_empty_and_bad_inputs(nuclei):
    empty = prompt(np.zeros((5, 5), np.int32))
    assert empty.empty and list(empty.columns) == PROMPT_COLUMNS
    with pytest.raises(ValueError, match=r"`kind` must be one of \['points', 'boxes'"):
        prompt(nuclei, kind="circle")
    with pytest.raises(ValueError, match="`box_size` must be 'median' or 'per-cell'"):
        prompt(nuclei, box_size="mean")
    with pytest.raises(ValueError, match="`box_scale` must be a positive number"):
        prompt(nuclei, box_scale=0)
    with pytest.raises(ValueError, match="`negatives` must be an int >= 0"):
        prompt(nuclei, negatives=-1)
    with pytest.raises(TypeError, match="`nuclei` must hold integer ids"):
        prompt(nuclei.astype(float))


def test_prompt_counts_flags_missed_and_split_cells():
    cells = np.zeros((10, 10), np.int32)
    cells[:, :4], cells[:, 4:8] = 1, 2
    cells[0, 9] = 3
    table = pd.DataFrame({"y": [2.0, 7.0, 3.0, 9.0], "x": [1.0, 2.0, 5.0, 9.0]})
    counts = prompt_counts(table, cells)
    assert counts["prompts"].to_dict() == {0: 1, 1: 2, 2: 1, 3: 0}
    with pytest.raises(ValueError, match="needs columns 'y' and 'x'"):
        prompt_counts(pd.DataFrame({"a": [1]}), cells)


def test_one_prompt_per_synthetic_cell():
    from cellnb.data import synthetic_pairs
    from cellnb.locate import locate

    pair = synthetic_pairs(1, shape=(256, 256), n_cells=25, seed=8)[0]
    counts = prompt_counts(prompt(locate(pair.fluorescence)), pair.labels)
    assert (counts["prompts"] == 1).all() and 0 not in counts.index
