"""Example datasets (fetched through ``data_manifests/``) and synthetic pairs with truth.

Real data: every dataset is described by ``data_manifests/<name>.yaml`` (files,
upstream URLs pinned to one commit, sha256, licence, citation).
:func:`fetch` downloads missing files with pooch into a cache and verifies
every hash. The cache root is ``$CELLNB_DATA_DIR`` when set, else pooch's
per-user cache (``~/.cache/cellnb`` on Linux); dataset ``name`` lives in
``<root>/<name>/``.

Synthetic data: :func:`synthetic_pairs` simulates phase-contrast-like
transmitted-light images and nuclear fluorescence of the same cells, with the
ground truth (cell labels, nucleus labels with the same ids, classes). It is
the teaching and test dataset of cellnb; :func:`write_pairs` saves pairs with
their truth and :func:`read_pairs` reads them back. :func:`tutorial_pairs` is
the set the tutorial notebooks hand on to each other (01 writes it, later
notebooks read it, each makes it when missing). :func:`synthetic_nuclei` simulates
nuclear fluorescence of the touching configurations where nucleus detectors
fail (a dim nucleus pressed against a bright one, a small one on a large one,
elongated mitotic nuclei), for testing and benchmarking ``locate``.
:func:`synthetic_movie` simulates a time-lapse of moving cells, some passing
through mitosis, with true tracks; :func:`write_ome_tiff` saves such arrays as
a microscope would (channels, scenes, pixel sizes).

Modules: ``cellnb.data._real`` (manifests, fetching, real nuclei),
``cellnb.data._synthetic`` (pairs and their renderer), ``cellnb.data._tutorial``
(the tutorials' pairs),
``cellnb.data._nuclei_scenes`` (touching-nuclei scenes), ``cellnb.data._movies``
(time-lapses and OME-TIFF). This ``__init__`` gathers their public names.
"""

from __future__ import annotations

from . import _nuclei_scenes
from . import _real
from . import _synthetic
from . import _tutorial
from ._movies import SyntheticMovie, synthetic_movie, write_ome_tiff
from ._nuclei_scenes import SyntheticNuclei, synthetic_nuclei
from ._real import (DataNotAvailableError, NucleiImage, available, data_dir, fetch, manifest,
                   real_nuclei)
from ._synthetic import SyntheticPair, read_pairs, synthetic_pairs, write_pairs
from ._tutorial import tutorial_pairs

__all__ = ["fetch", "manifest", "available", "data_dir", "DataNotAvailableError",
           "real_nuclei", "NucleiImage", "REAL_NUCLEI",
           "synthetic_pairs", "write_pairs", "read_pairs", "SyntheticPair", "CLASS_NAMES",
           "tutorial_pairs", "TUTORIAL_SCENES",
           "synthetic_nuclei", "SyntheticNuclei", "NUCLEUS_FAMILIES", "synthetic_movie",
           "SyntheticMovie", "write_ome_tiff"]

#: The hard families of touching nuclei :func:`synthetic_nuclei` simulates.
NUCLEUS_FAMILIES = _nuclei_scenes.FAMILIES

#: Class ids of the synthetic cells.
CLASS_NAMES = _synthetic.CLASS_NAMES

#: Real nuclear fluorescence images with reference nuclei, by :func:`real_nuclei` name.
REAL_NUCLEI = _real.REAL_NUCLEI

#: The synthetic_pairs arguments of the pairs the tutorial notebooks share
#: (:func:`tutorial_pairs`), at their defaults ("full") and quick ("quick").
TUTORIAL_SCENES = _tutorial.TUTORIAL_SCENES
