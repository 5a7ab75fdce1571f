"""Every pipeline parameter in one dataclass, grouped by stage, with a YAML round trip.

Defaults are Cell-APP's HeLa defaults where Cell-APP has one (isodata
threshold divided by 0.75, gaussian sigma 2, white top-hat with a 71 px
square, erosion with a disk of radius 8, point prompts, boxes 2.5 x the
median nucleus major axis, IoU threshold 0.85), so a Cell-APP user gets the
behaviour they know.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._shared.files import atomic_path

__all__ = ["Config", "PairsConfig", "LocateConfig", "PromptConfig", "SegmentConfig",
           "MeasureConfig", "ExportConfig", "CELLAPP_PROPERTIES"]

#: Cell-APP's default per-cell property list (scikit-image names).
CELLAPP_PROPERTIES = (
    "area", "solidity", "perimeter_crofton", "area_convex", "eccentricity",
    "axis_major_length", "axis_minor_length", "perimeter", "centroid_local",
    "euler_number", "extent", "intensity_max", "intensity_min", "area_filled",
)

# Old scikit-image names Cell-APP config files may still use.
_SKIMAGE_RENAMED = {
    "convex_area": "area_convex", "major_axis_length": "axis_major_length",
    "minor_axis_length": "axis_minor_length", "local_centroid": "centroid_local",
    "filled_area": "area_filled", "max_intensity": "intensity_max",
    "min_intensity": "intensity_min", "mean_intensity": "intensity_mean",
}


class _Checked:
    """Settings checked when built and again whenever one is changed afterwards.

    ``cfg.locate.sigma = float("nan")`` raises like ``Config.from_dict`` would,
    and leaves the old value in place.
    """

    def _check(self):
        pass

    def __post_init__(self):
        self._check()
        object.__setattr__(self, "_ready", True)

    def __setattr__(self, name, value):
        if not self.__dict__.get("_ready"):  # being built by the dataclass __init__
            object.__setattr__(self, name, value)
            return
        hints = typing.get_type_hints(type(self))
        if name not in hints:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}; its settings "
                                 f"are {[f.name for f in dataclasses.fields(self)]}.")
        old = getattr(self, name)
        object.__setattr__(self, name, _coerce(value, hints[name], name))
        try:
            self._check()
        except ValueError:
            object.__setattr__(self, name, old)
            raise


@dataclass
class PairsConfig(_Checked):
    """How image pairs are found (see :func:`cellnb.io.find_pairs`).

    ``tl`` / ``fl``: file-name globs whose ``*`` is the shared stem (separate
    files). ``files`` + ``channels``: multi-channel microscope files, e.g.
    ``files: "*.nd2"`` and ``channels: {tl: BF, fluorescence: mCherry}``
    (names or indices); when set, ``tl`` / ``fl`` are not used.
    """

    tl: str = "*_phs.tif"
    fl: str = "*_Texas Red.tif"
    files: str | None = None
    channels: dict[str, str | int] | None = None

    def _check(self):  # files without channels (or the reverse) fails in find_pairs
        if self.channels is not None and set(self.channels) != {"tl", "fluorescence"}:
            raise ValueError(f"pairs.channels needs the keys 'tl' and 'fluorescence', got "
                             f"{sorted(self.channels)}.")


@dataclass
class LocateConfig(_Checked):
    """Locating nuclei in the fluorescence image (see :func:`cellnb.locate`).

    ``method``: "isodata" is Cell-APP's "single", "multiotsu" its "multi",
    "watershed" its distance watershed; "auto" needs no tuning; "stardist"
    and "cellpose" run a pretrained network (``model``: its name or a model
    folder / file; None for the default).
    ``tophat_size`` / ``erosion_radius`` set to None disable that step.
    """

    method: Literal["auto", "isodata", "multiotsu", "watershed", "stardist", "cellpose"] = "isodata"
    threshold_division: float = 0.75
    sigma: float = 2.0
    tophat_size: int | None = 71
    erosion_radius: int | None = 8
    min_area: int | None = None
    max_area: int | None = None
    model: str | None = None

    def _check(self):
        _positive(self, "threshold_division", "tophat_size", "min_area", "max_area")
        _non_negative(self, "erosion_radius", "sigma")
        if self.min_area is not None and self.max_area is not None and (
                self.min_area > self.max_area):
            raise ValueError(f"min_area ({self.min_area}) must not exceed max_area "
                             f"({self.max_area}).")


@dataclass
class PromptConfig(_Checked):
    """Turning nuclei into SAM prompts (see :func:`cellnb.prompt`)."""

    kind: Literal["points", "boxes", "points+boxes"] = "points"
    box_scale: float = 2.5
    box_size: Literal["median", "per-cell"] = "median"
    negatives: int = 0

    def _check(self):
        _positive(self, "box_scale")
        _non_negative(self, "negatives")


@dataclass
class SegmentConfig(_Checked):
    """Segmenting cells in the TL image with SAM (see :func:`cellnb.segment`)."""

    model: str = "vit_b_lm"
    multimask: bool = False
    batch_size: int | Literal["auto"] = "auto"
    tile_shape: tuple[int, int] | None = None
    halo: tuple[int, int] | None = None
    iou_threshold: float = 0.85
    min_area: int | None = None

    def _check(self):
        if not 0 < self.iou_threshold <= 1:
            raise ValueError(f"segment.iou_threshold must be in (0, 1], got {self.iou_threshold}.")
        if self.batch_size != "auto":
            _positive(self, "batch_size")
        _positive(self, "min_area")


@dataclass
class MeasureConfig(_Checked):
    """Per-cell features (see :func:`cellnb.measure`)."""

    properties: list[str] = field(default_factory=lambda: list(CELLAPP_PROPERTIES))


@dataclass
class ExportConfig(_Checked):
    """Writing the dataset (see :func:`cellnb.export`)."""

    name: str = "dataset"
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    group: str | None = None
    masks: Literal["rle", "polygon"] = "rle"
    formats: list[str] = field(default_factory=lambda: ["coco", "labels"])


_SECTIONS = {"pairs": PairsConfig, "locate": LocateConfig, "prompt": PromptConfig,
             "segment": SegmentConfig, "measure": MeasureConfig, "export": ExportConfig}


@dataclass
class Config(_Checked):
    """Every cellnb pipeline parameter, grouped by stage.

    Attributes
    ----------
    pairs, locate, prompt, segment, measure, export
        One dataclass per stage; see their docstrings.
    seed : int, default=0
        Seed for every random choice of the pipeline (splits, sampling).

    Examples
    --------
    >>> cfg = Config()
    >>> cfg.locate.method, cfg.locate.threshold_division, cfg.prompt.box_scale
    ('isodata', 0.75, 2.5)
    >>> Config.from_yaml(cfg.to_yaml()) == cfg
    True
    >>> Config.from_dict({"locate": {"sigma": 3}}).locate.sigma
    3.0
    """

    pairs: PairsConfig = field(default_factory=PairsConfig)
    locate: LocateConfig = field(default_factory=LocateConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    seed: int = 0

    def _check(self):
        from ._shared.validation import check_seed

        check_seed(self.seed)

    # -- dict / YAML -------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain nested dict (lists for tuples), safe for YAML and JSON."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        """Build a Config from a (partial) nested dict; missing keys keep defaults.

        Unknown keys raise ValueError listing the valid ones; values of the
        wrong type raise TypeError naming the key.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a config must be a mapping, got {type(data).__name__}.")
        if "classify" in data:
            raise ValueError("a cellnb config has no 'classify' section: classes are fitted "
                             "across a whole dataset after annotation, with "
                             "cellnb.classify(features, method=..., n_classes=...) on the "
                             "records' nucleus features (notebook 04); remove the section.")
        return _build(cls, data, "")

    def to_yaml(self, path=None) -> str:
        """Return the config as YAML text; also write it atomically to `path` if given."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source) -> Config:
        """Read a config from a YAML file path or YAML text.

        Parsed safely and within bounds: duplicate keys, alias bombs and
        files over 4 MiB are refused with the line at fault.
        """
        from ._shared import safe_yaml as _yaml

        data = _yaml.load(_read_text(source), _source_name(source, "config"))
        return cls.from_dict({} if data is None else data)

    @classmethod
    def from_cellapp(cls, source) -> Config:
        """Translate a Cell-APP configuration file (JSON/YAML) into a Config.

        Maps ``threshold_type`` ("single" -> isodata, "multi" -> multiotsu,
        "watershed"), ``threshold_division``, ``gaussian_sigma``,
        ``morphology.tophatstruct`` (square size) and ``erosionstruct`` (disk
        radius; null disables), ``point_prompts`` / ``box_prompts``,
        ``iou_thresh``, ``bbox.box_size_scale`` and ``propslist``. Keys
        cellnb does not use are reported in one warning.

        Examples
        --------
        >>> text = '{"threshold_type": "multi", "threshold_division": 1, "gaussian_sigma": 3}'
        >>> Config.from_cellapp(text).locate
        LocateConfig(method='multiotsu', threshold_division=1.0, sigma=3.0, tophat_size=71, erosion_radius=8, min_area=None, max_area=None, model=None)
        """
        from .io import _cellapp_schema
        from ._shared import safe_yaml as _yaml

        name = _source_name(source, "Cell-APP config")
        raw = dict(_cellapp_schema.check(_yaml.load(_read_text(source), name) or {}, name))
        out: dict = {"locate": {}, "prompt": {}, "segment": {}, "measure": {}}
        methods = {"single": "isodata", "multi": "multiotsu", "watershed": "watershed"}
        if raw.get("threshold_type") is not None:  # its values checked by the schema
            out["locate"]["method"] = methods[raw.pop("threshold_type")]
        for src, dst in (("threshold_division", "threshold_division"),
                         ("gaussian_sigma", "sigma")):
            if src in raw:
                out["locate"][dst] = raw.pop(src)
        morph = raw.pop("morphology", None) or {}
        for key, dst, func, arg in (("tophatstruct", "tophat_size", "square", "size"),
                                    ("erosionstruct", "erosion_radius", "disk", "radius")):
            if key not in morph:
                continue
            spec = morph[key]
            if spec is None:
                out["locate"][dst] = None
            elif isinstance(spec, dict) and spec.get("func") == func and arg in spec.get("args", {}):
                out["locate"][dst] = spec["args"][arg]
            else:
                raise ValueError(
                    f"Cell-APP morphology.{key} must be null or {{'func': '{func}', "
                    f"'args': {{'{arg}': N}}}} for cellnb, got {spec!r}.")
        points, boxes = raw.pop("point_prompts", None), raw.pop("box_prompts", None)
        if points is not None or boxes is not None:
            kinds = {(True, False): "points", (False, True): "boxes", (True, True): "points+boxes"}
            pair = (bool(points), bool(boxes))
            if pair not in kinds:
                raise ValueError("Cell-APP point_prompts and box_prompts are both false; "
                                 "set one of them to true.")
            out["prompt"]["kind"] = kinds[pair]
        if "iou_thresh" in raw:
            out["segment"]["iou_threshold"] = raw.pop("iou_thresh")
        bbox = raw.pop("bbox", None) or {}
        if "box_size_scale" in bbox:
            out["prompt"]["box_scale"] = bbox["box_size_scale"]
        if "propslist" in raw:
            out["measure"]["properties"] = [_SKIMAGE_RENAMED.get(p, p)
                                            for p in raw.pop("propslist")]
        raw.pop("version", None)
        if raw:
            warnings.warn(f"Cell-APP config keys not used by cellnb: {sorted(raw)}",
                          stacklevel=2)
        return cls.from_dict({k: v for k, v in out.items() if v})


# -- helpers -----------------------------------------------------------------
def _is_path(source) -> bool:
    return isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                        and source.rstrip().endswith((".yaml", ".yml", ".json")))


def _source_name(source, what: str) -> str:
    """'config file x.yaml' or 'config text', for messages."""
    return f"{what} file {source}" if _is_path(source) else f"{what} text"


def _read_text(source) -> str:
    if _is_path(source):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist.")
        return path.read_text()
    if isinstance(source, str):
        return source
    raise TypeError(f"expected a path or YAML text, got {type(source).__name__}.")


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"section '{prefix[:-1]}'" if prefix else "the config"
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {names}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise TypeError(f"'{prefix}{name}' must be a mapping of "
                                f"{[f.name for f in dataclasses.fields(hint)]}, got {value!r}.")
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"{prefix[:-1] or 'config'}: {err}") from None


def _coerce(value, hint, key: str):
    """Check `value` against the type `hint`; return it (int -> float, list -> tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, key)
            except TypeError as err:
                errors.append(err)
        raise TypeError(f"'{key}' must be {_describe(hint)}, got {value!r}.")
    if origin is Literal:
        if value in args and type(value) is type(next(a for a in args if a == value)):
            return value
        raise TypeError(f"'{key}' must be one of {list(args)}, got {value!r}.")
    if hint is type(None):
        if value is None:
            return None
        raise TypeError(f"'{key}' must be None, got {value!r}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"'{key}' must be {_describe(hint)}, got {value!r}.")
        if origin is tuple and args and args[-1] is not Ellipsis and len(value) != len(args):
            raise TypeError(f"'{key}' must have {len(args)} items, got {value!r}.")
        item_types = args[:1] * len(value) if origin is list or args[-1:] == (Ellipsis,) else args
        items = [_coerce(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"'{key}' must be a mapping, got {value!r}.")
        kt, vt = args
        return {_coerce(k, kt, f"{key} key"): _coerce(v, vt, f"{key}[{k!r}]")
                for k, v in value.items()}
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise TypeError(f"'{key}' must be {_describe(hint)}, got {value!r} ({type(value).__name__}).")


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if hint is type(None):
        return "null"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_describe(a) for a in args if a is not Ellipsis)}]"
    return hint.__name__


def _positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}.")


def _non_negative(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
