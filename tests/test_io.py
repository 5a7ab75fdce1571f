import numpy as np
import pytest
import tifffile
import imageio.v3 as iio

from cellnb.io import find_pairs, read_image, read_labels, read_pair, write_labels


def touch_pair(folder, stem, shape=(8, 8), dtype=np.uint16, fl_shape=None):
    tifffile.imwrite(folder / f"{stem}_phs.tif", np.zeros(shape, dtype))
    tifffile.imwrite(folder / f"{stem}_Texas Red.tif", np.zeros(fl_shape or shape, dtype))


# -- find_pairs ---------------------------------------------------------------
def test_find_pairs_pairs_by_stem(tmp_path):
    for stem in ("b_well2", "a_well1"):
        touch_pair(tmp_path, stem)
    (tmp_path / "notes.txt").write_text("ignored")
    pairs = find_pairs(tmp_path)
    assert list(pairs.columns) == ["pair_id", "tl_path", "fl_path"]
    assert pairs["pair_id"].tolist() == ["a_well1", "b_well2"]
    assert pairs["tl_path"][0].name == "a_well1_phs.tif"
    assert pairs["fl_path"][0].name == "a_well1_Texas Red.tif"


def test_find_pairs_custom_patterns_and_recursive(tmp_path):
    (tmp_path / "plate1").mkdir()
    for name in ("x_bf.png", "x_dapi.png"):
        iio.imwrite(tmp_path / "plate1" / name, np.zeros((4, 4), np.uint8))
    pairs = find_pairs(tmp_path, tl="*_bf.png", fl="*_dapi.png", recursive=True)
    assert pairs["pair_id"].tolist() == ["plate1/x"]
    with pytest.raises(FileNotFoundError, match="no images matching"):
        find_pairs(tmp_path, tl="*_bf.png", fl="*_dapi.png")


def test_find_pairs_lists_unmatched_on_both_sides(tmp_path):
    touch_pair(tmp_path, "ok")
    tifffile.imwrite(tmp_path / "lonely_phs.tif", np.zeros((2, 2), np.uint16))
    tifffile.imwrite(tmp_path / "orphan_Texas Red.tif", np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match=r"TL without fluorescence .*lonely_phs\.tif.*"
                                         r"fluorescence without TL .*orphan_Texas Red\.tif"):
        find_pairs(tmp_path)


def test_find_pairs_bad_folder_and_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_pairs(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no images matching"):
        find_pairs(tmp_path)
    with pytest.raises(ValueError, match="must be a file-name glob with a '\\*'"):
        find_pairs(tmp_path, tl="phs.tif")


# -- read_image / read_pair ---------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_read_image_keeps_dtype_and_values(tmp_path, dtype):
    image = (np.arange(12).reshape(3, 4) * 3).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, image)


def test_read_image_png_jpeg_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 200
    iio.imwrite(tmp_path / "a.png", rgb)
    assert read_image(tmp_path / "a.png").shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    iio.imwrite(tmp_path / "b.png", rgba)
    assert read_image(tmp_path / "b.png").shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"An RGB image cannot be used as `x`"):
        read_image(tmp_path / "a.png", name="x", rgb=False)


def test_read_image_rejects_multiframe_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "movie.tif", np.zeros((5, 8, 8), np.uint16))
    with pytest.raises(ValueError, match=r"movie.tif holds 5 planes \(shape \(5, 8, 8\)"):
        read_image(tmp_path / "movie.tif")


def test_read_image_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "corrupt.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="cannot read image file .*corrupt.tif"):
        read_image(tmp_path / "corrupt.tif")
    (tmp_path / "a.bmp").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported file type '.bmp'"):
        read_image(tmp_path / "a.bmp")
    tifffile.imwrite(tmp_path / "int16.tif", np.zeros((4, 4), np.int16))
    with pytest.raises(TypeError, match="int16.tif: `image` must be uint8, uint16 or float32, "
                                        "got int16"):
        read_image(tmp_path / "int16.tif")
    nan = np.zeros((4, 4), np.float32)
    nan[1, 1] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    with pytest.raises(ValueError, match="contains 1 NaN or infinite pixel"):
        read_image(tmp_path / "nan.tif")


def test_read_pair_from_row_tuple_and_dict(tmp_path):
    touch_pair(tmp_path, "s", shape=(6, 7))
    row = find_pairs(tmp_path).iloc[0]
    tl, fl = read_pair(row)
    assert tl.shape == fl.shape == (6, 7)
    read_pair((row["tl_path"], row["fl_path"]))
    read_pair({"tl_path": row["tl_path"], "fl_path": row["fl_path"]})
    with pytest.raises(TypeError, match="must be a row of find_pairs"):
        read_pair(42)
    with pytest.raises(ValueError, match="must have 'tl_path' and 'fl_path'"):
        read_pair({"tl": 1})


def test_read_pair_rejects_mismatch_and_rgb_fluorescence(tmp_path):
    touch_pair(tmp_path, "m", shape=(6, 7), fl_shape=(6, 8))
    with pytest.raises(ValueError, match=r"shape \(6, 7\).*shape \(6, 8\).*same height and width"):
        read_pair(find_pairs(tmp_path).iloc[0])
    tifffile.imwrite(tmp_path / "m_Texas Red.tif", np.zeros((6, 7, 3), np.uint8))
    with pytest.raises(ValueError, match="An RGB image cannot be used as `fluorescence image`"):
        read_pair(find_pairs(tmp_path).iloc[0])


