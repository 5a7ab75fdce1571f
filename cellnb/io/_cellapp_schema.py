"""The shape of a Cell-APP configuration file, checked before it is translated (private).

Cell-APP reads its JSON/YAML configs with plain dict look-ups, so a string where
a list belongs (``"propslist": "area"``) was taken letter by letter, and a string
where a mapping belongs failed with ``string indices must be integers``. The
pydantic model below (strict: no ``"2"`` for 2, no ``"false"`` for false) says
which key holds what; keys it does not know pass through, and
:meth:`cellnb.Config.from_cellapp` reports them in one warning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .._shared.validation import check_schema

Number = Annotated[float, Field(allow_inf_nan=False)]  # strict float takes ints too


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class Structure(_Strict):
    """``{"func": "square", "args": {"size": 71}}``: a scikit-image footprint call."""
    func: str
    args: dict[str, Number]


class Bbox(_Strict):
    box_size_scale: Optional[Number] = None


class CellappConfig(_Strict):
    threshold_type: Optional[Literal["single", "multi", "watershed"]] = None
    threshold_division: Optional[Number] = None
    gaussian_sigma: Optional[Number] = None
    morphology: Optional[dict[str, Optional[Structure]]] = None
    point_prompts: Optional[bool] = None
    box_prompts: Optional[bool] = None
    iou_thresh: Optional[Number] = None
    bbox: Optional[Bbox] = None
    propslist: Optional[list[str]] = None
    version: Any = None


def check(raw, source: str) -> dict:
    """`raw` checked against Cell-APP's config shape; a ValueError naming `source` and the
    keys, or the dict unchanged (unknown keys kept for the caller's warning)."""
    if not isinstance(raw, dict):
        raise TypeError(f"{source} must hold a mapping of Cell-APP's keys, got "
                        f"{type(raw).__name__}.")
    check_schema(CellappConfig, raw, f"{source} is not valid",
                 "see Cell-APP's example configs for each key's form")
    return raw
