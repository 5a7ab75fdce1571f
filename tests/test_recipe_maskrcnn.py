"""The ``maskrcnn`` recipe: its pieces on small arrays, its errors, and tiny random-init runs.

That it learns (cells and classes) is in tests/test_learning.py.
"""

import numpy as np
import pandas as pd
import pytest
import torch

import cellnb
from cellnb import load_trained, train
from cellnb.data import synthetic_pairs
from cellnb.evaluate import evaluate
from cellnb.io import Record
from cellnb.recipes import maskrcnn

TINY = dict(recipe="maskrcnn", model="maskrcnn_mini", epochs=1, steps_per_epoch=2, batch_size=1,
            patch_shape=(64, 64), progress=False)


def _records(n, seed=0, classes=True):
    out = []
    for p in synthetic_pairs(n, shape=(96, 96), n_cells=8, seed=seed):
        truth = p.truth if classes else p.truth.drop(columns=["class_name", "class_id"])
        out.append(Record(p.id, p.tl, p.labels, truth))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ds"
    return cellnb.export(_records(3), out, splits={"train": 2, "val": 1})


@pytest.fixture(scope="module")
def tiny_run(dataset, tmp_path_factory):
    return train(dataset, out=tmp_path_factory.mktemp("runs") / "m", **TINY)


# ---------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------
def test_targets_give_one_box_class_and_mask_per_cell():
    labels = np.zeros((6, 8), np.int64)
    labels[1:3, 2:5] = 4
    labels[4, 7] = 9  # a one-pixel cell
    classes = np.where(labels == 9, 2, (labels > 0).astype(int))
    t = maskrcnn.targets(labels, classes)
    assert t["boxes"].tolist() == [[2.0, 1.0, 5.0, 3.0], [7.0, 4.0, 8.0, 5.0]]
    assert t["labels"].tolist() == [1, 2]
    assert t["masks"].shape == (2, 6, 8) and t["masks"].dtype == torch.uint8
    assert t["masks"][0].sum() == 6 and t["masks"][1, 4, 7] == 1


def test_targets_of_an_empty_patch_are_empty():
    t = maskrcnn.targets(np.zeros((4, 4), int), np.zeros((4, 4), int))
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) and t["masks"].shape == (0, 4, 4)


def test_paint_gives_contested_pixels_to_the_higher_score_and_drops_small_pieces():
    boxes = np.array([[0, 0, 4, 4], [2, 0, 6, 4], [5, 3, 6, 4]], float)
    masks = np.ones((3, 2, 2))
    labels, scores, kinds = maskrcnn.paint_instances(boxes, masks, [0.6, 0.9, 0.7], [1, 2, 1],
                                                     (4, 6), min_size=2)
    # the 0.9 cell (label 1) keeps columns 2-5 and covers the 0.7 one, which is gone
    assert labels.tolist() == [[2, 2, 1, 1, 1, 1]] * 4
    assert scores == {1: 0.9, 2: 0.6} and kinds == {1: 2, 2: 1}


def test_paint_resizes_each_mask_to_its_box_and_thresholds_it():
    mask = np.zeros((1, 4, 4))
    mask[0, :, :2] = 1.0  # the left half of the box
    labels, _, _ = maskrcnn.paint_instances(np.array([[2, 2, 10, 6]], float), mask, [1.0], [1],
                                            (8, 12))
    assert labels[2:6, 2:6].all() and not labels[2:6, 6:10].any() and labels.sum() == 16


def test_paint_checks_its_inputs():
    with pytest.raises(ValueError, match="one entry per detection"):
        maskrcnn.paint_instances(np.zeros((2, 4)), np.zeros((1, 2, 2)), [1, 1], [1, 1], (4, 4))
    labels, scores, kinds = maskrcnn.paint_instances(np.zeros((0, 4)), np.zeros((0, 28, 28)),
                                                     [], [], (5, 5))
    assert labels.shape == (5, 5) and not labels.any() and scores == {} == kinds


def test_vitdet_schedule_checks_its_arguments():
    with pytest.raises(ValueError, match="total >= 1"):
        maskrcnn.vitdet_schedule(0)


def test_patches_carry_their_class_image_through_the_augmentations():
    """Crops, flips, rotations and padding move the class image with the labels."""
    from cellnb.recipes._common import PatchDataset

    rng = np.random.default_rng(0)
    labels = np.zeros((40, 30), np.int32)
    for k in range(1, 7):
        y, x = rng.integers(0, 34), rng.integers(0, 24)
        labels[y:y + 6, x:x + 6] = k
    classes = np.where(labels > 0, 1 + labels % 2, 0)
    dataset = PatchDataset([labels.astype(np.float32)], [labels], (48, 48), 20,
                           lambda lab, cls: np.stack([lab, cls]), classes=[classes])
    for i in range(20):
        image, target = dataset[i]
        lab, cls = target.numpy().astype(int)
        assert ((cls == 0) == (lab == 0)).all()
        # a reflected copy of a cell gets a new id but keeps its class
        np.testing.assert_array_equal(cls[lab > 0], 1 + (lab[lab > 0] % (labels.max() + 1)) % 2)


