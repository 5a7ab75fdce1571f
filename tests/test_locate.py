import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import gaussian, threshold_isodata, threshold_multiotsu
from skimage.measure import label
from skimage.morphology import disk, erosion, footprint_rectangle, white_tophat

from cellnb.data import synthetic_pairs
from cellnb.locate import estimate_nucleus_radius, locate, suggest_locate


def disks(shape, specs, background=100.0, blur=1.2, noise=5.0, seed=0):
    """Float image with bright disks (row, col, radius, brightness) + blur + noise."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.full(shape, background)
    for cy, cx, r, b in specs:
        image += b * (np.hypot(yy - cy, xx - cx) < r)
    image = ndimage.gaussian_filter(image, blur)
    return (image + np.random.default_rng(seed).normal(0, noise, shape)).astype(np.float32)


def detection(located, truth):
    """tp, fp, fn with one prompt per true nucleus; duplicates count as false positives."""
    ids = np.unique(located[located > 0])
    centres = np.array(ndimage.center_of_mass(np.ones_like(located), located, ids))
    hit = truth[tuple(np.round(centres).astype(int).T)] if len(ids) else np.array([], int)
    tp = len(np.unique(hit[hit > 0]))
    return tp, len(ids) - tp, len(np.unique(truth[truth > 0])) - tp


# -- Cell-APP modes match a direct computation of their recipe -----------------
@pytest.fixture(scope="module")
def fl():
    return synthetic_pairs(1, shape=(192, 192), n_cells=15, seed=4)[0].fluorescence


def recipe(fl, sigma=2.0, tophat=71, erosion_radius=8):
    im = gaussian(fl.astype(np.float32), sigma=sigma, preserve_range=True)
    im = white_tophat(im, footprint_rectangle((tophat, tophat)))
    return erosion(im, disk(erosion_radius))


def test_isodata_mode_is_cellapps_recipe(fl):
    im = recipe(fl)
    expected = label(im > threshold_isodata(im) / 0.75)
    np.testing.assert_array_equal(locate(fl, method="isodata"), expected)


def test_multiotsu_mode_is_cellapps_recipe(fl):
    im = recipe(fl, erosion_radius=3)
    expected = label(np.digitize(im, bins=threshold_multiotsu(im, classes=3)))
    np.testing.assert_array_equal(locate(fl, method="multiotsu", erosion_radius=3), expected)


def test_watershed_mode_splits_touching_disks():
    image = disks((60, 90), [(30, 30, 10, 500), (30, 48, 10, 500), (30, 75, 6, 500)])
    two = locate(image, method="isodata", threshold_division=1, erosion_radius=None, sigma=1)
    assert two.max() == 2  # a global threshold keeps the touching pair as one object
    split = locate(image, method="watershed", threshold_division=1, erosion_radius=4, sigma=1)
    assert split.max() == 3
    assert len({split[30, 30], split[30, 48], split[30, 75]}) == 3


def test_disabled_steps_and_size_filter():
    image = disks((40, 60), [(20, 15, 6, 300), (20, 45, 2, 300)])
    both = locate(image, method="isodata", tophat_size=None, erosion_radius=None, sigma=0,
                  threshold_division=1)
    assert both.max() == 2
    big_only = locate(image, method="isodata", tophat_size=None, erosion_radius=None, sigma=0,
                      threshold_division=1, min_area=40)
    assert big_only.max() == 1 and big_only[20, 15] == 1
    small_only = locate(image, method="isodata", tophat_size=None, erosion_radius=None, sigma=0,
                        threshold_division=1, max_area=40)
    assert small_only.max() == 1 and small_only[20, 45] == 1


# -- auto ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_auto_every_dtype(dtype):
    image = disks((64, 64), [(20, 20, 7, 120), (44, 40, 7, 60)], background=20, noise=2)
    labels = locate(np.clip(image, 0, 255).astype(dtype))
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[20, 20] != labels[44, 40] and labels[20, 20] > 0 and labels[44, 40] > 0


def test_auto_keeps_dim_nucleus_touching_a_bright_one():
    image = disks((80, 120), [(40, 40, 9.5, 800), (40, 58, 9.5, 300), (40, 95, 9.5, 500)])
    labels = locate(image)
    assert labels.max() == 3
    assert len({labels[40, 40], labels[40, 58], labels[40, 95]} - {0}) == 3


def test_auto_handles_uneven_background():
    yy, xx = np.mgrid[:128, :128]
    image = disks((128, 128), [(32, 32, 6, 150), (32, 96, 6, 150), (96, 32, 6, 150),
                               (96, 96, 6, 150)])
    image += (400 * xx / 128).astype(np.float32)  # background ramp 2.7x the nuclei
    labels = locate(image)
    assert labels.max() == 4
    naive = label(image > threshold_isodata(image))
    assert naive.max() != 4  # a global threshold fails on this image


def test_auto_radius_estimate():
    for r in (4, 8, 16):
        specs = [(40 + 90 * i, 40 + 90 * j, r, 300) for i in range(3) for j in range(3)]
        assert estimate_nucleus_radius(disks((300, 300), specs)) == pytest.approx(r, rel=0.3)


@pytest.mark.parametrize("radius, density", [((3, 5), 0.25), ((3, 5), 0.6), ((6, 10), 0.25),
                                             ((6, 10), 0.6), ((12, 20), 0.25), ((12, 20), 0.6)])
def test_auto_detection_f1_on_synthetic_sets(radius, density):
    """One prompt per nucleus across sizes, densities and a 5x brightness spread."""
    size = 384
    n_cells = int(density * size * size / (np.pi * (2.3 * np.mean(radius)) ** 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dense sets place fewer cells than asked
        pairs = synthetic_pairs(2, shape=(size, size), n_cells=n_cells, nucleus_radius=radius,
                                brightness_range=(0.3, 1.5), seed=11)
    tp = fp = fn = 0
    for p in pairs:
        a, b, c = detection(locate(p.fluorescence), p.nuclei)
        tp, fp, fn = tp + a, fp + b, fn + c
    assert 2 * tp / (2 * tp + fp + fn) >= 0.95


def pressed(shape, specs, background=100.0, blur=1.2, noise=5.0, seed=0):
    """Like `disks`, but overlapping disks share a straight border (their power diagram)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    power = np.stack([np.hypot(yy - cy, xx - cx) ** 2 - r ** 2 for cy, cx, r, _ in specs])
    owner = power.argmin(axis=0)
    inside = power.min(axis=0) < 0
    brightness = np.array([b for *_, b in specs])
    image = background + np.where(inside, brightness[owner], 0.0)
    image = ndimage.gaussian_filter(image, blur)
    return (image + np.random.default_rng(seed).normal(0, noise, shape)).astype(np.float32)


