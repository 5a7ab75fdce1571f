"""Cellpose-SAM out of the box: ``load("cpsam")`` segments like cellpose's own eval (issue 31).

The reduced CPSAM (``cpsam_mini``, cellpose's class on a two-block encoder) at
random init stands in for the pretrained weights; a cell-probability threshold
of -3 makes the random network find cells, so the equality is not one of two
empty images.
"""

import numpy as np
import pytest
from skimage.segmentation import relabel_sequential

import cellnb
from cellnb.data import synthetic_pairs

pytest.importorskip("cellpose")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from cellnb.testing import random_checkpoint

    return random_checkpoint("cpsam_mini", tmp_path_factory.mktemp("cp") / "cpsam_mini.pt")


@pytest.fixture(scope="module")
def tl():
    return synthetic_pairs(1, shape=(256, 256), n_cells=8, seed=0)[0].tl


def _cellpose_eval(checkpoint, image, **options):
    from cellnb.models._architectures import cellpose_model

    net = cellpose_model("cpsam_mini", checkpoint, "cpu")
    masks = net.eval(np.asarray(image, np.float32), **options)[0]
    return relabel_sequential(np.asarray(masks).astype(np.int64))[0]


def test_zero_shot_cellpose_equals_cellposes_own_eval(checkpoint, tl):
    model = cellnb.models.load("cpsam_mini", checkpoint=checkpoint, device="cpu")
    assert isinstance(model, cellnb.models.CellposeSam) and not model.prompted
    assert model.fingerprint.startswith("sha256:")
    result = cellnb.segment(tl, model=model, cellprob_threshold=-3.0, flow_threshold=0.0,
                            diameter=30)
    expected = _cellpose_eval(checkpoint, tl, cellprob_threshold=-3.0, flow_threshold=0.0,
                              diameter=30, min_size=15)
    assert result.labels.max() > 10 and np.array_equal(result.labels, expected)
    assert result.model == "cpsam_mini" and result.table["score"].isna().all()
    smaller = cellnb.segment(tl, model=model, cellprob_threshold=-3.0, flow_threshold=0.0,
                             diameter=30, min_area=200)
    assert np.array_equal(smaller.labels,
                          _cellpose_eval(checkpoint, tl, cellprob_threshold=-3.0,
                                         flow_threshold=0.0, diameter=30, min_size=200))


def test_cellpose_options_are_declared_and_checked(checkpoint, tl):
    model = cellnb.models.load("cpsam_mini", checkpoint=checkpoint, device="cpu")
    with pytest.raises(TypeError, match=r"model 'cpsam_mini' takes no option\(s\) "
                                        r"\['foreground_threshold', 'mode'\]; it takes "
                                        r"\['callback', 'cellprob_threshold', 'diameter'"):
        cellnb.segment(tl, model=model, mode="ais", foreground_threshold=0.5)
    with pytest.raises(ValueError, match=r"`flow_threshold` must be a finite number, got nan"):
        cellnb.segment(tl, model=model, flow_threshold=float("nan"))
    with pytest.raises(ValueError, match=r"`diameter` must be a number > 0 or None, got -4"):
        cellnb.segment(tl, model=model, diameter=-4)
    prompts = cellnb.prompt(cellnb.locate(synthetic_pairs(1, shape=(256, 256), n_cells=8,
                                                           seed=0)[0].fluorescence))
    with pytest.raises(ValueError, match="segments without prompts"):
        cellnb.segment(tl, prompts, model=model)


def test_cellpose_names_without_weights_say_where_to_put_them(tmp_path, monkeypatch):
    from cellpose import models as cp_models

    monkeypatch.setattr(cp_models, "MODEL_DIR", tmp_path)
    monkeypatch.setattr(cp_models, "cache_model_path",
                        lambda name: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(FileNotFoundError, match=r"cellpose model 'cpsam' is not cached and could "
                                                r"not be downloaded \(OSError: offline\)"):
        cellnb.models.load("cpsam")
    with pytest.raises(ValueError, match="'cpsam_mini' is cellnb's reduced test network"):
        cellnb.models.load("cpsam_mini")


@pytest.mark.weights
def test_cpsam_on_cellapps_test_image():
    """The real Cellpose-SAM where its weights are cached: it finds Cell-APP's HeLa cells."""
    from cellnb.io import read_coco
    from cellnb.recipes.cellpose import cached

    if not cached("cpsam"):
        pytest.skip("needs cellpose's cpsam weights in its cache")
    [record] = read_coco(cellnb.data.fetch("cellapp-example") / "test")
    result = cellnb.segment(record.image, model=cellnb.models.load("cpsam", device="cpu"))
    scores = cellnb.evaluate(record.labels, result.labels, thresholds=[0.5])
    assert scores["f1"].iloc[0] > 0.5
