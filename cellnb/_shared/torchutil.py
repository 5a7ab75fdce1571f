"""torch helpers shared by models, training and inference (private).

- :func:`resolve_device`: ``"auto"`` -> CUDA when available, else CPU.
- :func:`seeded`: run a block with every random generator seeded from
  ``seed`` and give the caller's generators back untouched afterwards, so
  randomness flows through the ``seed`` keyword only (STYLE rule 8).
- :func:`load_state`: ``torch.load(weights_only=True)`` with an error that
  names the file; nothing in a loaded file can run code.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other names checked."""
    import torch

    if not isinstance(device, str):
        raise TypeError(f"`device` must be a str such as 'cpu', 'cuda' or 'auto', got "
                        f"{type(device).__name__}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device.")
    return device


@contextlib.contextmanager
def seeded(value: int):
    """Seed torch, numpy's and Python's global generators inside the block only.

    Libraries cellnb drives (torch_em, cellpose, torch's initialisers) draw
    from the global generators; this makes them reproducible from one seed
    while the caller's generator states are restored on exit.

    >>> import numpy as np
    >>> state = np.random.get_state()[1][:3].tolist()
    >>> with seeded(1):
    ...     a = np.random.rand()
    >>> with seeded(1):
    ...     b = np.random.rand()
    >>> a == b, np.random.get_state()[1][:3].tolist() == state
    (True, True)
    """
    import random

    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(value)
        np.random.seed(value % 2**32)
        random.seed(value)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def load_state(path, device="cpu", *, mmap: bool = False) -> dict:
    """A checkpoint of tensors, loaded with ``weights_only=True``; errors name the file.

    `mmap` maps the tensors instead of reading them (a check that costs no memory).
    """
    import pickle

    import torch

    import zipfile

    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ValueError(f"{path} cannot be read as torch weights (not a torch archive); the "
                         "file is damaged or incomplete.")
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds objects other than tensors and plain containers; "
                         "cellnb does not load it, because loading such a file can run code "
                         f"({str(err).splitlines()[0]}).") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} cannot be read as torch weights ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'truncated'}); the file "
                         "is damaged or incomplete.") from err
