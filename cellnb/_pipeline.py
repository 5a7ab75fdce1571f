"""The per-image chain of the Cell-APP protocol, shared by annotate and movies (private module).

locate the nuclei in the fluorescence image (the config's ``locate``
section) → prompt (``prompt``) → segment the TL image with any model →
give automatic cells the id of their nucleus → join each cell's nucleus
features (``measure``). :func:`cellnb.annotate` writes the result as a
record; :func:`cellnb.movies.segment_movie` does it per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class PairResult:
    """What :func:`segment_pair` found in one TL / fluorescence pair.

    Attributes
    ----------
    nuclei : (H, W) int32 ndarray
    segmentation : cellnb.Segmentation
        Cells keep the id of their nucleus (prompted models by construction,
        automatic ones relabelled).
    cells : DataFrame
        The segmentation's table indexed by ``label``, with the nucleus
        features (``nucleus_*`` columns; NaN for a cell without a nucleus).
    """

    nuclei: np.ndarray
    segmentation: object
    cells: pd.DataFrame


def locate_nuclei(fluorescence, config) -> np.ndarray:
    """:func:`cellnb.locate` with the config's ``locate`` section."""
    import warnings

    from .locate import locate, method_options

    loc = config.locate
    options, ignored = method_options(loc.method, {
        "threshold_division": loc.threshold_division, "sigma": loc.sigma,
        "tophat_size": loc.tophat_size, "erosion_radius": loc.erosion_radius,
        "min_area": loc.min_area, "max_area": loc.max_area, "model": loc.model})
    if ignored:
        warnings.warn(f"the config's locate section sets {ignored}, which method "
                      f"{loc.method!r} does not use; they have no effect (reset them, or pick a "
                      "Cell-APP method to use them).", UserWarning, stacklevel=3)
    return locate(fluorescence, method=loc.method, **options)


def segment_pair(tl, fluorescence, model, config, *, centroids: bool = False,
                 **options) -> PairResult:
    """The chain for one pair with a loaded model; `options` go to :func:`cellnb.segment`.

    `centroids` adds each cell's nucleus centroid (``nucleus_y``,
    ``nucleus_x``: what tracking links).

    >>> from cellnb import Config
    >>> from cellnb.data import synthetic_pairs
    >>> from cellnb.models import Watershed
    >>> pair = synthetic_pairs(1, shape=(96, 96), n_cells=4, seed=0)[0]
    >>> found = segment_pair(pair.tl, pair.fluorescence, Watershed(), Config())
    >>> set(found.cells.index) <= set(np.unique(found.nuclei))
    True
    """
    from scipy import ndimage

    from .measure import measure
    from .prompt import prompt
    from .segment import segment

    nuclei = locate_nuclei(fluorescence, config)
    prompts = None
    if model.prompted:
        pro = config.prompt
        prompts = prompt(nuclei, kind=pro.kind, box_scale=pro.box_scale,
                         box_size=pro.box_size, negatives=pro.negatives)
    if "nuclei" in model.segment_options:
        options["nuclei"] = nuclei
    result = segment(tl, prompts, model=model, **options)
    if not model.prompted:  # automatic cells take the id of their nucleus (records join on it)
        new = relabel_by_nuclei(result.labels, nuclei)
        # an empty table (no cell found) has no integer column to index with
        result.table["label"] = new[result.table["label"].to_numpy(dtype=np.int64)]
        result.labels = new[result.labels].astype(np.int32)
    cells = result.table.set_index("label")
    if len(cells):
        features = measure(nuclei, fluorescence, properties=list(config.measure.properties))
        cells = cells.join(features.add_prefix("nucleus_"))
    if centroids:
        with_nucleus = cells.index[cells.index.isin(np.unique(nuclei[nuclei > 0]))]
        cells["nucleus_y"] = cells["nucleus_x"] = np.nan
        if len(with_nucleus):
            centres = ndimage.center_of_mass(np.ones_like(nuclei), nuclei, with_nucleus)
            cells.loc[with_nucleus, ["nucleus_y", "nucleus_x"]] = np.array(
                centres).reshape(-1, 2)
    return PairResult(nuclei.astype(np.int32, copy=False), result, cells)


def relabel_by_nuclei(cells, nuclei) -> np.ndarray:
    """New id of each automatically found cell: the id of the nucleus it holds most of.

    Records join cells and nuclei on ``label``; prompted models keep the
    nucleus ids by construction, automatic ones (trained models) get them
    here. A nucleus goes to one cell (the one covering most of it); cells
    without a nucleus get ids above the largest nucleus id. Returns the
    lookup array ``new`` (``new[old_id]``; ``new[0] == 0``).

    >>> cells = np.array([[1, 1, 0, 2, 2]]); nuclei = np.array([[0, 7, 0, 0, 0]])
    >>> relabel_by_nuclei(cells, nuclei)[cells].tolist()
    [[7, 7, 0, 8, 8]]
    """
    from scipy import sparse

    mask = (cells > 0) & (nuclei > 0)
    overlap = sparse.coo_matrix((np.ones(int(mask.sum())), (cells[mask], nuclei[mask])),
                                shape=(int(cells.max()) + 1, int(nuclei.max()) + 1)).tocsr()
    new = np.zeros(int(cells.max()) + 1, np.int64)
    taken = set()
    pairs = sorted(zip(overlap.data, *overlap.nonzero()), reverse=True)
    for _, cell, nucleus in pairs:  # the largest overlaps first, each side used once
        if new[cell] == 0 and nucleus not in taken:
            new[cell] = nucleus
            taken.add(nucleus)
    top = int(nuclei.max())
    for cell in np.unique(cells[cells > 0]):
        if new[cell] == 0:
            top += 1
            new[cell] = top
    return new
