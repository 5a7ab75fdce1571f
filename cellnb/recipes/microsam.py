"""``microsam`` recipe: μSAM fine-tuning with micro_sam's trainer and instance decoder.

The model is assembled as ``micro_sam.training.train_sam`` assembles it
(``get_trainable_sam_model``'s steps: SAM, optional PEFT, frozen parts,
``TrainableSAM``; then ``ConvertToSamInputs``, ``get_unetr``, AdamW,
ReduceLROnPlateau, ``JointSamTrainer`` with torch_em's ``DiceBasedDistanceLoss``
for the decoder), so a cellnb run trains exactly what ``train_sam`` trains:
interactive segmentation from sampled point / box prompts (iterative, with
``n_sub_iteration`` corrections) and the UNETR decoder for automatic instance
segmentation. cellnb drives it one epoch at a time to evaluate, checkpoint
and resume. The SAM comes from cellnb's loader, so the reduced test
architecture ``vit_mini`` trains through the same code. Inference is the
decoder's foreground + distance maps on windows of ``patch_shape`` (the
training scale: the UNETR resizes every window to SAM's input as it resized
the training patches) and μSAM's seeded watershed. :func:`export_checkpoint` writes the weights in the format
micro_sam's own tools load (``model_state`` + ``decoder_state``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._common import Losses, TorchEmRun, distance_watershed, loaders, normalize

__all__ = ["export_checkpoint"]

DEFAULTS = {"epochs": 10, "batch_size": 1, "patch_shape": (512, 512), "lr": 1e-5,
            "steps_per_epoch": 25}
OPTIONS = {"checkpoint": None, "freeze": None, "lora_rank": None, "n_objects_per_batch": 25,
           "n_sub_iteration": 8, "mask_prob": 0.5, "min_size": 25, "overlap": None,
           "patience": 10}  # micro_sam's train_sam stops after 10 epochs without improvement
USES_MODEL = True
#: Whether the trained model segments whole images at its training scale: tile_shape / halo are no options of its.
DEFAULT_MODEL = "vit_b_lm"  # what train() starts from when no model is named
PROMPTED = False  # True: segments from box prompts (defines box_prompts, segment, ...)
CLASSES = False  # predicts each cell's class itself (defines predict_classes)
_NORMALIZATION = "minmax255"


@dataclass
class Net:
    """The trained SAM (``TrainableSAM``'s ``sam``) and its UNETR decoder (sharing the encoder)."""

    sam: object
    unetr: object
    architecture: str


class _JointLosses(Losses):
    extra = 6  # JointSamTrainer logs the decoder's loss as the 7th extra argument


def _peft(options):
    rank = options.get("lora_rank")
    return {"rank": int(rank)} if rank else None


def check(settings) -> None:
    """Fail early (before a run folder exists): unknown model, missing checkpoint, non-square
    patch (inference windows have the training patches' scale), bad overlap."""
    from ._sam import base

    base(settings, download=False)
    h, w = settings["patch_shape"]
    if h != w:
        raise ValueError("recipe 'microsam' trains and infers on square windows; `patch_shape` "
                         f"must be square, got {tuple(settings['patch_shape'])}.")
    overlap = settings["options"]["overlap"]
    if overlap is not None and not (isinstance(overlap, int) and 0 <= overlap < h // 2):
        raise ValueError(f"`overlap` must be an int in [0, patch side / 2), got {overlap!r}.")


def _overlap(settings) -> int:
    """Overlap of the inference windows: the option, else 64 px (a quarter of small patches)."""
    overlap = settings["options"].get("overlap")  # runs made before the option existed: None
    return min(64, settings["patch_shape"][0] // 4) if overlap is None else int(overlap)


def _trainable_sam(settings, device):
    """micro_sam's ``TrainableSAM`` as ``get_trainable_sam_model`` makes it, from cellnb's loader.

    SAM with the run's starting weights (batch norm kept in eval mode), PEFT
    (LoRA) when ``lora_rank`` is set, the ``freeze`` parts frozen. Returns
    ``(model, architecture, checkpoint state)``.
    """
    from micro_sam.training.trainable_sam import TrainableSAM

    from ._sam import load_sam

    options = settings["options"]
    sam, architecture, state = load_sam(settings, device)
    peft = _peft(options)
    freeze = options["freeze"]
    freeze = [] if freeze is None else [freeze] if isinstance(freeze, str) else list(freeze)
    if peft:
        if architecture == "vit_t":
            raise ValueError("micro_sam has no parameter-efficient fine-tuning (lora_rank) for "
                             "vit_t (MobileSAM).")
        if "image_encoder" in freeze:
            raise ValueError("`lora_rank` adapts the image encoder: it cannot also be frozen.")
        from micro_sam.models.peft_sam import PEFT_Sam

        sam = PEFT_Sam(sam, **peft).sam
    for name, param in sam.named_parameters():
        if any(name.startswith(part) for part in freeze):
            param.requires_grad_(False)
    return TrainableSAM(sam), architecture, state


def build(data, settings, device, state_dir):
    """micro_sam's trainable SAM + UNETR + JointSamTrainer, as train_sam builds them."""
    import torch

    from ..models._architectures import _micro_sam_util

    _micro_sam_util()  # micro_sam imported once with its dependencies' deprecation noise silenced
    from micro_sam.training import joint_sam_trainer
    from micro_sam.training.util import ConvertToSamInputs
    from torch_em.loss import DiceBasedDistanceLoss
    from torch_em.transform.label import PerObjectDistanceTransform

    from ..models._architectures import build_unetr

    options = settings["options"]
    model, architecture, state = _trainable_sam(settings, device)
    convert_inputs = ConvertToSamInputs(transform=model.transform, box_distortion_factor=0.025)
    unetr = build_unetr(model.sam.image_encoder, architecture,
                        decoder_state=state.get("decoder_state"), device=device)
    params = list(model.parameters()) + [p for n, p in unetr.named_parameters()
                                         if not n.startswith("encoder")]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.9,
                                                           patience=3)
    targets = PerObjectDistanceTransform(distances=True, boundary_distances=True,
                                         directed_distances=False, foreground=True,
                                         instances=True, min_size=options["min_size"])
    train_loader, val_loader, record = loaders(data, settings, _NORMALIZATION, targets,
                                               min_instances=2)
    loss = DiceBasedDistanceLoss(mask_distances_in_bg=True)
    trainer = joint_sam_trainer.JointSamTrainer(
        name="microsam", save_root=str(state_dir), train_loader=train_loader,
        val_loader=val_loader, model=model, optimizer=optimizer, device=device,
        lr_scheduler=scheduler, logger=_JointLosses, log_image_interval=10**9,
        mixed_precision=str(device).startswith("cuda"), convert_inputs=convert_inputs,
        n_objects_per_batch=options["n_objects_per_batch"],
        n_sub_iteration=options["n_sub_iteration"], compile_model=False, unetr=unetr,
        instance_loss=loss, instance_metric=loss, early_stopping=None,
        mask_prob=options["mask_prob"])
    net = Net(model.sam, unetr, architecture)
    return TorchEmRun(trainer, net, record, [train_loader.dataset, val_loader.dataset], weights)


def weights(net: Net) -> dict:
    """micro_sam's checkpoint layout: SAM ``model_state`` + UNETR ``decoder_state``."""
    return {"model_state": {k: v.detach().cpu() for k, v in net.sam.state_dict().items()},
            "decoder_state": {k: v.detach().cpu() for k, v in net.unetr.state_dict().items()
                              if not k.startswith("encoder")},
            "architecture": net.architecture}


def load_net(settings, state, device):
    """Rebuild the architecture (no download) and load the trained weights."""
    import torch

    from ..models._architectures import build_sam, build_unetr
    from ..models._architectures import _micro_sam_util

    _micro_sam_util()  # micro_sam imported quietly first
    architecture = state["architecture"]
    with torch.random.fork_rng(devices=[]):
        sam = build_sam(architecture)
        peft = _peft(settings["options"])
        if peft:
            from micro_sam.models.peft_sam import PEFT_Sam

            sam = PEFT_Sam(sam, **peft).sam
    sam.load_state_dict(state["model_state"])
    sam.to(device).eval()
    unetr = build_unetr(sam.image_encoder, architecture, decoder_state=state["decoder_state"],
                        device=device)
    return Net(sam, unetr.eval(), architecture)


def _forward(unetr, image):
    import torch

    device = next(unetr.parameters()).device
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].to(device)
        return unetr(x)[0].float().cpu().numpy()


def predict(net: Net, image, settings, *, min_area=None, progress=False):
    """Automatic instance segmentation with the UNETR decoder: (labels, scores, normalisation).

    Windows of ``patch_shape`` overlapping by ``overlap`` (default 64 px, a
    quarter of patches under 256 px): the training scale, hence no
    `tile_shape` option.
    """
    from .._shared.tiling import predict_windows

    was_training = net.unetr.training
    net.unetr.eval()
    try:
        x, record = normalize(image, _NORMALIZATION)
        maps = predict_windows(lambda t: _forward(net.unetr, t), x, settings["patch_shape"][0],
                               _overlap(settings), progress=progress)
    finally:
        net.unetr.train(was_training)
    min_size = settings["options"]["min_size"] if min_area is None else min_area
    labels, scores = distance_watershed(maps[0], maps[1], maps[2], min_size=min_size)
    return labels, scores, record


def export_checkpoint(trained, path) -> Path:
    """Write the trained weights as a checkpoint micro_sam (and :func:`cellnb.models.load`) loads.

    Parameters
    ----------
    trained : TrainedModel
        A ``microsam`` run.
    path : str or Path
        Output ``.pt`` file.

    Examples
    --------
    >>> export_checkpoint(trained, "my_model.pt")  # doctest: +SKIP
    >>> cellnb.models.load("vit_b", checkpoint="my_model.pt")  # doctest: +SKIP
    """
    import torch

    from .._shared.files import atomic_path

    if trained.recipe != "microsam":
        raise ValueError(f"only microsam runs export a micro_sam checkpoint, not "
                         f"{trained.recipe!r}.")
    state = weights(trained._net)
    state.pop("architecture")
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
