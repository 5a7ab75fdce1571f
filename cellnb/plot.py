"""Matplotlib figures: image overlays and pair views.

Display contrast is stretched between percentiles for viewing only; the data
are never changed.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_image, check_labels, check_same_shape

__all__ = ["overlay", "pair"]


def _display(image: np.ndarray, percentiles=(0.5, 99.5)) -> np.ndarray:
    """Float copy of `image` in [0, 1] for display (percentile stretch per channel)."""
    image = image.astype(np.float32)
    lo, hi = np.percentile(image, percentiles)
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)


def overlay(image, labels=None, *, ax=None, color="yellow", cmap="gray", title=None,
            percentiles=(0.5, 99.5)):
    """Show `image` with the outlines of `labels` drawn on top.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        Image to show (contrast stretched for display only).
    labels : (H, W) int ndarray, optional
        Label image whose object outlines are drawn.
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is made if None.
    color : matplotlib color, default="yellow"
        Outline color.
    cmap : str, default="gray"
        Colormap for single-channel images.
    title : str, optional
        Axes title.
    percentiles : (float, float), default=(0.5, 99.5)
        Display range of the contrast stretch.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> labels = np.zeros((32, 32), np.int32); labels[8:16, 8:16] = 1
    >>> ax = overlay(np.ones((32, 32), np.float32), labels, title="one cell")
    >>> ax.get_title()
    'one cell'
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from skimage.segmentation import find_boundaries

    image = check_image(image, "image", rgb=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    shown = _display(image, percentiles)
    ax.imshow(shown, cmap=None if shown.ndim == 3 else cmap, interpolation="nearest")
    if labels is not None:
        labels = check_labels(labels)
        check_same_shape(image, labels, "image", "labels")
        edges = find_boundaries(labels, mode="inner")
        rgba = np.zeros(labels.shape + (4,), np.float32)
        rgba[edges] = to_rgba(color)
        ax.imshow(rgba, interpolation="nearest")
    if title:
        ax.set_title(title)
    ax.set_axis_off()
    return ax


def pair(tl, fluorescence, *, cells=None, nuclei=None, title=None):
    """Show a TL / fluorescence pair side by side, with optional outlines.

    Parameters
    ----------
    tl : (H, W) or (H, W, 3) ndarray
        Transmitted-light image.
    fluorescence : (H, W) ndarray
        Nuclear fluorescence image.
    cells, nuclei : (H, W) int ndarray, optional
        Cell outlines drawn on the TL image, nucleus outlines on the
        fluorescence image.
    title : str, optional
        Figure title.

    Returns
    -------
    fig : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from cellnb.data import synthetic_pairs
    >>> p = synthetic_pairs(1, shape=(96, 96), n_cells=4)[0]
    >>> fig = pair(p.tl, p.fluorescence, cells=p.cells, nuclei=p.nuclei)
    >>> len(fig.axes)
    2
    """
    import matplotlib.pyplot as plt

    check_same_shape(check_image(tl, "tl", rgb=True), check_image(fluorescence, "fluorescence"),
                     "tl", "fluorescence")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), constrained_layout=True)
    overlay(tl, cells, ax=axes[0], title="transmitted light" + (" + cells" if cells is not None
                                                                else ""))
    overlay(fluorescence, nuclei, ax=axes[1], cmap="magma", color="cyan",
            percentiles=(0.5, 99.9),
            title="fluorescence" + (" + nuclei" if nuclei is not None else ""))
    if title:
        fig.suptitle(title)
    return fig
