"""Microscope files through bioio: what a file holds, and each of its planes as a pair.

Imaging facilities keep multi-channel, multi-position, time-lapse and focus
series files straight from the microscope (OME-TIFF, Nikon ND2, Zeiss CZI,
Leica LIF). cellnb reads them through `bioio <https://github.com/bioio-devs/bioio>`_,
whose format plugins come as extras::

    pip install "cellnb[bioio]"   # OME-TIFF and multi-page TIFF
    pip install "cellnb[nd2]"     # + Nikon ND2   (bioio-nd2)
    pip install "cellnb[czi]"     # + Zeiss CZI   (bioio-czi)
    pip install "cellnb[lif]"     # + Leica LIF   (bioio-lif)

bioio presents every format as scenes (positions) of TCZYX arrays. Each
plane, one (scene, t, z), becomes one *pair*: its transmitted-light channel
and its fluorescence channel. The pair id records the file, scene, t and z
(``movie/s0_t012_z1``) and the *position* (``movie/s0``) names the field of
view, so that :func:`cellnb.export` keeps every plane of one position in one
split. Pixel sizes from the metadata are kept; nothing is rescaled, and each
plane passes the same dtype and shape checks as a single image file.

Use :func:`describe` to see what a file holds (the channel names to pass to
:func:`cellnb.io.find_pairs`), and :func:`read_plane` to read one plane.
For focus series (Cell-APP acquires in-focus and defocused TL planes of one
field as augmentation), :func:`choose_focus` marks the in-focus plane of
each; ``cellnb.annotate(..., focus="best")`` annotates that plane and reuses
its masks as the labels of the defocused planes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .._shared.validation import check_image

__all__ = ["describe", "read_plane", "focus_score", "choose_focus", "write_ome_zarr",
           "read_ome_zarr", "PLANE_COLUMNS"]

#: columns that :func:`cellnb.io.find_pairs` adds for pairs read plane by plane
PLANE_COLUMNS = ["scene", "t", "z", "tl_channel", "fl_channel", "position",
                 "pixel_size_y_um", "pixel_size_x_um"]

# file name ending -> (bioio plugin, cellnb extra that installs it)
_PLUGINS = {".ome.tif": ("bioio-ome-tiff", "bioio"), ".ome.tiff": ("bioio-ome-tiff", "bioio"),
            ".tif": ("bioio-tifffile", "bioio"), ".tiff": ("bioio-tifffile", "bioio"),
            ".nd2": ("bioio-nd2", "nd2"), ".czi": ("bioio-czi", "czi"),
            ".lif": ("bioio-lif", "lif")}
_LOCK = threading.Lock()  # a BioImage's current scene is state: one reader at a time


def _ending(path: Path) -> str:
    name = path.name.lower()
    return next((e for e in sorted(_PLUGINS, key=len, reverse=True) if name.endswith(e)),
                path.suffix.lower())


def stem(path) -> str:
    """A microscope file's name without its format ending (``.ome.tif`` counts as one).

    >>> stem("plate1/A01.ome.tif"), stem("run.nd2")
    ('A01', 'run')
    """
    path = Path(path)
    ending = _ending(path)
    return path.name[: len(path.name) - len(ending)] if ending else path.name


@functools.lru_cache(maxsize=16)
def _open_cached(path: str, mtime_ns: int, size: int):
    try:
        from bioio import BioImage
        from bioio_base.exceptions import UnsupportedFileFormatError
    except ImportError:
        raise ImportError(f"reading {Path(path).name} needs bioio: pip install "
                          "'cellnb[bioio]' (plus 'cellnb[nd2]', '[czi]' or '[lif]' for those "
                          "formats).") from None
    plugin, extra = _PLUGINS.get(_ending(Path(path)), (None, None))
    quiet = logging.getLogger("bioio")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # bioio logs every plugin it tried before the one that fits
    try:
        return BioImage(path)
    except UnsupportedFileFormatError:
        if plugin is None:
            raise ValueError(f"{Path(path).name}: no bioio plugin reads {_ending(Path(path))!r} "
                             f"files; cellnb reads {sorted(_PLUGINS)} through bioio.") from None
        raise ImportError(f"{Path(path).name}: reading {_ending(Path(path))} files needs the "
                          f"bioio plugin {plugin}: pip install 'cellnb[{extra}]' (or, if it is "
                          "installed, the file is not a valid one of its kind).") from None
    except Exception as err:  # corrupt or truncated files: name the file, keep the cause
        raise ValueError(f"cannot read microscope file {path}: {type(err).__name__}: "
                         f"{err}") from err
    finally:
        quiet.setLevel(level)


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"microscope file {path} does not exist.")
    info = path.stat()
    return _open_cached(str(path.resolve()), info.st_mtime_ns, info.st_size)


def _tiff_pixel_sizes(path: Path) -> tuple[float, float]:
    """(y, x) µm of a plain TIFF: from ImageJ's micron unit or a centimetre resolution, else NaN.

    A TIFF without either says nothing about physical size (its resolution
    tags default to 1 per unspecified unit), so it gets NaN, not 1.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tags = page.tags
        if "XResolution" not in tags or "YResolution" not in tags:
            return float("nan"), float("nan")
        per_unit = [tags[k].value[0] / tags[k].value[1] for k in ("YResolution", "XResolution")]
        unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 1
        imagej_unit = (tif.imagej_metadata or {}).get("unit", "")
    if imagej_unit in ("micron", "um", "\u00b5m", "\u03bcm"):
        scale = 1.0
    elif unit == tifffile.RESUNIT.CENTIMETER:
        scale = 1e4
    else:
        return float("nan"), float("nan")
    return tuple(scale / v if v > 0 else float("nan") for v in per_unit)


