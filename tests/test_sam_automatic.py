"""μSAM without prompts (AIS, APG, AMG): cellnb's path gives micro_sam's own labels (issue 31).

The reduced SAM (vit_mini) with a random-init UNETR decoder runs through the same
micro_sam classes as vit_b_lm does; the reference is micro_sam's
``automatic_instance_segmentation`` on the same predictor, decoder and image.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from skimage.segmentation import relabel_sequential

import cellnb
from cellnb.data import synthetic_pairs
from cellnb.models import AutomaticSam, automatic
from cellnb.testing import random_sam


@pytest.fixture(scope="module")
def sam():
    return random_sam("vit_mini", decoder=True, seed=0)


@pytest.fixture(scope="module")
def pair():
    return synthetic_pairs(1, shape=(256, 256), n_cells=8, seed=0)[0]


def _micro_sam(model, image, mode, tile_shape=None, halo=None, **options):
    from micro_sam.automatic_segmentation import automatic_instance_segmentation
    from micro_sam.instance_segmentation import get_instance_segmentation_generator

    init = {k: v for k, v in options.items() if k == "points_per_side"}
    generate = {k: v for k, v in options.items() if k not in init}
    generator = get_instance_segmentation_generator(
        model.predictor, tile_shape is not None, decoder=model.decoder, segmentation_mode=mode,
        **init)
    found = automatic_instance_segmentation(model.predictor, generator, image, ndim=2,
                                            tile_shape=tile_shape, halo=halo, verbose=False,
                                            **generate)
    return relabel_sequential(found.astype(np.int64))[0]


@pytest.mark.parametrize("mode, options", [
    ("ais", {}),
    ("ais", {"foreground_threshold": 0.6, "min_size": 10}),
    ("apg", {}),
    ("amg", {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}),
])
def test_each_mode_gives_micro_sams_own_labels(sam, pair, mode, options):
    result = cellnb.segment(pair.tl, model=sam, mode=mode, **options)
    expected = _micro_sam(sam, pair.tl, mode, **options)  # the raw uint16 image, as a user would
    assert result.labels.dtype == np.int32 and result.labels.max() > 0
    assert np.array_equal(result.labels, expected)
    assert result.model == f"random_vit_mini:{mode}"
    assert (result.table["status"] == "kept").all() and result.table["score"].isna().all()
    assert result.table["label"].tolist() == list(range(1, result.labels.max() + 1))


def test_tiled_ais_gives_micro_sams_tiled_labels(sam, pair):
    """micro_sam stitches tiles in threads, in an order that varies (two of its own runs
    differ by ~200 pixels here): one thread makes both sides deterministic."""
    image = np.tile(pair.tl, (2, 2))  # 512 x 512 in 192 px tiles with 32 px halo
    result = cellnb.segment(image, model=sam, tile_shape=(192, 192), halo=(32, 32), n_threads=1)
    expected = _micro_sam(sam, image, "ais", tile_shape=(192, 192), halo=(32, 32), n_threads=1)
    assert result.labels.max() > 0 and np.array_equal(result.labels, expected)
    assert "tiles" in result.normalization


def test_a_decoder_model_without_prompts_runs_ais_and_shares_the_embedding(sam, pair):
    sam.clear_embeddings()
    embedding = sam.embed(pair.tl)
    automatic_cells = cellnb.segment(pair.tl, model=sam)  # mode "ais" by default
    assert len(sam._embeddings) == 1  # the prompted embedding was reused, not recomputed
    assert np.array_equal(automatic_cells.labels,
                          cellnb.segment(pair.tl, model=sam, embedding=embedding,
                                         mode="ais").labels)
    prompts = cellnb.prompt(cellnb.locate(pair.fluorescence))
    prompted = cellnb.segment(pair.tl, prompts, model=sam)
    assert len(sam._embeddings) == 1 and prompted.model != automatic_cells.model


def test_min_area_drops_small_automatic_cells(sam, pair):
    full = cellnb.segment(pair.tl, model=sam, mode="ais")
    areas = np.bincount(full.labels.ravel())[1:]
    cut = int(np.median(areas))
    kept = cellnb.segment(pair.tl, model=sam, mode="ais", min_area=cut)
    assert kept.labels.max() == int((areas >= cut).sum())
    assert np.array_equal(kept.labels > 0, np.isin(full.labels, np.flatnonzero(areas >= cut) + 1))


def test_modes_refuse_what_they_do_not_take(sam, pair):
    with pytest.raises(TypeError, match=r"mode 'ais' takes no option\(s\) \['points_per_side'\]; "
                                        r"it takes \['boundary_distance_threshold'"):
        cellnb.segment(pair.tl, model=sam, mode="ais", points_per_side=8)
    with pytest.raises(ValueError, match=r"`mode` must be one of \['ais', 'apg', 'amg'\]"):
        cellnb.segment(pair.tl, model=sam, mode="auto")
    with pytest.raises(TypeError, match=r"\['multimask'\] apply to prompts; segmenting without "
                                        r"prompts \(mode='ais'\)"):
        cellnb.segment(pair.tl, model=sam, multimask=True)
    prompts = cellnb.prompt(cellnb.locate(pair.fluorescence))
    with pytest.raises(TypeError, match=r"mode='amg' and mode options \[\] are for segmenting "
                                        "without prompts"):
        cellnb.segment(pair.tl, prompts, model=sam, mode="amg")
    with pytest.raises(TypeError, match=r"model 'watershed' takes no option\(s\) "
                                        r"\['foreground_threshold', 'mode'\]"):
        cellnb.segment(pair.tl, prompts, model="watershed", mode="ais",
                       foreground_threshold=0.5)


def test_models_without_a_decoder_refuse_ais_and_name_the_models_that_have_one(pair):
    plain = random_sam("vit_mini", seed=0)
    for mode in ("ais", "apg"):
        with pytest.raises(ValueError, match=rf"mode='{mode}' needs an instance-segmentation "
                                             r"decoder and model 'random_vit_mini' has none. "
                                             r"Models with one: .*vit_b_lm.*use mode='amg'"):
            cellnb.segment(pair.tl, model=plain, mode=mode)
    with pytest.raises(ValueError, match="segments one cell per prompt: pass `prompts`"):
        cellnb.segment(pair.tl, model=plain)  # no decoder, no mode: prompts are needed
    amg = cellnb.segment(pair.tl, model=plain, mode="amg", points_per_side=4,
                         pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert amg.labels.dtype == np.int32


def test_automatic_wraps_a_sam_model_for_annotate(sam, tmp_path):
    from cellnb.annotate import read_records
    from cellnb.data import write_pairs

    ais = automatic(sam, "ais", foreground_threshold=0.5)
    assert isinstance(ais, AutomaticSam) and not ais.prompted and ais.name == "random_vit_mini:ais"
    assert ais.fingerprint != automatic(sam, "ais", foreground_threshold=0.6).fingerprint
    pairs = write_pairs(synthetic_pairs(2, shape=(160, 160), n_cells=5, seed=2),
                        tmp_path / "pairs")
    config = cellnb.Config.from_dict({"locate": {"tophat_size": 61}})
    with warnings.catch_warnings():  # random weights may find no cell in a pair: allowed here
        warnings.simplefilter("ignore", UserWarning)
        summary = cellnb.annotate(pairs, tmp_path / "out", model=ais, config=config,
                                  progress=False)
    assert summary["status"].isin(["done", "empty"]).all()
    records = read_records(tmp_path / "out", images=False)
    for record, row in zip(records, summary.itertuples()):
        assert record.provenance["model_name"] == "random_vit_mini:ais"
        direct = cellnb.segment(record_tl(pairs, record.id), model=sam, mode="ais",
                                foreground_threshold=0.5)
        assert (record.labels > 0).sum() == (direct.labels > 0).sum()  # same cells, relabelled
    again = cellnb.annotate(pairs, tmp_path / "out", model=ais, config=config, progress=False)
    assert (again["status"] == "skipped").all()
    with pytest.raises(ValueError, match="segments without prompts"):
        ais.segment(records[0].labels.astype(np.uint16) + 1, pd.DataFrame())
    with pytest.raises(TypeError, match=r"mode 'apg' takes no option\(s\) \['points_per_side'\]"):
        automatic(sam, "apg", points_per_side=4)


def record_tl(pairs, pair_id):
    row = pairs.set_index("pair_id").loc[pair_id]
    return cellnb.io.read_pair((row["tl_path"], row["fl_path"]))[0]


@pytest.mark.weights
@pytest.mark.parametrize("mode", ["ais", "apg"])
def test_vit_b_lm_on_cellapps_test_image_equals_micro_sam(mode):
    """The real model where its weights are cached: Cell-APP's HeLa test image (195 cells)."""
    from cellnb.io import read_coco

    [record] = read_coco(cellnb.data.fetch("cellapp-example") / "test")
    model = cellnb.models.load("vit_b_lm", device="cpu")
    result = cellnb.segment(record.image, model=model, mode=mode)
    assert np.array_equal(result.labels, _micro_sam(model, record.image, mode))
    scores = cellnb.evaluate(record.labels, result.labels, thresholds=[0.5])
    assert scores["tp"].iloc[0] > 0


