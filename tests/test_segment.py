import numpy as np
import pandas as pd
import pytest

from cellnb import evaluate, locate, prompt
from cellnb.data import synthetic_pairs
from cellnb.segment import STATUSES, Segmentation, normalize_for_sam, resolve_overlaps, segment


# -- resolve_overlaps on constructed masks -----------------------------------
def test_neighbours_with_overlapping_boxes_are_both_kept():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 1:9, 1:5] = True
    masks[0, 1:3, 5:8] = True           # an L: its box reaches over the neighbour
    masks[1, 4:9, 5:9] = True           # inside the L's box, touching no pixel of it
    image, status = resolve_overlaps(masks, [0.5, 0.9], iou_threshold=0.1)
    assert status == ["kept", "kept"]   # box IoU would drop one (Cell-APP); mask IoU keeps both
    assert set(np.unique(image)) == {0, 1, 2}


def test_duplicate_dropped_and_contested_pixels_go_to_higher_score():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 0:4, 0:4] = True
    masks[1, 0:4, 0:4] = True               # duplicate of 0, lower score
    masks[2, 2:6, 2:6] = True               # partly overlaps 0 (IoU 4/28)
    image, status = resolve_overlaps(masks, [0.6, 0.5, 0.9], labels=[10, 20, 30])
    assert status == ["kept", "overlap", "kept"]
    assert image[3, 3] == 30                # contested pixel -> higher score
    assert image[0, 0] == 10 and (image == 20).sum() == 0


def test_empty_small_and_covered_statuses():
    masks = np.zeros((4, 8, 8), bool)
    masks[1, 0, 0] = True                   # too small
    masks[2, 0:6, 0:6] = True
    masks[3, 1:3, 1:3] = True               # entirely inside a higher-scoring mask
    image, status = resolve_overlaps(masks, [0.9, 0.9, 0.9, 0.1], min_area=2,
                                     iou_threshold=0.9)
    assert status == ["empty", "too small", "kept", "covered"]
    assert set(np.unique(image)) == {0, 3}


def test_crops_and_errors():
    crops = [(2, 3, np.ones((2, 2), bool)), (0, 0, np.ones((1, 1), bool))]
    image, status = resolve_overlaps(crops, [1, 1], shape=(5, 6))
    assert image[2:4, 3:5].tolist() == [[1, 1], [1, 1]] and image[0, 0] == 2
    with pytest.raises(ValueError, match="pass `shape=\\(H, W\\)`"):
        resolve_overlaps(crops, [1, 1])
    with pytest.raises(ValueError, match="2 masks but 1 scores"):
        resolve_overlaps(crops, [1], shape=(5, 6))
    with pytest.raises(ValueError, match=r"`iou_threshold` must be in \(0, 1\]"):
        resolve_overlaps(crops, [1, 1], shape=(5, 6), iou_threshold=0)