def _pixel_sizes(image, path: Path) -> tuple[float, float]:
    if type(image.reader).__module__.startswith("bioio_tifffile"):
        return _tiff_pixel_sizes(path)
    sizes = image.physical_pixel_sizes
    if sizes is None:  # a reader that knows no physical size
        return float("nan"), float("nan")
    return tuple(float(v) if v is not None else float("nan") for v in (sizes.Y, sizes.X))


def describe(path) -> pd.DataFrame:
    """What a microscope file holds: one row per scene (position).

    Parameters
    ----------
    path : str or Path
        An OME-TIFF, TIFF, ND2, CZI or LIF file (any format a bioio plugin reads).

    Returns
    -------
    table : DataFrame
        Columns ``scene`` (index), ``scene_name``, ``T``, ``C``, ``Z``, ``Y``,
        ``X``, ``channels`` (the names, as :func:`cellnb.io.find_pairs`'s
        `channels` takes them), ``dtype``, ``pixel_size_y_um``,
        ``pixel_size_x_um`` (NaN when the file does not say).

    Raises
    ------
    ImportError
        If bioio, or the plugin of this format, is not installed (the message
        names the extra to install).
    ValueError
        If the file cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from cellnb.data import write_ome_tiff
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "movie.ome.tif"
    >>> _ = write_ome_tiff(path, np.zeros((3, 2, 1, 16, 20), np.uint16), channels=["BF", "mCherry"],
    ...                pixel_size_um=0.65)
    >>> describe(path)[["T", "C", "Z", "Y", "X", "channels", "pixel_size_y_um"]]
           T  C  Z   Y   X       channels  pixel_size_y_um
    scene                                                 
    0      3  2  1  16  20  [BF, mCherry]             0.65
    """
    image = _open(path)
    rows = []
    with _LOCK:
        for index, name in enumerate(image.scenes):
            image.set_scene(index)
            dims = image.dims
            rows.append({"scene": index, "scene_name": str(name), "T": dims.T, "C": dims.C,
                         "Z": dims.Z, "Y": dims.Y, "X": dims.X,
                         "channels": [str(c) for c in image.channel_names],
                         "dtype": str(image.dtype),
                         **dict(zip(("pixel_size_y_um", "pixel_size_x_um"),
                                    _pixel_sizes(image, Path(path))))})
    if not rows:
        raise ValueError(f"{Path(path).name} holds no image (no scene could be read).")
    return pd.DataFrame(rows).set_index("scene")


def _channel_index(value, names: list[str], role: str, path: Path) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= value < len(names):
            raise ValueError(f"{path.name}: {role} channel {value} does not exist; the file has "
                             f"{len(names)} channel(s): {names}.")
        return int(value)
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"{path.name}: no channel named {value!r} for {role}; its channels "
                             f"are {names} (pass a name or an index).")
        return names.index(value)
    raise TypeError(f"the {role} channel must be a name (str) or an index (int), got "
                    f"{type(value).__name__}.")


