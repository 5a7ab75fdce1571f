"""Find, read and validate image pairs; read and write label images.

Compute functions in cellnb take arrays; this module is where files become
arrays. Images keep their dtype (uint8, uint16, float32) exactly: nothing is
rescaled on reading.

A *pair* is a transmitted-light (TL) image and the nuclear fluorescence image
of the same field of view, named by a shared stem as Cell-APP expects
(``<stem>_phs.tif`` and ``<stem>_Texas Red.tif`` by default), or two channels
of one plane of a microscope file (read through bioio, :mod:`cellnb.microscope`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._files import atomic_path
from ._validation import (BoundedPattern, check_image, check_labels, check_pixels,
                          check_same_shape)

__all__ = ["find_pairs", "check_pair_id", "read_pair", "read_image", "read_labels",
           "write_labels", "Record", "read_coco", "plane_of", "read_rois", "read_geojson"]

_TIFF = {".tif", ".tiff"}
_OTHER = {".png", ".jpg", ".jpeg"}
PAIR_COLUMNS = ["pair_id", "tl_path", "fl_path"]


def _pattern_regex(pattern: str) -> BoundedPattern:
    """Glob pattern -> regex whose group 1 is what the first ``*`` matched (the stem)."""
    if pattern.count("*") < 1 or "/" in pattern:
        raise ValueError(
            f"pattern {pattern!r} must be a file-name glob with a '*' standing for the shared "
            "stem, e.g. '*_phs.tif'."
        )
    parts = []
    first = True
    for ch in pattern:
        if ch == "*":
            parts.append("(.*)" if first else ".*")
            first = False
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return BoundedPattern("".join(parts) + r"\Z", "pattern", shown=pattern,
                          fix="use fewer '*' (one for the stem is enough)")


_ID_PART = re.compile(r"[\w\-. ]+")


def check_pair_id(pair_id) -> str:
    """Check that a pair id can name a record folder; return the folder name.

    Ids are stems of file names: letters, digits, ``_ - .`` and spaces, in
    ``/``-separated parts for pairs found in sub-folders (``plate1/A01``,
    stored in the folder ``plate1+A01``; ``+`` is never part of an id).
    Empty ids, hidden names and ``.`` / ``..`` parts are refused: they
    cannot be a folder of their own.

    Examples
    --------
    >>> check_pair_id("plate1/A01 t0")
    'plate1+A01 t0'
    >>> check_pair_id("..")
    Traceback (most recent call last):
    ...
    ValueError: pair id '..' cannot name a folder of its own: use letters, digits, '_', '-', '.' and spaces in '/'-separated parts, none empty or starting with '.'.
    """
    if not isinstance(pair_id, str):
        raise TypeError(f"a pair id must be a str, got {type(pair_id).__name__}.")
    parts = pair_id.split("/")
    if not all(_ID_PART.fullmatch(p) and not p.startswith(".") and p.strip() == p
               for p in parts):
        raise ValueError(f"pair id {pair_id!r} cannot name a folder of its own: use letters, "
                         "digits, '_', '-', '.' and spaces in '/'-separated parts, none empty "
                         "or starting with '.'.")
    return "+".join(parts)


def find_pairs(folder, *, tl: str = "*_phs.tif", fl: str = "*_Texas Red.tif",
               recursive: bool = False, files: str | None = None,
               channels: Mapping | None = None) -> pd.DataFrame:
    """Pair TL and fluorescence images in `folder`: by file stem, or by channel.

    Two layouts are read:

    * **separate files** (Cell-APP's): a TL file and a fluorescence file per
      field, paired by the stem that the ``*`` of `tl` and `fl` matches;
    * **one multi-channel file per field** (what microscopes write: OME-TIFF,
      ND2, CZI, LIF, through :mod:`cellnb.microscope`): give `files` (a
      glob) and `channels`, which names the TL and fluorescence channels.

    In both layouts a file holding several planes (time-lapse T, positions /
    scenes, z focus series) is expanded: each plane becomes one pair whose id
    records file, scene, t and z (``movie/s0_t03_z1``), with the columns of
    :data:`cellnb.microscope.PLANE_COLUMNS` (``position`` names the field of
    view; pixel sizes come from the metadata). Nothing is rescaled. Select
    planes by filtering the table like any DataFrame (``pairs[pairs.z == 1]``).

    Parameters
    ----------
    folder : str or Path
        Folder holding the images.
    tl, fl : str, default ``"*_phs.tif"``, ``"*_Texas Red.tif"``
        File-name globs of the transmitted-light and fluorescence images. The
        part matched by the first ``*`` is the stem that pairs them
        (Cell-APP's naming by default).
    recursive : bool, default=False
        Also search sub-folders; the stem then includes the relative folder.
    files : str, optional
        File-name glob of multi-channel files (e.g. ``"*.nd2"``); needs
        `channels`, and `tl` / `fl` are then not used.
    channels : mapping, optional
        ``{"tl": name or index, "fluorescence": name or index}``, the
        channels of each file (see :func:`cellnb.microscope.describe`).

    Returns
    -------
    pairs : DataFrame
        Columns ``pair_id`` (the stem), ``tl_path``, ``fl_path`` (Path),
        sorted by ``pair_id``; plus :data:`~cellnb.microscope.PLANE_COLUMNS`
        when planes were expanded (empty for single-image pairs).

    Hidden files (names starting with ``.``, such as the ``._*`` copies macOS
    leaves on shared drives) are skipped, with a warning.

    Raises
    ------
    FileNotFoundError
        If `folder` does not exist or holds no file matching either pattern.
    ValueError
        If some files have no partner (the message lists them on both sides),
        two files of one side share a stem, or a stem cannot be a pair id
        (see :func:`check_pair_id`).

    Examples
    --------
    >>> import tempfile
    >>> from cellnb.data import synthetic_pairs, write_pairs
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_pairs(synthetic_pairs(2, shape=(64, 64), n_cells=3), folder)
    >>> find_pairs(folder)["pair_id"].tolist()
    ['synthetic_000', 'synthetic_001']

    One OME-TIFF with two channels and three time points:

    >>> import numpy as np
    >>> from cellnb.data import write_ome_tiff
    >>> _ = write_ome_tiff(f"{folder}/movie.ome.tif", np.ones((3, 2, 1, 32, 32), np.uint16),
    ...                    channels=["BF", "mCherry"])
    >>> pairs = find_pairs(folder, files="*.ome.tif",
    ...                    channels={"tl": "BF", "fluorescence": "mCherry"})
    >>> pairs[["pair_id", "t", "fl_channel", "position"]]
              pair_id  t  fl_channel  position
    0  movie/s0_t0_z0  0           1  movie/s0
    1  movie/s0_t1_z0  1           1  movie/s0
    2  movie/s0_t2_z0  2           1  movie/s0
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist or is not a folder.")
    if files is not None or channels is not None:
        if files is None or channels is None:
            raise ValueError("multi-channel files need both `files` (a glob such as '*.nd2') "
                             "and `channels` ({'tl': ..., 'fluorescence': ...}).")
        return _find_multichannel(folder, files, channels, recursive)
    found, hidden = {}, []
    for side, pattern in (("tl", tl), ("fl", fl)):
        regex = _pattern_regex(pattern)
        paths = folder.rglob("*") if recursive else folder.iterdir()
        stems = {}
        for path in sorted(paths):
            match = regex.match(path.name)
            if not (match and path.is_file()):
                continue
            rel = path.relative_to(folder)
            if any(part.startswith(".") for part in rel.parts):
                hidden.append(rel.as_posix())
                continue
            rel_dir = rel.parent.as_posix()
            stem = match.group(1) if rel_dir == "." else f"{rel_dir}/{match.group(1)}"
            try:
                check_pair_id(stem)
            except ValueError:
                raise ValueError(f"{path.name}: its stem {stem!r} (what {pattern!r} matched) "
                                 "cannot be a pair id: rename the file so the stem uses "
                                 "letters, digits, '_', '-', '.' and spaces (and does not start "
                                 "with '.').") from None
            if stem in stems:
                raise ValueError(f"{stems[stem].name} and {path.name} both match {pattern!r} "
                                 f"with the stem {stem!r}; make the pattern narrower or move "
                                 "one of them out.")
            stems[stem] = path
        found[side] = stems
    if hidden:
        import warnings

        warnings.warn(f"skipped {len(hidden)} hidden file(s) in {folder} (e.g. {hidden[0]!r}; "
                      "macOS leaves '._' copies on shared drives).", UserWarning, stacklevel=2)
    if not found["tl"] and not found["fl"]:
        raise FileNotFoundError(
            f"no images matching tl={tl!r} or fl={fl!r} in {folder}; "
            "set `tl` and `fl` to your file-name patterns."
        )
    only_tl = sorted(set(found["tl"]) - set(found["fl"]))
    only_fl = sorted(set(found["fl"]) - set(found["tl"]))
    if only_tl or only_fl:
        def show(stems, side):
            names = [found[side][s].name for s in stems[:10]]
            more = f" and {len(stems) - 10} more" if len(stems) > 10 else ""
            return (", ".join(names) + more) if names else "none"
        raise ValueError(
            f"unpaired images in {folder}: TL without fluorescence ({tl!r}): "
            f"{show(only_tl, 'tl')}; fluorescence without TL ({fl!r}): {show(only_fl, 'fl')}. "
            "Add the missing partners, move the extra files out, or fix the patterns."
        )
    rows = [(s, found["tl"][s], found["fl"][s]) for s in sorted(found["tl"])]
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    stacks = [k for k, (a, b) in enumerate(zip(pairs["tl_path"], pairs["fl_path"]))
              if _holds_planes(a) or _holds_planes(b)]
    if not stacks:
        return pairs
    from .microscope import plane_rows

    parts = [pairs.drop(index=stacks)]
    parts += [plane_rows(pairs["tl_path"][k], pairs["fl_path"][k], id_stem=pairs["pair_id"][k])
              for k in stacks]
    return _plane_table(parts)


def _holds_planes(path: Path) -> bool:
    """Whether a file must be read plane by plane (a stack, or a microscope format)."""
    suffix = path.suffix.lower()
    if suffix in _OTHER:
        return False
    if suffix not in _TIFF:
        return True
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
            return len(tif.pages) > 1 or len(tif.series) > 1 or not (
                len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4)))
    except Exception:  # a corrupt file: read_image reports it when its pair is read
        return False