def test_auto_splits_a_dim_nucleus_pressed_against_a_bright_one():
    # centres 0.75 x the sum of radii apart: a flat contact, no dip, no neck
    image = pressed((70, 100), [(35, 35, 11, 1500), (35, 51.5, 11, 600)])
    labels = locate(image)
    assert labels.max() == 2
    assert labels[35, 30] > 0 and labels[35, 56] > 0 and labels[35, 30] != labels[35, 56]


def test_auto_splits_a_small_nucleus_touching_a_large_one():
    image = pressed((80, 100), [(40, 40, 12, 600), (40, 59, 7, 600)])
    labels = locate(image)
    assert labels.max() == 2 and labels[40, 36] != labels[40, 61]


@pytest.mark.parametrize("bend", [0.0, 0.25])
def test_auto_keeps_an_elongated_bright_nucleus_whole(bend):
    yy, xx = np.mgrid[:64, :96].astype(float)
    u, v = (xx - 48), (yy - 32) - bend * (xx - 48) ** 2 / 14
    bar = (u / 14) ** 2 + (v / 4) ** 2 < 1
    image = ndimage.gaussian_filter(100 + 2500.0 * bar, 1.2)
    image = image + np.random.default_rng(1).normal(0, 5, image.shape)
    labels = locate(image.astype(np.float32), radius=8)
    assert labels.max() == 1 and labels[32, 48] == 1


@pytest.mark.parametrize("family", ["bright_dim", "flat_contact", "small_large", "elongated"])
def test_auto_detection_f1_on_hard_families(family):
    """Touching nuclei where locate used to fail (issue 21), 9 images of each family.

    Detection F1 of these 9 images before the corner rules: bright_dim 0.981,
    flat_contact 0.867, small_large 0.744, elongated 0.949; now 1.000, 0.989,
    0.982, 0.982 (benchmarks/bench_locate.py).
    """
    from cellnb.data import synthetic_nuclei

    tp = fp = fn = 0
    for seed in (1, 2, 3):
        for scene in synthetic_nuclei(family, 3, seed=seed):
            a, b, c = detection(locate(scene.fluorescence), scene.nuclei)
            tp, fp, fn = tp + a, fp + b, fn + c
    assert 2 * tp / (2 * tp + fp + fn) >= 0.97


def test_auto_splits_three_touching_nuclei():
    image = pressed((70, 130), [(35, 30, 10, 900), (35, 48, 10, 900), (35, 66, 10, 900)])
    labels = locate(image)
    assert labels.max() == 3
    assert len({labels[35, 26], labels[35, 48], labels[35, 70]}) == 3