def check_channels(channels) -> tuple:
    """Check a ``{"tl": ..., "fluorescence": ...}`` mapping; return (tl, fluorescence).

    >>> check_channels({"tl": "BF", "fluorescence": 1})
    ('BF', 1)
    """
    if not isinstance(channels, Mapping) or set(channels) != {"tl", "fluorescence"}:
        got = sorted(channels) if isinstance(channels, Mapping) else type(channels).__name__
        raise ValueError("`channels` must be a mapping with the keys 'tl' and 'fluorescence' "
                         "(names or indices of the channels), e.g. {'tl': 'BF', "
                         f"'fluorescence': 'mCherry'}}; got {got}.")
    return channels["tl"], channels["fluorescence"]


def plane_rows(tl_path, fl_path=None, *, channels=None, id_stem=None) -> pd.DataFrame:
    """One row per plane (scene, t, z) of a file or of two matching files.

    With one file, `channels` names its TL and fluorescence channels. With
    two (a TL movie and a fluorescence movie), each must hold one channel
    and the same scenes, T and Z. Rows have the columns of
    :func:`cellnb.io.find_pairs` plus :data:`PLANE_COLUMNS`.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from cellnb.data import write_ome_tiff
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "field.ome.tif"
    >>> _ = write_ome_tiff(path, np.zeros((2, 2, 3, 8, 8), np.uint16), channels=["BF", "H2B"])
    >>> rows = plane_rows(path, channels={"tl": "BF", "fluorescence": "H2B"})
    >>> rows["pair_id"].tolist()[:4]
    ['field/s0_t0_z0', 'field/s0_t0_z1', 'field/s0_t0_z2', 'field/s0_t1_z0']
    >>> rows[["tl_channel", "fl_channel", "position"]].head(1)
       tl_channel  fl_channel  position
    0           0           1  field/s0
    """
    tl_path = Path(tl_path)
    fl_path = tl_path if fl_path is None else Path(fl_path)
    if (channels is None) == (fl_path == tl_path):
        raise ValueError("pass `channels` for one multi-channel file, or two files without it.")
    id_stem = stem(tl_path) if id_stem is None else id_stem
    tl_info, fl_info = describe(tl_path), describe(fl_path)
    if fl_path != tl_path:
        for path, info in ((tl_path, tl_info), (fl_path, fl_info)):
            several = info[info["C"] > 1]
            if len(several):
                raise ValueError(f"{path.name} holds {int(several['C'].iloc[0])} channels "
                                 f"({several['channels'].iloc[0]}); pair it by channel: "
                                 "find_pairs(files=..., channels={'tl': ..., 'fluorescence': "
                                 "...}).")
        dims = ["T", "Z", "Y", "X"]
        if len(tl_info) != len(fl_info) or not (tl_info[dims].values ==
                                                 fl_info[dims].values).all():
            raise ValueError(f"{tl_path.name} and {fl_path.name} do not match plane for plane: "
                             f"TL has scenes x (T, Z, Y, X) {tl_info[dims].values.tolist()}, "
                             f"fluorescence {fl_info[dims].values.tolist()}.")
    else:
        tl_want, fl_want = check_channels(channels)
    rows = []
    for scene, info in tl_info.iterrows():
        if fl_path == tl_path:
            tl_c = _channel_index(tl_want, info["channels"], "tl", tl_path)
            fl_c = _channel_index(fl_want, info["channels"], "fluorescence", tl_path)
            if tl_c == fl_c:
                raise ValueError(f"{tl_path.name}: 'tl' and 'fluorescence' are the same channel "
                                 f"({info['channels'][tl_c]!r}).")
        else:
            tl_c = fl_c = 0
        wt, wz = len(str(info["T"] - 1)), len(str(info["Z"] - 1))
        scene_id = f"s{scene}"
        for t in range(info["T"]):
            for z in range(info["Z"]):
                rows.append({"pair_id": f"{id_stem}/{scene_id}_t{t:0{wt}d}_z{z:0{wz}d}",
                             "tl_path": tl_path, "fl_path": fl_path, "scene": int(scene),
                             "t": t, "z": z, "tl_channel": tl_c, "fl_channel": fl_c,
                             "position": f"{id_stem}/{scene_id}",
                             "pixel_size_y_um": info["pixel_size_y_um"],
                             "pixel_size_x_um": info["pixel_size_x_um"]})
    return pd.DataFrame(rows)


