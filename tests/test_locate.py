import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import gaussian, threshold_isodata, threshold_multiotsu
from skimage.measure import label
from skimage.morphology import disk, erosion, footprint_rectangle, white_tophat

from cellnb.data import synthetic_pairs
from cellnb.evaluate import detection
from cellnb.locate import estimate_nucleus_radius, locate, suggest_locate


def disks(shape, specs, background=100.0, blur=1.2, noise=5.0, seed=0):
    """Float image with bright disks (row, col, radius, brightness) + blur + noise."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.full(shape, background)
    for cy, cx, r, b in specs:
        image += b * (np.hypot(yy - cy, xx - cx) < r)
    image = ndimage.gaussian_filter(image, blur)
    return (image + np.random.default_rng(seed).normal(0, noise, shape)).astype(np.float32)


def f1(located, truth):
    """Detection F1, one prompt per true nucleus (cellnb.evaluate.detection); lists summed."""
    return detection(truth, located)["f1"]


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
    assert f1([locate(p.fluorescence) for p in pairs], [p.nuclei for p in pairs]) >= 0.95


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


@pytest.mark.parametrize("family, floor", [("bright_dim", 0.88), ("flat_contact", 0.72),
                                           ("small_large", 0.65), ("elongated", 0.93)])
def test_auto_detection_f1_on_hard_families(family, floor):
    """Touching nuclei of our own renderer, 9 images of each family: regression floors.

    These scenes are not the objective (issue 30: rules tuned to them over-split
    real nuclei). The corner rules reached 1.000, 0.989, 0.982, 0.982 here and
    0.814 / 0.043 on the real sets; the real-data-driven method reaches 0.904,
    0.758, 0.699, 0.961 here and 0.941 / 0.933 on the real sets.
    """
    from cellnb.data import synthetic_nuclei

    scenes = [s for seed in (1, 2, 3) for s in synthetic_nuclei(family, 3, seed=seed)]
    assert f1([locate(s.fluorescence) for s in scenes], [s.nuclei for s in scenes]) >= floor


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


def test_merge_shallow_joins_a_bump_but_keeps_a_peak_of_its_own():
    from cellnb._nuclei.auto import _merge_shallow

    basins = np.array([[1, 1, 2, 2, 3, 3, 4, 4]])
    values = np.array([[5.0, 4.9, 4.8, 4.0, 3.0, 6.0, 5.9, 1.0]])
    top = np.array([0, 5.0, 4.8, 6.0, 5.9])
    # basin 2 rises 0 above its saddle with 1 (a bump); 1 rises 2 above its saddle with 3
    # (a peak of its own at depth 0.5); 4 meets 3 at its own peak (a bump)
    out = _merge_shallow(basins, values, top, np.full(5, 0.5))
    np.testing.assert_array_equal(out, [[1, 1, 1, 1, 3, 3, 3, 3]])
    np.testing.assert_array_equal(_merge_shallow(basins, values, top, np.full(5, 3.0)),
                                  [[3, 3, 3, 3, 3, 3, 3, 3]])
    np.testing.assert_array_equal(_merge_shallow(basins, values, top, np.zeros(5)), basins)


def test_split_by_shape_cuts_a_pinched_pair_not_a_convex_nucleus():
    from cellnb._nuclei.auto import _split_by_shape

    yy, xx = np.mgrid[:40, :70]
    pair = (np.hypot(yy - 20, xx - 20) < 12) | (np.hypot(yy - 20, xx - 42) < 12)
    parts = _split_by_shape(pair.astype(np.int32), 12)
    assert parts.max() == 2 and parts[20, 15] != parts[20, 47]
    assert ((parts > 0) == pair).all()  # every pixel kept, none added
    ellipse = ((yy - 20) / 14) ** 2 + ((xx - 35) / 30) ** 2 < 1
    holed = ellipse & ~(np.hypot(yy - 20, xx - 30) < 4) & ~(np.hypot(yy - 18, xx - 45) < 3)
    out = _split_by_shape(holed.astype(np.int32), 12)  # nucleoli are no outline
    assert out.max() == 1 and (out[ellipse] == 1).all()


def test_auto_keeps_a_textured_nucleus_whole():
    """Bright speckles and dark nucleoli on one large nucleus (as in the CHO images)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:400, :400]  # nuclei narrower than a quarter of the field
    inside = ((yy - 80) / 36) ** 2 + ((xx - 80) / 44) ** 2 < 1
    texture = ndimage.gaussian_filter(rng.normal(0, 1, inside.shape), 2.5)
    image = 10 + inside * (80 + 600 * np.clip(texture, 0, None))
    image[np.hypot(yy - 70, xx - 65) < 7] = 30  # a nucleolus
    image = ndimage.gaussian_filter(image, 1.0) + rng.normal(0, 2, image.shape)
    labels = locate(np.clip(image, 0, 255).astype(np.uint8))
    assert labels.max() == 1 and labels[80, 80] == 1
    assert estimate_nucleus_radius(image.astype(np.float32)) == pytest.approx(40, rel=0.2)


