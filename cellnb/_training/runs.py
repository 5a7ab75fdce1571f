"""The training run folder, read and written in one place (private).

::

    out/
      trained.json          recipe, settings, dataset provenance, classes, normalisation, status
      history.csv           one row per epoch: train/val loss, val AP@0.5/0.75, F1, SEG, seconds
      learning_curve.png    the same, as a picture
      weights/best.pt       weights of the epoch with the best validation AP@0.5
      weights/last.pt       weights after the last finished epoch
      classifier.csv        TL features + class of the training cells (several classes only)
      state/                the trainer's own resume state (optimizer, scheduler, step)

Every write is atomic. Weights are plain tensors loaded with
``torch.load(weights_only=True)``; the TL classifier is stored as the table
it was fitted on and fitted again on load, so nothing loaded runs code.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from .._shared.files import atomic_path, sha256

INFO = "trained.json"
HISTORY = "history.csv"
CLASSIFIER = "classifier.csv"
SETTING_KEYS = ("recipe", "model", "epochs", "batch_size", "patch_shape", "lr", "seed",
                "steps_per_epoch", "options")
#: Settings that may change between a run and its resumption.
RESUMABLE = ("epochs",)


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=str))


def read_info(folder: Path) -> dict:
    """``trained.json`` of a run folder; a clear error when it is not one."""
    path = Path(folder) / INFO
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a cellnb training run (no {INFO}).")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the run folder is damaged.") from err


def read_history(folder: Path) -> pd.DataFrame:
    path = Path(folder) / HISTORY
    if not path.is_file():
        return pd.DataFrame()
    try:
        history = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a cellnb history table ({err}); the run folder is "
                         "damaged.") from err
    if len(history) and "epoch" not in history.columns:
        raise ValueError(f"{path} has no 'epoch' column; the run folder is damaged.")
    return history


def write_history(folder: Path, history: pd.DataFrame) -> None:
    with atomic_path(Path(folder) / HISTORY) as tmp:
        history.to_csv(tmp, index=False)


def save_weights(folder: Path, name: str, state: dict) -> None:
    import torch

    with atomic_path(Path(folder) / "weights" / f"{name}.pt") as tmp:
        torch.save(state, tmp)


def load_weights(folder: Path, name: str, device) -> tuple[dict, str]:
    """(state, sha256 of the file) of ``weights/<name>.pt``, loaded without running code."""
    from .._shared.torchutil import load_state

    path = Path(folder) / "weights" / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run has not finished an epoch yet.")
    state = load_state(path, device)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not the weights of a run.")
    return state, sha256(path)


def prepare(out: Path, settings: dict, resume: bool, overwrite: bool) -> bool:
    """Check `out` against the settings; return True when resuming."""
    if not out.exists() or not any(out.iterdir()):
        return False
    if not (out / INFO).is_file():
        raise FileExistsError(f"{out} exists and is not a cellnb training run (no {INFO}); "
                              "train writes only into its own run folders, even with "
                              "overwrite=True: choose another `out`.")
    if overwrite:
        from .._shared.files import remove_dir

        remove_dir(out)
        return False
    if not resume:
        raise FileExistsError(f"{out} already holds a training run; pass resume=True to "
                              "continue it or overwrite=True to start again.")
    old = read_info(out)["settings"]
    diff = {k: (old.get(k), settings[k]) for k in SETTING_KEYS
            if k not in RESUMABLE and json.loads(json.dumps(old.get(k))) !=
            json.loads(json.dumps(settings[k]))}
    if diff:
        raise ValueError(f"{out} holds a run with other settings {diff} (old, new); resume "
                         "with the same settings, choose another `out`, or pass overwrite=True.")
    return True


def save_classifier(folder: Path, features: pd.DataFrame, classes: pd.Series) -> None:
    """The TL classifier's training table: features plus a ``class_name`` column."""
    from ..classify import CLASS_COLUMN

    table = features.assign(**{CLASS_COLUMN: classes.to_numpy()})
    with atomic_path(Path(folder) / CLASSIFIER) as tmp:
        table.to_csv(tmp, index=False)


def load_classifier(folder: Path):
    """The TL classifier fitted again on its stored table (None when the run has none)."""
    from ..classify import CLASS_COLUMN, CellClassifier

    folder = Path(folder)
    if (folder / "classifier.pkl").is_file() and not (folder / CLASSIFIER).is_file():
        warnings.warn(f"{folder / 'classifier.pkl'} is a pickle, which cellnb no longer loads "
                      "(loading a pickle can run code); segment without classes, or train "
                      "again to store the classifier safely.", UserWarning, stacklevel=3)
        return None
    path = folder / CLASSIFIER
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    if CLASS_COLUMN not in table.columns:
        raise ValueError(f"{path} has no {CLASS_COLUMN!r} column; the run folder is damaged.")
    seed = read_info(folder)["settings"].get("seed", 0)
    return CellClassifier(seed=seed).fit(table.drop(columns=CLASS_COLUMN),
                                         table[CLASS_COLUMN].astype(str))


def plot_history(history: pd.DataFrame, path: Path) -> None:
    import matplotlib

    from ..plot import learning_curve

    if not len(history):
        return
    with matplotlib.rc_context({"backend": "Agg"}):
        ax = learning_curve(history)
        with atomic_path(path) as tmp:
            ax.figure.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
        import matplotlib.pyplot as plt

        plt.close(ax.figure)