def _plane_table(parts) -> pd.DataFrame:
    """Concatenate pair tables; plane columns are nullable where single images have none."""
    from .microscope import PLANE_COLUMNS

    table = pd.concat([p.reindex(columns=PAIR_COLUMNS + PLANE_COLUMNS) for p in parts],
                      ignore_index=True)
    for column in ("scene", "t", "z", "tl_channel", "fl_channel"):
        table[column] = table[column].astype("Int64")
    twice = table["pair_id"][table["pair_id"].duplicated()].tolist()
    if twice:
        raise ValueError(f"pair id(s) {twice[:5]} come from more than one file (e.g. a.ome.tif "
                         "and a.tif); make the pattern narrower or move one of them out.")
    return table.sort_values("pair_id", ignore_index=True)


def _find_multichannel(folder: Path, files: str, channels, recursive: bool) -> pd.DataFrame:
    from .microscope import check_channels, plane_rows, stem

    check_channels(channels)
    regex = _pattern_regex(files)
    paths = sorted(folder.rglob("*") if recursive else folder.iterdir())
    chosen = [p for p in paths if p.is_file() and regex.match(p.name)
              and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if not chosen:
        raise FileNotFoundError(f"no files matching {files!r} in {folder}.")
    parts = []
    for path in chosen:
        rel_dir = path.relative_to(folder).parent.as_posix()
        id_stem = stem(path) if rel_dir == "." else f"{rel_dir}/{stem(path)}"
        check_pair_id(id_stem)
        parts.append(plane_rows(path, channels=channels, id_stem=id_stem))
    return _plane_table(parts)


def _image_header(path: Path, name: str) -> dict:
    """Shape, dtype and plane count of an image file, read from its header alone (nothing
    is decoded, so a file that claims a huge image costs nothing)."""
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise ValueError("it holds no image")
                series = tif.series[0]
                return {"shape": tuple(series.shape), "dtype": np.dtype(series.dtype),
                        "planes": len(tif.pages), "axes": series.axes, "bit_depth": None}
        with open(path, "rb") as f:
            head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":  # PNG's own header
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            depth, colour = head[24], head[25]
            bands = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 1)  # grey, RGB, palette, +alpha
            frames = 1
        else:
            from PIL import Image

            with Image.open(path) as im:  # reads the header only
                (width, height), bands = im.size, len(im.getbands())
                frames, depth = getattr(im, "n_frames", 1), 8
        shape = (height, width) if bands == 1 else (height, width, bands)
        return {"shape": shape, "dtype": np.dtype(np.uint16 if depth == 16 else np.uint8),
                "planes": frames, "axes": None, "bit_depth": depth}
    except Exception as err:  # corrupt or truncated files: name the file, keep the cause
        raise ValueError(f"cannot read {name} file {path}: {err}") from err


