import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage.segmentation import expand_labels

from cellnb.evaluate import (DEFAULT_THRESHOLDS, METRIC_COLUMNS, compare, evaluate, match_objects,
                             overlap_table)
from cellnb.io import Record, read_coco


def row(table, threshold):
    return table.set_index("threshold").loc[threshold]


@pytest.fixture
def scene():
    """Truth: A, B (4x4) and C (2x2). Pred: A exact, B shifted (IoU 0.6), a false D; C missed."""
    truth = np.zeros((12, 12), np.int32)
    truth[0:4, 0:4] = 1
    truth[0:4, 6:10] = 2
    truth[8:10, 0:2] = 3
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 5
    pred[1:5, 6:10] = 7  # 12 of B's 16 pixels, 4 outside: IoU 12 / 20
    pred[8:11, 8:11] = 9
    return truth, pred


def test_hand_computed_scene(scene):
    truth, pred = scene
    table = evaluate(truth, pred, thresholds=[0.5, 0.75])
    assert list(table.columns) == ["image", "threshold", *METRIC_COLUMNS]
    r = row(table, 0.5)
    assert (r.n_true, r.n_pred, r.tp, r.fp, r.fn) == (3, 3, 2, 1, 1)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 / 3) and r.ap == pytest.approx(0.5)
    assert r.mean_matched_iou == pytest.approx(0.8)
    assert r.panoptic_quality == pytest.approx(1.6 / 3)
    assert r.seg == pytest.approx(1.6 / 3)          # (1 + 0.6 + 0) / 3
    assert r.det == pytest.approx(1 - 11 / 30)      # FN weight 10 + FP weight 1, D0 = 30
    assert r.op_csb == pytest.approx((1.6 / 3 + 19 / 30) / 2)
    r = row(table, 0.75)
    assert (r.tp, r.fp, r.fn) == (1, 2, 2)
    assert r.ap == pytest.approx(0.2) and r.mean_matched_iou == 1.0
    assert r.panoptic_quality == pytest.approx(1 / 3)
    assert r.seg == pytest.approx(1.6 / 3)  # SEG does not depend on the threshold


def test_default_thresholds_and_perfect_prediction(scene):
    truth, _ = scene
    table = evaluate(truth, truth)
    assert table["threshold"].tolist() == list(DEFAULT_THRESHOLDS)
    assert DEFAULT_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert (table[["precision", "recall", "f1", "ap", "mean_matched_iou", "panoptic_quality",
                   "seg", "det", "op_csb"]] == 1).all().all()


def test_merge():
    truth = np.zeros((4, 8), np.int32)
    truth[:, :4], truth[:, 4:] = 1, 2
    pred = np.ones_like(truth)  # one object over both cells: IoU 0.5 with each
    r = row(evaluate(truth, pred, thresholds=[0.5]), 0.5)
    assert (r.tp, r.fp, r.fn) == (1, 0, 1)
    assert r.seg == pytest.approx(0.5)
    assert r.det == pytest.approx(1 - 5 / 20)  # one split operation (weight 5)


def test_split():
    truth = np.ones((4, 8), np.int32)
    pred = np.zeros_like(truth)
    pred[:, :4], pred[:, 4:] = 1, 2  # each half holds exactly, not more than, half the cell
    r = row(evaluate(truth, pred, thresholds=[0.5]), 0.5)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)
    assert r.seg == 0.0
    assert r.det == 0.0  # FN 10 + 2 FP = 12 > D0 = 10: clipped


def _greedy_trap(wide=1, narrow=2):
    """Two true cells; predicted `wide` has IoU 0.5 with cell 1 and 4/17 with cell 2,
    predicted `narrow` IoU 0.3 with cell 1: greedy matching finds one pair, optimal two."""
    truth = np.zeros((1, 20), np.int32)
    truth[0, :10], truth[0, 10:] = 1, 2
    pred = np.zeros_like(truth)
    pred[0, 3:14] = wide
    pred[0, 0:3] = narrow
    return truth, pred


def test_hungarian_beats_greedy():
    truth, pred = _greedy_trap()
    table = overlap_table(truth, pred)
    assert table[["true", "pred", "intersection"]].values.tolist() == [[1, 1, 7], [1, 2, 3],
                                                                       [2, 1, 4]]
    # greedy on IoU would pair (1, 1) and stop at one match; optimal finds two
    assert row(evaluate(truth, pred, thresholds=[0.2]), 0.2).tp == 2


