"""What the SAM-based recipes (cellseg1, samcell, cellsam) share.

- loading SAM (a micro_sam zoo name, or an architecture + checkpoint;
  cellnb's reduced ``vit_mini`` too, ``cellnb.models._architectures``),
- **the scale rule**: the network sees every window of ``patch_shape``
  pixels resized to its own input side (:func:`input_size`: 1024 for SAM,
  256 for vit_mini), at training and at inference alike. Training crops of
  images smaller than the patch are reflect-padded to it (with their labels,
  ``_common.pad_pair``), and so are inference windows (:func:`pad_to`), so
  cells are always seen at ``input_size / patch`` times their size,
- the encoder split into trunk and neck (CellSAM trains only the neck),
- LoRA adapters on attention query / value projections (CellSeg1),
- learning-rate schedules stepped per optimizer step,
- :class:`LoopRun`, a plain PyTorch training loop with the interface
  :func:`cellnb.train` drives (one epoch at a time, resumable from
  ``state/latest.pt``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..models._architectures import input_size  # noqa: F401  (the side of the network's input)
from .._shared.tiling import pad_to, window_starts  # noqa: F401  (the SAM recipes' windows)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------
def base(settings, download=True):
    """(model_type, checkpoint path) a SAM run starts from (:func:`cellnb.models.resolve`)."""
    from ..models._zoo import resolve

    return resolve(settings["model"], checkpoint=settings["options"].get("checkpoint"),
                   download=download)


def check(settings) -> None:
    """Fail before a run folder exists: unknown model, missing checkpoint, non-square patch."""
    base(settings, download=False)
    h, w = settings["patch_shape"]
    if h != w:
        raise ValueError(f"recipe {settings['recipe']!r} feeds SAM square windows; "
                         f"`patch_shape` must be square, got {tuple(settings['patch_shape'])}.")


def load_sam(settings, device):
    """``(sam, architecture, state)``: the SAM network (segment_anything ``Sam``) the run
    starts from, its architecture and the checkpoint's state (a zoo model's
    ``decoder_state`` is in it; recipes that do not need it ignore it).
    """
    from ..models._architectures import architecture_of
    from ..models._architectures import load_sam as load

    model_type, checkpoint = base(settings)
    sam, state = load(model_type, checkpoint, device)
    freeze_batchnorm(sam)
    architecture = architecture_of(model_type)
    return sam, architecture, state


def freeze_batchnorm(module) -> int:
    """Keep every batch-norm layer of `module` in eval mode, even under ``module.train()``.

    MobileSAM's TinyViT (vit_t) has batch-norm layers; trained in train mode
    on batches of one augmented patch, their running statistics drift away
    from what the network needs, and the eval-mode network (inference)
    predicts something else than the train-mode one that was fitted. Frozen
    statistics make training and inference compute the same function; the
    layers' affine weights still train. Returns the number of layers frozen.
    """
    import types

    import torch

    def stay_in_eval(self, mode=True):
        return torch.nn.Module.train(self, False)

    n = 0
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.eval()
            layer.train = types.MethodType(stay_in_eval, layer)
            n += 1
    return n


def empty_sam(architecture: str):
    """SAM of `architecture` without loading weights (for :func:`load_net`)."""
    import torch

    from ..models._architectures import build_sam

    with torch.random.fork_rng(devices=[]):
        return build_sam(architecture)


def sam_predictor(sam, architecture: str, name: str):
    """A :class:`cellnb.models.SamModel` around a trained SAM, for :func:`cellnb.segment`."""
    import hashlib

    from segment_anything import SamPredictor

    from ..models import SamModel

    predictor = SamPredictor(sam)
    predictor.model_type = architecture
    digest = hashlib.sha256()
    for value in sam.state_dict().values():
        # the first 1024 values of each tensor identify the weights without copying them all
        digest.update(value.detach().flatten()[:1024].cpu().float().numpy().tobytes())
    device = str(next(sam.parameters()).device)
    return SamModel(name=name, predictor=predictor, decoder=None,
                    weights_hash="sha256:" + digest.hexdigest()[:16], device=device)


class SamNet:
    """A trained SAM (``sam``) and its architecture name: what the SAM recipes predict with."""

    def __init__(self, sam, architecture: str):
        self.sam = sam
        self.architecture = architecture


def sam_weights(net: SamNet) -> dict:
    """The whole SAM state (CPU tensors) and its architecture."""
    return {"model_state": {k: v.detach().cpu() for k, v in net.sam.state_dict().items()},
            "architecture": net.architecture}


def load_sam_net(state: dict, device, prepare=None) -> SamNet:
    """Rebuild the architecture (no download), `prepare` it (e.g. add LoRA), load `state`."""
    sam = empty_sam(state["architecture"])
    if prepare is not None:
        prepare(sam)
    sam.load_state_dict(state["model_state"])
    return SamNet(sam.to(device).eval(), state["architecture"])


def instance_target(labels):
    """Patch target of the prompted recipes: the label image itself, (1, H, W) float."""
    return labels[None].astype(np.float32)


# ---------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------
def to_sam(windows, size: int, *, normalize_pixels: bool = True):
    """(B, 1, P, P) tensor of windows -> (B, 3, size, size) SAM input (`size`: :func:`input_size`).

    Windows are bilinearly resized to the network's input side. With
    `normalize_pixels` they are 0-255 images and get SAM's pixel mean / std;
    otherwise they are already standardised (SAMCell's CLAHE + z-score) and
    pass as they are.
    """
    import torch
    import torch.nn.functional as F

    x = F.interpolate(windows.float(), size=(size, size), mode="bilinear",
                      align_corners=False).repeat(1, 3, 1, 1)
    if normalize_pixels:
        mean = torch.tensor([123.675, 116.28, 103.53], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([58.395, 57.12, 57.375], device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


def to_window(masks, size: int):
    """SAM's (N, C, S/4, S/4) low-resolution output resized to the (N, C, P, P) window."""
    import torch.nn.functional as F

    return F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False)


