"""``unet`` recipe: torch_em's 2-D U-Net on foreground + distance targets (CPU-friendly).

The network predicts three maps per pixel, as μSAM's instance decoder does:
foreground probability, normalised distance to the cell centre and to the
cell boundary (torch_em's ``PerObjectDistanceTransform``), trained with
torch_em's ``DiceBasedDistanceLoss``. Instances come from the same seeded
watershed μSAM's decoder uses (``recipes._common.distance_watershed``).
"""

from __future__ import annotations

import numpy as np

from ._common import TorchEmRun, Losses, distance_watershed, loaders, normalize, predict_tiled

__all__ = []

DEFAULTS = {"epochs": 20, "batch_size": 4, "patch_shape": (256, 256), "lr": 1e-3,
            "steps_per_epoch": 25}
OPTIONS = {"depth": 4, "initial_features": 16, "min_size": 25}
USES_MODEL = False
#: Whether the trained model tiles large images (tile_shape / halo are its segment options).
DEFAULT_MODEL = None  # what train() starts from when no model is named
PROMPTED = False  # True: segments from box prompts (defines box_prompts, segment, ...)
CLASSES = False  # predicts each cell's class itself (defines predict_classes)
_NORMALIZATION = "percentile"


def _network(options):
    from torch_em.model import UNet2d

    return UNet2d(in_channels=1, out_channels=3, depth=options["depth"],
                  initial_features=options["initial_features"], final_activation="Sigmoid")


def _targets():
    from torch_em.transform.label import PerObjectDistanceTransform

    return PerObjectDistanceTransform(distances=True, boundary_distances=True,
                                      directed_distances=False, foreground=True,
                                      instances=False, min_size=0)


def build(data, settings, device, state_dir):
    """Network, patch loaders and torch_em's DefaultTrainer for one run."""
    import torch
    from torch_em.loss import DiceBasedDistanceLoss
    from torch_em.trainer import DefaultTrainer

    options = settings["options"]
    net = _network(options)
    train_loader, val_loader, record = loaders(data, settings, _NORMALIZATION, _targets())
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings["lr"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                           patience=5)
    loss = DiceBasedDistanceLoss(mask_distances_in_bg=True)
    trainer = DefaultTrainer(
        name="unet", save_root=str(state_dir), train_loader=train_loader,
        val_loader=val_loader, model=net, loss=loss, metric=loss, optimizer=optimizer,
        device=device, lr_scheduler=scheduler, logger=Losses, mixed_precision=False,
        compile_model=False)
    return TorchEmRun(trainer, net, record, [train_loader.dataset, val_loader.dataset],
                       weights)


def load_net(settings, state, device):
    """The U-Net with trained weights, in eval mode."""
    net = _network(settings["options"])
    net.load_state_dict(state["model_state"])
    return net.to(device).eval()


def weights(net) -> dict:
    return {"model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def _forward(net, image):
    import torch

    depth_factor = 2 ** (len(net.encoder.blocks))
    h, w = image.shape
    ph, pw = (-h) % depth_factor, (-w) % depth_factor
    x = np.pad(image, ((0, ph), (0, pw)), mode="reflect") if ph or pw else image
    device = next(net.parameters()).device
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None].to(device))
    return out[0, :, :h, :w].cpu().numpy()


def predict(net, image, settings, *, tile_shape=None, halo=None, min_area=None,
            progress=False):
    """Automatic instance segmentation: (labels, scores, normalisation)."""
    was_training = net.training
    net.eval()
    try:
        x, record = normalize(image, _NORMALIZATION)
        maps = predict_tiled(lambda t: _forward(net, t), x, tile_shape or (1024, 1024),
                             halo or (64, 64), progress=progress)
    finally:
        net.train(was_training)
    min_size = settings["options"]["min_size"] if min_area is None else min_area
    labels, scores = distance_watershed(maps[0], maps[1], maps[2], min_size=min_size)
    return labels, scores, record