def read_image(path, *, name: str = "image", rgb: bool = True) -> np.ndarray:
    """Read one 2-D image (TIFF, PNG or JPEG) keeping its dtype.

    Parameters
    ----------
    path : str or Path
        Image file.
    name : str, default="image"
        What the image is, for error messages.
    rgb : bool, default=True
        Accept (H, W, 3) RGB images (an opaque alpha channel is dropped, and
        16-bit colour PNGs keep their 16 bits). With False, RGB raises.

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray
        uint8, uint16 or float32, exactly as stored.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        For files of several planes (time series, stacks, channels),
        unreadable files, wrong shapes, NaN or inf, and files whose header
        claims more than ``MAX_PIXELS`` pixels (16384 x 16384) or more
        memory than is free (checked before anything is decoded).
    TypeError
        For dtypes other than uint8, uint16, float32.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(path, np.ones((4, 5), np.uint16))
    >>> read_image(path).dtype
    dtype('uint16')
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in _TIFF | _OTHER:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r}; expected one of "
                         f"{sorted(_TIFF | _OTHER)}.")
    header = _image_header(path, name)
    shape = header["shape"]
    if header["planes"] > 1 or len(shape) > 3 or (len(shape) == 3 and shape[-1] not in (2, 3, 4)):
        axes = f", axes {header['axes']!r}" if header.get("axes") else ""
        raise ValueError(
            f"{path.name} holds {header['planes']} planes (shape {shape}{axes}: channels, "
            "time points or z), and read_image reads one 2-D image. Pair it with "
            "cellnb.io.find_pairs, which makes one pair per plane (time point, position, z), "
            "or read a plane with cellnb.microscope.read_plane (both need: pip install "
            "'cellnb[bioio]')."
        )
    check_pixels(shape[:2], header["dtype"], f"{name} file {path}")
    try:
        if suffix in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                image = tif.series[0].asarray()
        elif header["bit_depth"] == 16:  # Pillow cuts 16-bit colour PNGs to 8 bits
            import imagecodecs

            image = imagecodecs.png_decode(path.read_bytes())
        else:
            import warnings

            import imageio.v3 as iio
            from PIL import Image

            with warnings.catch_warnings():  # the size is checked above, against MAX_PIXELS
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = np.asarray(iio.imread(path))
    except Exception as err:  # corrupt or truncated files: name the file, keep the cause
        raise ValueError(f"cannot read {name} file {path}: {err}") from err
    if image.ndim == 3 and image.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
        alpha = image[..., -1]
        if alpha.min() != alpha.max():  # a real extra channel, not an opaque alpha
            raise ValueError(f"{path.name} has {image.shape[-1]} channels and the last varies "
                             f"(values {alpha.min()}-{alpha.max()}), so it is data, not "
                             f"transparency; save the channel you want as its own {name} file.")
        image = image[..., 0] if image.shape[-1] == 2 else image[..., :3]
    try:
        return check_image(image, name, rgb=rgb)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path.name}: {err}") from None


def _pair_paths(pair) -> tuple[Path, Path]:
    if isinstance(pair, (pd.Series, Mapping)):
        try:
            return Path(pair["tl_path"]), Path(pair["fl_path"])
        except KeyError as err:
            raise ValueError(
                f"a pair row must have 'tl_path' and 'fl_path', got keys {list(pair.keys())}."
            ) from err
    if isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2:
        return Path(pair[0]), Path(pair[1])
    raise TypeError(
        "`pair` must be a row of find_pairs() or a (tl_path, fl_path) tuple, "
        f"got {type(pair).__name__}."
    )


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


def read_pair(pair) -> tuple[np.ndarray, np.ndarray]:
    """Read a TL / fluorescence pair and check that they match.

    Parameters
    ----------
    pair : Series, mapping or (tl_path, fl_path)
        A row of :func:`find_pairs` (a plane row reads its plane) or two paths.

    Returns
    -------
    tl : (H, W) or (H, W, 3) ndarray
        Transmitted-light image (RGB allowed).
    fluorescence : (H, W) ndarray
        Nuclear fluorescence image.

    Raises
    ------
    ValueError
        If the fluorescence image is RGB, or the two differ in height/width.

    Examples
    --------
    >>> import tempfile
    >>> from cellnb.data import synthetic_pairs, write_pairs
    >>> pairs = write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3), tempfile.mkdtemp())
    >>> tl, fl = read_pair(pairs.iloc[0])
    >>> tl.shape, fl.dtype
    ((64, 64), dtype('uint16'))
    """
    tl_path, fl_path = _pair_paths(pair)
    plane = plane_of(pair)
    if plane is not None:
        from .microscope import read_plane

        where = {k: plane[k] for k in ("scene", "t", "z")}
        tl = read_plane(tl_path, **where, channel=plane["tl_channel"],
                        name="transmitted-light image")
        fl = read_plane(fl_path, **where, channel=plane["fl_channel"], name="fluorescence image")
        check_same_shape(tl, fl, f"transmitted-light plane of {tl_path.name}",
                         f"fluorescence plane of {fl_path.name}")
        return tl, fl
    tl = read_image(tl_path, name="transmitted-light image", rgb=True)
    fl = read_image(fl_path, name="fluorescence image", rgb=False)
    check_same_shape(tl, fl, f"transmitted-light image {tl_path.name}",
                     f"fluorescence image {fl_path.name}")
    return tl, fl


def read_labels(path) -> np.ndarray:
    """Read a label image (TIFF or PNG) as (H, W) int32, 0 = background.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.tif"
    >>> write_labels(path, np.array([[0, 1], [2, 2]]))
    >>> read_labels(path)
    array([[0, 1],
           [2, 2]], dtype=int32)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist.")
    check_pixels(_image_header(path, "label")["shape"][:2], np.int32, f"label file {path}")
    if path.suffix.lower() in _TIFF:
        import tifffile

        try:
            labels = tifffile.imread(path)
        except Exception as err:
            raise ValueError(f"cannot read label file {path}: {err}") from err
    else:
        import imageio.v3 as iio

        try:
            labels = np.asarray(iio.imread(path))
        except Exception as err:
            raise ValueError(f"cannot read label file {path}: {err}") from err
    try:
        return check_labels(labels, "labels")
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path.name}: {err}") from None


