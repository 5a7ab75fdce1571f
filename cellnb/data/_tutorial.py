"""The synthetic pairs the tutorial notebooks hand on to each other.

Notebook 01 writes them; 02, 03, 04, 05, 08 and 10 read them from that folder, as
StarDist's notebooks hand data on from ``1_data`` to ``2_training``. Each of
those notebooks also runs alone: :func:`tutorial_pairs` simulates and writes
the pairs when the folder does not hold them yet. One scene serves every lesson:
crowded cells, a 5x spread of interphase nucleus brightness (the dim nuclei
that 02's thresholds miss) and a fifth of the cells mitotic (04's classes, 05's
categories).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._shared.files import atomic_dir, atomic_path
from ._synthetic import SyntheticPair, read_pairs, synthetic_pairs, write_pairs

__all__ = ["tutorial_pairs", "TUTORIAL_SCENES"]

_COMMON = {"mitotic_fraction": 0.2, "brightness_range": [0.3, 1.5], "seed": 0}

#: The :func:`~cellnb.data.synthetic_pairs` arguments of the tutorials' pairs, at the
#: notebooks' defaults (``"full"``) and in their quick configuration (``"quick"``).
TUTORIAL_SCENES = {
    "full": {"n": 8, "shape": [512, 512], "n_cells": 100, **_COMMON},
    "quick": {"n": 6, "shape": [256, 256], "n_cells": 30, **_COMMON},
}

#: Written last into ``truth/``: the scene the folder holds and the files written.
SCENE_FILE = "scene.json"


def tutorial_pairs(folder, *, quick: bool = False) -> list[SyntheticPair]:
    """The tutorials' pairs: read from `folder`, simulated and written there first if needed.

    The first call writes the pairs of :data:`TUTORIAL_SCENES` into `folder`
    with :func:`~cellnb.data.write_pairs` (Cell-APP file names, truth in
    ``truth/``) and records the scene in ``truth/scene.json``. Later calls
    with the same scene read them back with :func:`~cellnb.data.read_pairs`.
    A folder holding the other scene (a quick run's pairs when the defaults
    are asked for), or missing some of its files, is rewritten; files it did
    not write are never touched, and the folder appears whole or not at all.

    Parameters
    ----------
    folder : str or Path
        Where the pairs live, e.g. ``"cellnb-output/01_data/pairs"``.
    quick : bool, default=False
        The notebooks' quick configuration (``CELLNB_QUICK=1``): 6 pairs of
        256 x 256 px with 30 cells, instead of 8 of 512 x 512 px with 100.

    Returns
    -------
    pairs : list of SyntheticPair
        The same arrays and truth whether simulated or read.

    Raises
    ------
    FileExistsError
        If `folder` holds files this function did not write (give it a new
        or empty folder).
    NotADirectoryError
        If `folder` is a file.
    ValueError
        If ``truth/scene.json`` is not the JSON this function writes.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp() + "/pairs"
    >>> made = tutorial_pairs(folder, quick=True)         # simulated and written
    >>> again = tutorial_pairs(folder, quick=True)        # read back
    >>> len(again), again[0].tl.shape, bool((again[2].labels == made[2].labels).all())
    (6, (256, 256), True)
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"`folder` must be a folder (new or made by tutorial_pairs); "
                                 f"{folder} is a file.")
    scene = TUTORIAL_SCENES["quick" if quick else "full"]
    marker = folder / "truth" / SCENE_FILE
    recorded = _read_marker(marker) if marker.is_file() else None
    if (recorded is not None and recorded["synthetic_pairs"] == scene
            and all((folder / name).is_file() for name in recorded["files"])):
        return read_pairs(folder)
    if folder.exists():
        ours = set(recorded["files"]) if recorded else set()
        present = {path.relative_to(folder).as_posix() for path in folder.rglob("*")
                   if not path.is_dir()}
        others = sorted(present - ours - {f"truth/{SCENE_FILE}"})
        if others:
            raise FileExistsError(
                f"{folder} holds files tutorial_pairs did not write ({', '.join(others[:5])}"
                f"{', ...' if len(others) > 5 else ''}); give it a new or empty folder.")
    pairs = synthetic_pairs(**scene)  # JSON-shaped: its lists are taken as the tuples they stand for
    with atomic_dir(folder, overwrite=True) as tmp:
        write_pairs(pairs, tmp)
        files = sorted(path.relative_to(tmp).as_posix() for path in tmp.rglob("*")
                       if path.is_file())
        with atomic_path(tmp / "truth" / SCENE_FILE) as part:
            part.write_text(json.dumps({"synthetic_pairs": scene, "files": files}, indent=1))
    return pairs


def _read_marker(marker: Path) -> dict:
    try:
        recorded = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{marker} is not the JSON tutorial_pairs writes ({err}); remove "
                         f"{marker.parent.parent} to have the pairs simulated again.") from err
    if (not isinstance(recorded, dict) or not isinstance(recorded.get("synthetic_pairs"), dict)
            or not isinstance(recorded.get("files"), list)):
        raise ValueError(f"{marker} must hold {{'synthetic_pairs': {{...}}, 'files': [...]}}, "
                         f"as tutorial_pairs writes it; remove {marker.parent.parent} to have "
                         "the pairs simulated again.")
    return recorded
