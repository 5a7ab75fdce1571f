"""Input checks shared by the public functions (private).

Every check raises with a message naming what was expected, what came, and
the fix, as STYLE.md asks. Nothing here converts or rescales data.
"""

from __future__ import annotations

import numpy as np

#: dtypes accepted for microscopy images, kept exactly as they come.
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def check_image(image, name: str = "image", *, rgb: bool = False) -> np.ndarray:
    """Return `image` as an ndarray after checking kind, shape, dtype and values.

    Parameters
    ----------
    image : ndarray
        (H, W) image, or (H, W, 3) when `rgb` is True.
    name : str
        Name used in error messages (e.g. ``"fluorescence"``).
    rgb : bool
        Whether an (H, W, 3) RGB image is acceptable.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"`{name}` must be a numpy ndarray, got {type(image).__name__}; "
            f"convert it with numpy.asarray({name})."
        )
    expected = "(H, W) or (H, W, 3)" if rgb else "(H, W)"
    ok_shape = image.ndim == 2 or (rgb and image.ndim == 3 and image.shape[-1] == 3)
    if not ok_shape:
        hint = ""
        if image.ndim == 3 and image.shape[-1] in (3, 4) and not rgb:
            hint = f" An RGB image cannot be used as `{name}`: pass one channel, e.g. {name}[..., 0]."
        elif image.ndim == 3 and image.shape[0] > 1:
            hint = " A stack of frames is not one image: pass a single frame, e.g. stack[0]."
        raise ValueError(f"`{name}` must have shape {expected}, got shape {image.shape}.{hint}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"`{name}` must be at least 2 x 2 pixels, got shape {image.shape}.")
    if image.dtype not in IMAGE_DTYPES:
        raise TypeError(
            f"`{name}` must be uint8, uint16 or float32, got {image.dtype}; "
            f"convert it explicitly, e.g. {name}.astype(numpy.float32)."
        )
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        n_bad = int((~np.isfinite(image)).sum())
        raise ValueError(
            f"`{name}` contains {n_bad} NaN or infinite pixel(s); replace them first, "
            f"e.g. numpy.nan_to_num({name})."
        )
    return image


#: Most pixels of one image cellnb reads or rebuilds (16384 x 16384): its label image and
#: the overlap tables of matching take several bytes a pixel; larger scans are tiled first.
MAX_PIXELS = 2**28


def check_pixels(shape, dtype, what: str) -> None:
    """Refuse an image of `shape` before it is decoded or allocated: more than
    :data:`MAX_PIXELS` pixels, or more bytes than the machine has free.

    >>> check_pixels((100, 100), np.uint16, "image file a.tif")
    >>> check_pixels((70000, 70000), np.uint8, "image file b.tif")
    Traceback (most recent call last):
    ...
    ValueError: image file b.tif claims 70000 x 70000 pixels (4900000000), more than the 268435456 (16384 x 16384) cellnb reads; crop or tile the image first.
    """
    height, width = int(shape[0]), int(shape[1])
    pixels = height * width
    if pixels > MAX_PIXELS:
        raise ValueError(f"{what} claims {height} x {width} pixels ({pixels}), more than the "
                         f"{MAX_PIXELS} (16384 x 16384) cellnb reads; crop or tile the image "
                         "first.")
    import psutil

    need = int(np.prod([int(n) for n in shape])) * np.dtype(dtype).itemsize
    free = psutil.virtual_memory().available
    if need > free:
        raise ValueError(f"{what} needs {need / 2**30:.1f} GiB to read and this machine has "
                         f"{free / 2**30:.1f} GiB free; crop or tile the image, or free memory.")


def check_labels(labels, name: str = "labels") -> np.ndarray:
    """Return `labels` as a (H, W) int32 array after checking kind and values.

    Integer arrays of any width are accepted when every id fits in int32;
    float or bool arrays raise, because ids are not intensities.
    """
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy ndarray, got {type(labels).__name__}.")
    if labels.ndim != 2:
        raise ValueError(f"`{name}` must be a (H, W) label image, got shape {labels.shape}.")
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"`{name}` must hold integer ids (0 = background), got dtype {labels.dtype}; "
            "label a mask with skimage.measure.label(mask) first."
        )
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
        raise ValueError(
            f"`{name}` ids must lie in [0, {np.iinfo(np.int32).max}], "
            f"got range [{labels.min()}, {labels.max()}]."
        )
    return labels.astype(np.int32, copy=False)


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless `a` and `b` share their first two dimensions (H, W)."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"`{name_a}` (shape {a.shape}) and `{name_b}` (shape {b.shape}) must have the "
            "same height and width; check that the two images belong to the same field of view."
        )


def check_tiling(tile_shape, halo):
    """Check `tile_shape` (two positive ints) and `halo` (two non-negative ints), each optional.

    >>> check_tiling((256, 256), (32, 32))
    >>> check_tiling((0, 256), None)
    Traceback (most recent call last):
    ...
    ValueError: `tile_shape` must be two positive ints, got (0, 256).
    """
    for name, value, low in (("tile_shape", tile_shape, 1), ("halo", halo, 0)):
        if value is None:
            continue
        ok = np.ndim(value) == 1 and len(value) == 2
        ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low
                        for v in value)
        if not ok:
            kind = "positive" if low else "non-negative"
            raise ValueError(f"`{name}` must be two {kind} ints, got {value!r}.")


#: Largest seed: every library cellnb seeds (numpy, torch, scikit-learn) takes 0..2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(seed, *, generator: bool = False) -> int | np.random.Generator:
    """`seed` as an int in 0..:data:`MAX_SEED` (or a numpy Generator when `generator`).

    >>> check_seed(3)
    3
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: `seed` must be an int from 0 to 4294967295 (2**32 - 1), got -1.
    """
    if generator and isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        kinds = "an int or numpy.random.Generator" if generator else "an int"
        raise TypeError(f"`seed` must be {kinds}, got {type(seed).__name__}.")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"`seed` must be an int from 0 to {MAX_SEED} (2**32 - 1), got {seed}.")
    return int(seed)


def as_generator(seed) -> np.random.Generator:
    """Return a numpy Generator for `seed` (int in 0..2**32 - 1, None or Generator)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(check_seed(seed, generator=True))


