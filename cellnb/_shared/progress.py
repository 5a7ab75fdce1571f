"""Progress of long calls: a tqdm bar and/or a ``callback(done, total)`` (private).

Every long public call (segment over many prompts, annotate, train, export)
takes ``progress=`` (a tqdm bar) and ``callback=`` (called as
``callback(done, total)`` after each unit of work, e.g. to drive an
ipywidgets progress bar or a job log), as micro_sam's ``pbar_init`` /
``pbar_update`` and StarDist's ``show_tile_progress`` do.
"""

from __future__ import annotations


def check_callback(callback) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable as callback(done, total), got "
                        f"{type(callback).__name__}.")


class Progress:
    """One unit counter feeding a tqdm bar (when `progress`) and `callback`.

    Examples
    --------
    >>> seen = []
    >>> with Progress(3, "work", progress=False, callback=lambda d, t: seen.append((d, t))) as p:
    ...     p.update(); p.update(2)
    >>> seen
    [(1, 3), (3, 3)]
    """

    def __init__(self, total: int, desc: str, *, progress: bool = True, callback=None,
                 initial: int = 0, unit: str = "it"):
        from tqdm.auto import tqdm

        check_callback(callback)
        self.total, self.done, self.callback = int(total), int(initial), callback
        self.bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit,
                        disable=not progress)

    def update(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int) -> None:
        """Jump to `done` units (e.g. the end of an epoch a trainer counted itself)."""
        done = int(done)
        if done == self.done:
            return
        self.bar.update(done - self.done)
        self.done = done
        if self.callback is not None:
            self.callback(self.done, self.total)

    def set_postfix(self, **values) -> None:
        self.bar.set_postfix(**values)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
