"""The SAM-for-cells recipes (samcell, cellsam, cellseg1, cellpose): tiny random-init runs.

Most runs use the reduced test architectures (``vit_mini``, ``cpsam_mini``);
the batch-norm tests use MobileSAM's vit_t, the architecture that has them.
"""

import json

import numpy as np
import pytest
import torch

import cellnb
from cellnb.recipes import _sam
from cellnb.testing import random_checkpoint
from cellnb.data import synthetic_pairs
from cellnb.io import Record
from cellnb import load_trained, train

TINY = dict(epochs=3, steps_per_epoch=3, batch_size=1, patch_shape=(64, 64), progress=False)


def _records(n, seed=0):
    return [Record(p.id, p.tl, p.labels, p.truth)
            for p in synthetic_pairs(n, shape=(96, 96), n_cells=8, seed=seed)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ds"
    return cellnb.export(_records(3), out, splits={"train": 2, "val": 1})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(random_checkpoint("vit_t", tmp_path_factory.mktemp("ckpt") / "vit_t.pt"))


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return str(random_checkpoint("vit_mini", tmp_path_factory.mktemp("ckpt") / "vit_mini.pt"))


@pytest.fixture(scope="module")
def image():
    return _records(1, seed=5)[0]


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model_state"]


# ---------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------
def test_lora_adapts_only_query_and_value_of_a_fused_projection():
    from segment_anything.modeling.image_encoder import Attention

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder = torch.nn.Sequential(Attention(8, num_heads=2))
            self.mask_decoder = torch.nn.Sequential()

    torch.manual_seed(0)
    sam = Fake()
    qkv = sam.image_encoder[0].qkv
    x = torch.randn(3, 8)
    before = qkv(x).detach()
    n = _sam.add_lora(sam, rank=2, dropout=0.0)
    lora = sam.image_encoder[0].qkv
    assert n == 4 * 2 * 8  # q and v: down (2 x 8) + up (8 x 2) each
    assert torch.equal(lora(x), before)  # up-projections start at zero
    torch.nn.init.ones_(lora.q_up.weight)
    torch.nn.init.ones_(lora.v_up.weight)
    after = lora(x).detach()
    assert not torch.equal(after[:, :8], before[:, :8])          # q changed
    assert torch.equal(after[:, 8:16], before[:, 8:16])          # k untouched
    assert not torch.equal(after[:, 16:], before[:, 16:])        # v changed
    assert [p.requires_grad for p in qkv.parameters()] == [False, False]


def test_lora_on_tiny_vit_keeps_the_output_at_initialisation():
    from cellnb.testing import random_sam

    sam = random_sam("vit_t").predictor.model
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        before = sam.image_encoder(x)
        n = _sam.add_lora(sam, rank=4, dropout=0.1)
        sam.eval()
        after = sam.image_encoder(x)
    torch.testing.assert_close(after, before)
    assert 0 < n < 0.1 * sum(p.numel() for p in sam.parameters())


def test_window_starts_cover_the_image():
    for length in (50, 64, 65, 300, 1024):
        starts = _sam.window_starts(length, 64, 16)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + 64] = True
        assert covered.all() and starts[-1] + 64 >= length and min(starts) == 0


# ---------------------------------------------------------------------------
# samcell
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samcell_run(dataset, base, tmp_path_factory):
    return train(dataset, recipe="samcell", model="vit_t", checkpoint=base,
                 out=tmp_path_factory.mktemp("runs") / "samcell", warmup=2, overlap=16,
                 patience=None, **TINY)


def test_samcell_learns_and_segments(samcell_run, base, image):
    h = samcell_run.history
    assert list(h["step"]) == [3, 6, 9]
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    info = json.loads((samcell_run.path / "trained.json").read_text())
    assert info["normalization"]["method"] == "clahe_zscore"
    seg = cellnb.segment(image.image, model=samcell_run)
    assert seg.labels.shape == image.image.shape and seg.labels.dtype == np.int32
    assert sorted(seg.table["label"]) == sorted(np.unique(seg.labels[seg.labels > 0]))
    again = load_trained(samcell_run.path).segment(image.image)
    np.testing.assert_array_equal(again.labels, seg.labels)
    # the prompt encoder is frozen; encoder and decoder trained
    start, end = _state(base), _state(samcell_run.path / "weights" / "last.pt")
    pe = [k for k in start if k.startswith("prompt_encoder")]
    assert all(torch.equal(start[k], end[k]) for k in pe)
    for key in ("mask_decoder.output_upscaling.0.weight", "image_encoder.neck.0.weight"):
        assert not torch.equal(start[key], end[key])


