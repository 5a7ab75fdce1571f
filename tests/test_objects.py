"""Cells to Fiji (ImageJ ROI zip) and QuPath (GeoJSON) and back, exactly (issue 34, item 4)."""

import json

import numpy as np
import pandas as pd
import pytest
import roifile

from cellnb import annotate, export
from cellnb.annotate import read_records
from cellnb.curate import replace_all, undo
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import Record, read_geojson, read_rois


def _hard_cells():
    """Holes (one of one pixel), touching cells, a cell of two pieces that meet at a corner,
    cells at the image edge."""
    labels = np.zeros((30, 40), np.int32)
    labels[2:12, 3:15] = 1
    labels[5:8, 6:9] = 0                          # a hole
    labels[2:12, 15:25] = 2                       # touches 1
    labels[14:20, 14:20] = 3
    labels[20:24, 20:24] = 3                      # second piece, corner to corner
    labels[20:24, 14:20] = 4                      # fills the corner's other side
    labels[15:18, 30:39] = 5
    labels[16, 34] = 0                            # a one-pixel hole
    labels[26:30, 0:5] = 6                        # image edge
    labels[0:3, 35:40] = 7                        # image corner
    return labels


@pytest.fixture
def dataset(tmp_path):
    labels = _hard_cells()
    cells = pd.DataFrame({"class_name": ["interphase", "mitotic", "interphase", "mitotic",
                                         "interphase", "interphase", "mitotic"]},
                         index=pd.Index(range(1, 8), name="label"))
    record = Record("plate1_A1", np.zeros(labels.shape, np.uint8), labels, cells)
    export([record], tmp_path / "ds", splits={"train": 1},
           formats=["coco", "imagej-roi", "qupath-geojson"])
    return tmp_path / "ds" / "train", labels


def test_imagej_rois_round_trip_exactly(dataset):
    folder, labels = dataset
    back, groups = read_rois(folder / "imagej-roi" / "plate1_A1.zip", labels.shape)
    assert back.dtype == np.int32 and np.array_equal(back, labels)
    assert groups.to_dict() == {1: 1, 2: 2, 3: 1, 4: 2, 5: 1, 6: 1, 7: 2}  # sorted classes
    rois = roifile.roiread(folder / "imagej-roi" / "plate1_A1.zip")
    assert [r.name for r in rois] == [str(k) for k in range(1, 8)]
    kinds = {r.name: r.composite for r in rois}
    assert kinds["1"] and kinds["3"] and kinds["5"] and not kinds["2"]  # holes, two pieces


def test_qupath_geojson_round_trips_exactly_with_classes(dataset):
    folder, labels = dataset
    path = folder / "qupath-geojson" / "plate1_A1.geojson"
    back, classes = read_geojson(path, labels.shape)
    assert np.array_equal(back, labels)
    assert classes.to_dict() == {1: "interphase", 2: "mitotic", 3: "interphase", 4: "mitotic",
                                 5: "interphase", 6: "interphase", 7: "mitotic"}
    data = json.loads(path.read_text())
    one = data["features"][0]
    assert data["type"] == "FeatureCollection" and one["properties"]["objectType"] == "annotation"
    assert one["geometry"]["type"] == "Polygon" and len(one["geometry"]["coordinates"]) == 2
    assert one["geometry"]["coordinates"][0][0] == one["geometry"]["coordinates"][0][-1]
    assert one["properties"]["classification"]["name"] == "interphase"


def test_rois_written_by_roifile_itself_read_as_imagej_fills_them(tmp_path):
    square = roifile.ImagejRoi.frompoints([[2, 1], [6, 1], [6, 4], [2, 4]], name="cellA")
    triangle = roifile.ImagejRoi.frompoints([[10, 2], [14.2, 2], [10, 6.2]])  # subpixel
    line = roifile.ImagejRoi.frompoints([[0, 9], [5, 9]])
    line.roitype = roifile.ROI_TYPE.LINE
    roifile.roiwrite(tmp_path / "fiji.zip", [square, triangle, line])
    labels, groups = read_rois(tmp_path / "fiji.zip", (10, 16))
    expected = np.zeros((10, 16), np.int32)
    expected[1:4, 2:6] = 1  # pixel centres inside x 2..6, y 1..4
    for row in range(2, 7):  # below the hypotenuse x + y = 16.2: centres (c + .5, r + .5)
        cols = [c for c in range(10, 15) if (c + 0.5) + (row + 0.5) < 16.2]
        expected[row, cols] = 2
    assert np.array_equal(labels, expected)  # names that are not ids: numbered in file order
    assert groups.empty
    roifile.roiwrite(tmp_path / "one.roi", square)
    assert np.array_equal(read_rois(tmp_path / "one.roi", (10, 16))[0] > 0, expected == 1)


