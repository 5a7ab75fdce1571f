"""The COCO instance-segmentation format, checked before pycocotools sees it (private).

pycocotools is C: a polygon with a NaN or a coordinate of 1e30 makes it allocate
without bound until the process is killed (a notebook kernel dies without a
word), an RLE whose counts do not add up to the image reads past its end, and
wrong types surface as ``Exception: input type is not supported``. Everything a
COCO file holds is therefore checked here first, with pydantic (strict types:
no ``"1"`` for 1, no ``true`` for 1) for the shapes and plain checks for what
depends on the image (coordinates inside it, RLE sizes and sums, known ids).

Errors are ValueErrors that name the file, the entry (``annotations[3]``, with
its id) and the field, say what was expected and what came, and what to fix.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .._shared.validation import MAX_PIXELS, entry_name, is_type_name, schema_problems

#: Largest side of an image in a COCO file cellnb reads.
MAX_SIDE = 65_536
#: How far (pixels) a polygon may reach outside its image (tools round outward at edges).
POLYGON_MARGIN = 1.0


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


Number = Union[int, float]


class Rle(_Strict):
    size: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]
    counts: Union[list[Annotated[int, Field(ge=0)]], str]


class Image(_Strict):
    id: Union[int, str]
    file_name: Annotated[str, Field(min_length=1)]
    height: Annotated[int, Field(gt=0, le=MAX_SIDE)]
    width: Annotated[int, Field(gt=0, le=MAX_SIDE)]


class Category(_Strict):
    id: int
    name: str


class Annotation(_Strict):  # segmentation: polygons or an RLE, parsed by _segmentation
    id: Union[int, str, None] = None
    image_id: Union[int, str]
    category_id: int
    iscrowd: Annotated[int, Field(ge=0, le=1)] = 0  # strict: true is not 1
    segmentation: Union[list, dict]
    score: Union[float, None] = None


class Dataset(_Strict):
    images: list[Image]
    annotations: list[Annotation]
    categories: list[Category] = []


def rle_string_total(counts: str) -> int:
    """Sum of the run lengths of a compressed COCO RLE string (COCO's LEB128-like code:
    5 bits a character, offset 48, continuation bit 0x20, runs from the third on stored
    as differences to the run two before)."""
    runs: list[int] = []
    k, n = 0, len(counts)
    while k < n:
        value, shift, more = 0, 0, True
        while more:
            if k >= n:
                raise ValueError("the string ends inside a run")
            c = ord(counts[k]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {counts[k]!r} is not part of COCO's RLE alphabet")
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            k += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
            if shift > 13:
                raise ValueError("a run is longer than any image")
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError("a run has a negative length")
        runs.append(value)
    return sum(runs)


def _file_name_problem(name: str) -> str:
    if "\x00" in name:
        return "holds a NUL character"
    for path in (PurePosixPath(name), PureWindowsPath(name)):
        if path.is_absolute() or path.anchor:
            return "is absolute"
        if ".." in path.parts:
            return "climbs out of the dataset folder ('..')"
    return ""


_POLYGONS = TypeAdapter(list[list[float]], config=ConfigDict(strict=True, allow_inf_nan=True))


def _segmentation(raw):
    """(polygons or Rle, problem)."""
    try:
        if isinstance(raw, dict):
            return Rle.model_validate(raw), ""
        return _POLYGONS.validate_python(raw), ""
    except ValidationError as err:
        problem = err.errors()[0]
        loc = [p for p in problem["loc"] if not is_type_name(p)]
        if isinstance(raw, dict):
            field = ".".join(map(str, loc))
            return None, (f"RLE {field}: {problem['msg']} (got {problem.get('input')!r:.60}); "
                          "an RLE is {'size': [height, width], 'counts': [...] or '...'}")
        where = f"polygon {loc[0]}, number {loc[1]}" if len(loc) >= 2 else "polygons"
        return None, (f"{where}: {problem['msg']} (got {problem.get('input')!r:.60}); polygons "
                      "are lists of x, y numbers, [[x0, y0, x1, y1, ...], ...]")


def _segmentation_problem(raw, h: int, w: int) -> str:
    seg, problem = _segmentation(raw)
    if problem:
        return problem
    if isinstance(seg, Rle):
        if tuple(seg.size) != (h, w):
            return f"RLE size {list(seg.size)} is not the image's [height, width] [{h}, {w}]"
        try:
            total = sum(seg.counts) if isinstance(seg.counts, list) else \
                rle_string_total(seg.counts)
        except ValueError as err:
            return f"RLE counts are not a COCO RLE string: {err}"
        if total != h * w:
            return f"RLE counts add up to {total} pixels, not the image's {h} x {w} = {h * w}"
        return ""
    if not seg:
        return "holds no polygon"
    for k, polygon in enumerate(seg):
        if len(polygon) < 6 or len(polygon) % 2:
            return (f"polygon {k} has {len(polygon)} numbers; a polygon is x, y pairs, at "
                    "least 3 points (6 numbers)")
        xs, ys = polygon[0::2], polygon[1::2]
        if not all(math.isfinite(v) for v in polygon):
            return f"polygon {k} holds a non-finite coordinate"
        lo = -POLYGON_MARGIN
        if min(xs) < lo or max(xs) > w + POLYGON_MARGIN or min(ys) < lo or \
                max(ys) > h + POLYGON_MARGIN:
            return (f"polygon {k} reaches x {min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g}, "
                    f"outside the {w} x {h} image")
    return ""


def check(coco, source: str) -> Dataset:
    """The COCO dict checked as a whole; a ValueError naming `source` and the entry."""
    if not isinstance(coco, dict):
        raise ValueError(f"{source} must hold a JSON object with 'images', 'annotations' and "
                         f"'categories', got {type(coco).__name__}.")
    missing = [k for k in ("images", "annotations") if k not in coco]
    if missing:
        raise ValueError(f"{source} is not a COCO instance dataset: keys {missing} are missing.")
    try:
        data = Dataset.model_validate(coco)
    except ValidationError as err:
        raise ValueError(f"{source} is not a valid COCO dataset: "
                         f"{schema_problems(err, coco)}.") from None
    problems = []
    sizes = {}
    for k, image in enumerate(data.images):
        where = entry_name("images", k, coco["images"][k])
        if image.id in sizes:
            problems.append(f"{where}: image id {image.id!r} is used twice")
        sizes[image.id] = (image.height, image.width)
        if image.height * image.width > MAX_PIXELS:
            problems.append(f"{where}: {image.height} x {image.width} pixels is more than the "
                            f"{MAX_PIXELS} cellnb rebuilds label images for; tile the image")
        why = _file_name_problem(image.file_name)
        if why:
            problems.append(f"{where}: file_name {image.file_name!r} {why}; file names are "
                            "relative to the dataset's image folder")
    categories = {}
    for k, category in enumerate(data.categories):
        if category.id in categories:
            problems.append(f"categories[{k}]: category id {category.id} is used twice")
        categories[category.id] = category.name
    annotation_ids = set()
    for k, ann in enumerate(data.annotations):
        where = entry_name("annotations", k, coco["annotations"][k])
        if ann.id is not None:
            if ann.id in annotation_ids:
                problems.append(f"{where}: annotation id {ann.id!r} is used twice")
            annotation_ids.add(ann.id)
        if ann.image_id not in sizes:
            problems.append(f"{where}: image_id {ann.image_id!r} is not in 'images'")
            continue
        if ann.category_id not in categories:
            problems.append(f"{where}: category_id {ann.category_id} is not in 'categories' "
                            f"(ids {sorted(categories)})")
        why = _segmentation_problem(ann.segmentation, *sizes[ann.image_id])
        if why:
            problems.append(f"{where}: segmentation: {why}")
        if len(problems) >= 5:
            break
    if problems:
        raise ValueError(f"{source} is not a valid COCO dataset: " + "; ".join(problems[:5])
                         + ".")
    return data