def write_labels(path, labels) -> None:
    """Write a label image atomically as a compressed int32 TIFF.

    Parameters
    ----------
    path : str or Path
        Target ``.tif`` / ``.tiff`` file; parent folders are created.
    labels : (H, W) ndarray of int
        Label image, 0 = background.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.tif"
    >>> write_labels(path, np.zeros((3, 3), np.int32))
    >>> path.exists()
    True
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in _TIFF:
        raise ValueError(f"label images are written as TIFF; got {path.name}, use a .tif name.")
    labels = check_labels(np.asarray(labels) if not isinstance(labels, np.ndarray) else labels)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, compression="zlib")


@dataclass
class Record:
    """One annotated image.

    Attributes
    ----------
    id : str
        Unique name of the image (a pair id, or a COCO file name stem).
    image : ndarray or None
        The transmitted-light image (None when not loaded).
    labels : (H, W) int32 ndarray
        Cell label image, 0 = background.
    cells : DataFrame
        One row per cell, indexed by ``label`` (features, class, score, ...).
    provenance : dict
        Where the record came from (source paths, config, model, versions).
    """

    id: str
    image: np.ndarray | None
    labels: np.ndarray
    cells: pd.DataFrame
    provenance: dict = field(default_factory=dict)


def _coco_source(source):
    """Return (coco dict, json path or None) for a path, split folder or dict."""
    if isinstance(source, Mapping):
        return dict(source), None
    if not isinstance(source, (str, Path)):
        raise TypeError(f"a COCO source is a .json path, a split folder or a dict, got "
                        f"{type(source).__name__}.")
    path = Path(source)
    if path.is_dir():
        candidates = sorted(path.glob("*.json"))
        if len(candidates) != 1:
            raise ValueError(f"{path} must hold exactly one COCO .json file, found "
                             f"{[c.name for c in candidates]}; pass the json path instead.")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"COCO file {path} does not exist.")

    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"{path} is not a valid COCO file: key(s) {twice} appear twice in "
                             "one object; keep one.")
        return dict(pairs)

    try:
        coco = json.loads(path.read_text(), object_pairs_hook=no_repeats)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a text (UTF-8) JSON file: {err}") from err
    return coco, path


def label_rles(labels):
    """COCO run-length encoding of every cell of a label image.

    Yields ``(label, window, rle)`` per cell in label order: the cell's
    bounding-box slices and its exact RLE (counts as a str, JSON-ready), as
    pycocotools encodes a Fortran-ordered uint8 mask.

    Examples
    --------
    >>> labels = np.zeros((3, 4), np.int32); labels[1, 1:3] = 5
    >>> [(lab, rle["size"], rle["counts"]) for lab, _, rle in label_rles(labels)]
    [(5, [3, 4], '41202')]
    """
    from pycocotools import mask as mask_utils
    from scipy import ndimage

    labels = check_labels(labels, "labels")
    windows = ndimage.find_objects(labels)
    for lab in np.unique(labels[labels > 0]):
        window = windows[lab - 1]
        mask = np.zeros(labels.shape, np.uint8, order="F")
        mask[window] = labels[window] == lab
        rle = mask_utils.encode(mask)
        rle["counts"] = rle["counts"].decode("ascii")
        yield int(lab), window, rle


def read_coco(source, *, image_root=None, images: bool = True) -> list[Record]:
    """Read a COCO instance-segmentation dataset (one split) into records.

    Label images are rebuilt from RLE or polygon masks. COCO allows
    instances to overlap, a label image does not: contested pixels go to the
    **smaller** instance (so small cells stay visible), and the number of such
    pixels is kept in ``record.provenance["overlap_pixels"]``.

    Parameters
    ----------
    source : str, Path or dict
        A COCO ``.json`` file, a split folder holding exactly one, or the
        parsed dict.
    image_root : str or Path, optional
        Folder the ``file_name`` of each image is relative to (as Detectron2's
        ``register_coco_instances`` takes it). Default: ``images/`` beside the
        json if that exists, else the json's folder.
    images : bool, default=True
        Read the images too (set False to read annotations only).

    Returns
    -------
    records : list of Record
        One per COCO image, in the file's order. ``cells`` is indexed by
        label (1..n in annotation order, or the original labels of a cellnb
        export, kept in ``cellnb_label``) with columns ``annotation_id``,
        ``category_id``, ``class_name`` (the category's name), ``area`` (pixels
        in the label image),
        ``score`` (when present) and the box ``y0, x0, y1, x1``.

    Examples
    --------
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 5}],
    ...         "categories": [{"id": 1, "name": "cell"}],
    ...         "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0,
    ...                          "segmentation": [[1, 1, 3, 1, 3, 2, 1, 2]],
    ...                          "bbox": [1, 1, 2, 1], "area": 2}]}
    >>> record = read_coco(coco, images=False)[0]
    >>> record.labels  # pycocotools rasterises the polygon
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 0, 0],
           [0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0]], dtype=int32)
    >>> record.cells[["annotation_id", "class_name"]]
           annotation_id class_name
    label                          
    1                  7       cell
    """
    from pycocotools import mask as mask_utils

    from .classify import CLASS_COLUMN

    coco, json_path = _coco_source(source)
    # checked before pycocotools (C) sees anything: it crashes on what it does not expect
    from . import _coco_schema

    _coco_schema.check(coco, f"COCO file {json_path}" if json_path else "the COCO dict")
    if image_root is None and json_path is not None:
        image_root = json_path.parent / "images"
        if not image_root.is_dir():
            image_root = json_path.parent
    if images and image_root is None:
        raise ValueError("pass image_root= to read images of a COCO dict, or images=False.")
    categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
    by_image: dict = {im["id"]: [] for im in coco["images"]}
    crowd = 0
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0):  # a region COCO tells evaluators to ignore: not a cell
            crowd += 1
            continue
        by_image[ann["image_id"]].append(ann)
    if crowd:
        import warnings

        warnings.warn(f"{crowd} annotation(s) with iscrowd=1 (groups that COCO marks as "
                      "regions to ignore) are not cells and were left out of the records.",
                      UserWarning, stacklevel=2)
    records = []
    for info in coco["images"]:
        h, w = int(info["height"]), int(info["width"])
        anns = by_image[info["id"]]
        rles = []
        for ann in anns:
            seg = ann["segmentation"]
            if isinstance(seg, list):  # polygons
                rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed
                rles.append(mask_utils.frPyObjects(seg, h, w))
            else:
                rles.append(seg)
        # cellnb's own exports carry each cell's original label; others get 1..n
        ids = [int(ann.get("cellnb_label", i + 1)) for i, ann in enumerate(anns)]
        if len(set(ids)) != len(ids):
            ids = list(range(1, len(anns) + 1))
        labels = np.zeros((h, w), np.int32)
        coverage = np.zeros((h, w), np.uint16)
        if rles:
            mask_areas = mask_utils.area(rles)
            boxes_xywh = np.asarray(mask_utils.toBbox(rles)).reshape(-1, 4).astype(int)
            for i in np.argsort(-mask_areas, kind="stable"):  # large first, small on top
                x, y, bw, bh = boxes_xywh[i]
                window = (slice(y, y + bh + 1), slice(x, x + bw + 1))
                mask = mask_utils.decode(rles[i])[window].astype(bool)
                labels[window][mask] = ids[i]
                coverage[window] += mask
        from scipy import ndimage

        top = max(ids, default=0)
        areas = np.bincount(labels.ravel(), minlength=top + 1)
        boxes = ndimage.find_objects(labels, max_label=top)
        rows = []
        for i, ann in enumerate(anns):
            row = {"label": ids[i], "annotation_id": ann.get("id"),
                   "category_id": ann.get("category_id"),
                   CLASS_COLUMN: categories.get(ann.get("category_id")),
                   "area": int(areas[ids[i]])}
            if "score" in ann:
                row["score"] = float(ann["score"])
            box = boxes[ids[i] - 1]
            row.update(zip(("y0", "x0", "y1", "x1"), (box[0].start, box[1].start, box[0].stop,
                                                      box[1].stop) if box else (0, 0, 0, 0)))
            rows.append(row)
        cells = pd.DataFrame(rows, columns=None if rows else ["label"]).set_index("label")
        image = read_image(Path(image_root) / info["file_name"], rgb=True) if images else None
        if image is not None and image.shape[:2] != (h, w):
            raise ValueError(f"image {info['file_name']} has shape {image.shape[:2]}, but the "
                             f"COCO file says ({h}, {w}).")
        records.append(Record(
            id=info.get("cellnb_id", Path(info["file_name"]).with_suffix("").as_posix()),
            image=image, labels=labels, cells=cells,
            provenance={"source": str(json_path) if json_path else None,
                        "file_name": info["file_name"], "coco_image_id": info["id"],
                        "overlap_pixels": int((coverage > 1).sum())}))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"COCO file lists the same image more than once: "
                         f"{sorted({i for i in ids if ids.count(i) > 1})}.")
    return records


def _object_shape(shape) -> tuple[int, int]:
    ok = (isinstance(shape, (tuple, list)) and len(shape) >= 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                  for v in shape[:2]))
    if not ok:
        raise ValueError(f"`shape` must be the image's (height, width), got {shape!r}; pass "
                         "record.labels.shape or image.shape[:2].")
    check_pixels(shape[:2], np.int32, "`shape`")
    return int(shape[0]), int(shape[1])


def read_rois(path, shape) -> tuple[np.ndarray, pd.Series]:
    """Cells drawn or corrected in Fiji: an ImageJ ROI zip (ROI Manager > More > Save) or .roi.

    Area ROIs (polygons, freehand, traced, rectangles, ovals, composites with
    holes) are filled by pixel centres, as ImageJ fills them; lines and
    points are skipped. A ROI named by an id > 0 (cellnb's export names
    them so) keeps it; the others (drawn in Fiji) get the next free ids in
    file order. Pass the labels to :func:`cellnb.curate.replace_all` to keep the
    corrections in the record.

    Parameters
    ----------
    path : str or Path
        ``.zip`` of ROIs or one ``.roi``.
    shape : (int, int)
        The image's height and width (a ROI file does not hold it).

    Returns
    -------
    labels : (H, W) int32 ndarray
    groups : Series
        ImageJ's ROI group of each cell (cellnb writes 1, 2, ... for its
        classes in sorted order), indexed by label; cells without a group
        are absent.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cellnb.export import export
    >>> labels = np.zeros((12, 12), np.int32); labels[2:6, 2:6] = 1; labels[3, 3] = 0
    >>> labels[6:10, 2:9] = 2
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = export([Record("a", np.zeros((12, 12), np.uint8), labels, pd.DataFrame())],
    ...            folder / "ds", splits={"train": 1}, formats=["imagej-roi"])
    >>> back, _ = read_rois(folder / "ds" / "train" / "imagej-roi" / "a.zip", labels.shape)
    >>> bool((back == labels).all())
    True
    """
    from ._objects import read_rois as read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ROI file {path} does not exist.")
    shape = _object_shape(shape)
    try:
        labels, groups = read(path, shape)
    except Exception as err:  # roifile on a damaged zip / roi: name the file, keep the cause
        raise ValueError(f"cannot read ImageJ ROIs from {path}: {err}") from err
    return labels, pd.Series(groups, dtype="Int64", name="group").rename_axis("label")


def read_geojson(path, shape) -> tuple[np.ndarray, pd.Series]:
    """Cells drawn or corrected in QuPath: a GeoJSON FeatureCollection (File > Export objects).

    Polygon and MultiPolygon features (holes included) are filled by pixel
    centres; a feature named by an id > 0 (cellnb's export names them so)
    keeps it, the others get the next free ids; classifications come back
    as class names. Pass
    the labels to :func:`cellnb.curate.replace_all` to keep the corrections.

    Parameters
    ----------
    path : str or Path
    shape : (int, int)
        The image's height and width.

    Returns
    -------
    labels : (H, W) int32 ndarray
    classes : Series
        QuPath classification name of each cell, indexed by label; cells
        without one are absent.

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> labels = np.zeros((8, 8), np.int32); labels[1:4, 1:6] = 7
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cells.geojson"
    >>> feature = {"type": "Feature", "properties": {"name": "7", "classification":
    ...            {"name": "mitotic"}}, "geometry": {"type": "Polygon",
    ...            "coordinates": [[[1, 1], [6, 1], [6, 4], [1, 4], [1, 1]]]}}
    >>> _ = path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    >>> back, classes = read_geojson(path, (8, 8))
    >>> bool((back == labels).all()), classes.to_dict()
    (True, {7: 'mitotic'})
    """
    from ._objects import read_geojson as read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GeoJSON file {path} does not exist.")
    shape = _object_shape(shape)
    labels, classes = read(path, shape)
    return labels, pd.Series(classes, dtype=object, name="class_name").rename_axis("label")
