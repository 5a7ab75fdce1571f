"""Every training recipe learns: trained from scratch on one synthetic image, it segments it.

Each test trains a recipe's own code path (its ``build``, loss, loop and
``predict``) on the reduced test architectures (``vit_mini``: the
segment_anything classes with a 256 px input; torch_em's U-Net) on 2 CPU
cores, and asserts AP@0.5 >= 0.8 on the image it trained on (the
validation split is the same image, unaugmented).

- Learning rates are for training from random initialisation; the recipes'
  defaults are for fine-tuning pretrained weights and stay what the papers
  use. Everything else is the recipe's default, except the sizes that keep a
  test within a minute (epochs, steps, batch, patch, CellSeg1's gradient
  accumulation, μSAM's number of iterative-prompting rounds).
- The image is 128 px and the patch 128 px, so vit_mini sees cells at twice
  their size, as SAM's 1024 px input sees a 512 px patch (the recipes'
  default); samcell's image is 256 px (see its test).
- ``cellsam`` (neck only) and ``cellseg1`` (LoRA only) train part of a
  pretrained SAM, which a fully random network is not. They start from the
  μSAM run of :func:`test_microsam_learns` after the first 4 of its 8 epochs
  (the full-model path, trained on the same image: the stand-in for
  pretrained weights, built once per test module; the run then goes on, and
  after 8 epochs its SAM segments the image as well as CellSeg1's LoRA could
  make it); cellsam's neck is re-initialised first, so all it segments is
  what its own trained part learned. Both tests assert that AP rises from
  where the stand-in leaves it.
- ``cellpose`` trains cellpose's ``CPSAM`` class on a two-block encoder
  (``cpsam_mini``, without CPSAM's layer drop) through ``train_seg``.
- ``maskrcnn`` trains torchvision's Mask R-CNN classes on a ResNet-18 with a
  64-channel FPN (``maskrcnn_mini``) from random init, on the image's cells
  and their classes (interphase / mitotic); it must also classify them.
"""

import numpy as np
import pytest
import torch

import cellnb
from cellnb import train
from cellnb.evaluate import evaluate
from cellnb.io import Record
from cellnb.recipes import _common
from cellnb.recipes.cellsam import box_prompts
from cellnb.testing import (LEARNING_PLANS, learning_image, random_checkpoint,
                            stand_in_checkpoint)

SIZE = dict(patch_shape=(128, 128), progress=False)


def _dataset(pair, folder):
    """The one image as the train split and again as the validation split."""
    records = [Record(name, pair.tl, pair.labels, pair.truth) for name in ("train", "val")]
    return cellnb.export(records, folder / "ds", splits={"train": 1, "val": 1})


@pytest.fixture(scope="module")
def pair():
    return learning_image("unet")  # the 128 px image most plans train on


