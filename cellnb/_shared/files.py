"""Atomic file and folder writes (private).

A reader never sees a half-written result: content is written to a temporary
name beside the target and renamed into place only when complete. On any
error the temporary file or folder is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = True):
    """Yield a temporary path beside `path`; rename it to `path` on success.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path, *, overwrite: bool = False):
    """Yield a temporary folder beside `path`; move it to `path` on success.

    With ``overwrite=True`` an existing `path` is replaced only after the new
    folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover(folder, name: str = "*") -> list[str]:
    """Tidy what an interrupted :func:`atomic_dir` left in `folder`; return what it did.

    A kill can leave ``.<name>.<random>.part`` folders (a write that never
    finished: removed) and ``.<name>.old`` (the previous version, moved
    aside during an overwrite: put back when ``<name>`` is missing, removed
    otherwise). Only names of that form are touched, and with `name` only
    those of that target.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / ".a.x1y2.part").mkdir(); (root / ".b.old").mkdir(); (root / "c").mkdir()
    >>> recover(root)
    ['put back b', 'removed .a.x1y2.part']
    >>> sorted(p.name for p in root.iterdir())
    ['b', 'c']
    """
    folder = Path(folder)
    done = []
    if not folder.is_dir():
        return done
    for old in sorted(folder.glob(f".{name}.old")):
        target = folder / old.name[1:-len(".old")]
        if target.exists():
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
            done.append(f"removed {old.name}")
        else:
            os.replace(old, target)
            done.append(f"put back {target.name}")
    for part in sorted(folder.glob(f".{name}.*.part")):
        shutil.rmtree(part, ignore_errors=True) if part.is_dir() else part.unlink()
        done.append(f"removed {part.name}")
    return done


def remove_dir(path) -> None:
    """Remove a folder so that no reader ever sees it half-deleted (rename, then delete)."""
    path = Path(path)
    if not path.exists():
        return
    gone = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    os.replace(path, gone / path.name)
    shutil.rmtree(gone, ignore_errors=True)


def sha256(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
