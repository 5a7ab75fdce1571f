"""CellSeg1 and SAMCell building blocks on constructed inputs."""

import numpy as np
import pytest

from cellnb.recipes.cellseg1 import sample_points, two_stage_nms
from cellnb.recipes.samcell import distance_target, watershed


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - cy, xx - cx) <= r


def test_two_stage_nms_keeps_neighbours_and_drops_duplicates():
    m = np.zeros((4, 30, 30), bool)
    m[0, 2:12, 2:28] = True
    m[0, 12:28, 2:6] = True            # an L
    m[1, 14:28, 8:28] = True           # inside the L's box, not its mask
    m[2] = m[0]
    m[2, 2, 2] = False                 # duplicate of the L, lower score
    m[3, 14:28, 8:27] = True           # duplicate of the neighbour, higher score
    keep = two_stage_nms(m, [0.9, 0.5, 0.8, 0.7])
    assert keep.tolist() == [0, 3]
    assert two_stage_nms(np.zeros((0, 5, 5), bool), []).tolist() == []
    with pytest.raises(ValueError, match="differ in length"):
        two_stage_nms(m, [1.0])


def test_point_sampler_draws_only_from_the_stated_regions():
    from scipy import ndimage

    labels = np.zeros((60, 60), np.int32)
    for k, (cy, cx) in enumerate([(12, 12), (12, 45), (45, 20), (45, 48)], start=1):
        labels[_disk(labels.shape, cy, cx, 9)] = k
    for seed in range(20):
        pos, neg = sample_points(labels, rng=seed)
        assert sorted(pos[:, 2]) == [1, 2, 3, 4]
        for y, x, lab in pos:
            dist = ndimage.distance_transform_edt(np.pad(labels == lab, 1))[1:-1, 1:-1]
            inside = dist[labels == lab]
            assert labels[y, x] == lab and dist[y, x] >= np.quantile(inside, 0.8)
        bg = ndimage.distance_transform_edt(labels == 0)
        assert len(neg) == 15
        assert all(labels[y, x] == 0 and bg[y, x] >= np.quantile(bg[labels == 0], 0.8)
                   for y, x in neg)
    many = np.zeros((20, 400), np.int32)
    for k in range(40):
        many[5:15, 10 * k + 1:10 * k + 9] = k + 1
    pos, _ = sample_points(many, rng=0)
    assert len(pos) == 30 and len(set(pos[:, 2])) == 30


def test_distance_watershed_splits_touching_disks_and_keeps_a_lone_one_whole():
    labels = np.zeros((40, 70), np.int32)
    labels[_disk(labels.shape, 20, 12, 8)] = 1
    labels[_disk(labels.shape, 20, 27, 8) & (labels == 0)] = 2   # touches cell 1
    labels[_disk(labels.shape, 20, 55, 9)] = 3                   # alone
    target = distance_target(labels)
    assert target.max() == pytest.approx(1.0) and target[labels == 0].max() == 0
    out = watershed(target)
    assert out.max() == 3
    for lab in (1, 2, 3):  # each true cell maps to exactly one predicted cell, nearly whole
        ids, counts = np.unique(out[labels == lab], return_counts=True)
        assert counts.max() / (labels == lab).sum() > 0.9
    with pytest.raises(ValueError, match="fill < peak"):
        watershed(target, peak=0.1, fill=0.2)


def test_two_stage_nms_on_crops_equals_whole_masks():
    rng = np.random.default_rng(3)
    masks = np.zeros((12, 40, 40), bool)
    for m in masks:
        y, x = rng.integers(0, 30, 2)
        m[y:y + rng.integers(4, 10), x:x + rng.integers(4, 10)] = True
    scores = rng.random(12)
    crops = []
    for m in masks:
        ys, xs = np.nonzero(m)
        crops.append((ys.min() - 1, xs.min(), m[ys.min() - 1:ys.max() + 2, xs.min():xs.max() + 1])
                     if ys.min() else (0, 0, m))
    whole = two_stage_nms(masks, scores)
    assert two_stage_nms(crops, scores).tolist() == whole.tolist()
    assert 0 < len(whole) < 12


def test_patches_of_small_images_label_their_mirrored_cells():
    """An image smaller than the patch is padded by reflection, and so are its labels: a
    mirrored cell is a cell of its own, never background (issue 22, defect 1)."""
    from scipy import ndimage

    from cellnb.data import synthetic_pairs
    from cellnb.recipes._common import PatchDataset, pad_pair

    pair = synthetic_pairs(1, shape=(96, 96), n_cells=6, seed=0)[0]
    image, labels = pad_pair(pair.tl.astype(np.float32), pair.labels, (128, 128))
    mirrored = np.pad(pair.labels, ((0, 32), (0, 32)), mode="reflect")
    np.testing.assert_array_equal(labels > 0, mirrored > 0)
    np.testing.assert_array_equal(labels[:96, :96], pair.labels)
    for lab in np.unique(labels[labels > 0]):  # every id is one connected cell
        assert ndimage.label(labels == lab)[1] == 1
    assert len(np.unique(labels)) > len(np.unique(pair.labels))
    dataset = PatchDataset([pair.tl.astype(np.float32)], [pair.labels], (128, 128), 1,
                           lambda lab: (lab > 0)[None].astype(np.float32), augment=False)
    x, y = dataset[0]
    np.testing.assert_array_equal(y[0].numpy() > 0, mirrored > 0)
