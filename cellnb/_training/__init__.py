"""Training machinery behind :func:`cellnb.train` (private).

- ``cellnb._training.runs``: a run folder (checkpoints, losses, resume).
- ``cellnb._training.distributed``: multi-GPU (torchrun / DDP) launch.
- ``cellnb._training.bioimageio_sam``: the standalone architecture file that
  :func:`cellnb.export_model` copies into BioImage Model Zoo packages.

The recipes (one per method) are the plug-ins in :mod:`cellnb.recipes`.
"""