def encode(sam, x, *, neck: bool = True):
    """Image embeddings (B, 256, 64, 64 for SAM); ``neck=False`` gives the trunk's features."""
    import torch

    encoder = sam.image_encoder
    if neck:
        return encoder(x)
    saved = encoder.neck
    encoder.neck = torch.nn.Identity()
    try:
        return encoder(x)
    finally:
        encoder.neck = saved


def decode(sam, embedding, *, points=None, labels=None, boxes=None):
    """Mask logits (N, 1, S/4, S/4) and predicted IoU (N, 1) of N prompts on one image.

    :func:`cellnb.segment`'s SAM call, with one mask per prompt.
    """
    from ..models._sam import _sam_decode

    return _sam_decode(sam, embedding, points=points, labels=labels, boxes=boxes)


# ---------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------
def _lora_pair(n_in: int, n_out: int, rank: int, device):
    import torch

    down = torch.nn.Linear(n_in, rank, bias=False, device=device)
    up = torch.nn.Linear(rank, n_out, bias=False, device=device)
    torch.nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
    torch.nn.init.zeros_(up.weight)  # the adapted layer starts equal to the frozen one
    return down, up


def _make_lora_classes():
    import torch

    class LoRAQV(torch.nn.Module):
        """A frozen linear layer plus low-rank updates on chosen output features.

        ``out = W x + b``, then ``out[q] += B_q A_q drop(x)`` and
        ``out[v] += B_v A_v drop(x)``: LoRA on the query and value parts of a
        fused qkv projection (their positions differ between SAM's ViT and
        MobileSAM's TinyViT, hence explicit indices).
        """

        def __init__(self, base, q_index, v_index, rank, dropout):
            super().__init__()
            self.base = base
            device = base.weight.device
            self.register_buffer("q_index", torch.as_tensor(q_index, device=device))
            self.register_buffer("v_index", torch.as_tensor(v_index, device=device))
            self.q_down, self.q_up = _lora_pair(base.in_features, len(q_index), rank, device)
            self.v_down, self.v_up = _lora_pair(base.in_features, len(v_index), rank, device)
            self.dropout = torch.nn.Dropout(dropout)

        def forward(self, x):
            out = self.base(x)
            h = self.dropout(x)
            delta = torch.zeros_like(out)
            delta = delta.index_add(-1, self.q_index, self.q_up(self.q_down(h)))
            delta = delta.index_add(-1, self.v_index, self.v_up(self.v_down(h)))
            return out + delta

    class LoRALinear(torch.nn.Module):
        """A frozen linear layer plus ``B A drop(x)`` (the decoder's q / v projections)."""

        def __init__(self, base, rank, dropout):
            super().__init__()
            self.base = base
            self.down, self.up = _lora_pair(base.in_features, base.out_features, rank,
                                            base.weight.device)
            self.dropout = torch.nn.Dropout(dropout)

        def forward(self, x):
            return self.base(x) + self.up(self.down(self.dropout(x)))

    return LoRAQV, LoRALinear