def read_plane(path, *, scene: int = 0, t: int = 0, z: int = 0, channel: int = 0,
               name: str = "image") -> np.ndarray:
    """Read one (Y, X) plane of a microscope file, keeping its dtype.

    Parameters
    ----------
    path : str or Path
        Any file a bioio plugin reads.
    scene, t, z, channel : int, default=0
        Which plane (indices, as in :func:`describe`).
    name : str, default="image"
        What the plane is, for error messages.

    Returns
    -------
    plane : (Y, X) ndarray
        uint8, uint16 or float32 as stored, checked like any cellnb image
        (NaN, inf and other dtypes raise).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from cellnb.data import write_ome_tiff
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "movie.ome.tif"
    >>> movie = np.arange(2 * 2 * 1 * 4 * 5, dtype=np.uint16).reshape(2, 2, 1, 4, 5)
    >>> _ = write_ome_tiff(path, movie, channels=["BF", "H2B"])
    >>> int(read_plane(path, t=1, channel=1)[0, 0]) == int(movie[1, 1, 0, 0, 0])
    True
    """
    image = _open(path)
    for key, value in (("scene", scene), ("t", t), ("z", z), ("channel", channel)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise TypeError(f"`{key}` must be an int >= 0, got {value!r}.")
    with _LOCK:
        if scene >= len(image.scenes):
            raise ValueError(f"{Path(path).name} has {len(image.scenes)} scene(s); scene "
                             f"{scene} does not exist.")
        image.set_scene(int(scene))
        dims = image.dims
        for key, value, size in (("t", t, dims.T), ("z", z, dims.Z), ("channel", channel,
                                                                         dims.C)):
            if value >= size:
                raise ValueError(f"{Path(path).name}, scene {scene}: {key}={value} is out of "
                                 f"range (the scene has {size}).")
        if "S" in dims.order and dims.S > 1:
            raise ValueError(f"{Path(path).name} stores {dims.S} samples per pixel (RGB); "
                             "cellnb reads RGB only from single-image files.")
        plane = np.asarray(image.get_image_data("YX", T=int(t), C=int(channel), Z=int(z)))
    try:
        return check_image(plane, name)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{Path(path).name} (scene {scene}, t {t}, z {z}, channel "
                        f"{channel}): {err}") from None


def focus_score(image) -> float:
    """How sharp a TL image is: its normalised variance (variance / mean).

    The normalised variance is among the most robust autofocus measures for
    bright-field and phase-contrast microscopy (Groen, Young & Ligthart 1985;
    Sun, Duthaler & Nelson 2004): defocus blurs the cells' contrast into the
    background, lowering the variance, and dividing by the mean makes planes
    of different brightness comparable.

    Examples
    --------
    >>> from scipy import ndimage
    >>> sharp = np.random.default_rng(0).uniform(900, 1100, (32, 32)).astype(np.float32)
    >>> focus_score(sharp) > focus_score(ndimage.gaussian_filter(sharp, 2))
    True
    """
    image = check_image(image, "image", rgb=True).astype(np.float64)
    mean = image.mean()
    return float(image.var() / mean) if mean > 0 else 0.0


def choose_focus(pairs: pd.DataFrame, *, z=None, progress: bool = True) -> pd.DataFrame:
    """Mark the in-focus plane of every focus series (planes differing only in z).

    Parameters
    ----------
    pairs : DataFrame
        A :func:`cellnb.io.find_pairs` table with planes.
    z : int, optional
        The plane to use in every series (the user's choice); default: the
        one with the highest :func:`focus_score` of its TL image.
    progress : bool, default=True
        Progress bar over the TL planes read.

    Returns
    -------
    pairs : DataFrame
        A copy with ``focus_score`` (NaN when `z` is given) and ``in_focus``
        (True for one plane per position and time point; single images and
        one-plane series are always in focus).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scipy import ndimage
    >>> from cellnb.data import write_ome_tiff
    >>> from cellnb.io import find_pairs
    >>> rng = np.random.default_rng(0)
    >>> tl = rng.uniform(500, 1500, (32, 32))
    >>> planes = [ndimage.gaussian_filter(tl, 3), tl, ndimage.gaussian_filter(tl, 1.5)]
    >>> stack = np.stack([np.stack(planes), np.full((3, 32, 32), 100.0)])[None].astype(np.uint16)
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_ome_tiff(f"{folder}/field.ome.tif", stack, channels=["BF", "H2B"])
    >>> pairs = find_pairs(folder, files="*.ome.tif", channels={"tl": "BF", "fluorescence": 1})
    >>> choose_focus(pairs)[["pair_id", "in_focus"]]
              pair_id  in_focus
    0  field/s0_t0_z0     False
    1  field/s0_t0_z1      True
    2  field/s0_t0_z2     False
    """
    from .._shared.progress import Progress

    if not isinstance(pairs, pd.DataFrame) or "pair_id" not in pairs:
        raise TypeError("`pairs` must be a find_pairs() table.")
    pairs = pairs.copy()
    planes = [plane_of(row) for _, row in pairs.iterrows()]
    keyed = [k for k, p in enumerate(planes) if p is not None]
    pairs["focus_score"] = np.nan
    pairs["in_focus"] = True
    if not keyed:
        return pairs
    if z is not None and (isinstance(z, bool) or not isinstance(z, (int, np.integer)) or z < 0):
        raise ValueError(f"`z` must be a plane index >= 0, got {z!r}.")
    series = pairs.iloc[keyed].groupby(["position", "t"], sort=False).groups
    scores = np.full(len(pairs), np.nan)
    if z is None:
        with Progress(len(keyed), "focus", progress=progress, unit="plane") as bar:
            for k in keyed:
                p = planes[k]
                scores[k] = focus_score(read_plane(pairs["tl_path"].iloc[k], scene=p["scene"],
                                                   t=p["t"], z=p["z"], channel=p["tl_channel"]))
                bar.update()
        pairs["focus_score"] = scores
    column = pairs.columns.get_loc("in_focus")
    for (position, t), index in series.items():
        rows = [pairs.index.get_loc(i) for i in index]
        if len(rows) == 1:
            continue
        zs = [planes[r]["z"] for r in rows]
        if z is None:
            best = rows[int(np.argmax(scores[rows]))]
        elif z in zs:
            best = rows[zs.index(z)]
        else:
            raise ValueError(f"position {position!r}, t={t} has no plane z={z} (it has {zs}).")
        for r in rows:
            pairs.iloc[r, column] = r == best
    return pairs


def write_ome_zarr(path, image, labels=None, *, pixel_size_um=None, frame_interval=None,
                   overwrite: bool = False) -> Path:
    """Write an image and its label images as OME-Zarr (NGFF), through ome-zarr-py.

    OME-Zarr is the chunked, cloud-ready format of the OME community, read by
    napari (napari-ome-zarr), Fiji (MoBIE, n5-viewer), QuPath and bioio. The
    image goes to the root, each label image to ``labels/<name>`` (the NGFF
    labels layout), with the pixel size as the axes' physical scale. The
    folder is written beside `path` and renamed into place when complete.

    Parameters
    ----------
    path : str or Path
        Folder to create, named ``*.ome.zarr``.
    image : (Y, X) or (T, Y, X) ndarray
        TL image or movie (kept as it is: dtype and values).
    labels : (Y, X) / (T, Y, X) int ndarray, or mapping {name: labels}, optional
        Cell labels (a single array is named ``"cells"``), each the shape of
        `image`.
    pixel_size_um : float, optional
        Physical pixel size (Y and X).
    frame_interval : float, optional
        Time between frames (the t axis' scale), for movies.
    overwrite : bool, default=False
        Replace an existing `path` (once the new one is complete).

    Returns
    -------
    path : Path

    Raises
    ------
    ImportError
        Without ome-zarr-py (``pip install "cellnb[bioio]"``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> labels = np.zeros((16, 16), np.int32); labels[4:8, 4:8] = 1
    >>> path = write_ome_zarr(pathlib.Path(tempfile.mkdtemp()) / "a.ome.zarr",
    ...                       np.ones((16, 16), np.uint16), labels, pixel_size_um=0.65)
    >>> image, back, size = read_ome_zarr(path)
    >>> image.shape, sorted(back), bool((back["cells"] == labels).all()), size
    ((16, 16), ['cells'], True, 0.65)
    """
    try:
        import zarr
        from ome_zarr.writer import write_image, write_labels
    except ImportError:
        raise ImportError("OME-Zarr output needs ome-zarr-py: pip install "
                          "'cellnb[bioio]'.") from None
    from .._shared.files import atomic_dir
    from .._shared.validation import check_labels

    path = Path(path)
    if not path.name.endswith(".ome.zarr"):
        raise ValueError(f"an OME-Zarr folder's name ends in .ome.zarr; got {path.name}.")
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"`image` must be (Y, X) or (T, Y, X), got shape {image.shape}.")
    for k, frame in enumerate(image if image.ndim == 3 else [image]):
        check_image(frame, f"image[{k}]" if image.ndim == 3 else "image")
    layers = {} if labels is None else (dict(labels) if isinstance(labels, Mapping)
                                        else {"cells": labels})
    for name, layer in layers.items():
        layer = np.asarray(layer)
        if layer.shape != image.shape:
            raise ValueError(f"labels {name!r} (shape {layer.shape}) must match the image "
                             f"(shape {image.shape}).")
        for frame in (layer if layer.ndim == 3 else [layer]):
            check_labels(frame, f"labels {name!r}")
        layers[name] = layer.astype(np.int32)
    axes = "tyx" if image.ndim == 3 else "yx"
    scale = {"y": float(pixel_size_um or 1.0), "x": float(pixel_size_um or 1.0)}
    units = {"y": "micrometer", "x": "micrometer"} if pixel_size_um else None
    if image.ndim == 3:
        scale["t"] = float(frame_interval or 1.0)
    scale = {a: scale[a] for a in axes}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        write_image(image, root, axes=axes, scale_factors=[], scale=scale, axes_units=units)
        for name, layer in layers.items():
            write_labels(layer, root, name=name, axes=axes, scaler=None, scale_factors=[],
                         scale=scale, axes_units=units)
    return path


