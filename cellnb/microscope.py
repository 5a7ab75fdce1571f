"""Microscope files: an alias of :mod:`cellnb.io.microscope`, where this code lives.

Kept so that ``cellnb.microscope`` and ``from cellnb.microscope import ...``
work as they did before the reader moved into :mod:`cellnb.io`.
"""

from .io.microscope import *  # noqa: F401,F403
from .io.microscope import __all__  # noqa: F401
