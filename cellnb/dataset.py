"""Read and check an exported dataset for training: images and labels of its splits.

:func:`read_dataset` reads the train and validation splits of a folder that
:func:`cellnb.export` wrote (or any COCO dataset laid out the same way, such
as Cell-APP's) and checks them before the first epoch: missing splits,
images without cells, shape mismatches, NaNs, constant images. A dataset
without a validation split gets the bottom rows of each train image held
out, with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._shared.files import sha256

__all__ = ["read_dataset", "TrainingData"]


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
    >>> records = [Record(p.id, p.tl, p.labels, p.truth) for p in pairs]
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
    from .classify import CLASS_COLUMN

    categories = sorted({str(c) for r in train if CLASS_COLUMN in r.cells.columns
                         for c in r.cells[CLASS_COLUMN].dropna()})
    return TrainingData(train, val_records, categories, source)