def read_ome_zarr(path) -> tuple[np.ndarray, dict, float]:
    """Read what :func:`write_ome_zarr` wrote: (image, {name: labels}, pixel size in µm).

    The pixel size is NaN when the file gives no physical unit. See
    :func:`write_ome_zarr` for an example.
    """
    import json

    import zarr

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"{path} is not an OME-Zarr folder (no zarr.json).")
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    root = zarr.open_group(str(path), mode="r")
    image = np.asarray(root[meta["datasets"][0]["path"]][:])
    labels = {}
    names = json.loads((path / "labels" / "zarr.json").read_text())["attributes"]["ome"][
        "labels"] if (path / "labels" / "zarr.json").is_file() else []
    for name in names:
        sub = json.loads((path / "labels" / name / "zarr.json").read_text())
        dataset = sub["attributes"]["ome"]["multiscales"][0]["datasets"][0]["path"]
        labels[name] = np.asarray(root[f"labels/{name}/{dataset}"][:])
    axes = meta["axes"]
    scale = meta["datasets"][0]["coordinateTransformations"][0]["scale"]
    x = [a for a in axes if a["name"] == "x"][0]
    size = float(scale[axes.index(x)]) if x.get("unit") == "micrometer" else float("nan")
    return image, labels, size


def plane_of(pair) -> dict | None:
    """The plane a pair row reads (scene, t, z and both channels), or None for single images.

    >>> plane_of({"tl_path": "a.nd2", "fl_path": "a.nd2", "scene": 0, "t": 3, "z": 0,
    ...           "tl_channel": 0, "fl_channel": 1})
    {'scene': 0, 't': 3, 'z': 0, 'tl_channel': 0, 'fl_channel': 1}
    >>> plane_of(("a_phs.tif", "a_Texas Red.tif")) is None
    True
    """
    if not isinstance(pair, (pd.Series, Mapping)) or pd.isna(pair.get("t", None)):
        return None
    keys = ("scene", "t", "z", "tl_channel", "fl_channel")
    missing = [k for k in keys if k not in pair or pd.isna(pair[k])]
    if missing:
        raise ValueError(f"a plane row needs {list(keys)}; {missing} are missing.")
    return {k: int(pair[k]) for k in keys}
