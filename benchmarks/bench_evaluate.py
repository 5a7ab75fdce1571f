"""Time and memory of ``cellnb.evaluate`` against a dense IoU matrix and pycocotools.

Truth: synthetic 1024 x 1024 label images with ~300 cells; predictions: the
truth perturbed (cells dropped, eroded, dilated, shifted, merged), so every
image has true and false positives and negatives.

Methods, all computing matches at the ten IoU thresholds 0.5:0.05:0.95:
- cellnb   ``evaluate(truth, pred, by="image")`` (sparse overlaps + matching)
- dense    IoU matrix from one-hot masks (objects x pixels, one matrix product)
           + the same matching; run on the first ``--dense-images`` images only
- coco     pycocotools: RLE-encode every object, then COCOeval (segm)

Each method runs in a fresh forked process; peak memory is the growth of the
process' maximum resident set size while it runs.

    python benchmarks/bench_evaluate.py [--images 100] [--cells 300] [--dense-images 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import resource
import time

import numpy as np
from scipy import ndimage

from cellnb.data import synthetic_pairs
from cellnb.evaluate import DEFAULT_THRESHOLDS, _matching, evaluate


def make_images(n_images, n_cells, size, seed=0):
    """Truth from a few synthetic images, predictions from per-image perturbations."""
    rng = np.random.default_rng(seed)
    bases = [p.labels for p in synthetic_pairs(min(5, n_images), shape=(size, size),
                                              n_cells=n_cells, nucleus_radius=(5, 8),
                                              seed=seed)]
    truths, preds = [], []
    for k in range(n_images):
        truth = bases[k % len(bases)]
        pred = truth.copy()
        ids = np.unique(truth[truth > 0])
        pred[np.isin(pred, rng.choice(ids, len(ids) // 10, replace=False))] = 0
        size_filter = int(rng.choice([3, 5]))
        if k % 2:
            pred = np.where(ndimage.grey_erosion(pred, size=size_filter) == pred, pred, 0)
        else:
            pred = ndimage.grey_dilation(pred, size=size_filter)
        pred = np.roll(pred, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
        truths.append(truth)
        preds.append(pred.astype(np.int32))
    return truths, preds


def run_cellnb(truths, preds):
    return evaluate(truths, preds, by="image")["tp"].to_numpy()


def dense_overlaps(truth, pred):
    """IoU matrix via one-hot masks: (n_true x pixels) @ (pixels x n_pred)."""
    t_ids = np.unique(truth[truth > 0])
    p_ids = np.unique(pred[pred > 0])
    t_masks = (truth.ravel()[None, :] == t_ids[:, None]).astype(np.float32)
    p_masks = (pred.ravel()[None, :] == p_ids[:, None]).astype(np.float32)
    inter = t_masks @ p_masks.T
    union = t_masks.sum(1)[:, None] + p_masks.sum(1)[None, :] - inter
    return t_ids, p_ids, inter, inter / np.maximum(union, 1)


def run_dense(truths, preds):
    import pandas as pd

    tps = []
    for truth, pred in zip(truths, preds):
        t_ids, p_ids, inter, iou = dense_overlaps(truth, pred)
        ti, pi = np.nonzero(inter)
        pairs = pd.DataFrame({"true": t_ids[ti], "pred": p_ids[pi], "iou": iou[ti, pi]})
        tps += [len(_matching(pairs, t)) for t in DEFAULT_THRESHOLDS]
    return np.array(tps)


def run_coco(truths, preds):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def encode(labels, image_id, score):
        out = []
        for lab in np.unique(labels[labels > 0]):
            rle = mask_utils.encode(np.asfortranarray((labels == lab).astype(np.uint8)))
            ann = {"image_id": image_id, "category_id": 1, "iscrowd": 0, "segmentation": rle,
                   "area": float(mask_utils.area(rle)), "bbox": list(mask_utils.toBbox(rle))}
            if score:
                ann["score"] = 1.0
            out.append(ann)
        return out

    gt_anns, dt_anns, images = [], [], []
    for k, (truth, pred) in enumerate(zip(truths, preds), start=1):
        images.append({"id": k, "height": truth.shape[0], "width": truth.shape[1]})
        gt_anns += encode(truth, k, False)
        dt_anns += encode(pred, k, True)
    for i, ann in enumerate(gt_anns, start=1):
        ann["id"] = i
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": [{"id": 1}]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dt_anns), iouType="segm")
        ev.params.maxDets = [1000]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    return np.array([(e["dtMatches"] > 0).sum(1) for e in ev.evalImgs if e]).ravel()


def _child(fn, truths, preds, queue):
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = fn(truths, preds)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    queue.put((seconds, peak / 1024, result))


def measure(fn, truths, preds):
    queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_child, args=(fn, truths, preds, queue))
    proc.start()
    seconds, peak_mb, result = queue.get()
    proc.join()
    return seconds, peak_mb, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dense-images", type=int, default=3)
    args = parser.parse_args()

    truths, preds = make_images(args.images, args.cells, args.size)
    n_cells = np.mean([len(np.unique(t)) - 1 for t in truths])
    print(f"{args.images} images {args.size}x{args.size}, {n_cells:.0f} true cells per image "
          f"on average, 10 IoU thresholds")

    rows = {}
    rows["cellnb"] = measure(run_cellnb, truths, preds)
    k = min(args.dense_images, args.images)
    rows["cellnb (dense subset)"] = measure(run_cellnb, truths[:k], preds[:k])
    rows["dense IoU matrix"] = measure(run_dense, truths[:k], preds[:k])
    rows["pycocotools"] = measure(run_coco, truths, preds)

    assert np.array_equal(rows["cellnb (dense subset)"][2], rows["dense IoU matrix"][2])
    assert np.array_equal(rows["cellnb"][2], rows["pycocotools"][2]), "tp counts disagree"
    print("true-positive counts agree across the three methods\n")
    print(f"{'method':24s} {'images':>6s} {'s/image':>9s} {'peak MB':>9s}")
    for name, (seconds, peak, _) in rows.items():
        n = k if "dense" in name else args.images
        print(f"{name:24s} {n:6d} {seconds / n:9.3f} {peak:9.0f}")
    per_image = {name: rows[name][0] / (k if "dense" in name else args.images) for name in rows}
    print(f"\nspeed-up vs dense IoU matrix: "
          f"{per_image['dense IoU matrix'] / per_image['cellnb (dense subset)']:.1f}x "
          f"(peak memory {rows['dense IoU matrix'][1] / max(rows['cellnb (dense subset)'][1], 1):.0f}x"
          f" lower)")
    print(f"speed-up vs pycocotools:      {per_image['pycocotools'] / per_image['cellnb']:.1f}x "
          f"(peak memory ratio {rows['pycocotools'][1] / max(rows['cellnb'][1], 1):.1f}x)")


if __name__ == "__main__":
    main()