def add_lora(sam, *, rank: int = 4, dropout: float = 0.1) -> int:
    """Freeze `sam` and add LoRA to every attention query / value projection.

    Image encoder: the fused ``qkv`` of each attention block (ViT layout
    ``[q | k | v]``; TinyViT layout per head ``[q_h | k_h | v_h]``). Mask
    decoder: every ``q_proj`` / ``v_proj``. Returns the number of trainable
    parameters.
    """
    LoRAQV, LoRALinear = _make_lora_classes()
    for p in sam.parameters():
        p.requires_grad_(False)
    for module in list(sam.image_encoder.modules()):
        qkv = getattr(module, "qkv", None)
        if qkv is None or not hasattr(qkv, "in_features"):
            continue
        if hasattr(module, "key_dim"):  # TinyViT: heads x [key_dim q | key_dim k | d v]
            kd, d, heads = module.key_dim, module.d, module.num_heads
            per = 2 * kd + d
            q = np.concatenate([np.arange(kd) + h * per for h in range(heads)])
            v = np.concatenate([np.arange(d) + h * per + 2 * kd for h in range(heads)])
        else:  # ViT: [q | k | v], each `dim` wide
            dim = qkv.out_features // 3
            q, v = np.arange(dim), np.arange(2 * dim, 3 * dim)
        module.qkv = LoRAQV(qkv, q, v, rank, dropout)
    for module in list(sam.mask_decoder.modules()):
        for name in ("q_proj", "v_proj"):
            layer = getattr(module, name, None)
            if layer is not None and hasattr(layer, "in_features"):
                setattr(module, name, LoRALinear(layer, rank, dropout))
    return sum(p.numel() for p in sam.parameters() if p.requires_grad)


def lora_train_mode(sam) -> None:
    """Frozen SAM in eval mode (batch-norm statistics kept), LoRA adapters training (dropout)."""
    sam.eval()
    for module in sam.modules():
        if type(module).__name__ in ("LoRAQV", "LoRALinear"):
            module.train()


# ---------------------------------------------------------------------------
# schedules (multipliers of the base lr, per optimizer step)
# ---------------------------------------------------------------------------
def one_cycle(total: int, *, peak: float = 0.3, div: float = 25.0, final_div: float = 1e4):
    """PyTorch's OneCycleLR shape (cosine up to the max lr at `peak`, cosine down) as a
    multiplier of the max lr; clamped after `total` steps so a run can be extended.

    Examples
    --------
    >>> f = one_cycle(10)
    >>> round(f(0), 3), round(f(3), 3), round(f(10), 6)
    (0.04, 1.0, 4e-06)
    """
    up = max(1, int(round(peak * total)))
    low, end = 1.0 / div, 1.0 / (div * final_div)

    def factor(step):
        if step <= up:
            return low + (1 - low) * (1 - math.cos(math.pi * step / up)) / 2
        t = min(1.0, (step - up) / max(1, total - up))
        return end + (1 - end) * (1 + math.cos(math.pi * t)) / 2

    return factor


