"""The model protocol every segmenter in cellnb answers (see :mod:`cellnb.models`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Segmenter(Protocol):
    """What :func:`cellnb.segment` and :func:`cellnb.annotate` need of a model."""

    name: str
    fingerprint: str
    prompted: bool
    segment_options: frozenset

    def segment(self, image, prompts=None, **options):
        """Segment `image` (from `prompts` when the model is prompted); returns a Segmentation."""
        ...