def test_read_pair_allows_rgb_tl(tmp_path):
    iio.imwrite(tmp_path / "c_phs.png", np.zeros((5, 5, 3), np.uint8))
    iio.imwrite(tmp_path / "c_fl.png", np.zeros((5, 5), np.uint8))
    tl, fl = read_pair(find_pairs(tmp_path, tl="*_phs.png", fl="*_fl.png").iloc[0])
    assert tl.shape == (5, 5, 3) and fl.shape == (5, 5)


# -- labels -------------------------------------------------------------------
def test_labels_round_trip_int32(tmp_path):
    labels = np.array([[0, 1, 1], [2, 2, 70000]], dtype=np.int64)
    write_labels(tmp_path / "sub" / "l.tif", labels)
    out = read_labels(tmp_path / "sub" / "l.tif")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, labels)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["l.tif"]  # no temp files left


def test_labels_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="must hold integer ids"):
        write_labels(tmp_path / "f.tif", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"must be a \(H, W\) label image"):
        write_labels(tmp_path / "f.tif", np.zeros((2, 2, 2), np.int32))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        write_labels(tmp_path / "f.tif", np.array([[-1, 0]]))
    with pytest.raises(ValueError, match="use a .tif name"):
        write_labels(tmp_path / "f.png", np.zeros((2, 2), np.int32))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_labels(tmp_path / "missing.tif")
    assert not any(tmp_path.iterdir())


def test_write_labels_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import tifffile as tf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        write_labels(tmp_path / "l.tif", np.zeros((2, 2), np.int32))
    assert list(tmp_path.iterdir()) == []


# -- read_coco ----------------------------------------------------------------
def test_read_coco_cellapp_example(cellapp_example):
    from cellnb.io import Record, read_coco

    train = read_coco(cellapp_example / "train")
    test = read_coco(cellapp_example / "test" / "example_dataset_test.json")
    assert [r.id for r in train] == ["1", "0"] and [r.id for r in test] == ["2"]
    assert sum(len(r.cells) for r in train) == 372 and len(test[0].cells) == 195
    for r in train + test:
        assert isinstance(r, Record)
        assert r.image.shape == (1024, 1024, 3) and r.image.dtype == np.uint8
        assert r.labels.dtype == np.int32 and r.labels.shape == (1024, 1024)
        np.testing.assert_array_equal(np.unique(r.labels[r.labels > 0]), r.cells.index)
        assert (r.cells["class_name"] == "cell").all()
        assert r.provenance["overlap_pixels"] > 0  # Cell-APP's polygons overlap a little
    np.testing.assert_array_equal(np.bincount(test[0].labels.ravel())[1:],
                                  test[0].cells["area"].to_numpy())


def test_read_coco_rle_smaller_instance_wins(tmp_path):
    from pycocotools import mask as mask_utils

    from cellnb.io import read_coco

    big = np.zeros((6, 6), np.uint8, order="F")
    big[0:5, 0:5] = 1
    small = np.zeros((6, 6), np.uint8, order="F")
    small[3:6, 3:6] = 1
    anns = []
    for i, m in enumerate((big, small), start=1):
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode()
        anns.append({"id": i, "image_id": 3, "category_id": 2, "segmentation": rle,
                     "score": 0.5 * i})
    coco = {"images": [{"id": 3, "file_name": "x.tif", "height": 6, "width": 6}],
            "categories": [{"id": 2, "name": "mitotic"}], "annotations": anns}
    iio.imwrite(tmp_path / "x.png", np.zeros((6, 6), np.uint8))
    record = read_coco(coco, images=False)[0]
    assert record.labels[4, 4] == 2 and record.labels[0, 0] == 1
    assert record.provenance["overlap_pixels"] == 4
    assert record.cells["score"].tolist() == [0.5, 1.0]
    assert record.cells.loc[2, ["y0", "x0", "y1", "x1"]].tolist() == [3, 3, 6, 6]


def test_read_coco_bad_inputs(tmp_path):
    from cellnb.io import read_coco

    with pytest.raises(FileNotFoundError, match="COCO file .*missing.json does not exist"):
        read_coco(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_coco(tmp_path / "bad.json")
    with pytest.raises(ValueError, match=r"must hold exactly one COCO .json file, found "
                                         r"\['bad.json', 'c.json'\]"):
        (tmp_path / "c.json").write_text("{}")
        read_coco(tmp_path)
    with pytest.raises(ValueError, match=r"keys \['images', 'annotations'\] are missing"):
        read_coco(tmp_path / "c.json")
    orphan = {"images": [], "categories": [{"id": 1, "name": "cell"}],
              "annotations": [{"id": 1, "image_id": 9, "category_id": 1, "segmentation": []}]}
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 1\): image_id 9 is not in "
                                         "'images'"):
        read_coco(orphan, images=False)
    with pytest.raises(ValueError, match="pass image_root= to read images of a COCO dict"):
        read_coco({"images": [], "annotations": []})