def warmup_linear(total: int, *, warmup: int = 250):
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total` (SAMCell).

    Examples
    --------
    >>> f = warmup_linear(1000, warmup=250)
    >>> f(0), f(125), f(250), f(625), f(1000)
    (0.0, 0.5, 1.0, 0.5, 0.0)
    """
    def factor(step):
        if step < warmup:
            return step / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


# ---------------------------------------------------------------------------
# the training loop
# ---------------------------------------------------------------------------
class LoopRun:
    """A plain PyTorch loop with the run interface :func:`cellnb.train` drives.

    ``step_loss(batch, train)`` returns the loss of one batch; with `train`
    it has already called ``backward`` (recipes that backpropagate in
    pieces do it themselves) and returns a float. The optimizer steps every
    `accumulate` batches and at the end of each epoch; the schedule is
    stepped per optimizer step. State (trainable weights, optimizer,
    schedule, epoch, and every buffer) goes to ``state_dir/latest.pt`` after
    every epoch.
    ``train_mode(module)`` puts the network in training mode (default
    ``module.train()``); recipes with frozen parts keep those in eval mode.
    """

    def __init__(self, net, step_loss, optimizer, scheduler, train_loader, val_loader,
                 normalization: dict, weights, state_dir, *, accumulate: int = 1,
                 train_mode=None):
        self.net = net
        self.step_loss = step_loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loaders = (train_loader, val_loader)
        self.datasets = [train_loader.dataset, val_loader.dataset]
        self.normalization = normalization
        self._weights = weights
        self.state_dir = Path(state_dir)
        self.accumulate = int(accumulate)
        # what trains: frozen parts stay in eval mode (batch-norm statistics unchanged)
        self.train_mode = train_mode or (lambda module: module.train())
        self.epoch = 0
        self.rank = 0

    @property
    def state_file(self) -> Path:
        return self.state_dir / "latest.pt"

    def _module(self):
        return self.net if hasattr(self.net, "parameters") else self.net.sam

    def _trainable(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self._module().named_parameters()
                if v.requires_grad}

    def _buffers(self) -> dict:
        """Every buffer (batch-norm statistics, LoRA indices): small, and part of the state."""
        return {k: v.detach().cpu().clone() for k, v in self._module().named_buffers()}

    def has_state(self) -> bool:
        return self.state_file.is_file()

    def load_state(self) -> int:
        import torch

        from .._shared.torchutil import load_state

        state = load_state(self.state_file)
        params = dict(self._module().named_parameters())
        buffers = dict(self._module().named_buffers())
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
            for name, value in state.get("buffers", {}).items():
                buffers[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        return self.epoch

    def weights(self) -> dict:
        return self._weights(self.net)

    def set_rank(self, rank: int) -> None:
        self.rank = int(rank)
        for ds in self.datasets:
            ds.rank = rank if not ds.fixed else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for ds in self.datasets:
            ds.set_epoch(epoch)

    def _step(self):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def fit_epoch(self, progress) -> dict:
        import torch

        from .._shared.files import atomic_path

        train_loader, val_loader = self.loaders
        module = self._module()
        self.train_mode(module)
        self.optimizer.zero_grad(set_to_none=True)
        losses, pending = [], 0
        for batch in train_loader:
            losses.append(float(self.step_loss(batch, True)))
            pending += 1
            if pending == self.accumulate:
                self._step()
                pending = 0
            progress.update(1)
        if pending:
            self._step()
        module.eval()
        with torch.no_grad():
            val = [float(self.step_loss(batch, False)) for batch in val_loader]
        self.epoch += 1
        if self.rank == 0:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            state = {"trainable": self._trainable(), "buffers": self._buffers(),
                     "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "epoch": self.epoch}
            with atomic_path(self.state_file) as tmp:
                torch.save(state, tmp)
        return {"train_loss": float(np.mean(losses)), "val_loss": float(np.mean(val))}