def test_auto_keeps_a_dim_nucleus_in_a_bright_ones_basin():
    # 3x dimmer and pressed flat: no seed of its own, below 35 % of the bright seed
    image = pressed((70, 100), [(35, 35, 11, 1800), (35, 51.5, 11, 600)])
    labels = locate(image)
    assert labels.max() == 2 and labels[35, 56] > 0 and labels[35, 56] != labels[35, 30]


def test_outline_concavity_finds_the_corners_of_two_touching_disks():
    from cellnb._locate_auto import _corners, outline_concavity

    yy, xx = np.mgrid[:40, :60]
    disk = np.hypot(yy - 20, xx - 30) < 12
    assert np.degrees(outline_concavity(disk, 6)[1].max()) < 5  # convex: no corner
    # two radius-10 disks 16 px apart meet at 106 degrees, at (14, 30) and (26, 30)
    pair = (np.hypot(yy - 20, xx - 22) < 10) | (np.hypot(yy - 20, xx - 38) < 10)
    points, concavity = outline_concavity(pair, 6)
    corners = _corners(concavity, 6)
    strong = [c for c in corners if concavity[c] > np.radians(40)]
    assert len(strong) == 2
    assert sorted(np.round(points[strong]).astype(int).tolist()) == [[14, 30], [26, 30]] or \
        np.allclose(sorted(points[strong].tolist()), [[14, 30], [26, 30]], atol=1.5)
    assert all(50 < np.degrees(concavity[c]) < 100 for c in strong)


def test_two_nuclei_rule():
    from cellnb._locate_auto import _CORNER_TURN, _two_nuclei

    t = _CORNER_TURN
    assert _two_nuclei([0.6 * t, 0.6 * t], t)       # a corner at both ends
    assert not _two_nuclei([0.0, 0.9 * t], t)       # one weak corner only
    assert _two_nuclei([0.0, 1.6 * t], t)           # one sharp corner
    assert _two_nuclei([1.1 * t], t)                # the other end beside a third nucleus
    assert not _two_nuclei([], t)


def test_a_bleed_strip_joins_its_most_similar_neighbour():
    from cellnb._locate_auto import _absorb_slivers

    labels = np.zeros((30, 44), np.int32)
    labels[5:25, 2:20] = 1    # bright nucleus
    labels[5:25, 20:23] = 2   # 3 px strip of its light, bled into the neighbour
    labels[5:25, 23:42] = 3   # dim nucleus
    signal = np.select([labels == 1, labels == 2, labels == 3], [900.0, 500.0, 300.0], 0.0)
    out = _absorb_slivers(labels, signal)
    assert set(np.unique(out)) == {0, 1, 3} and (out[5:25, 20:23] == 3).all()
    # a thin nucleus brighter than all it touches (a condensed bar) stays
    signal[labels == 2] = 2000.0
    assert set(np.unique(_absorb_slivers(labels, signal))) == {0, 1, 2, 3}


def test_auto_beats_cellapp_default_on_dim_nuclei():
    pair = synthetic_pairs(1, shape=(256, 256), n_cells=30, brightness_range=(0.3, 1.5),
                           seed=5)[0]
    auto = detection(locate(pair.fluorescence), pair.nuclei)
    default = detection(locate(pair.fluorescence, method="isodata"), pair.nuclei)
    assert auto[2] == 0 and default[2] > auto[2]


# -- inputs -------------------------------------------------------------------
def test_bad_inputs():
    good = np.zeros((8, 8), np.float32)
    good[2, 2] = 1
    with pytest.raises(ValueError, match="`fluorescence` contains 1 NaN"):
        bad = good.copy()
        bad[0, 0] = np.nan
        locate(bad)
    with pytest.raises(ValueError, match=r"`fluorescence` must have shape \(H, W\), got shape "
                                         r"\(8, 8, 3\).*An RGB image"):
        locate(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8\). A stack of frames"):
        locate(np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(ValueError, match="`fluorescence` is constant"):
        locate(np.full((8, 8), 7, np.uint16))
    with pytest.raises(TypeError, match="must be uint8, uint16 or float32, got int64"):
        locate(np.zeros((8, 8), np.int64))
    with pytest.raises(ValueError, match=r"`method` must be one of \['auto', 'isodata'"):
        locate(good, method="otsu")
    with pytest.raises(ValueError, match="`threshold_division` must be a finite number > 0"):
        locate(good, threshold_division=0)
    with pytest.raises(ValueError, match="`tophat_size` must be a positive int or None"):
        locate(good, tophat_size=2.5)
    with pytest.raises(ValueError, match="`radius` must be a finite number > 0"):
        locate(good, radius=-1)


def test_no_nuclei_warns_and_returns_empty():
    noise = np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32)
    with pytest.warns(UserWarning, match="no nuclei found with method='auto'"):
        labels = locate(noise)
    assert labels.shape == (64, 64) and labels.dtype == np.int32 and labels.max() == 0


