"""Train a segmentation model on an exported dataset; one recipe per module in ``cellnb.recipes``.

A training run is a folder::

    out/
      trained.json          recipe, settings, dataset provenance, classes, normalisation, status
      history.csv           one row per epoch: train/val loss, val AP@0.5/0.75, F1, SEG, seconds
      learning_curve.png    the same, as a picture
      weights/best.pt       weights of the epoch with the best validation AP@0.5
      weights/last.pt       weights after the last finished epoch
      classifier.pkl        TL-only cell classifier (datasets with several classes)
      state/                the trainer's own resume state (optimizer, scheduler, step)

Recipes train with torch_em trainers (micro_sam's for ``microsam``), a plain
PyTorch loop (``samcell``, ``cellseg1``, ``cellsam``) or cellpose's own
``train_seg`` (``cellpose``); cellnb drives them one epoch at a time,
evaluates the validation split with :func:`cellnb.evaluate` after every
epoch, stops early when a recipe sets ``patience``, and resumes from
``state/`` after an interruption (cellpose: validated once, no resume).
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._files import atomic_path, sha256

__all__ = ["train", "load_trained", "read_dataset", "TrainedModel", "TrainingData", "RECIPES"]

RECIPES = ("unet", "microsam", "samcell", "cellseg1", "cellsam", "cellpose")
_SETTING_KEYS = ("recipe", "model", "epochs", "batch_size", "patch_shape", "lr", "seed",
                 "steps_per_epoch", "options")
# Settings that may change between a run and its resumption.
_RESUMABLE = ("epochs",)


# ---------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Images and label images of a dataset's train and validation splits.

    Attributes
    ----------
    train, val : list of Record
        ``image`` (2-D; RGB averaged to grey) and ``labels`` per image.
    classes : list of str
        Cell categories present in the train split (one entry: no classes).
    source : dict
        Where the data came from: folder, split files and their sha256,
        counts, and how the validation split was made.
    """

    train: list
    val: list
    classes: list = field(default_factory=list)
    source: dict = field(default_factory=dict)


def _split_json(folder: Path, split: str) -> Path | None:
    root = folder / split
    if not root.is_dir():
        return None
    files = sorted(root.glob("*.json"))
    if len(files) != 1:
        raise ValueError(f"split folder {root} must hold exactly one COCO .json, found "
                         f"{[f.name for f in files]}.")
    return files[0]


def _as_grey(record, split):
    image = np.asarray(record.image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3].astype(np.float32).mean(-1)
    if image.ndim != 2:
        raise ValueError(f"{split} image {record.id!r}: expected a 2-D (or RGB) image, got "
                         f"shape {image.shape}.")
    if not np.isfinite(image).all():
        raise ValueError(f"{split} image {record.id!r} holds NaN or infinite values.")
    if image.shape != record.labels.shape:
        raise ValueError(f"{split} image {record.id!r}: image shape {image.shape} does not "
                         f"match its labels {record.labels.shape}.")
    if image.min() == image.max():
        raise ValueError(f"{split} image {record.id!r} is constant ({image.min()}); nothing "
                         "to learn from.")
    record.image = image
    return record


def _holdout(records, fraction):
    """Split each record into a top part (train) and a bottom strip (val)."""
    import copy

    train, val = [], []
    for r in records:
        h = r.image.shape[0]
        cut = h - max(1, int(round(h * fraction)))
        top, bottom = copy.copy(r), copy.copy(r)
        top.image, top.labels = r.image[:cut], r.labels[:cut]
        bottom.image, bottom.labels = r.image[cut:], r.labels[cut:]
        bottom.id = f"{r.id}[{cut}:]"
        top.id = f"{r.id}[:{cut}]"
        train.append(top)
        val.append(bottom)
    return train, val