# ---------------------------------------------------------------------------
# checks and errors, before a run folder exists
# ---------------------------------------------------------------------------
def test_unknown_model_and_bad_options_fail_before_a_run_folder(dataset, tmp_path):
    with pytest.raises(ValueError, match="maskrcnn_mini"):
        train(dataset, out=tmp_path / "a", **{**TINY, "model": "vit_b_lm"})
    with pytest.raises(ValueError, match="min_score"):
        train(dataset, out=tmp_path / "b", **TINY, min_score=1.5)
    with pytest.raises(ValueError, match="scale"):
        train(dataset, out=tmp_path / "c", **TINY, scale=0)
    with pytest.raises(ValueError, match="max_detections"):
        train(dataset, out=tmp_path / "d", **TINY, max_detections=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(dataset, out=tmp_path / "e", **TINY, checkpoint=str(tmp_path / "none.pt"))
    assert not any((tmp_path / k).exists() for k in "abcde")


def test_coco_weights_missing_names_the_file_and_the_ways_out(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        train(dataset, recipe="maskrcnn", out=tmp_path / "a", epochs=1, progress=False)
    text = str(err.value)
    assert "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth" in text and str(tmp_path / "hub") in text
    assert "pretrained=False" in text and "checkpoint=" in text
    assert not (tmp_path / "a").exists()


def test_a_classed_dataset_with_an_unclassed_cell_is_refused(tmp_path):
    records = _records(2)
    records[0].cells.loc[records[0].cells.index[0], "class_name"] = None
    data = cellnb.dataset.TrainingData(records[:1], records[1:], ["interphase", "mitotic"])
    with pytest.raises(ValueError, match="have no class"):
        train(data, out=tmp_path / "a", **TINY)


def test_a_checkpoint_of_another_architecture_is_refused(dataset, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model_state": {"conv.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(ValueError, match="not a checkpoint of this architecture"):
        train(dataset, out=tmp_path / "a", **TINY, checkpoint=str(path))


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------
def test_a_run_segments_with_classes_and_loads_again(tiny_run, dataset, tmp_path):
    assert tiny_run.classes == ["interphase", "mitotic"]
    assert not (tiny_run.path / "classifier.json").exists()  # the network classifies
    state = torch.load(tiny_run.path / "weights" / "best.pt", weights_only=True)
    assert state["classes"] == ["interphase", "mitotic"]
    image = _records(1, seed=5)[0]
    seg = tiny_run.segment(image.image)
    assert "class_name" in seg.table.columns
    assert set(seg.table["class_name"].dropna()) <= {"interphase", "mitotic"}
    again = load_trained(tiny_run.path)
    np.testing.assert_array_equal(again.segment(image.image).labels, seg.labels)


def test_a_run_continues_from_its_own_weights_as_a_checkpoint(tiny_run, dataset, tmp_path):
    """A trained run's best.pt starts another run (its predictors are made anew)."""
    run = train(dataset, out=tmp_path / "b", **TINY,
                checkpoint=str(tiny_run.path / "weights" / "best.pt"))
    a = torch.load(tiny_run.path / "weights" / "best.pt", weights_only=True)["model_state"]
    b = torch.load(run.path / "weights" / "last.pt", weights_only=True)["model_state"]
    assert a.keys() == b.keys()


def test_an_unclassed_dataset_learns_one_class(tmp_path):
    records = _records(2, classes=False)
    ds = cellnb.export(records, tmp_path / "ds", splits={"train": 1, "val": 1})
    run = train(ds, out=tmp_path / "m", **TINY)
    assert torch.load(run.path / "weights" / "best.pt", weights_only=True)["classes"] == ["cell"]
    assert "class_name" not in run.segment(records[0].image).table.columns


def test_whole_images_are_seen_at_the_training_scale(tiny_run, monkeypatch):
    """With scale=2 the network receives the image at twice its size, whole, and the cells
    come back at the image's own size."""
    seen = []
    net = tiny_run._net
    original = net.backbone.forward
    monkeypatch.setattr(net.backbone, "forward", lambda x: seen.append(tuple(x.shape)) or
                        original(x))
    settings = {**tiny_run.settings, "options": {**tiny_run.settings["options"], "scale": 2.0}}
    net.transform.scale = 2.0
    try:
        labels, scores, classes, _ = maskrcnn.predict_classes(net, np.ones((50, 70), np.float32),
                                                              settings)
    finally:
        net.transform.scale = 1.0
    assert seen == [(1, 3, 128, 160)]  # 100 x 140, padded to a multiple of 32
    assert labels.shape == (50, 70)


def test_evaluate_by_class_needs_classes_on_both_sides():
    truth = np.array([[1, 1, 0, 2]])
    cells = pd.DataFrame({"class_name": ["a", "b"]}, index=pd.Index([1, 2], name="label"))
    with pytest.raises(ValueError, match="`pred` has no 'class_name'"):
        evaluate([Record("i", None, truth, cells)], [truth], by="class_name")
    table = evaluate([Record("i", None, truth, cells)], [Record("i", None, truth, cells)],
                     thresholds=[0.5], by="class_name")
    assert table["class_name"].tolist() == ["a", "b"] and table["ap"].tolist() == [1.0, 1.0]
    assert {"coco_ap", "seg", "f1"} <= set(table.columns)


def test_evaluate_and_compare_by_class_is_the_old_spelling():
    """by="class" still works for one release: a FutureWarning, and the column named as before."""
    truth = np.array([[1, 1, 0, 2]])
    cells = pd.DataFrame({"class_name": ["a", "b"]}, index=pd.Index([1, 2], name="label"))
    record = Record("i", None, truth, cells)
    new = evaluate([record], [record], thresholds=[0.5], by="class_name")
    with pytest.warns(FutureWarning, match="by='class_name'"):
        old = evaluate([record], [record], thresholds=[0.5], by="class")
    pd.testing.assert_frame_equal(old, new.rename(columns={"class_name": "class"}))
    with pytest.warns(FutureWarning, match=r"compare\(by='class'\)"):
        old = cellnb.compare([record], {"same": [record]}, thresholds=[0.5], by="class")
    assert old["class"].tolist() == ["a", "b"] and "class_name" not in old.columns
    new = cellnb.compare([record], {"same": [record]}, thresholds=[0.5], by="class_name")
    assert new["class_name"].tolist() == ["a", "b"] and "class" not in new.columns