def test_suggest_locate_scales_with_nucleus_size():
    small = suggest_locate(disks((200, 200), [(50, 50, 4, 300), (150, 150, 4, 300)]))
    large = suggest_locate(disks((200, 200), [(50, 50, 14, 300), (150, 150, 14, 300)]))
    assert list(small.columns) == ["value", "cellapp_default", "why"]
    for name in ("sigma", "tophat_size", "erosion_radius", "min_area", "max_area"):
        assert large.loc[name, "value"] > small.loc[name, "value"], name
    assert large.loc["tophat_size", "value"] % 2 == 1
    assert large.loc["tophat_size", "value"] > 2 * 2 * 14  # wider than a nucleus
    params = {k: v for k, v in large["value"].items()}
    assert locate(disks((200, 200), [(50, 50, 14, 300), (150, 150, 14, 300)]),
                  method="isodata", **params).max() == 2
    with pytest.raises(ValueError, match="no nuclei stand out of the noise"):
        suggest_locate(np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32))


def test_watershed_mode_is_the_distance_watershed_of_the_isodata_mask(fl):
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    im = recipe(fl, erosion_radius=3)
    mask = im > threshold_isodata(im) / 1.0
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(distance, labels=label(mask), min_distance=3, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    expected = watershed(-distance, markers, mask=mask)
    got = locate(fl, method="watershed", threshold_division=1, erosion_radius=3)
    np.testing.assert_array_equal(got, expected)


# -- learned locators (random-init networks: the plumbing, not the accuracy) ---------
def test_stardist_locator_keeps_the_contract(tiny_stardist, fl):
    net, folder = tiny_stardist
    labels = locate(fl, method="stardist", model=net)
    assert labels.shape == fl.shape and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # labels 1..n
    # the same network read back from its folder gives the same nuclei
    np.testing.assert_array_equal(locate(fl, method="stardist", model=str(folder)), labels)
    with pytest.warns(UserWarning, match="no nuclei found with method='stardist'"):
        big_only = locate(fl, method="stardist", model=net, min_area=10 ** 6)
    assert big_only.max() == 0  # the area filters apply to every method


def test_stardist_locator_errors(tiny_stardist, tmp_path, monkeypatch, fl):
    from stardist.models import StarDist2D

    from cellnb._learned_locate import load_stardist

    with pytest.raises(ValueError, match=r"unknown StarDist model 'nope'; StarDist has "
                                         r"\['2D_versatile_fluo'"):
        load_stardist("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a StarDist model folder: it needs "
                                                r"config.json and weights \(\*.h5\)"):
        load_stardist(tmp_path / "empty")
    with pytest.raises(TypeError, match="`model` for method='stardist' must be a StarDist2D"):
        load_stardist(3)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(StarDist2D, "from_pretrained", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(FileNotFoundError, match=r"StarDist model '2D_versatile_fluo' is not "
                       r"cached and could not be downloaded \(OSError: network unreachable\). "
                       r"Download https://github.com/stardist/stardist-models/.*"
                       r"python_2D_versatile_fluo.zip .*keras/models/StarDist2D/"
                       r"2D_versatile_fluo"):
        load_stardist()
    with pytest.raises(TypeError, match=r"`model` is an option of the learned methods "
                                        r"\['stardist', 'cellpose'\], not of method='auto'"):
        locate(fl, model=tiny_stardist[0])


def test_cellpose_locator_keeps_the_contract(tmp_path, fl):
    pytest.importorskip("cellpose")
    import torch
    from cellpose.vit import CPSAM

    from cellnb._learned_locate import load_cellpose

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(CPSAM(dtype=torch.float32).state_dict(), tmp_path / "cpsam_random")
    small = fl[:96, :96]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no nuclei found")  # random weights may find none
        labels = locate(small, method="cellpose", model=str(tmp_path / "cpsam_random"))
        net = load_cellpose(tmp_path / "cpsam_random")
        again = locate(small, method="cellpose", model=net)
    assert labels.shape == small.shape and labels.dtype == np.int32
    np.testing.assert_array_equal(again, labels)
    with pytest.raises(ValueError, match="unknown cellpose model 'nope'"):
        load_cellpose("nope")
