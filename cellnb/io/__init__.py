"""Find, read and validate image pairs; read and write label images.

Compute functions in cellnb take arrays; this module is where files become
arrays. Images keep their dtype (uint8, uint16, float32) exactly: nothing is
rescaled on reading.

A *pair* is a transmitted-light (TL) image and the nuclear fluorescence image
of the same field of view, named by a shared stem as Cell-APP expects
(``<stem>_phs.tif`` and ``<stem>_Texas Red.tif`` by default), or two channels
of one plane of a microscope file (read through bioio, :mod:`cellnb.io.microscope`).

The package, one module per kind of file (each importable on its own; this
``__init__`` only gathers their public names):

- ``cellnb.io._images``: one image or label image.
- ``cellnb.io._pairs``: find pairs in a folder, read a pair.
- :mod:`~cellnb.io.microscope`: microscope files (bioio), planes as pairs.
- ``cellnb.io._coco``: COCO files as :class:`Record` objects.
- ``cellnb.io._outlines``: Fiji ROIs and QuPath GeoJSON as label images.
- ``records``: the one owner of an annotation record folder (``records/<pair id>/``).
"""

from ._coco import Record, read_coco
from ._images import read_image, read_labels, write_labels
from .microscope import plane_of
from ._outlines import read_geojson, read_rois
from ._pairs import check_pair_id, find_pairs, read_pair

__all__ = ["find_pairs", "check_pair_id", "read_pair", "read_image", "read_labels",
           "write_labels", "Record", "read_coco", "plane_of", "read_rois", "read_geojson"]
