"""Find TL / fluorescence pairs in a folder and read them, checked against each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._shared.validation import BoundedPattern, check_same_shape
from ._images import _OTHER, _TIFF, read_image
from .microscope import plane_of

__all__ = ["find_pairs", "check_pair_id", "read_pair"]


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
      ND2, CZI, LIF, through :mod:`cellnb.io.microscope`): give `files` (a
      glob) and `channels`, which names the TL and fluorescence channels.

    In both layouts a file holding several planes (time-lapse T, positions /
    scenes, z focus series) is expanded: each plane becomes one pair whose id
    records file, scene, t and z (``movie/s0_t03_z1``), with the columns of
    :data:`cellnb.io.microscope.PLANE_COLUMNS` (``position`` names the field of
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
        channels of each file (see :func:`cellnb.io.microscope.describe`).

    Returns
    -------
    pairs : DataFrame
        Columns ``pair_id`` (the stem), ``tl_path``, ``fl_path`` (Path),
        sorted by ``pair_id``; plus :data:`~cellnb.io.microscope.PLANE_COLUMNS`
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
