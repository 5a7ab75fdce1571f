"""``cellpose`` recipe: fine-tune Cellpose-SAM (Pachitariu, Rariden & Stringer) with cellpose itself.

The train and validation splits are written in cellpose's layout
(``<id>_img.tif`` / ``<id>_masks.tif``), read back with
``cellpose.io.load_train_test_data`` and trained with
``cellpose.train.train_seg``: cellpose's own loop, loss (flows + cell
probability), augmentation, AdamW and learning-rate schedule (warm-up over
10 epochs), starting from ``cpsam`` (or any cellpose 4 model). Inference is
``CellposeModel.eval`` (flow dynamics); cellnb evaluates the result like
every other recipe.

cellpose is an optional dependency (``pip install cellnb[cellpose]``); its
weights come from cellpose's own cache (``~/.cellpose/models`` or
``$CELLPOSE_LOCAL_MODELS_PATH``). ``train_seg`` runs all epochs in one call
and has no resume, so cellnb validates once, after the last epoch (the
history still lists cellpose's training loss per epoch), and an
interrupted run starts again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..models._cellpose import cached, import_cellpose, quiet, weights_path

__all__ = ["cached", "write_layout", "weights_path"]

DEFAULTS = {"epochs": 100, "batch_size": 1, "patch_shape": (256, 256), "lr": 1e-5,
            "steps_per_epoch": 8}
DEFAULT_MODEL = "cpsam"  # what train() starts from when no model is named
OPTIONS = {"checkpoint": None, "weight_decay": 0.1, "min_train_masks": 1, "flow_threshold": 0.4,
           "cellprob_threshold": 0.0, "min_size": 15}
USES_MODEL = True
#: Whether the trained model segments whole images at its training scale: tile_shape / halo are no options of its.
PROMPTED = False  # True: segments from box prompts (defines box_prompts, segment, ...)
CLASSES = False  # predicts each cell's class itself (defines predict_classes)
WHOLE_RUN = True  # cellpose trains every epoch in one call
_NORMALIZATION = "cellpose (1st-99th percentile per image)"


def _architecture(settings) -> str:
    """``cpsam_mini`` (cellnb's reduced CPSAM, for tests) or ``cpsam`` (every cellpose 4 model)."""
    return "cpsam_mini" if settings["model"] == "cpsam_mini" else "cpsam"


def _base(settings) -> str:
    """Path of the cellpose model file the run starts from (cellpose's cache, or checkpoint)."""
    return weights_path(settings["model"], settings["options"].get("checkpoint"))


def check(settings) -> None:
    """Fail early: cellpose missing, unknown model, missing checkpoint, patch not 256."""
    models, _, _ = import_cellpose()
    checkpoint = settings["options"].get("checkpoint")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist.")
    if checkpoint is None and settings["model"] == "cpsam_mini":
        raise ValueError("'cpsam_mini' is cellnb's reduced test network and has no pretrained "
                         "weights: pass checkpoint=PATH.")
    if checkpoint is None and settings["model"] not in models.MODEL_NAMES:
        raise ValueError(f"unknown cellpose model {settings['model']!r}; cellpose has "
                         f"{models.MODEL_NAMES}, or pass checkpoint=PATH.")
    if settings["epochs"] < 2:
        raise ValueError("cellpose's learning rate warms up from 0 during its first epochs, so "
                         f"one epoch trains nothing: `epochs` must be >= 2, got "
                         f"{settings['epochs']}.")
    if tuple(settings["patch_shape"]) != (256, 256):
        raise ValueError("Cellpose-SAM trains on 256 x 256 tiles (cellpose's bsize); "
                         f"`patch_shape` must be (256, 256), got {tuple(settings['patch_shape'])}.")


def write_layout(records, folder) -> Path:
    """Write records (``id``, ``image``, ``labels``) as cellpose's ``_img`` / ``_masks`` tifs.

    Examples
    --------
    >>> write_layout(data.train, "cellpose/train")  # doctest: +SKIP
    """
    import re

    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, r in enumerate(records):
        stem = f"{k:04d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", str(r.id))
        tifffile.imwrite(folder / f"{stem}_img.tif", np.asarray(r.image, np.float32))
        tifffile.imwrite(folder / f"{stem}_masks.tif", np.asarray(r.labels, np.int32))
    return folder


