"""The executed tutorial notebooks that the test suite keeps for the docs build.

``tests/test_notebooks.py`` executes every notebook; when
``CELLNB_EXECUTED_NOTEBOOKS`` names a folder it writes the executed copy
there, stamped with :func:`notebook_sha256` of the notebook it ran. The
docs build (``docs/conf.py``) reuses a copy whose stamp matches the
notebook as it is now, and executes the others.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where ``make test`` keeps the executed notebooks (``CELLNB_EXECUTED_NOTEBOOKS``).
DEFAULT_FOLDER = ROOT / "build" / "executed-notebooks"


def notebook_sha256(cells) -> str:
    """sha256 of a notebook's cell types and sources (outputs and metadata left out).

    `cells` is the notebook's list of cells (dicts, or nbformat nodes), or a path.
    """
    if isinstance(cells, (str, Path)):
        cells = json.loads(Path(cells).read_text(encoding="utf-8"))["cells"]
    text = json.dumps([[c["cell_type"], "".join(c["source"])] for c in cells])
    return hashlib.sha256(text.encode()).hexdigest()


def folder() -> Path:
    """The folder of executed notebooks (``$CELLNB_EXECUTED_NOTEBOOKS`` or the default)."""
    return Path(os.environ.get("CELLNB_EXECUTED_NOTEBOOKS", DEFAULT_FOLDER))


def current_copy(source: Path) -> Path | None:
    """The executed copy of notebook `source`, if one was made from it as it is now."""
    done = folder() / Path(source).name
    if not done.is_file():
        return None
    meta = json.loads(done.read_text(encoding="utf-8")).get("metadata", {})
    if meta.get("cellnb", {}).get("source_sha256") != notebook_sha256(source):
        return None
    return done