def test_empty_cases():
    empty = np.zeros((5, 5), np.int32)
    two = np.zeros((5, 5), np.int32)
    two[0, 0], two[4, 4] = 1, 2
    r = row(evaluate(empty, empty, thresholds=[0.5]), 0.5)
    assert (r.tp, r.fp, r.fn, r.precision, r.recall, r.f1, r.ap, r.panoptic_quality) == (
        0, 0, 0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert np.isnan(r.mean_matched_iou) and np.isnan(r.seg) and np.isnan(r.det)
    r = row(evaluate(two, empty, thresholds=[0.5]), 0.5)
    assert (r.fn, r.precision, r.recall, r.f1, r.ap, r.seg, r.det) == (2, 0, 0, 0, 0, 0, 0)
    r = row(evaluate(empty, two, thresholds=[0.5]), 0.5)
    assert (r.fp, r.precision, r.recall, r.ap) == (2, 0, 0, 0) and np.isnan(r.seg)


def test_sequences_records_and_dataset_level(scene):
    truth, pred = scene
    rec_t = Record("a", None, truth, pd.DataFrame(index=pd.Index([1, 2, 3], name="label")))
    scores = pd.DataFrame({"score": [0.9, 0.8, 0.1]}, index=pd.Index([5, 7, 9], name="label"))
    rec_p = Record("a", None, pred, scores)
    per_image = evaluate([truth, truth], [pred, truth], thresholds=[0.5])
    assert per_image["image"].tolist() == [0, 1] and per_image["tp"].tolist() == [2, 3]
    assert evaluate(rec_t, rec_p, thresholds=[0.5])["image"].tolist() == ["a"]
    stack = evaluate(np.stack([truth, truth]), np.stack([pred, truth]), thresholds=[0.5])
    pd.testing.assert_frame_equal(stack, per_image)
    ds = evaluate([truth, truth], [pred, truth], thresholds=[0.5, 0.75], by="dataset")
    r = row(ds, 0.5)
    assert r.image == "all" and (r.n_true, r.tp, r.fp, r.fn) == (6, 5, 1, 1)
    assert r.seg == pytest.approx((1.6 + 3) / 6)
    assert r.det == pytest.approx(1 - 11 / 60)
    assert 0 < r.coco_ap50 <= 1 and 0 < r.coco_ap <= r.coco_ap50
    perfect = row(evaluate(truth, truth, thresholds=[0.5], by="dataset"), 0.5)
    assert perfect.coco_ap == pytest.approx(1.0) and perfect.coco_ar100 == pytest.approx(1.0)


def test_scores_rank_coco_detections(scene):
    truth, pred = scene
    good = evaluate(truth, pred, thresholds=[0.5], by="dataset", scores=[{5: .9, 7: .8, 9: .1}])
    bad = evaluate(truth, pred, thresholds=[0.5], by="dataset", scores=[{5: .1, 7: .2, 9: .9}])
    assert good["coco_ap50"][0] > bad["coco_ap50"][0]  # false positive ranked first costs AP
    assert good["tp"][0] == bad["tp"][0]


def test_compare_has_method_column(scene):
    truth, pred = scene
    table = compare(truth, {"a": pred, "b": truth}, thresholds=[0.5, 0.9])
    assert table.columns[0] == "method"
    assert table["method"].tolist() == ["a", "a", "b", "b"]
    with pytest.raises(TypeError, match="must be a non-empty mapping"):
        compare(truth, {})


def test_bad_inputs(scene):
    truth, pred = scene
    with pytest.raises(ValueError, match=r"`truth` \(shape \(12, 12\)\) and `pred` \(shape "
                                         r"\(3, 3\)\) must have the same shape"):
        evaluate(truth, pred[:3, :3])
    with pytest.raises(ValueError, match=r"`truth` has 2 image\(s\) but `pred` has 1"):
        evaluate([truth, truth], [pred])
    with pytest.raises(TypeError, match="`pred` must hold integer ids"):
        evaluate(truth, pred.astype(float))
    with pytest.raises(ValueError, match=r"`thresholds` must be non-empty values in \(0, 1\]"):
        evaluate(truth, pred, thresholds=[0, 0.5])
    with pytest.raises(ValueError, match="`by` must be 'image', 'dataset' or 'class_name'"):
        evaluate(truth, pred, by="cell")
    with pytest.raises(TypeError, match="`pred` must be a label image, a sequence"):
        evaluate(truth, 3)
    with pytest.raises(TypeError, match=r"`pred\[0\]` must be a label image or have `.labels`"):
        evaluate([truth], ["x"])
    with pytest.raises(ValueError, match=r"`scores` has 2 entries for 1 image"):
        evaluate(truth, pred, scores=[{}, {}])


# -- agreement with pycocotools on real data ----------------------------------
def _pycocotools_matches(truth, pred, thresholds):
    """Matched detections per IoU threshold, computed by pycocotools alone."""
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def anns(labels, with_score):
        out = []
        for lab in np.unique(labels[labels > 0]):
            rle = mask_utils.encode(np.asfortranarray((labels == lab).astype(np.uint8)))
            ann = {"id": int(lab), "image_id": 1, "category_id": 1, "iscrowd": 0,
                   "segmentation": rle, "area": float(mask_utils.area(rle)),
                   "bbox": list(mask_utils.toBbox(rle))}
            if with_score:
                ann["score"] = 1.0
            out.append(ann)
        return out

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": 1, "height": truth.shape[0], "width": truth.shape[1]}],
                      "annotations": anns(truth, False), "categories": [{"id": 1}]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(anns(pred, True)), iouType="segm")
        ev.params.iouThrs = np.asarray(thresholds)
        ev.params.maxDets = [10000]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    return [(ev.evalImgs[0]["dtMatches"][t] > 0).sum() for t in range(len(thresholds))]


