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


def keyword_options(function) -> frozenset:
    """The keyword-only parameter names of `function`: the options a ``segment`` takes.

    Each model's ``segment_options`` is read off its own ``segment`` signature
    with this, so the options a model advertises and the ones it takes cannot
    drift apart (a ``**kwargs`` catch-all is not an option).

    Examples
    --------
    >>> def segment(image, prompts=None, *, min_area=None, progress=False, **rest):
    ...     pass
    >>> sorted(keyword_options(segment))
    ['min_area', 'progress']
    """
    import inspect

    return frozenset(name for name, p in inspect.signature(function).parameters.items()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY)