def read_dataset(dataset, *, val: str = "val", val_fraction: float = 0.2,
                 min_objects: int = 1) -> TrainingData:
    """Read and check the train and validation splits of an exported dataset.

    Parameters
    ----------
    dataset : str or Path
        Folder written by :func:`cellnb.export` (or any COCO dataset laid
        out as ``<split>/<name>_<split>.json`` + ``<split>/images/``, such as
        Cell-APP's).
    val : str, default="val"
        Name of the validation split. When the dataset has none, the bottom
        `val_fraction` of every train image is held out instead (with a
        warning).
    val_fraction : float, default=0.2
        Fraction of image rows held out when there is no validation split.
    min_objects : int, default=1
        Fewest labelled cells each split must hold.

    Returns
    -------
    data : TrainingData

    Raises
    ------
    FileNotFoundError
        `dataset` or its train split is missing.
    ValueError
        Images without cells, shape mismatches, NaNs, constant images.

    Examples
    --------
    >>> import tempfile, cellnb
    >>> from cellnb.data import synthetic_pairs
    >>> from cellnb.io import Record
    >>> pairs = synthetic_pairs(3, shape=(64, 64), n_cells=4, seed=0)
    >>> records = [Record(p.id, p.tl, p.cells, p.truth) for p in pairs]
    >>> out = cellnb.export(records, tempfile.mkdtemp() + "/ds", splits={"train": 2, "val": 1})
    >>> data = read_dataset(out)
    >>> len(data.train), len(data.val), data.train[0].image.shape
    (2, 1, (64, 64))
    """
    from .io import read_coco

    folder = Path(dataset)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist; pass the folder "
                                "cellnb.export wrote.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}.")
    train_json = _split_json(folder, "train")
    if train_json is None:
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{folder} has no 'train' split (found folders {splits}).")
    source = {"folder": str(folder.resolve()), "splits": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools on numpy 2
        train = read_coco(train_json)
        val_json = _split_json(folder, val)
        val_records = read_coco(val_json) if val_json is not None else None
    source["splits"]["train"] = {"file": str(train_json.relative_to(folder)),
                                 "sha256": sha256(train_json)}
    train = [_as_grey(r, "train") for r in train]
    if val_records is None:
        warnings.warn(f"{folder} has no {val!r} split; holding out the bottom "
                      f"{val_fraction:.0%} of every train image for validation.", UserWarning,
                      stacklevel=2)
        train, val_records = _holdout(train, val_fraction)
        source["val"] = f"bottom {val_fraction:.0%} rows of each train image"
    else:
        val_records = [_as_grey(r, val) for r in val_records]
        source["splits"][val] = {"file": str(val_json.relative_to(folder)),
                                 "sha256": sha256(val_json)}
        source["val"] = f"split {val!r}"
    for name, records in (("train", train), ("val", val_records)):
        if not records:
            raise ValueError(f"the {name} split of {folder} holds no image.")
        n = sum(int(len(np.unique(r.labels)) - (r.labels.min() == 0)) for r in records)
        if n < min_objects:
            raise ValueError(f"the {name} split of {folder} holds {n} labelled cell(s); "
                             f"training needs at least {min_objects}.")
        source[f"n_{name}_images"] = len(records)
        source[f"n_{name}_cells"] = n
    categories = sorted({str(c) for r in train if "category" in r.cells.columns
                         for c in r.cells["category"].dropna()})
    return TrainingData(train, val_records, categories, source)


# ---------------------------------------------------------------------------
# the trained model
# ---------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A trained segmentation model and its run folder.

    Use it with :func:`cellnb.segment` (``segment(image, model=trained)``),
    which runs the recipe's automatic instance segmentation.

    Attributes
    ----------
    path : Path
        The run folder.
    recipe : str
    settings : dict
        Recipe, base model, epochs, batch size, patch shape, lr, seed, options.
    history : DataFrame
        One row per finished epoch (see ``history.csv``).
    info : dict
        Everything in ``trained.json`` (dataset provenance, classes,
        normalisation, versions, status).
    """

    path: Path
    recipe: str
    settings: dict
    history: pd.DataFrame
    info: dict
    _net: object = field(default=None, repr=False)
    _classifier: object = field(default=None, repr=False)
    device: str = "cpu"

    @property
    def classes(self) -> list:
        """Cell categories of the training data (empty or one: no classifier)."""
        return list(self.info.get("classes", []))

    @property
    def best_epoch(self) -> int | None:
        """Epoch whose weights are in ``weights/best.pt``."""
        return self.info.get("best_epoch")

    def __repr__(self) -> str:
        done = len(self.history)
        return (f"TrainedModel(recipe={self.recipe!r}, path='{self.path}', epochs={done}/"
                f"{self.settings.get('epochs')}, best_epoch={self.best_epoch}, "
                f"classes={self.classes})")

    @property
    def prompted(self) -> bool:
        """Whether the model segments from prompts (cellsam: boxes) rather than automatically."""
        from .recipes import get

        return bool(getattr(get(self.recipe), "PROMPTED", False))

    def segment(self, image, prompts=None, *, tile_shape=None, halo=None, min_area=None,
                progress: bool = False):
        """Segment one TL image (see :func:`cellnb.segment`).

        Automatic instance segmentation, or, for prompted recipes
        (``cellsam``), one cell per row of `prompts` (a prompt table of
        :func:`cellnb.prompt`, boxes used; cells keep the prompts' labels).
        """
        from ._validation import check_image, check_tiling
        from .segment import Segmentation
        from .recipes import get

        image = check_image(image, "image", rgb=True)
        check_tiling(tile_shape, halo)
        grey = image.astype(np.float32).mean(-1) if image.ndim == 3 else image
        recipe = get(self.recipe)
        if self.prompted:
            if prompts is None:
                raise ValueError(
                    f"a {self.recipe!r} model segments from box prompts: pass prompts=, e.g. "
                    "cellnb.prompt(cellnb.locate(fluorescence), kind='boxes') for a paired "
                    "image, or a prompt table built from your detector's boxes.")
            result = recipe.segment(self._net, grey, prompts, self.settings, tile_shape=tile_shape,
                                    halo=halo, min_area=min_area, progress=progress)
            labels, table, normalization = result.labels, result.table, result.normalization
        else:
            if prompts is not None:
                raise ValueError(f"a {self.recipe!r} model segments automatically; pass "
                                 "prompts=None.")
            labels, scores, normalization = recipe.predict(
                self._net, grey, self.settings, tile_shape=tile_shape, halo=halo,
                min_area=min_area, progress=progress)
            table = _automatic_table(labels, scores)
        if self._classifier is not None and labels.max() > 0:
            from .classify import tl_features

            feats = tl_features(grey, labels)
            kept = table["label"].isin(feats.index).to_numpy()
            table["class_name"] = None
            table.loc[kept, "class_name"] = self._classifier.predict(
                feats.loc[table.loc[kept, "label"]]).to_numpy()
        return Segmentation(labels, table, normalization,
                            f"{self.recipe} ({self.path.name}, epoch {self.best_epoch})")

    def plot(self, ax=None):
        """Learning curves (losses and validation AP@0.5 per epoch)."""
        from .plot import learning_curve

        return learning_curve(self.history, ax=ax)


def _automatic_table(labels, scores) -> pd.DataFrame:
    from scipy import ndimage

    ids = np.unique(labels[labels > 0])
    boxes = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel())
    rows = []
    for lab in ids:
        box = boxes[lab - 1]
        rows.append((int(lab), float(scores.get(int(lab), 1.0)), int(areas[lab]),
                     box[0].start, box[1].start, box[0].stop, box[1].stop, "kept"))
    return pd.DataFrame(rows, columns=["label", "score", "area", "y0", "x0", "y1", "x1",
                                       "status"])


def load_trained(path, *, device: str = "auto", weights: str = "best") -> TrainedModel:
    """Load a training run folder written by :func:`train`.

    Parameters
    ----------
    path : str or Path
        The run folder (holds ``trained.json``).
    device : str, default="auto"
        Torch device ("auto": CUDA when available, else CPU).
    weights : {"best", "last"}, default="best"

    Returns
    -------
    trained : TrainedModel

    Examples
    --------
    >>> trained = load_trained("runs/unet")  # doctest: +SKIP
    >>> cellnb.segment(image, model=trained)  # doctest: +SKIP
    """
    import pickle

    import torch

    from .recipes import get

    folder = Path(path)
    info_path = folder / "trained.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{folder} is not a cellnb training run (no trained.json).")
    if weights not in ("best", "last"):
        raise ValueError(f"`weights` must be 'best' or 'last', got {weights!r}.")
    info = json.loads(info_path.read_text())
    weight_file = folder / "weights" / f"{weights}.pt"
    if not weight_file.is_file():
        raise FileNotFoundError(f"{weight_file} is missing: the run has not finished an "
                                "epoch yet.")
    device = _device(device)
    state = torch.load(weight_file, map_location=device, weights_only=False)
    settings = info["settings"]
    net = get(info["recipe"]).load_net(settings, state, device)
    classifier = None
    if (folder / "classifier.pkl").is_file():
        with open(folder / "classifier.pkl", "rb") as fh:
            classifier = pickle.load(fh)
    history = (pd.read_csv(folder / "history.csv") if (folder / "history.csv").is_file()
               else pd.DataFrame())
    return TrainedModel(folder, info["recipe"], settings, history, info, net, classifier,
                        device)


# ---------------------------------------------------------------------------
# the training loop
# ---------------------------------------------------------------------------
def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str):
        raise TypeError(f"`device` must be a str such as 'cpu', 'cuda' or 'auto', got "
                        f"{type(device).__name__}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device.")
    return device


def _distributed() -> tuple[int, int]:
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


def _average_gradients(optimizer, world: int) -> None:
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


def _weights_checksum(state: dict) -> float:
    return float(sum(v.double().sum() for part in state.values() if isinstance(part, dict)
                     for v in part.values() if hasattr(v, "double")))


class _Progress:
    """Adapter giving torch_em's fit one tqdm bar for the whole run."""

    def __init__(self, bar):
        self.bar = bar

    def __setattr__(self, name, value):
        if name == "bar":
            object.__setattr__(self, name, value)  # torch_em sets `total` per fit; we keep ours

    def set_description(self, *args, **kwargs):
        pass

    def update(self, n=1):
        self.bar.update(n)


def _seed(seed: int, epoch: int) -> None:
    import random

    import torch

    value = seed * 100_003 + epoch + 1
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def _validate(net, recipe, settings, records) -> dict:
    from .evaluate import evaluate

    # Prompted recipes (cellsam) are validated from the true cells' boxes.
    prompted = getattr(recipe, "PROMPTED", False)
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


def _prepare_folder(out: Path, settings: dict, resume: bool, overwrite: bool) -> bool:
    """Check `out` against the settings; return True when resuming."""
    info_path = out / "trained.json"
    if not out.exists() or not any(out.iterdir()):
        return False
    if overwrite:
        shutil.rmtree(out)
        return False
    if not info_path.is_file():
        raise FileExistsError(f"{out} exists and is not a cellnb training run; choose another "
                              "`out` or pass overwrite=True.")
    if not resume:
        raise FileExistsError(f"{out} already holds a training run; pass resume=True to "
                              "continue it or overwrite=True to start again.")
    old = json.loads(info_path.read_text())["settings"]
    diff = {k: (old.get(k), settings[k]) for k in _SETTING_KEYS
            if k not in _RESUMABLE and json.loads(json.dumps(old.get(k))) !=
            json.loads(json.dumps(settings[k]))}
    if diff:
        raise ValueError(f"{out} holds a run with other settings {diff} (old, new); resume "
                         "with the same settings, choose another `out`, or pass overwrite=True.")
    return True


def _write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=str))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("cellnb", "torch", "torch_em", "micro_sam", "numpy"):
        try:
            out[pkg] = version(pkg.replace("_", "-"))
        except PackageNotFoundError:
            pass
    return out


