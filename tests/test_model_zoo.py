"""cellnb.export_model: BioImage Model Zoo packages that bioimageio.core validates and runs,
whose prediction turns into the same cells as cellnb's own ``segment``."""

import zipfile

import numpy as np
import pytest

import cellnb
from cellnb import train
from cellnb.data import synthetic_pairs
from cellnb.io import Record
from cellnb.model_zoo import NOT_EXPORTABLE, cells_from_maps, export_model
from cellnb.testing import random_checkpoint

# bioimageio.core leaves the files of test tensors open (ResourceWarning when collected)
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning",
                                        "ignore::pytest.PytestUnraisableExceptionWarning")

RUN = dict(epochs=1, steps_per_epoch=3, batch_size=1, patch_shape=(128, 128), progress=False)


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(3, shape=(128, 128), n_cells=6, seed=3)


@pytest.fixture(scope="module")
def dataset(pairs, tmp_path_factory):
    records = [Record(p.id, p.tl, p.labels, p.truth) for p in pairs[:2]]
    return cellnb.export(records, tmp_path_factory.mktemp("data") / "ds",
                         splits={"train": 1, "val": 1})


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    base = random_checkpoint("vit_mini", folder / "random.pt", decoder=True)
    return {"unet": train(dataset, recipe="unet", out=folder / "unet", **RUN),
            "microsam": train(dataset, recipe="microsam", out=folder / "microsam",
                              model="vit_mini", checkpoint=str(base), n_sub_iteration=1, **RUN)}


def _test_model(package, **kwargs):
    """bioimageio.core's test_model, warnings shown as warnings (torch deprecates
    torch.jit.load, which it calls for TorchScript weights; pytest here makes warnings errors)."""
    import warnings

    import bioimageio.core

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bioimageio.core.test_model(str(package), devices=["cpu"], **kwargs)


def _package_cells(package, image, min_size=25):
    """What a user of the package gets: bioimageio.core's prediction, then the documented
    watershed."""
    import bioimageio.core
    from bioimageio.spec.model.v0_5 import TensorId

    sample = bioimageio.core.predict(model=str(package),
                                     inputs={TensorId("tl"): image[None, None].astype(np.float32)})
    maps = np.asarray(sample.members[TensorId("maps")].data)[0]
    return cells_from_maps(maps, min_size=min_size), maps


@pytest.mark.parametrize("recipe", ["unet", "microsam"])
def test_package_validates_runs_and_gives_cellnb_s_cells(recipe, runs, pairs, tmp_path):
    trained = runs[recipe]
    package = export_model(trained, tmp_path / f"{recipe}.zip", authors=["Ada Lovelace"])
    names = set(zipfile.ZipFile(package).namelist())
    assert {"rdf.yaml", "weights.pt", "cover.png", "README.md", "test_input.npy",
            "test_output.npy"} <= names
    summary = _test_model(package)  # every weight format in the package
    assert summary.status == "passed", summary.format()
    if recipe == "unet":  # TorchScript too, for Fiji / deepImageJ and QuPath
        assert "weights_torchscript.pt" in names
        summary = _test_model(package, weight_format="torchscript")
        assert summary.status == "passed", summary.format()

    image = pairs[2].tl.astype(np.float32)  # an image the package was not tested on
    labels, maps = _package_cells(package, image)
    assert maps.shape == (3, 128, 128)
    expected = trained.segment(image).labels
    np.testing.assert_array_equal(labels, expected)


def test_package_describes_the_method_and_the_post_processing(runs, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    package = export_model(runs["microsam"], tmp_path / "m.zip")
    # the cover is drawn without pyplot: the user's backend and figures are left alone
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures
    archive = zipfile.ZipFile(package)
    rdf, readme = archive.read("rdf.yaml").decode(), archive.read("README.md").decode()
    assert "10.1038/s41592-024-02580-4" in rdf  # μSAM's paper
    assert "SamUNETR" in rdf and "sam_unetr.py" in archive.namelist()
    assert "watershed_from_center_and_boundary_distances" in readme
    assert "windows of 128 x 128 px" in readme
    assert "import cellnb" not in archive.read("sam_unetr.py").decode()  # runs without cellnb


def test_recipes_the_format_cannot_describe_say_why(tmp_path):
    from cellnb.recipes import RECIPES

    assert set(NOT_EXPORTABLE) | {"unet", "microsam"} == set(RECIPES)

    run = cellnb.TrainedModel(tmp_path, "cellseg1", {}, None, {})
    with pytest.raises(ValueError, match="two-stage NMS"):
        export_model(run, tmp_path / "x.zip")


def test_bad_arguments_write_nothing(runs, tmp_path):
    trained = runs["unet"]
    with pytest.raises(ValueError, match="must end in .zip"):
        export_model(trained, tmp_path / "model")
    with pytest.raises(ValueError, match="'bioimageio'"):
        export_model(trained, tmp_path / "a.zip", format="onnx")
    with pytest.raises(TypeError, match="authors"):
        export_model(trained, tmp_path / "a.zip", authors=[1])
    with pytest.raises(ValueError, match="at least 32 px"):
        export_model(trained, tmp_path / "a.zip", test_image=np.ones((20, 300), np.float32))
    (tmp_path / "b.zip").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(trained, tmp_path / "b.zip")
    assert (tmp_path / "b.zip").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]


def test_a_failed_validation_leaves_no_file(runs, tmp_path, monkeypatch):
    from cellnb import model_zoo

    def failing(descr):
        raise RuntimeError("bioimageio.core's test of the package failed")

    monkeypatch.setattr(model_zoo, "_check", failing)
    with pytest.raises(RuntimeError, match="failed"):
        export_model(runs["unet"], tmp_path / "a.zip")
    assert not list(tmp_path.iterdir())


def test_a_run_without_its_dataset_needs_a_test_image(runs, pairs, tmp_path):
    trained = runs["unet"]
    moved = cellnb.TrainedModel(trained.path, trained.recipe, trained.settings, trained.history,
                                {**trained.info, "dataset": {"folder": str(tmp_path / "gone")}},
                                trained._net)
    with pytest.raises(FileNotFoundError, match="test_image="):
        export_model(moved, tmp_path / "a.zip")
    package = export_model(moved, tmp_path / "a.zip", test_image=pairs[2].tl)
    assert package.is_file()


def test_cells_from_maps_checks_the_shape():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cells_from_maps(np.zeros((2, 8, 8)))
    assert cells_from_maps(np.zeros((1, 3, 8, 8))).shape == (8, 8)