@pytest.mark.parametrize("name, floor", [("dsb2018", 0.94), ("cho", 0.93)])
def test_auto_detection_f1_on_real_nuclei(name, floor):
    """Real images are the measure (benchmarks/bench_locate.py --real).

    Landed before issue 30: DSB2018 0.814, CHO 0.043 (its nucleus scale was read
    off the chromatin speckles); now 0.941 and 0.933, the floors issue 30 asks.
    Cell-APP's best mode: 0.824 and 0.777. On CHO all 28 extra objects are nuclei
    the reference leaves out (partial nuclei at the image edge, an out-of-focus
    nucleus), none a split.
    """
    from cellnb.data import DataNotAvailableError, real_nuclei

    try:
        images = real_nuclei(name)
    except DataNotAvailableError as err:  # neither installed (test extras) nor downloadable
        pytest.skip(str(err))
    truth = [im.nuclei for im in images]
    auto = f1([locate(im.fluorescence) for im in images], truth)
    assert auto >= floor
    best_cellapp = max(f1([locate(im.fluorescence, method=m) for im in images], truth)
                       for m in ("isodata", "watershed", "multiotsu"))
    assert auto > best_cellapp + 0.05


def test_auto_beats_cellapp_default_on_dim_nuclei():
    pair = synthetic_pairs(1, shape=(256, 256), n_cells=30, brightness_range=(0.3, 1.5),
                           seed=5)[0]
    auto = detection(pair.nuclei, locate(pair.fluorescence))
    default = detection(pair.nuclei, locate(pair.fluorescence, method="isodata"))
    assert auto["fn"] == 0 and default["fn"] > auto["fn"]


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

    from cellnb._nuclei.learned import load_stardist

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

    from cellnb._nuclei.learned import load_cellpose

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


def test_an_option_the_method_does_not_use_is_an_error_not_ignored():
    image = np.zeros((64, 64), np.float32)
    image[20:30, 20:30] = 1
    with pytest.raises(TypeError, match=r"method='auto' does not use \['sigma'\]"):
        locate(image, sigma=3.0)
    with pytest.raises(TypeError, match="`radius` is an option of method='auto'"):
        locate(image, method="isodata", radius=5)
    assert locate(image, sigma=2.0).max() == 1  # the default value is no choice


def test_a_config_with_options_its_method_ignores_warns():
    from cellnb import Config
    from cellnb._pipeline import locate_nuclei

    image = np.zeros((64, 64), np.float32)
    image[20:30, 20:30] = 1
    config = Config.from_dict({"locate": {"method": "auto", "sigma": 3.0, "erosion_radius": 2}})
    with pytest.warns(UserWarning, match=r"sets \['sigma', 'erosion_radius'\], which method "
                                         r"'auto' does not use"):
        labels = locate_nuclei(image, config)
    assert labels.max() == 1