def test_batch_norm_statistics_stay_what_inference_uses(samcell_run, base):
    """vit_t's batch-norm statistics are not trained on batch-1 patches (issue 22, defect 3):
    training and inference compute the same function."""
    start, end = _state(base), _state(samcell_run.path / "weights" / "last.pt")
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 20  # TinyViT's batch-norm layers
    assert all(torch.equal(start[k], end[k]) for k in stats)
    sam = _sam.empty_sam("vit_t")
    n = _sam.freeze_batchnorm(sam)
    sam.train()
    norms = [m for m in sam.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert n == len(norms) > 20 and not any(m.training for m in norms)
    assert sam.image_encoder.training  # everything else trains as before


def test_resume_keeps_buffers(samcell_run):
    """The loop's resume state holds every buffer, not only the trained parameters
    (issue 22, defect 4)."""
    state = torch.load(samcell_run.path / "state" / "latest.pt", weights_only=True)
    sam = _sam.empty_sam("vit_t")
    assert set(state["buffers"]) == {k for k, _ in sam.named_buffers()}


def test_early_stopping(dataset, mini, tmp_path):
    run = train(dataset, recipe="samcell", model="vit_mini", checkpoint=mini, out=tmp_path / "r",
                warmup=2, overlap=16, patience=1, **{**TINY, "epochs": 4, "steps_per_epoch": 1})
    info = json.loads((run.path / "trained.json").read_text())
    # random init never finds a cell: the best epoch stays 0 and patience 1 ends the run
    assert (run.history["val_ap50"] == 0).all()
    assert info["stopped_early"] == {"epoch": 1, "patience": 1} and len(run.history) == 2
    again = train(dataset, recipe="samcell", model="vit_mini", checkpoint=mini,
                  out=tmp_path / "r", warmup=2, overlap=16, patience=1,
                  **{**TINY, "epochs": 4, "steps_per_epoch": 1})
    assert len(again.history) == 2  # a stopped run is finished


def test_sam_recipes_check_their_settings(dataset, mini, tmp_path):
    with pytest.raises(ValueError, match="must be square"):
        train(dataset, recipe="samcell", model="vit_mini", checkpoint=mini, out=tmp_path / "a",
              patch_shape=(64, 96), progress=False)
    with pytest.raises(ValueError, match="must be square"):
        train(dataset, recipe="microsam", model="vit_mini", checkpoint=mini, out=tmp_path / "a",
              patch_shape=(64, 96), progress=False)
    with pytest.raises(ValueError, match="fill < peak"):
        train(dataset, recipe="samcell", model="vit_mini", checkpoint=mini, out=tmp_path / "b",
              peak=0.1, fill=0.2, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        train(dataset, recipe="cellseg1", model="vit_q", out=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="no pretrained weights"):
        train(dataset, recipe="cellsam", model="vit_mini", out=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="`grid` must be a positive int"):
        train(dataset, recipe="cellseg1", model="vit_mini", checkpoint=mini, out=tmp_path / "d",
              grid=0, progress=False)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# cellsam
# ---------------------------------------------------------------------------
def test_cellsam_trains_only_the_neck_and_segments_from_boxes(dataset, mini, tmp_path, image):
    from cellnb.recipes.cellsam import box_prompts

    run = train(dataset, recipe="cellsam", model="vit_mini", checkpoint=mini, out=tmp_path / "r",
                overlap=16, lr=1e-3, **TINY)
    h = run.history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    start, end = _state(mini), _state(run.path / "weights" / "last.pt")
    changed = {k.split(".")[1] for k in start if not torch.equal(start[k], end[k])}
    assert changed == {"neck"}
    assert run.prompted
    prompts = box_prompts(image.labels)
    seg = cellnb.segment(image.image, prompts, model=run)
    assert seg.labels.shape == image.image.shape
    assert seg.table["label"].tolist() == prompts["label"].tolist()  # ids follow the prompts
    assert set(np.unique(seg.labels)) - {0} <= set(prompts["label"])
    with pytest.raises(ValueError, match="segments from box prompts"):
        cellnb.segment(image.image, model=run)


# ---------------------------------------------------------------------------
# cellseg1
# ---------------------------------------------------------------------------
def test_cellseg1_trains_lora_only_and_segments_from_a_grid(dataset, mini, tmp_path, image):
    from cellnb.recipes import cellseg1

    options = dict(overlap=16, accumulate=2, grid=6, max_positive=4, max_negative=2)
    run = train(dataset, recipe="cellseg1", model="vit_mini", checkpoint=mini,
                out=tmp_path / "r", **options, **TINY)
    h = run.history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    start, end = _state(mini), _state(run.path / "weights" / "last.pt")
    assert all(torch.equal(start[k], end[k.replace(".qkv.", ".qkv.base.")
                                      .replace("_proj.", "_proj.base.")
                                      if k not in end else k])
               for k in start)  # SAM itself is frozen
    lora = [k for k in end if "_up." in k or "_down." in k or ".up." in k or ".down." in k]
    assert lora and any(not torch.equal(end[k], torch.zeros_like(end[k])) for k in lora
                        if "up" in k)
    # every grid point kept (thresholds off); whatever masks the random network draws
    # go through the two-stage NMS and come back as consecutive ids with scores
    settings = {**run.settings, "options": {**run.settings["options"], "min_probability": -1.0,
                                            "min_stability": -1.0, "min_size": 0,
                                            "max_area_fraction": 1.0}}
    labels, scores, _ = cellseg1.predict(run._net, image.image, settings)
    assert labels.shape == image.image.shape and labels.dtype == np.int32
    assert sorted(scores) == list(range(1, labels.max() + 1))
    seg = cellnb.segment(image.image, model=run)
    assert seg.labels.shape == image.image.shape


# ---------------------------------------------------------------------------
# cellpose
# ---------------------------------------------------------------------------
def test_cellpose_fine_tunes_through_train_seg(dataset, tmp_path, image):
    """cellpose's own loop on the reduced CPSAM (cellpose's class, a two-block encoder)."""
    pytest.importorskip("cellpose")
    base = random_checkpoint("cpsam_mini", tmp_path / "cpsam_mini")
    run = train(dataset, recipe="cellpose", model="cpsam_mini", checkpoint=str(base),
                out=tmp_path / "r", epochs=2, steps_per_epoch=1, batch_size=1,
                patch_shape=(256, 256), progress=False)
    h = run.history
    assert list(h["epoch"]) == [0, 1] and np.isfinite(h["train_loss"]).all()
    assert np.isnan(h["val_ap50"].iloc[0]) and np.isfinite(h["val_ap50"].iloc[1])
    assert len(list((run.path / "state" / "cellpose" / "train").glob("*_masks.tif"))) == 2
    seg = cellnb.segment(image.image, model=run)
    assert seg.labels.shape == image.image.shape


def test_cellpose_recipe_errors(dataset, tmp_path):
    pytest.importorskip("cellpose")
    with pytest.raises(ValueError, match="unknown cellpose model"):
        train(dataset, recipe="cellpose", model="cyto9", out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="256 x 256"):
        train(dataset, recipe="cellpose", model="cpsam", out=tmp_path / "b",
              patch_shape=(128, 128), progress=False)


def test_cli_offers_every_recipe(capsys):
    from cellnb.cli import main
    from cellnb.recipes import RECIPES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in RECIPES)


def test_each_recipe_starts_from_its_own_default_model():
    """train() without `model`: vit_b_lm for the SAM recipes, cpsam for cellpose (its own)."""
    from cellnb.recipes import get
    from cellnb.train import _settings

    def model_of(recipe):
        return _settings(get(recipe), recipe, None, 0, {}, epochs=None, batch_size=None,
                         patch_shape=None, lr=None, steps_per_epoch=None)["model"]

    assert model_of("cellpose") == "cpsam" and model_of("samcell") == "vit_b_lm"
    assert model_of("unet") is None
    assert get("cellpose").DEFAULTS["lr"] == 1e-5  # Cellpose-SAM's fine-tuning rate


def test_cellpose_needs_two_epochs(dataset, tmp_path):
    pytest.importorskip("cellpose")
    with pytest.raises(ValueError, match="warms up from 0"):
        train(dataset, recipe="cellpose", out=tmp_path / "a", epochs=1, progress=False)
    assert not (tmp_path / "a").exists()
