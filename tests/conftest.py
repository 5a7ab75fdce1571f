"""Shared fixtures: synthetic pairs, the real Cell-APP example data, random-init SAM."""

import os
from pathlib import Path

import pytest

from cellnb.data import DataNotAvailableError, fetch, synthetic_pairs

# A relative CELLNB_DATA_DIR is relative to where pytest started; pin it before
# tests change directories (notebooks run in temporary folders).
if os.environ.get("CELLNB_DATA_DIR"):
    os.environ["CELLNB_DATA_DIR"] = str(Path(os.environ["CELLNB_DATA_DIR"]).resolve())

# distributed's Nanny writes its pre-spawn environment (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1,
# OPENBLAS_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_) into os.environ of the process that starts a
# worker, for good: after the first Dask test every notebook kernel the suite starts would
# inherit them and run torch on one thread. Each test starts with them as pytest found them.
_NANNY_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MALLOC_TRIM_THRESHOLD_")
_STARTED_WITH = {name: os.environ.get(name) for name in _NANNY_VARIABLES}


@pytest.fixture(autouse=True)
def _threads_as_pytest_started():
    for name, value in _STARTED_WITH.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    yield


@pytest.fixture(scope="session")
def pair():
    """One small synthetic pair (256 x 256, 20 cells)."""
    return synthetic_pairs(1, shape=(256, 256), n_cells=20, seed=3)[0]


def _dataset(name):
    try:
        return fetch(name)
    except DataNotAvailableError as err:
        pytest.skip(f"real data not available offline: {err}")


@pytest.fixture(scope="session")
def cellapp_example():
    """Folder of Cell-APP's example COCO dataset (skipped when neither cached nor online)."""
    return _dataset("cellapp-example")


@pytest.fixture(scope="session")
def hela_features():
    return _dataset("cellapp-hela-features")


@pytest.fixture(scope="session")
def vit_t():
    """Random-init vit_t SAM loaded through the real checkpoint path."""
    from cellnb.testing import random_sam

    return random_sam("vit_t", seed=0)


@pytest.fixture(scope="session")
def tiny_stardist(tmp_path_factory):
    """A random-init StarDist2D (8 rays, one U-Net level) and its model folder on disk."""
    pytest.importorskip("stardist")
    import warnings

    from cellnb._nuclei.learned import _import_stardist

    _import_stardist()  # torch before TensorFlow (see there)
    from stardist.models import Config2D, StarDist2D

    import keras

    keras.utils.set_random_seed(0)  # its random init decides whether it finds any nucleus
    folder = tmp_path_factory.mktemp("stardist")
    config = Config2D(n_rays=8, grid=(2, 2), n_channel_in=1, unet_n_depth=1,
                      unet_n_filter_base=4)
    net = StarDist2D(config, name="tiny", basedir=str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # csbdeep: "newer Keras 3.x file format"
        net.keras_model.save_weights(str(folder / "tiny" / "weights_best.weights.h5"))
    return net, folder / "tiny"


def pytest_collection_modifyitems(config, items):
    """Skip `weights` tests unless micro_sam's cache holds the default model."""
    if not any(item.get_closest_marker("weights") for item in items):
        return
    from cellnb.models import available

    cached = set(available().query("cached")["name"])
    skip = pytest.mark.skip(reason="needs cached μSAM weights (vit_b_lm) in micro_sam's cache")
    for item in items:
        if item.get_closest_marker("weights") and "vit_b_lm" not in cached:
            item.add_marker(skip)