@pytest.fixture(scope="module")
def dataset(pair, tmp_path_factory):
    return _dataset(pair, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def _ap(labels, pair) -> float:
    table = evaluate([pair.labels], [labels], thresholds=(0.5,))
    return float(table["ap"].iloc[0])


def _learned(run, pair, prompts=None):
    """AP@0.5 of the trained model on its image, after checking the loss went down."""
    h = run.history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    seg = run.segment(pair.tl, prompts) if prompts is not None else run.segment(pair.tl)
    return _ap(seg.labels, pair)


def _train(recipe, runs, tmp_path=None, checkpoint=None, epochs=None):
    """Train `recipe` by its learning plan (or its first `epochs`; again: the run goes on);
    returns (run, pair)."""
    plan = LEARNING_PLANS[recipe]
    pair = learning_image(recipe)
    folder = runs / f"{recipe}-data"
    folder.mkdir(exist_ok=True)
    kwargs = dict(plan["settings"], progress=False)
    if epochs is not None:
        kwargs["epochs"] = epochs
    if plan["start"] == "random":
        kind = "cpsam_mini" if recipe == "cellpose" else "vit_mini"
        checkpoint = random_checkpoint(kind, runs / f"{recipe}-random.pt",
                                       decoder=recipe == "microsam")
        kwargs["model"] = kind
    if checkpoint is not None:
        kwargs.update(checkpoint=str(checkpoint), model=kwargs.get("model", "vit_mini"))
    data = folder / "ds" if (folder / "ds").is_dir() else _dataset(pair, folder)
    return train(data, recipe=recipe, out=runs / recipe, **kwargs), pair


# ---------------------------------------------------------------------------
# the full-model recipes, from random init
# ---------------------------------------------------------------------------
def test_unet_learns(runs):
    run, pair = _train("unet", runs)
    assert _learned(run, pair) >= 0.8


@pytest.fixture(scope="module")
def microsam_runs(runs):
    """The μSAM run after ``stand_in_after`` epochs (a copy: the stand-in for pretrained
    weights), and the same run trained on to the end of its plan."""
    import shutil

    first, _ = _train("microsam", runs, epochs=LEARNING_PLANS["microsam"]["stand_in_after"])
    shutil.copytree(first.path, runs / "microsam-stand-in")
    return cellnb.load_trained(runs / "microsam-stand-in"), _train("microsam", runs)[0]


@pytest.fixture(scope="module")
def microsam_run(microsam_runs):
    return microsam_runs[1]


@pytest.fixture(scope="module")
def stand_in(microsam_runs):
    return microsam_runs[0]


def test_microsam_learns(microsam_run, pair):
    """μSAM's decoder segments automatically, and its SAM segments from boxes too."""
    assert _learned(microsam_run, pair) >= 0.8
    model = cellnb.models.load("vit_mini", checkpoint=microsam_run.path / "weights" / "last.pt",
                               device="cpu")
    seg = model.segment(pair.tl, box_prompts(pair.labels), kind="boxes")
    assert _ap(seg.labels, pair) >= 0.8


@pytest.mark.filterwarnings("ignore::ResourceWarning",  # bioimageio.core leaves files open
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_learned_microsam_model_runs_as_a_model_zoo_package(microsam_run, pair, tmp_path):
    """Exported for the BioImage Model Zoo, the trained μSAM network finds the same cells in
    bioimageio.core (its maps + the documented watershed) as in cellnb."""
    import bioimageio.core
    from bioimageio.spec.model.v0_5 import TensorId

    from cellnb.model_zoo import cells_from_maps

    package = cellnb.export_model(microsam_run, tmp_path / "microsam.zip")
    tl = pair.tl.astype(np.float32)
    sample = bioimageio.core.predict(model=str(package), inputs={TensorId("tl"): tl[None, None]})
    cells = cells_from_maps(np.asarray(sample.members[TensorId("maps")].data))
    np.testing.assert_array_equal(cells, microsam_run.segment(pair.tl).labels)
    assert _ap(cells, pair) >= 0.8


def test_samcell_learns(runs):
    """SAMCell regresses a distance map without prompts; its plan trains on a 256 px image with
    12 cells and 256 px patches (vit_mini sees them at 1x; at 2x the 128 px image needs more
    steps)."""
    run, pair = _train("samcell", runs)
    assert _learned(run, pair) >= 0.8


# ---------------------------------------------------------------------------
# the recipes that train part of a pretrained SAM, from the stand-in
# ---------------------------------------------------------------------------
def test_cellsam_learns_with_its_neck_only(pair, runs, stand_in):
    base = stand_in_checkpoint(stand_in, runs / "cellsam-base.pt",
                               reinitialise=LEARNING_PLANS["cellsam"]["reinitialise"])
    prompts = box_prompts(pair.labels)
    before = cellnb.models.load("vit_mini", checkpoint=base, device="cpu")
    ap_before = _ap(before.segment(pair.tl, prompts, kind="boxes").labels, pair)

    run, _ = _train("cellsam", runs, checkpoint=base)
    ap_after = _learned(run, pair, prompts)
    assert ap_after >= 0.8 and ap_after > ap_before
    state = torch.load(base, weights_only=True)["model_state"]
    end = torch.load(run.path / "weights" / "last.pt", weights_only=True)["model_state"]
    changed = {k for k in state if not torch.equal(state[k], end[k])}
    assert changed and all(k.startswith("image_encoder.neck") for k in changed)


def test_cellseg1_learns_with_lora_only(pair, runs, stand_in):
    from cellnb.recipes import cellseg1

    base = stand_in_checkpoint(stand_in, runs / "cellseg1-base.pt")
    run, _ = _train("cellseg1", runs, checkpoint=base)
    # the stand-in with the recipe's LoRA at initialisation (its up-projections are zero)
    sam = cellnb.models.load("vit_mini", checkpoint=base, device="cpu").predictor.model
    cellseg1._sam_with_lora(sam, run.settings["options"])
    ap_before = _ap(cellseg1.predict(cellseg1.Net(sam, "vit_mini"), pair.tl.astype(np.float32),
                                     run.settings)[0], pair)
    ap_after = _learned(run, pair)
    assert ap_after >= 0.8 and ap_after > ap_before
    start = torch.load(base, weights_only=True)["model_state"]
    end = torch.load(run.path / "weights" / "last.pt", weights_only=True)["model_state"]
    frozen = {k: k if k in end else k.replace(".qkv.", ".qkv.base.").replace("_proj.", "_proj.base.")
              for k in start}
    assert all(torch.equal(start[k], end[v]) for k, v in frozen.items())  # SAM itself frozen
    assert any("q_up" in k or "v_up" in k for k in set(end) - set(frozen.values()))


def test_cellpose_learns(runs):
    """cellpose's own train_seg on cpsam_mini; its plan trains on the 256 px image (cellpose's
    256 px tiles would be mostly padding around the 128 px one)."""
    pytest.importorskip("cellpose")
    run, pair = _train("cellpose", runs)
    assert _learned(run, pair) >= 0.8


def test_maskrcnn_learns_cells_and_their_classes(runs):
    """Mask R-CNN segments the cells from TL and calls each one's class: AP@0.5 >= 0.8 per
    class (the image has 5 interphase cells and 1 mitotic one)."""
    run, pair = _train("maskrcnn", runs)
    assert _learned(run, pair) >= 0.8
    seg = run.segment(pair.tl)
    truth = Record("image", pair.tl, pair.labels, pair.truth)
    table = evaluate([truth], [seg], thresholds=(0.5,), by="class_name").set_index("class_name")
    assert sorted(table.index) == ["interphase", "mitotic"]
    assert (table["ap"] >= 0.8).all(), table[["n_true", "n_pred", "tp", "ap"]]


# ---------------------------------------------------------------------------
# resume: an interrupted run ends where an uninterrupted one does
# ---------------------------------------------------------------------------
RESUMABLE = {
    "microsam": dict(n_sub_iteration=1, n_objects_per_batch=2, overlap=32, decoder=True),
    "samcell": dict(warmup=2, overlap=32, patience=None),
    "cellseg1": dict(accumulate=2, overlap=32, grid=8),
    "cellsam": dict(overlap=32),
    "maskrcnn": dict(model="maskrcnn_mini", warmup=2),  # random init: no checkpoint
}


@pytest.mark.parametrize("recipe", sorted(RESUMABLE))
def test_resumed_run_ends_where_an_uninterrupted_one_does(recipe, dataset, tmp_path,
                                                          monkeypatch):
    options = dict(RESUMABLE[recipe])
    if "model" not in options:
        base = random_checkpoint("vit_mini", tmp_path / "base.pt",
                                 decoder=options.pop("decoder", False))
        options.update(model="vit_mini", checkpoint=str(base))
    settings = dict(recipe=recipe, epochs=3, steps_per_epoch=2, batch_size=1, lr=1e-3,
                    **options, **SIZE)
    whole = train(dataset, out=tmp_path / "whole", **settings)

    calls = {"n": 0}
    original = _common.PatchDataset.__getitem__

    def dying(self, index):
        if not self.fixed:
            calls["n"] += 1
            if calls["n"] > 2 * 2 + 1:  # mid-way through the third epoch
                raise KeyboardInterrupt("killed")
        return original(self, index)

    monkeypatch.setattr(_common.PatchDataset, "__getitem__", dying)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, out=tmp_path / "resumed", **settings)
    monkeypatch.setattr(_common.PatchDataset, "__getitem__", original)
    resumed = train(dataset, out=tmp_path / "resumed", **settings)
    assert list(resumed.history["epoch"]) == [0, 1, 2]
    a = torch.load(whole.path / "weights" / "last.pt", weights_only=True)
    b = torch.load(resumed.path / "weights" / "last.pt", weights_only=True)
    for part in ("model_state", "decoder_state"):
        for key in a.get(part, {}):
            torch.testing.assert_close(a[part][key], b[part][key], msg=f"{part}.{key}")
    np.testing.assert_allclose(whole.history["train_loss"], resumed.history["train_loss"],
                               rtol=1e-5)


# ---------------------------------------------------------------------------
# the scale rule (issue 22, defect 2): inference windows have the training patch's side
# ---------------------------------------------------------------------------
def _settings(recipe, patch=128, overlap=32):
    from cellnb.recipes import get

    return {"patch_shape": (patch, patch), "options": {**get(recipe).OPTIONS, "overlap": overlap}}


@pytest.fixture(scope="module")
def mini_sam():
    from cellnb.models._architectures import build_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_sam("vit_mini").eval()


@pytest.mark.parametrize("shape", [(60, 90), (300, 200)])
@pytest.mark.parametrize("recipe", ["samcell", "cellseg1"])
def test_sam_windows_have_the_patch_side(recipe, shape, mini_sam, monkeypatch):
    """A window smaller than the patch (a small image) is padded to it, not blown up."""
    from cellnb.recipes import _sam, get

    seen = []
    original = _sam.to_sam
    monkeypatch.setattr(_sam, "to_sam", lambda w, size, **kw: seen.append(tuple(w.shape[-2:]))
                        or original(w, size, **kw))
    settings = _settings(recipe)
    if recipe == "cellseg1":
        settings["options"]["grid"] = 4
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    labels = get(recipe).predict(_sam.SamNet(mini_sam, "vit_mini"), image, settings)[0]
    assert labels.shape == shape
    assert seen and set(seen) == {(128, 128)}


@pytest.mark.parametrize("shape", [(60, 90), (300, 200)])
def test_microsam_windows_have_the_patch_side(shape, mini_sam, monkeypatch):
    from cellnb.models._architectures import build_unetr
    from cellnb.recipes import microsam

    seen = []
    original = microsam._forward
    monkeypatch.setattr(microsam, "_forward",
                        lambda unetr, tile: seen.append(tile.shape) or original(unetr, tile))
    net = microsam.Net(mini_sam, build_unetr(mini_sam.image_encoder, "vit_mini"), "vit_mini")
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    labels = microsam.predict(net, image, _settings("microsam"))[0]
    assert labels.shape == shape and seen and set(seen) == {(128, 128)}


@pytest.mark.parametrize("shape, embedded, tiling", [
    ((60, 90), (128, 128), (None, None)),
    ((300, 200), (384, 288), ((96, 96), (16, 16))),
])
def test_cellsam_embeds_windows_of_the_patch_side(shape, embedded, tiling, mini_sam,
                                                  monkeypatch):
    """Small images are padded to the patch; large ones to whole tiles, so no border tile is
    a sliver that micro_sam would blow up to SAM's input. Cells come back in the image frame."""
    from cellnb.models import SamModel
    from cellnb.recipes import _sam, cellsam

    seen = []
    original = SamModel.segment

    def spy(self, image, prompts=None, **options):
        seen.append((image.shape, options["tile_shape"], options["halo"]))
        return original(self, image, prompts, **options)

    monkeypatch.setattr(SamModel, "segment", spy)
    labels = np.zeros(shape, np.int32)
    labels[10:30, 20:45] = 3
    labels[35:55, 50:80] = 5
    image = np.random.default_rng(0).random(shape).astype(np.float32) + (labels > 0)
    seg = cellsam.segment(_sam.SamNet(mini_sam, "vit_mini"), image, box_prompts(labels),
                          _settings("cellsam"))
    assert seen == [(embedded, *tiling)]
    assert seg.labels.shape == shape
    kept = seg.table[seg.table["status"] == "kept"]
    for row in kept.itertuples():
        cell = seg.labels == row.label
        assert row.area == cell.sum() and row.y1 <= shape[0] and row.x1 <= shape[1]