def test_agrees_with_pycocotools_on_cellapp_example(cellapp_example):
    truth = read_coco(cellapp_example / "test", images=False)[0].labels
    rng = np.random.default_rng(0)
    ids = np.unique(truth[truth > 0])
    dropped = truth.copy()
    dropped[np.isin(dropped, rng.choice(ids, len(ids) // 5, replace=False))] = 0
    merged = truth.copy()
    for a in ids[::7]:  # merge a cell into a touching neighbour
        ring = ndimage.binary_dilation(merged == a, iterations=2) & (merged != a) & (merged > 0)
        if ring.any():
            merged[merged == a] = np.bincount(merged[ring]).argmax()
    eroded = np.where(ndimage.grey_erosion(truth, size=5) == truth, truth, 0)
    perturbed = {"eroded": eroded, "dilated": expand_labels(truth, 3), "dropped": dropped,
                 "merged": merged}
    for name, pred in perturbed.items():
        table = evaluate(truth, pred)
        expected = _pycocotools_matches(truth, pred, list(DEFAULT_THRESHOLDS))
        assert table["tp"].tolist() == expected, name
    assert evaluate(truth, perturbed["dropped"], thresholds=[0.5])["fn"][0] == len(ids) // 5


# -- plots --------------------------------------------------------------------
def test_error_types_and_overlay():
    import matplotlib

    matplotlib.use("Agg")
    from cellnb.plot import ap_curve, error_types, errors

    truth = np.zeros((10, 20), np.int32)
    truth[0:4, 0:4], truth[0:4, 4:8] = 1, 2        # merged by pred 10
    truth[6:10, 0:8] = 3                           # split into preds 11, 12
    truth[0:4, 12:16] = 4                          # matched by pred 13
    truth[6:9, 12:15] = 5                          # missed
    pred = np.zeros_like(truth)
    pred[0:4, 0:8] = 10
    pred[6:10, 0:4], pred[6:10, 4:8] = 11, 12
    pred[0:4, 12:16] = 13
    pred[8:10, 17:20] = 14                         # false positive
    true_kind, pred_kind = error_types(truth, pred)
    assert true_kind == {1: "merge", 2: "merge", 3: "split", 4: "true positive",
                         5: "false negative"}
    # the merge and the split also hold one IoU-0.5 match each; the structural error wins
    assert pred_kind == {10: "merge", 11: "split", 12: "split", 13: "true positive",
                         14: "false positive"}
    ax = errors(np.zeros((10, 20), np.uint8), truth, pred)
    assert ax.get_title().startswith("TP 1 · FP 1 · FN 1\nmerges 1 · splits 1")
    table = compare(truth, {"m": pred})
    ax = ap_curve(table, metric="f1")
    assert ax.get_ylabel() == "f1" and len(ax.get_lines()) == 1
    with pytest.raises(ValueError, match=r"needs columns 'threshold' and 'nope'"):
        ap_curve(table, metric="nope")


def test_coco_detection_cap_warns_and_can_be_lifted():
    truth = np.zeros((4, 24), np.int32)
    truth[:, ::2] = np.arange(1, 13)  # 12 one-column cells
    with pytest.warns(UserWarning, match=r"has 12 predicted objects but the COCO metrics "
                                         r"consider only the top 5 .*coco_max_dets=12"):
        capped = evaluate(truth, truth, thresholds=[0.5], by="dataset", coco_max_dets=5)
    assert "coco_ar5" in capped.columns and capped["coco_ar5"][0] < 1
    full = evaluate(truth, truth, thresholds=[0.5], by="dataset", coco_max_dets=12)
    assert full["coco_ap"][0] == pytest.approx(1.0) and full["coco_ar12"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="`coco_max_dets` must be a positive int"):
        evaluate(truth, truth, by="dataset", coco_max_dets=0)


def test_overlap_table_with_huge_sparse_ids():
    truth = np.array([[0, 5, 5], [70_000_000, 0, 5]])
    pred = np.array([[3, 3, 0], [3, 0, 0]])
    table = overlap_table(truth, pred)
    assert table[["true", "pred", "intersection", "true_area", "pred_area"]].values.tolist() == [
        [5, 3, 1, 3, 3], [70_000_000, 3, 1, 1, 3]]
    np.testing.assert_allclose(table["iou"], [0.2, 1 / 3])
    assert evaluate(truth, truth, thresholds=[0.9])["tp"][0] == 2


# -- detection: one prompt per true object (how locate is judged) -------------
def test_detection_counts_hits_splits_and_background_exactly():
    from cellnb.evaluate import detection

    truth = np.zeros((10, 14), np.int32)
    truth[1:4, 1:4] = 3                       # ids need not be contiguous
    truth[1:4, 6:12] = 7
    truth[6:9, 1:4] = 9                       # missed
    pred = np.zeros((10, 14), np.int32)
    pred[1:4, 1:4] = 1                        # found
    pred[1:4, 6:8] = 2
    pred[1:4, 10:12] = 4                      # 7 found, and split
    pred[6:9, 10:13] = 5                      # on background
    scores = detection(truth, pred)
    assert scores[["tp", "fp", "fp_split", "fn"]].tolist() == [2, 2, 1, 1]
    assert scores["precision"] == 0.5 and scores["recall"] == 2 / 3
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # lists sum their counts
    twice = detection([truth, truth], [pred, pred])
    assert twice[["tp", "fp", "fp_split", "fn"]].tolist() == [4, 4, 2, 2]
    empty = detection(truth, np.zeros_like(pred))
    assert empty[["tp", "fp", "fn", "f1"]].tolist() == [0, 0, 3, 0]


def test_detection_errors():
    from cellnb.evaluate import detection

    a = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match=r"`truth` \(shape \(4, 4\)\) and `pred` \(shape \(4, 5\)\)"):
        detection(a, np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="`truth` holds 2 images and `pred` 1"):
        detection([a, a], [a])
    with pytest.raises(TypeError, match="both be label images or both be lists"):
        detection(a, [a])
    with pytest.raises(TypeError, match="`pred` must hold integer ids"):
        detection(a, a.astype(float))


def test_compare_takes_truth_first_and_the_old_order_warns():
    truth = np.array([[1, 1, 0, 2]])
    new = compare(truth, {"same": truth}, thresholds=[0.5])
    with pytest.warns(FutureWarning, match=r"compare\(truth, predictions\)"):
        old = compare({"same": truth}, truth, thresholds=[0.5])
    pd.testing.assert_frame_equal(new, old)
    assert compare(predictions={"same": truth}, truth=truth, thresholds=[0.5]).equals(new)


def test_match_objects_is_the_matching_evaluate_scores():
    truth, pred = _greedy_trap(wide=7, narrow=9)
    matches = match_objects(truth, pred, threshold=0.2)
    # the optimal pairing (two matches), not the greedy one (one)
    assert matches[["true", "pred"]].values.tolist() == [[1, 9], [2, 7]]
    np.testing.assert_allclose(matches["iou"], [0.3, 4 / 17])
    assert len(matches) == row(evaluate(truth, pred, thresholds=[0.2]), 0.2).tp
    assert match_objects(truth, pred)[["true", "pred"]].values.tolist() == [[1, 7]]
    assert match_objects(truth, np.zeros_like(truth)).empty
    assert list(match_objects(truth, np.zeros_like(truth)).columns) == ["true", "pred", "iou"]
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, 1\]"):
        match_objects(truth, pred, threshold=0)
    with pytest.raises(ValueError, match="shape"):
        match_objects(truth, pred[:, :10])