# -- file schemas (pydantic errors as one line) ---------------------------------------
def entry_name(kind: str, index: int, item) -> str:
    """``annotations[3] (id 7)``: where an item sits in a file, with its id when it has one."""
    ident = item.get("id") if isinstance(item, dict) else None
    return f"{kind}[{index}]" + (f" (id {ident!r})" if ident is not None else "")


def is_type_name(part) -> bool:
    """pydantic puts the tried type of a union into the location: 'int', 'list[...]'."""
    return isinstance(part, str) and ("[" in part or part in ("int", "float", "str", "Rle"))


def schema_problems(err, data: dict) -> str:
    """A pydantic ValidationError as one line: each problem's entry (``annotations[3] (id 7)``),
    field, what pydantic expected and what came; five at most."""
    lines, seen = [], set()
    for problem in err.errors():
        loc = list(problem["loc"])
        where = ""
        if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(data.get(loc[0]), list):
            where = entry_name(loc[0], loc[1], data[loc[0]][loc[1]])
            loc = loc[2:]
        field = ".".join(str(part) for part in loc if not is_type_name(part)) or "value"
        if (where, field) in seen:  # one line per field (a union reports each branch)
            continue
        seen.add((where, field))
        got = repr(problem.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        lines.append(f"{where + ': ' if where else ''}{field}: {problem['msg']} (got {got})")
    more = len(lines) - 5
    return "; ".join(lines[:5]) + (f"; and {more} more problem(s)" if more > 0 else "")


def check_schema(model, data: dict, what: str, fix: str):
    """`data` validated by the pydantic `model`; a ValueError ``"<what>: <problems>; <fix>."``
    naming each entry and field otherwise (pydantic's own error is not chained)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"{what}: {schema_problems(err, data)}; {fix}.") from None


#: Seconds a pattern given by the user may spend on one string (file name, record id).
PATTERN_SECONDS = 1.0


class BoundedPattern:
    """A user's regular expression that fails in bounded time instead of backtracking for
    ever (the ``regex`` package's timeout; its syntax is that of ``re``).

    Examples
    --------
    >>> BoundedPattern(r"^(plate\\d+)_", "group").search("plate3_A1").group(1)
    'plate3'
    >>> BoundedPattern(r"(a|aa)+$", "group", seconds=0.1).search("a" * 50 + "b")
    Traceback (most recent call last):
    ...
    ValueError: `group` pattern '(a|aa)+$' took more than 0.1 s on 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab' (it backtracks without end, like (a|aa)+$); write a simpler pattern, e.g. r'^(plate\\d+)_'.
    """

    def __init__(self, pattern: str, name: str, *, seconds: float = PATTERN_SECONDS,
                 shown: str | None = None,
                 fix: str = "write a simpler pattern, e.g. r'^(plate\\d+)_'"):
        import regex

        if not isinstance(pattern, str):
            raise TypeError(f"`{name}` must be a str pattern, got {type(pattern).__name__}.")
        self.name, self.seconds, self.fix = name, seconds, fix
        self.shown = pattern if shown is None else shown
        try:
            self._compiled = regex.compile(pattern)
        except regex.error as err:
            raise ValueError(f"`{name}` pattern {self.shown!r} is not a valid regular "
                             f"expression: {err}.") from None

    def _call(self, method: str, text: str):
        try:
            return getattr(self._compiled, method)(text, timeout=self.seconds)
        except TimeoutError:
            raise ValueError(f"`{self.name}` pattern {self.shown!r} took more than "
                             f"{self.seconds:g} s on {text!r} (it backtracks without end, like "
                             f"(a|aa)+$); {self.fix}.") from None

    def search(self, text: str):
        return self._call("search", text)

    def match(self, text: str):
        return self._call("match", text)