def test_normalize_for_sam_records_mapping():
    rgb, record = normalize_for_sam(np.array([[10, 20], [30, 50]], np.uint16))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[..., 0].tolist() == [[0, 63], [127, 255]]  # truncated, as micro_sam does
    assert record["min"] == [10.0] and record["max"] == [50.0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("rgb", [False, True])
def test_normalize_for_sam_is_micro_sams_own_mapping(dtype, rgb):
    from micro_sam.util import _to_image

    rng = np.random.default_rng(1)
    shape = (31, 17, 3) if rgb else (31, 17)
    image = (rng.random(shape) * 40000 + 33000).astype(dtype) if dtype != np.uint8 else \
        rng.integers(3, 250, shape, dtype=np.uint8)
    assert np.array_equal(normalize_for_sam(image)[0], _to_image(image))


# -- segment ------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene():
    pair = synthetic_pairs(1, shape=(192, 192), n_cells=10, seed=2)[0]
    nuclei = locate(pair.fluorescence)
    return pair, nuclei, prompt(nuclei, kind="points+boxes", negatives=1)


def _check(result, prompts, shape):
    assert isinstance(result, Segmentation)
    assert result.labels.shape == shape and result.labels.dtype == np.int32
    assert result.table["label"].tolist() == prompts["label"].tolist()  # a row per prompt
    assert set(result.table["status"]) <= set(STATUSES)
    kept = result.table[result.table["status"] == "kept"]
    # cells keep their nucleus' id
    assert set(np.unique(result.labels[result.labels > 0])) == set(kept["label"])
    np.testing.assert_array_equal(np.bincount(result.labels.ravel(),
                                              minlength=kept["label"].max() + 1)[kept["label"]],
                                  kept["area"])


@pytest.mark.parametrize("kind", ["points", "boxes", "points+boxes"])
def test_sam_segment_real_architecture(scene, vit_t, kind):
    pair, nuclei, prompts = scene
    result = segment(pair.tl, prompts, model=vit_t, kind=kind, batch_size=4)
    _check(result, prompts, pair.tl.shape)
    assert result.model.startswith("random_vit_t (xxh128:")
    assert result.normalization["min"] == [float(pair.tl.min())]


def test_sam_segment_tiled_and_multimask(scene, vit_t):
    pair, nuclei, prompts = scene
    result = segment(pair.tl, prompts, model=vit_t, tile_shape=(96, 96), halo=(16, 16),
                     multimask=True)
    _check(result, prompts, pair.tl.shape)


def test_watershed_baseline(scene):
    pair, nuclei, prompts = scene
    result = segment(pair.tl, prompts, model="watershed", nuclei=nuclei)
    _check(result, prompts, pair.tl.shape)
    assert result.model == "watershed"
    # every cell grows from its nucleus: the nucleus pixels keep their id
    inside = (nuclei > 0) & (result.labels > 0)
    assert (result.labels[inside] == nuclei[inside]).mean() > 0.95
    assert evaluate(pair.labels, result.labels, thresholds=[0.5])["tp"][0] > 0


@pytest.mark.parametrize("index, ap", [(0, 1.0), (1, 1.0), (2, 0.846)])
def test_watershed_baseline_ends_cells_at_the_background(index, ap):
    """The background is a marker too: cells stop at it (before: AP@0.5 0.33-0.5 here).

    Seeded from the true nuclei, so the baseline is measured, not locate (on pair 0
    ``locate`` splits one synthetic nucleus, which costs one cell: AP 0.923).
    """
    pair = synthetic_pairs(3, shape=(256, 256), n_cells=12, seed=0)[index]
    nuclei = pair.nuclei
    result = segment(pair.tl, prompt(nuclei), model="watershed", nuclei=nuclei)
    scores = evaluate(pair.labels, result.labels, thresholds=[0.5])
    assert scores["ap"][0] == pytest.approx(ap, abs=1e-3)
    assert (result.labels[pair.labels == 0] > 0).mean() < 0.05  # little background taken


def test_empty_prompts(scene, vit_t):
    pair, _, prompts = scene
    result = segment(pair.tl, prompts.iloc[:0], model=vit_t)
    assert result.labels.max() == 0 and result.table.empty


def test_segment_bad_inputs(scene, vit_t):
    pair, nuclei, prompts = scene
    with pytest.raises(ValueError, match="must be a prompt table"):
        segment(pair.tl, pd.DataFrame({"y": [1]}), model=vit_t)
    far = prompts.assign(y=prompts["y"] + 1000)
    with pytest.raises(ValueError, match=r"prompt\(s\) lie outside the image"):
        segment(pair.tl, far, model=vit_t)
    with pytest.raises(ValueError, match="needs `nuclei=`"):
        segment(pair.tl, prompts, model="watershed")
    with pytest.raises(ValueError, match=r"is a name, not a loaded model; load it first with "
                                         r"cellnb.models.load\('vit_b_lm'\)"):
        segment(pair.tl, prompts, model="vit_b_lm")
    with pytest.raises(TypeError, match="`model` must be a model of cellnb's protocol"):
        segment(pair.tl, prompts, model=3)
    with pytest.raises(ValueError, match="segments one cell per prompt: pass `prompts`, e.g."):
        segment(pair.tl, model=vit_t)
    with pytest.raises(ValueError, match="duplicate labels"):
        segment(pair.tl, pd.concat([prompts, prompts]), model=vit_t)
    with pytest.raises(ValueError, match="`batch_size` must be a positive int or 'auto'"):
        segment(pair.tl, prompts, model=vit_t, batch_size=0)
    with pytest.raises(ValueError, match="`tile_shape` must be two positive ints"):
        segment(pair.tl, prompts, model=vit_t, tile_shape=(0, 64))
    with pytest.raises(ValueError, match="`halo` must be two non-negative ints"):
        segment(pair.tl, prompts, model=vit_t, tile_shape=(64, 64), halo=(8, 8.5))
    with pytest.raises(ValueError, match="mixes kinds"):
        segment(pair.tl, pd.concat([prompts.iloc[:2], prompt(nuclei).iloc[2:]]), model=vit_t)
    with pytest.raises(ValueError, match="`fluorescence`|`image` contains 1 NaN"):
        bad = pair.tl.astype(np.float32)
        bad[0, 0] = np.nan
        segment(bad, prompts, model=vit_t)


def test_tiled_agrees_with_untiled_on_a_twin_image(scene, vit_t):
    """Two identical halves tiled at the seam: each tile's embedding is the untiled
    embedding of one half, so routing and pasting must reproduce the untiled masks."""
    pair, nuclei, _ = scene
    half = pair.tl
    width = half.shape[1]
    prompts = prompt(nuclei, kind="points")
    untiled = segment(half, prompts, model=vit_t)
    twin = np.concatenate([half, half], axis=1)
    shifted = prompts.assign(label=prompts["label"] + 1000, x=prompts["x"] + width,
                             x0=prompts["x0"] + width, x1=prompts["x1"] + width)
    tiled = segment(twin, pd.concat([prompts, shifted], ignore_index=True), model=vit_t,
                    tile_shape=(half.shape[0], width), halo=(0, 0))
    np.testing.assert_array_equal(tiled.labels[:, :width], untiled.labels)
    right = np.where(untiled.labels > 0, untiled.labels + 1000, 0)
    np.testing.assert_array_equal(tiled.labels[:, width:], right)
    assert (tiled.table["status"].tolist()
            == untiled.table["status"].tolist() * 2)


def test_tiled_embeddings_come_from_micro_sam(scene, vit_t, monkeypatch):
    import micro_sam.util

    calls = []
    original = micro_sam.util.precompute_image_embeddings

    def spy(predictor, image, **kwargs):
        embeddings = original(predictor, image, **kwargs)
        calls.append((kwargs, sorted(embeddings["features"].keys(), key=int)))
        return embeddings

    monkeypatch.setattr(micro_sam.util, "precompute_image_embeddings", spy)
    pair, _, prompts = scene
    vit_t.clear_embeddings()
    result = segment(pair.tl, prompts, model=vit_t, tile_shape=(96, 96), halo=(8, 8))
    _check(result, prompts, pair.tl.shape)
    (kwargs, tiles), = calls
    assert kwargs["tile_shape"] == (96, 96) and kwargs["halo"] == (8, 8)
    assert tiles == ["0", "1", "2", "3"]              # a 192 x 192 image in 96 x 96 tiles
    assert "tiles" in result.normalization
    calls.clear()
    monkeypatch.setattr(micro_sam.util, "precompute_image_embeddings", original)
    embedding = vit_t.embed(pair.tl, tile_shape=(192, 192))  # fits: no tiling
    assert embedding.tile_shape is None and embedding.data["features"].shape[0] == 1
    # a SamModel around a bare SamPredictor (not made by micro_sam) tiles too
    from segment_anything import SamPredictor

    from cellnb.models import SamModel

    bare = SamPredictor(vit_t.predictor.model)
    bare.model_type = "vit_t"
    other = SamModel(name="mine", predictor=bare, decoder=None, weights_hash="x", device="cpu")
    monkeypatch.setattr(micro_sam.util, "precompute_image_embeddings", spy)
    tiled = segment(pair.tl, prompts, model=other, tile_shape=(96, 96), halo=(8, 8))
    np.testing.assert_array_equal(tiled.labels, result.labels)


@pytest.mark.parametrize("shape", [(192, 192), (200, 300)])
def test_lowres_decoding_matches_sam_predictor(vit_t, shape):
    """cellnb's batched low-res decoding + windowed upsampling against SAM's own
    full-resolution `SamPredictor.predict` for each prompt."""
    from cellnb.models._sam import _decode, _upsample_window

    pair = synthetic_pairs(1, shape=shape, n_cells=6, seed=5)[0]
    prompts = prompt(locate(pair.fluorescence), kind="points")
    prompts = prompts.assign(negatives=[()] * len(prompts)).reset_index(drop=True)
    predictor = vit_t.predictor
    predictor.set_image(normalize_for_sam(pair.tl)[0])
    logits, scores = _decode(predictor, prompts, True, False, False, batch_size=4)
    everything = (slice(0, shape[0]), slice(0, shape[1]))
    for k, row in enumerate(prompts.itertuples()):
        full, score, low = predictor.predict(
            point_coords=np.array([[row.x + 0.5, row.y + 0.5]]), point_labels=np.array([1]),
            multimask_output=False, return_logits=True)
        np.testing.assert_allclose(logits[k], low[0], atol=1e-5)
        assert scores[k] == pytest.approx(score[0], abs=1e-5)
        mine = _upsample_window(logits[k], everything, shape, predictor.input_size)
        # one bilinear step instead of SAM's two (256 -> 1024 -> image): same masks but
        # for pixels where the logit is within rounding of 0
        assert ((mine > 0) != (full[0] > 0)).mean() < 0.02


# -- the model protocol: embed once, segment many -----------------------------
def _count_encoder_calls(model):
    calls = []
    handle = model.predictor.model.image_encoder.register_forward_hook(
        lambda *args: calls.append(1))
    return calls, handle


def test_segment_twice_embeds_once(scene, vit_t):
    pair, _, prompts = scene
    vit_t.clear_embeddings()
    calls, handle = _count_encoder_calls(vit_t)
    try:
        first = segment(pair.tl, prompts, model=vit_t)
        subset = prompts.iloc[:3].drop(columns="negatives")
        again = segment(pair.tl, subset, model=vit_t, kind="points")
        assert len(calls) == 1                     # the second call reused the embedding
        assert set(again.table["label"]) == set(subset["label"])
        assert first.labels.shape == again.labels.shape
        with pytest.raises(ValueError, match="negative points at labels .* not rows"):
            segment(pair.tl, prompts.iloc[:3], model=vit_t)
        segment(pair.tl[::-1].copy(), prompts.assign(y=191 - prompts["y"]), model=vit_t)
        assert len(calls) == 2                     # another image is encoded
        segment(pair.tl, prompts, model=vit_t, tile_shape=(96, 96), halo=(8, 8))
        assert len(calls) == 6                     # other tiling: 4 tiles
        segment(pair.tl, prompts, model=vit_t, tile_shape=(96, 96), halo=(8, 8))
        assert len(calls) == 6
    finally:
        handle.remove()


def test_explicit_embedding_gives_the_same_cells(scene, vit_t):
    pair, _, prompts = scene
    vit_t.clear_embeddings()
    embedding = vit_t.embed(pair.tl)
    assert embedding.shape == pair.tl.shape and embedding.model == vit_t.fingerprint
    with_embedding = segment(pair.tl, prompts, model=vit_t, embedding=embedding)
    vit_t.clear_embeddings()
    plain = segment(pair.tl, prompts, model=vit_t)
    np.testing.assert_array_equal(with_embedding.labels, plain.labels)
    other = synthetic_pairs(1, shape=(192, 192), n_cells=3, seed=9)[0].tl
    with pytest.raises(ValueError, match="`embedding` was computed for another image"):
        segment(other, prompts, model=vit_t, embedding=embedding)


def test_embedding_saved_on_disk_is_read_back_without_encoding(scene, vit_t, tmp_path):
    pair, _, prompts = scene
    vit_t.clear_embeddings()
    path = tmp_path / "cache" / "tl.zarr"
    first = vit_t.embed(pair.tl, save_path=path)
    assert path.is_dir() and not list(path.parent.glob(".*.part"))
    vit_t.clear_embeddings()
    calls, handle = _count_encoder_calls(vit_t)
    try:
        again = vit_t.embed(pair.tl, save_path=path)
    finally:
        handle.remove()
    assert calls == []
    np.testing.assert_array_equal(np.asarray(again.data["features"]),
                                  np.asarray(first.data["features"]))


def test_options_a_model_does_not_take_are_an_error(scene, vit_t):
    pair, nuclei, prompts = scene
    with pytest.raises(TypeError, match=r"model 'watershed' takes no option\(s\) "
                                        r"\['batch_size', 'multimask'\]; it takes"):
        segment(pair.tl, prompts, model="watershed", nuclei=nuclei, multimask=True,
                batch_size=2)
    with pytest.raises(TypeError, match=r"model 'random_vit_t' takes no option\(s\) "
                                        r"\['nuclei'\]"):
        segment(pair.tl, prompts, model=vit_t, nuclei=nuclei)
    with pytest.raises(TypeError, match="`callback` must be callable"):
        segment(pair.tl, prompts, model=vit_t, callback=3)


def test_callback_counts_prompts(scene, vit_t):
    pair, nuclei, prompts = scene
    seen = []
    segment(pair.tl, prompts, model=vit_t, callback=lambda done, total: seen.append((done, total)))
    assert seen == [(k, len(prompts)) for k in range(1, len(prompts) + 1)]
    seen.clear()
    segment(pair.tl, prompts, model="watershed", nuclei=nuclei,
            callback=lambda done, total: seen.append(done))
    assert seen[-1] == len(prompts)


def test_segmentation_from_labels():
    labels = np.zeros((6, 6), np.int32)
    labels[0:2, 0:3] = 4
    labels[3:6, 3:5] = 1
    seg = Segmentation.from_labels(labels, {4: 0.25}, model="m")
    assert seg.table.values.tolist() == [[1, 1.0, 6, 3, 3, 6, 5, "kept"],
                                         [4, 0.25, 6, 0, 0, 2, 3, "kept"]]
    assert seg.model == "m" and seg.normalization == {}


def test_segment_click_decodes_what_segment_decodes(scene, vit_t):
    """A click is one prompt row decoded on the kept embedding: the same mask as segment()."""
    from cellnb.segment import segment_click

    pair, nuclei, prompts = scene
    row = prompts.iloc[[0]].assign(negatives=[()])
    via_table = segment(pair.tl, row, model=vit_t, kind="points")
    table_mask = via_table.labels == row["label"].iloc[0]
    mask, score = segment_click(vit_t, pair.tl, [(row["y"].iloc[0], row["x"].iloc[0], True)],
                                multimask=False)
    np.testing.assert_array_equal(mask, table_mask)
    assert score == pytest.approx(via_table.table["score"].iloc[0], abs=1e-6)
    boxes = prompt(nuclei, kind="boxes").iloc[[0]]
    via_box = segment(pair.tl, boxes, model=vit_t, kind="boxes")
    box_mask, _ = segment_click(vit_t, pair.tl, box=tuple(boxes[["y0", "x0", "y1", "x1"]].iloc[0]))
    np.testing.assert_array_equal(box_mask, via_box.labels == boxes["label"].iloc[0])
    assert table_mask.any() or box_mask.any()  # random weights, yet something to compare
    # a negative point changes the prompt, and a tiled embedding is decoded on its tile
    two, _ = segment_click(vit_t, pair.tl, [(row["y"].iloc[0], row["x"].iloc[0], True),
                                            (2.0, 2.0, False)])
    assert two.shape == pair.tl.shape and two.dtype == bool
    h, w = pair.tl.shape
    tiled = vit_t.embed(pair.tl, tile_shape=(h // 2, w // 2), halo=(8, 8))
    one_tile, _ = segment_click(vit_t, pair.tl, [(5.0, 5.0, True)], embedding=tiled)
    assert not one_tile[h // 2 + 8:, w // 2 + 8:].any()  # nothing beyond its tile


def test_segment_click_refuses_what_it_cannot_decode(scene, vit_t):
    from cellnb.segment import segment_click

    pair, nuclei, _ = scene
    with pytest.raises(ValueError, match="at least one positive point or a box"):
        segment_click(vit_t, pair.tl, [(3, 3, False)])
    with pytest.raises(ValueError, match=r"lies outside the image"):
        segment_click(vit_t, pair.tl, [(-1, 3, True)])
    with pytest.raises(ValueError, match=r"each point is \(y, x, positive\)"):
        segment_click(vit_t, pair.tl, [(3, 3)])
    with pytest.raises(ValueError, match="`box` must be"):
        segment_click(vit_t, pair.tl, box=(10, 10, 5, 20))
    with pytest.raises(TypeError, match="only SAM decodes clicks"):
        segment_click("watershed", pair.tl, [(3, 3, True)])