class Run:
    """Trains with one ``train_seg`` call (``fit_all``); the driver validates afterwards."""

    whole_run = True
    datasets: list = []

    def __init__(self, data, settings, device, state_dir):
        self.data, self.settings, self.device = data, settings, device
        self.state_dir = Path(state_dir)
        self.normalization = {"method": _NORMALIZATION}
        self.net = None

    def has_state(self) -> bool:
        return False  # train_seg has no resume

    def set_epoch(self, epoch: int) -> None:
        pass

    def fit_all(self, progress) -> dict:
        """Run cellpose's training; per-epoch train losses and the last validation loss."""
        from ..models._architectures import cellpose_model

        models, train, cp_io = import_cellpose()
        options, settings = self.settings["options"], self.settings
        base = _base(settings)
        folder = self.state_dir / "cellpose"
        write_layout(self.data.train, folder / "train")
        write_layout(self.data.val, folder / "val")
        with quiet():
            out = cp_io.load_train_test_data(str(folder / "train"), str(folder / "val"),
                                             image_filter="_img", mask_filter="_masks")
            images, labels, _, test_images, test_labels = out[:5]
            model = cellpose_model(_architecture(settings), base, self.device)
            path, train_losses, test_losses = train.train_seg(
                model.net, train_data=images, train_labels=labels, test_data=test_images,
                test_labels=test_labels, batch_size=settings["batch_size"],
                learning_rate=settings["lr"], weight_decay=options["weight_decay"],
                n_epochs=settings["epochs"], save_path=str(self.state_dir),
                model_name="cellpose_model", min_train_masks=options["min_train_masks"],
                nimg_per_epoch=settings["batch_size"] * settings["steps_per_epoch"],
                nimg_test_per_epoch=len(test_images))
        progress.update(settings["epochs"] * settings["steps_per_epoch"])
        self.net = model
        tested = [float(v) for v in np.asarray(test_losses) if v > 0]
        return {"train_loss": [float(v) for v in train_losses],
                "val_loss": tested[-1] if tested else float("nan")}

    def weights(self) -> dict:
        return {"cellpose_state": {k: v.detach().cpu() for k, v in
                                   self.net.net.state_dict().items()},
                "architecture": _architecture(self.settings)}


def build(data, settings, device, state_dir):
    return Run(data, settings, device, state_dir)


def load_net(settings, state, device):
    """A ``CellposeModel`` holding the trained weights."""
    import tempfile

    import torch

    from ..models._architectures import cellpose_model

    import_cellpose()
    with tempfile.TemporaryDirectory(prefix="cellnb-cellpose-") as tmp:
        path = os.path.join(tmp, "model")
        torch.save(state["cellpose_state"], path)
        with quiet():
            return cellpose_model(state.get("architecture", "cpsam"), path, device)


def predict(net, image, settings, *, min_area=None, progress=False):
    """Cellpose's own inference (flows + dynamics): (labels, scores, normalisation).

    cellpose tiles the image itself (256 px tiles), so there is no
    `tile_shape` option. Every cell scores 1 (cellpose gives no per-cell score).
    """
    from skimage.segmentation import relabel_sequential

    options = settings["options"]
    with quiet():
        masks = net.eval(np.asarray(image, np.float32), flow_threshold=options["flow_threshold"],
                         cellprob_threshold=options["cellprob_threshold"],
                         min_size=options["min_size"] if min_area is None else min_area)[0]
    labels = relabel_sequential(np.asarray(masks).astype(np.int32))[0]
    return labels, {int(i): 1.0 for i in range(1, int(labels.max()) + 1)}, {
        "method": _NORMALIZATION}
