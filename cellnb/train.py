"""Train a segmentation model on an exported dataset; one recipe per module in ``cellnb.recipes``.

:func:`train` is the loop every recipe shares. It reads and checks the
dataset (:mod:`cellnb.dataset`), builds the recipe's run, drives it one
epoch at a time, evaluates the validation split with :func:`cellnb.evaluate`
after every epoch, keeps the best and last weights, stops early when a recipe
sets ``patience``, resumes from ``state/`` after an interruption, and
returns the run loaded as a :class:`cellnb.TrainedModel` (:mod:`cellnb.trained`).
The run folder's layout is described in ``cellnb/_training/runs.py``; data
parallelism under torchrun in ``cellnb/_training/distributed.py``.

Recipes train with torch_em trainers (micro_sam's for ``microsam``), a plain
PyTorch loop (``samcell``, ``cellseg1``, ``cellsam``) or cellpose's own
``train_seg`` (``cellpose``; validated once, after its last epoch, no resume).
Randomness comes from ``seed`` alone: the global generators libraries draw
from are seeded inside the run and given back unchanged.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._training import distributed as _distributed
from ._training import runs as _runs
from ._shared.validation import check_seed
from .dataset import TrainingData, read_dataset
from .recipes import RECIPES
from .trained import TrainedModel, load_trained

__all__ = ["train"]


def _seed_value(seed: int, epoch: int) -> int:
    """The seed of one epoch (-1: initialisation), so a resumed run draws what an
    uninterrupted one would."""
    return seed * 100_003 + epoch + 1


class _TrainerBar:
    """What torch_em's fit takes as its progress bar, feeding the run's one Progress."""

    def __init__(self, bar):
        self.bar = bar

    def __setattr__(self, name, value):
        if name == "bar":
            object.__setattr__(self, name, value)  # torch_em sets `total` per fit; we keep ours

    def set_description(self, *args, **kwargs):
        pass

    def update(self, n=1):
        self.bar.update(n)


def _validate(net, recipe, settings, records) -> dict:
    from .evaluate import evaluate

    # Prompted recipes (cellsam) are validated from the true cells' boxes.
    prompted = recipe.PROMPTED
    preds = [recipe.predict(net, r.image, settings,
                            **({"prompts": recipe.box_prompts(r.labels)} if prompted else {}))[0]
             for r in records]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = evaluate([r.labels for r in records], preds, thresholds=(0.5, 0.75),
                         by="dataset", coco_max_dets=10_000).set_index("threshold")
    return {"val_ap50": table.loc[0.5, "ap"], "val_ap75": table.loc[0.75, "ap"],
            "val_f1": table.loc[0.5, "f1"], "val_seg": table.loc[0.5, "seg"],
            "val_coco_ap": table.loc[0.5, "coco_ap"]}


def train(dataset, *, recipe: str = "unet", out, model: str | None = None, epochs=None,
          batch_size=None, patch_shape=None, lr=None, steps_per_epoch=None,
          device: str = "auto", seed: int = 0, resume: bool = True, overwrite: bool = False,
          progress: bool = True, callback=None, val: str = "val",
          **recipe_options) -> TrainedModel:
    """Train a segmentation model on an exported dataset.

    Parameters
    ----------
    dataset : str, Path or TrainingData
        Folder written by :func:`cellnb.export` (train + val splits; see
        :func:`cellnb.dataset.read_dataset`), or data already read.
    recipe : {"unet", "microsam", "samcell", "cellseg1", "cellsam", "cellpose", "maskrcnn"}, default="unet"
        ``"unet"``: torch_em's 2-D U-Net on foreground + distance targets
        with μSAM's watershed post-processing (CPU-friendly).
        ``"microsam"``: μSAM fine-tuning with micro_sam's trainer and its
        instance-segmentation decoder (options: ``checkpoint``, ``freeze``,
        ``lora_rank``, ``n_objects_per_batch``, ``n_sub_iteration``).
        ``"samcell"``: SAMCell, SAM regressing a distance map (``patience``,
        ``warmup``, ``peak``, ``fill``, ...). ``"cellseg1"``: CellSeg1, LoRA
        on SAM's attention q/v from point prompts, a point grid + two-stage
        NMS at inference (``lora_rank``, ``accumulate``, ``grid``, ...).
        ``"cellsam"``: CellSAM's neck fine-tuning from box prompts; the
        model then segments from boxes (``segment(image, prompts, model=)``).
        ``"cellpose"``: Cellpose-SAM fine-tuned by ``cellpose.train.train_seg``
        (needs the ``cellpose`` extra). ``"maskrcnn"``: torchvision's Mask
        R-CNN (Cell-APP's detector family) learning each cell's mask and
        class from TL (``model`` "maskrcnn_resnet50_fpn_v2" from COCO
        weights, or "maskrcnn_mini"; ``scale``, ``min_score``, ...).
        Each recipe's options and defaults:
        ``cellnb.recipes.get(name).OPTIONS`` / ``.DEFAULTS``.
    out : str or Path
        Run folder (layout in the module docstring).
    model : str, optional
        SAM recipes: the μSAM / SAM model to start from (zoo name, or an
        architecture "vit_t" / "vit_b" / "vit_mini" with ``checkpoint=``;
        default "vit_b_lm"); cellpose: a cellpose model name (default
        "cpsam"). Ignored by unet.
    epochs, batch_size, patch_shape, lr, steps_per_epoch : optional
        Default per recipe (``cellnb.recipes.get(recipe).DEFAULTS``). An
        epoch is `steps_per_epoch` batches of random patches.
    device : str, default="auto"
    seed : int, default=0
        Seeds initialisation, patch sampling and augmentation (per epoch, so
        a resumed run draws what an uninterrupted one would).
    resume : bool, default=True
        Continue the run in `out` from its last finished epoch (weights,
        optimizer, scheduler, step). Raising `epochs` extends a finished run.
        Each resumption is listed in ``trained.json``'s ``"resumed"``: the
        epoch it went on from, when, and the ``SLURM_JOB_ID`` of the batch
        job that did (None outside SLURM). A batch job killed by ``scancel``
        or its walltime is resubmitted with the same command.
    overwrite : bool, default=False
        Delete an existing run in `out` and start again.
    progress : bool, default=True
        Progress bar over training steps.
    callback : callable, optional
        Called as ``callback(done, total)`` in training steps, after every
        step and at the end of each epoch (e.g. for a widget or a job log).
    val : str, default="val"
        Validation split name (see :func:`cellnb.dataset.read_dataset`).
    **recipe_options
        Passed to the recipe.

    Returns
    -------
    trained : TrainedModel
        Loaded with the best weights (highest validation AP@0.5).

    Examples
    --------
    >>> trained = cellnb.train("dataset", recipe="unet", out="runs/unet", epochs=5)  # doctest: +SKIP
    >>> trained.history[["epoch", "train_loss", "val_ap50"]]  # doctest: +SKIP
    >>> seg = cellnb.segment(tl_image, model=trained)  # doctest: +SKIP
    """
    import torch

    from ._shared.progress import Progress, check_callback
    from ._shared.provenance import versions
    from ._shared.torchutil import resolve_device, seeded
    from .recipes import get

    if recipe not in RECIPES:
        raise ValueError(f"`recipe` must be one of {list(RECIPES)}, got {recipe!r}.")
    module = get(recipe)
    unknown = sorted(set(recipe_options) - set(module.OPTIONS))
    if unknown:
        raise TypeError(f"recipe {recipe!r} takes no option(s) {unknown}; its options are "
                        f"{sorted(module.OPTIONS)}.")
    check_seed(seed)
    check_callback(callback)
    settings = _settings(module, recipe, model, seed, recipe_options, epochs=epochs,
                         batch_size=batch_size, patch_shape=patch_shape, lr=lr,
                         steps_per_epoch=steps_per_epoch)
    rank, world = _distributed.init()
    device = resolve_device(device)
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
        torch.cuda.set_device(device)
    if hasattr(module, "check"):
        module.check(settings)

    data = dataset if isinstance(dataset, TrainingData) else read_dataset(dataset, val=val)
    small = [r.id for r in data.train + data.val
             if min(r.image.shape) < 16]
    if small:
        raise ValueError(f"images {small[:3]} are smaller than 16 px; too small to train on.")

    out = Path(out)
    lead = rank == 0  # only the first process writes files
    resuming = _distributed.broadcast(
        _runs.prepare(out, settings, resume, overwrite) if lead else None, world)
    info = {"recipe": recipe, "settings": settings, "dataset": data.source,
            "classes": data.classes, "device": device, "versions": versions(),
            "status": "training", "best_epoch": None,
            "distributed": {"world_size": world} if world > 1 else None}
    history = pd.DataFrame()
    if resuming:
        old = _runs.read_info(out)
        info["best_epoch"] = old.get("best_epoch")
        if old.get("stopped_early"):
            info["stopped_early"] = old["stopped_early"]
        info["resumed"] = list(old.get("resumed", []))
        history = _runs.read_history(out)
    if lead:
        (out / "weights").mkdir(parents=True, exist_ok=True)
        _runs.write_json(out / _runs.INFO, info)

    with seeded(_seed_value(seed, -1)):  # the same initialisation in every process
        run = module.build(data, settings, device, out / "state")
    info["normalization"] = run.normalization
    if world > 1 and getattr(run, "whole_run", False):
        raise ValueError(f"recipe {recipe!r} trains in one process; run it without torchrun.")
    if world > 1:
        run.set_rank(rank)
        _distributed.average_gradients(run.optimizer, world)
    steps = settings["steps_per_epoch"]
    patience = settings["options"].get("patience")  # early stopping on val AP@0.5
    state = {"history": history, "best": history["val_ap50"].max() if len(history) else -np.inf}

    def finish(epoch, losses, seconds):
        """Validate the weights at the end of `epoch`; record them; return whether to stop."""
        row = {"epoch": epoch, "step": (epoch + 1) * steps, **losses,
               **_validate(run.net, module, settings, data.val), "seconds": seconds}
        state["history"] = pd.concat([state["history"], pd.DataFrame([row])], ignore_index=True)
        weights = run.weights()
        _runs.save_weights(out, "last", weights)
        if row["val_ap50"] > state["best"] or info["best_epoch"] is None:
            state["best"] = row["val_ap50"]
            info["best_epoch"] = epoch
            _runs.save_weights(out, "best", weights)
        stop = bool(patience) and epoch - info["best_epoch"] >= patience
        if stop:
            info["stopped_early"] = {"epoch": epoch, "patience": patience}
        _runs.write_history(out, state["history"])
        _runs.write_json(out / _runs.INFO, info)
        return stop, row

    start = 0
    if resuming and run.has_state():
        start = run.load_state()
        state["history"] = state["history"][state["history"]["epoch"] < start]
        done = state["history"]["epoch"].max() if len(state["history"]) else -1
        if lead and done < start - 1:  # killed after the trainer saved, before validation
            finish(start - 1, {"train_loss": np.nan, "val_loss": np.nan}, np.nan)
        if info.get("stopped_early"):  # early stopping ended the run: nothing left to train
            start = settings["epochs"]
    if resuming and lead:  # the run folder says when and where it went on
        info["resumed"].append({"epoch": int(start),
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "slurm_job_id": os.environ.get("SLURM_JOB_ID")})
        _runs.write_json(out / _runs.INFO, info)
    with Progress(settings["epochs"] * steps, f"train {recipe}", progress=progress and lead,
                  callback=callback if lead else None, initial=start * steps,
                  unit="step") as bar:
        if getattr(run, "whole_run", False) and start < settings["epochs"]:
            state["history"] = _fit_whole(run, module, settings, data, out, info, bar, seed)
            start = settings["epochs"]
        for epoch in range(start, settings["epochs"]):
            t0 = time.perf_counter()
            run.set_epoch(epoch)
            with seeded(_seed_value(seed, epoch)), contextlib.redirect_stdout(_io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                losses = run.fit_epoch(_TrainerBar(bar))
            bar.set((epoch + 1) * steps)  # torch_em skips the bar's last update of an epoch
            stop = False
            if lead:
                stop, row = finish(epoch, losses, time.perf_counter() - t0)
                bar.set_postfix(loss=f"{losses['train_loss']:.3f}",
                                val_ap50=f"{row['val_ap50']:.2f}")
            # the others wait here while the first process validates and saves
            if _distributed.broadcast(stop, world):
                break
    history = state["history"]
    if world > 1:  # every process must hold the same weights; record that they do
        sums = [None] * world
        torch.distributed.all_gather_object(sums, _distributed.weights_checksum(run.weights()))
        info["distributed"]["checksums_equal"] = len(set(sums)) == 1
    if lead:
        _runs.plot_history(history, out / "learning_curve.png")
        if len(data.classes) > 1 and not module.CLASSES:
            from .classify import tl_training_table

            _runs.save_classifier(out, *tl_training_table(data.train))
        info["status"] = "finished"
        _runs.write_json(out / _runs.INFO, info)
    if world > 1:
        torch.distributed.barrier()
    return load_trained(out, device=device)


def _settings(module, recipe, model, seed, recipe_options, **given) -> dict:
    """The run's settings: the recipe's defaults where `given` is None, checked."""
    settings = {k: (module.DEFAULTS[k] if v is None else v) for k, v in given.items()}
    for key in ("epochs", "batch_size", "steps_per_epoch"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{key}` must be a positive int, got {value!r}.")
    shape = settings["patch_shape"]
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or any(not isinstance(s, (int, np.integer)) or s < 16 for s in shape)):
        raise ValueError(f"`patch_shape` must be two ints >= 16, got {shape!r}.")
    settings["patch_shape"] = [int(s) for s in shape]
    if not (isinstance(settings["lr"], (int, float)) and settings["lr"] > 0):
        raise ValueError(f"`lr` must be a positive number, got {settings['lr']!r}.")
    if model is not None and not module.USES_MODEL:  # an option never silently ignored
        raise ValueError(f"recipe {recipe!r} trains from random initialisation and starts "
                         f"from no model; got model={model!r}. Leave `model` out, or pick a "
                         f"recipe that fine-tunes one (microsam, cellseg1, samcell, cellsam, "
                         f"cellpose, maskrcnn).")
    if model is None:
        model = module.DEFAULT_MODEL
    settings.update(recipe=recipe, model=model if module.USES_MODEL else None, seed=seed,
                    options={**module.OPTIONS, **recipe_options})
    return settings


def _fit_whole(run, module, settings, data, out, info, bar, seed) -> pd.DataFrame:
    """Recipes whose trainer runs every epoch in one call (cellpose): train, validate once."""
    from ._shared.torchutil import seeded

    t0 = time.perf_counter()
    with seeded(_seed_value(seed, 0)), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run.fit_all(_TrainerBar(bar))
    n, steps = settings["epochs"], settings["steps_per_epoch"]
    history = pd.DataFrame({"epoch": np.arange(n), "step": (np.arange(n) + 1) * steps,
                            "train_loss": result["train_loss"][:n], "val_loss": np.nan})
    last = {"val_loss": result["val_loss"], **_validate(run.net, module, settings, data.val),
            "seconds": time.perf_counter() - t0}
    for key, value in last.items():
        history.loc[n - 1, key] = value
    state = run.weights()
    for name in ("last", "best"):
        _runs.save_weights(out, name, state)
    info["best_epoch"] = n - 1
    info["validated"] = "after the last epoch only (the trainer runs all epochs in one call)"
    _runs.write_history(out, history)
    _runs.write_json(out / _runs.INFO, info)
    return history