def test_geojson_as_qupath_writes_it(tmp_path):
    feature = {"type": "Feature", "id": "8c4f9a0e-1b2c-4d5e-8f90-1a2b3c4d5e6f",
               "geometry": {"type": "MultiPolygon", "coordinates": [
                   [[[1, 1], [4, 1], [4, 4], [1, 4], [1, 1]]],
                   [[[6, 1], [8, 1], [8, 3], [6, 3], [6, 1]]]]},
               "properties": {"objectType": "detection",
                              "classification": {"name": "Tumor", "color": [200, 0, 0]}}}
    point = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 3]},
             "properties": {"objectType": "annotation"}}
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature, point]}))
    labels, classes = read_geojson(path, (6, 10))
    expected = np.zeros((6, 10), np.int32)
    expected[1:4, 1:4] = 1
    expected[1:3, 6:8] = 1
    assert np.array_equal(labels, expected) and classes.to_dict() == {1: "Tumor"}


def test_corrections_made_in_fiji_come_back_into_the_record(tmp_path):
    write_pairs(synthetic_pairs(1, shape=(96, 96), n_cells=5, seed=4), tmp_path / "pairs")
    annotate(tmp_path / "pairs", tmp_path / "out", model="watershed", progress=False)
    [record] = read_records(tmp_path / "out")
    export([record], tmp_path / "ds", splits={"train": 1}, formats=["imagej-roi"])
    zip_path = tmp_path / "ds" / "train" / "imagej-roi" / f"{record.id}.zip"
    rois = roifile.roiread(zip_path)
    first, second = int(rois[0].name), int(rois[1].name)
    # in Fiji: delete the first ROI, draw a new cell in an empty corner
    new = roifile.ImagejRoi.frompoints([[0, 0], [5, 0], [5, 5], [0, 5]], name="new cell")
    corner_free = not (record.labels[:5, :5] > 0).any()
    roifile.roiwrite(zip_path, rois[1:] + ([new] if corner_free else []), mode="w")
    edited, _ = read_rois(zip_path, record.labels.shape)  # the new ROI gets the next free id
    changes = replace_all(tmp_path / "out", record.id, edited, source=zip_path)
    assert changes["rejected"] == [first] and changes["edited"] == []
    assert changes["added"] == ([int(record.labels.max()) + 1] if corner_free else [])
    [after] = read_records(tmp_path / "out")
    assert not (after.labels == first).any() and first not in after.cells.index
    assert (after.labels > 0).sum() == (edited > 0).sum()
    assert after.provenance["curation"]["edits"][-1]["op"] == "replace_all"
    assert after.provenance["curation"]["edits"][-1]["source"] == str(zip_path)
    undo(tmp_path / "out", record.id)
    [again] = read_records(tmp_path / "out")
    assert np.array_equal(again.labels, record.labels) and second in again.cells.index


def test_bad_object_files_and_shapes(tmp_path, dataset):
    folder, labels = dataset
    with pytest.raises(ValueError, match=r"`shape` must be the image's \(height, width\), got "
                                         r"\(30,\)"):
        read_rois(folder / "imagej-roi" / "plate1_A1.zip", (30,))
    with pytest.raises(FileNotFoundError, match="ROI file .*nope.zip does not exist"):
        read_rois(tmp_path / "nope.zip", (4, 4))
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="cannot read ImageJ ROIs from .*bad.zip"):
        read_rois(tmp_path / "bad.zip", (4, 4))
    (tmp_path / "bad.geojson").write_text('{"type": "FeatureCollection"')
    with pytest.raises(ValueError, match="bad.geojson is not a GeoJSON file"):
        read_geojson(tmp_path / "bad.geojson", (4, 4))
    (tmp_path / "none.geojson").write_text('{"type": "FeatureCollection", "features": 3}')
    with pytest.raises(ValueError, match="holds no GeoJSON features"):
        read_geojson(tmp_path / "none.geojson", (4, 4))
    with pytest.raises(ValueError, match=r"`labels` has shape \(4, 4\); record"):
        write_pairs(synthetic_pairs(1, shape=(96, 96), n_cells=3, seed=1), tmp_path / "p")
        annotate(tmp_path / "p", tmp_path / "o", model="watershed", progress=False)
        replace_all(tmp_path / "o", "synthetic_000", np.zeros((4, 4), np.int32))


@pytest.mark.parametrize("seed", range(4))
def test_random_cells_round_trip_through_both_formats(tmp_path, seed):
    """Salt-and-pepper cells: every kind of corner contact, hole and piece at once."""
    from cellnb.io import _objects

    rng = np.random.default_rng(seed)
    labels = ((rng.random((12, 14)) > 0.45) * rng.integers(1, 4, (12, 14))).astype(np.int32)
    (tmp_path / "g.geojson").write_text(json.dumps(_objects.to_geojson(labels)))
    _objects.write_rois(labels, tmp_path / "r.zip")
    assert np.array_equal(read_geojson(tmp_path / "g.geojson", labels.shape)[0], labels)
    assert np.array_equal(read_rois(tmp_path / "r.zip", labels.shape)[0], labels)