def _train_classifier(data: TrainingData, out: Path, seed: int):
    import pickle

    from .classify import CellClassifier, tl_features

    feats, targets = [], []
    for r in data.train:
        if "category" not in r.cells.columns:
            continue
        f = tl_features(r.image, r.labels)
        cats = r.cells["category"].reindex(f.index)
        keep = cats.notna()
        feats.append(f[keep.to_numpy()])
        targets.append(cats[keep].astype(str))
    features = pd.concat(feats, ignore_index=True)
    classifier = CellClassifier(seed=seed).fit(features, pd.concat(targets, ignore_index=True))
    with atomic_path(out / "classifier.pkl") as tmp, open(tmp, "wb") as fh:
        pickle.dump(classifier, fh)
    return classifier


def train(dataset, *, recipe: str = "unet", out, model: str = "vit_b_lm", epochs=None,
          batch_size=None, patch_shape=None, lr=None, steps_per_epoch=None,
          device: str = "auto", seed: int = 0, resume: bool = True, overwrite: bool = False,
          progress: bool = True, val: str = "val", **recipe_options) -> TrainedModel:
    """Train a segmentation model on an exported dataset.

    Parameters
    ----------
    dataset : str, Path or TrainingData
        Folder written by :func:`cellnb.export` (train + val splits; see
        :func:`read_dataset`), or data already read.
    recipe : {"unet", "microsam", "samcell", "cellseg1", "cellsam", "cellpose"}, default="unet"
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
        (needs the ``cellpose`` extra). Each recipe's options and defaults:
        ``cellnb.recipes.get(name).OPTIONS`` / ``.DEFAULTS``.
    out : str or Path
        Run folder (layout in the module docstring).
    model : str, default="vit_b_lm"
        SAM recipes: the μSAM / SAM model to start from (zoo name, or an
        architecture "vit_t" / "vit_b" with ``checkpoint=``); cellpose: a
        cellpose model name ("cpsam"). Ignored by unet.
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
    overwrite : bool, default=False
        Delete an existing run in `out` and start again.
    progress : bool, default=True
        Progress bar over training steps.
    val : str, default="val"
        Validation split name (see :func:`read_dataset`).
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
    from tqdm.auto import tqdm

    from .recipes import get

    if recipe not in RECIPES:
        raise ValueError(f"`recipe` must be one of {list(RECIPES)}, got {recipe!r}.")
    module = get(recipe)
    unknown = sorted(set(recipe_options) - set(module.OPTIONS))
    if unknown:
        raise TypeError(f"recipe {recipe!r} takes no option(s) {unknown}; its options are "
                        f"{sorted(module.OPTIONS)}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}.")
    given = {"epochs": epochs, "batch_size": batch_size, "patch_shape": patch_shape, "lr": lr,
             "steps_per_epoch": steps_per_epoch}
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
    settings.update(recipe=recipe, model=model if module.USES_MODEL else None, seed=seed,
                    options={**module.OPTIONS, **recipe_options})
    rank, world = _distributed()
    device = _device(device)
    if world > 1 and device.startswith("cuda"):
        import os

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
    resuming = _prepare_folder(out, settings, resume, overwrite) if lead else None
    if world > 1:
        import torch.distributed as dist

        box = [resuming]
        dist.broadcast_object_list(box, src=0)
        resuming = box[0]
    info = {"recipe": recipe, "settings": settings, "dataset": data.source,
            "classes": data.classes, "device": device, "versions": _versions(),
            "status": "training", "best_epoch": None,
            "distributed": {"world_size": world} if world > 1 else None}
    history = pd.DataFrame()
    if resuming:
        old = json.loads((out / "trained.json").read_text())
        info["best_epoch"] = old.get("best_epoch")
        if old.get("stopped_early"):
            info["stopped_early"] = old["stopped_early"]
        if (out / "history.csv").is_file():
            history = pd.read_csv(out / "history.csv")
    if lead:
        (out / "weights").mkdir(parents=True, exist_ok=True)
        _write_json(out / "trained.json", info)

    _seed(seed, -1)  # the same initialisation in every process
    run = module.build(data, settings, device, out / "state")
    info["normalization"] = run.normalization
    if world > 1 and getattr(run, "whole_run", False):
        raise ValueError(f"recipe {recipe!r} trains in one process; run it without torchrun.")
    if world > 1:
        run.set_rank(rank)
        _average_gradients(run.optimizer, world)
    start = 0
    if resuming and run.has_state():
        start = run.load_state()
        history = history[history["epoch"] < start]
        if info.get("stopped_early"):  # early stopping ended the run: nothing left to train
            start = settings["epochs"]
    steps = settings["steps_per_epoch"]
    bar = tqdm(total=settings["epochs"] * steps, initial=start * steps,
               disable=not (progress and lead), desc=f"train {recipe}", unit="step")
    best = history["val_ap50"].max() if len(history) else -np.inf
    patience = settings["options"].get("patience")  # early stopping on val AP@0.5
    try:
        if getattr(run, "whole_run", False) and start < settings["epochs"]:
            history = _fit_whole(run, module, settings, data, out, info, bar, seed)
            start = settings["epochs"]
        for epoch in range(start, settings["epochs"]):
            t0 = time.perf_counter()
            _seed(seed, epoch)
            run.set_epoch(epoch)
            with contextlib.redirect_stdout(_io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                losses = run.fit_epoch(_Progress(bar))
            bar.n = (epoch + 1) * steps  # torch_em skips the bar's last update of an epoch
            bar.refresh()
            stop = False
            if lead:
                row = {"epoch": epoch, "step": (epoch + 1) * steps, **losses,
                       **_validate(run.net, module, settings, data.val),
                       "seconds": time.perf_counter() - t0}
                history = pd.concat([history, pd.DataFrame([row])], ignore_index=True)
                state = run.weights()
                with atomic_path(out / "weights" / "last.pt") as tmp:
                    torch.save(state, tmp)
                if row["val_ap50"] > best or info["best_epoch"] is None:
                    best = row["val_ap50"]
                    info["best_epoch"] = epoch
                    with atomic_path(out / "weights" / "best.pt") as tmp:
                        torch.save(state, tmp)
                stop = bool(patience) and epoch - info["best_epoch"] >= patience
                if stop:
                    info["stopped_early"] = {"epoch": epoch, "patience": patience}
                with atomic_path(out / "history.csv") as tmp:
                    history.to_csv(tmp, index=False)
                _write_json(out / "trained.json", info)
                bar.set_postfix(loss=f"{losses['train_loss']:.3f}",
                                val_ap50=f"{row['val_ap50']:.2f}")
            if world > 1:  # the others wait here while the first process validates and saves
                box = [stop]
                torch.distributed.broadcast_object_list(box, src=0)
                stop = box[0]
            if stop:
                break
    finally:
        bar.close()
    if world > 1:  # every process must hold the same weights; record that they do
        sums = [None] * world
        torch.distributed.all_gather_object(sums, _weights_checksum(run.weights()))
        info["distributed"]["checksums_equal"] = len(set(sums)) == 1
    if lead:
        _plot_history(history, out / "learning_curve.png")
        if len(data.classes) > 1:
            _train_classifier(data, out, seed)
        info["status"] = "finished"
        _write_json(out / "trained.json", info)
    if world > 1:
        torch.distributed.barrier()
    return load_trained(out, device=device)


def _fit_whole(run, module, settings, data, out, info, bar, seed) -> pd.DataFrame:
    """Recipes whose trainer runs every epoch in one call (cellpose): train, validate once."""
    import torch

    t0 = time.perf_counter()
    _seed(seed, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run.fit_all(_Progress(bar))
    n, steps = settings["epochs"], settings["steps_per_epoch"]
    history = pd.DataFrame({"epoch": np.arange(n), "step": (np.arange(n) + 1) * steps,
                            "train_loss": result["train_loss"][:n], "val_loss": np.nan})
    last = {"val_loss": result["val_loss"], **_validate(run.net, module, settings, data.val),
            "seconds": time.perf_counter() - t0}
    for key, value in last.items():
        history.loc[n - 1, key] = value
    state = run.weights()
    for name in ("last", "best"):
        with atomic_path(out / "weights" / f"{name}.pt") as tmp:
            torch.save(state, tmp)
    info["best_epoch"] = n - 1
    info["validated"] = "after the last epoch only (the trainer runs all epochs in one call)"
    with atomic_path(out / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    _write_json(out / "trained.json", info)
    return history


def _plot_history(history: pd.DataFrame, path: Path) -> None:
    import matplotlib

    from .plot import learning_curve

    if not len(history):
        return
    with matplotlib.rc_context({"backend": "Agg"}):
        ax = learning_curve(history)
        with atomic_path(path) as tmp:
            ax.figure.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
        import matplotlib.pyplot as plt

        plt.close(ax.figure)