def test_zero_shot_rows_run_or_say_why(sam, pair, tmp_path):
    from cellnb.testing import random_checkpoint

    rows = cellnb.models.zero_shot(sam, None)
    assert list(rows) == ["random_vit_mini AIS", "random_vit_mini APG", "random_vit_mini AMG",
                          "random_vit_mini prompted"]
    assert rows["random_vit_mini AMG"].mode == "amg"
    assert rows["random_vit_mini AIS"].mode == "ais" and rows["random_vit_mini prompted"] is sam
    plain = cellnb.models.zero_shot(random_sam("vit_mini", seed=1), None)
    assert plain["random_vit_mini AIS"] == "not available: 'random_vit_mini' has no instance decoder"
    missing = cellnb.models.zero_shot("vit_b_lm" if not cellnb.models.is_cached("vit_b_lm")
                                      else "vit_t_lm_missing", None)
    assert all(isinstance(v, str) and v.startswith("not available") for v in missing.values())
    pytest.importorskip("cellpose")
    path = random_checkpoint("cpsam_mini", tmp_path / "cp.pt")
    cp = cellnb.models.load("cpsam_mini", checkpoint=path, device="cpu")
    assert cellnb.models.zero_shot(None, cp) == {"cpsam_mini": cp}


def test_compare_keeps_a_method_that_could_not_run_as_a_row(sam, pair):
    truth = pair.labels
    ais = cellnb.segment(pair.tl, model=sam, mode="ais").labels
    table = cellnb.compare(truth, {"ais": ais, "vit_b_lm AIS": "not available: not cached"},
                           thresholds=[0.5, 0.75])
    assert table["method"].tolist() == ["ais", "ais", "vit_b_lm AIS", "vit_b_lm AIS"]
    assert table["note"].tolist() == ["", ""] + ["not available: not cached"] * 2
    missing = table[table["method"] == "vit_b_lm AIS"]
    assert missing["ap"].isna().all() and missing["f1"].isna().all()
    assert (missing["n_true"] == truth.max()).all() and missing["threshold"].tolist() == [0.5, 0.75]
