"""Data parallelism under torchrun (private): process group, gradient averaging, checks.

:func:`cellnb.train` runs one process per GPU when started by ``torchrun``;
each process draws its own patches, gradients are averaged before every
optimizer step, and only rank 0 validates and writes.
"""

from __future__ import annotations


def init() -> tuple[int, int]:
    """(rank, world size); under torchrun, joins the process group (NCCL on GPUs, else gloo)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def average_gradients(optimizer, world: int) -> None:
    """Average gradients over processes before every optimizer step (data parallelism).

    Equivalent to DistributedDataParallel's all-reduce, but works whatever
    path the trainer takes through the model (micro_sam's trainer calls the
    encoder directly, which DDP's forward hook would not see). Parameters
    without a gradient on this step count as zeros, so every process sends
    the same buffer.
    """
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    def hook(opt, args, kwargs):
        params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= world
        for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)

    optimizer.register_step_pre_hook(hook)


def weights_checksum(state: dict) -> float:
    return float(sum(v.double().sum() for part in state.values() if isinstance(part, dict)
                     for v in part.values() if hasattr(v, "double")))


def broadcast(value, world: int):
    """Rank 0's `value` in every process (the value itself when not distributed)."""
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
