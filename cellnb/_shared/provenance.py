"""What every written result records about the software that made it (private)."""

from __future__ import annotations

import sys

#: Packages whose versions a record, dataset or run folder notes.
PACKAGES = ("cellnb", "numpy", "torch", "torch_em", "micro_sam", "pycocotools", "scikit-image")


def versions(packages=PACKAGES) -> dict:
    """Installed versions of `packages` (None when missing), plus Python's.

    >>> versions(("numpy",))["numpy"] is not None
    True
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for package in packages:
        try:
            out[package] = version(package.replace("_", "-"))
        except PackageNotFoundError:
            out[package] = None
    return out
