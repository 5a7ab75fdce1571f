"""The classical baseline: a seeded watershed of the TL image, prompted by the nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._shared.validation import check_image, check_labels
from ._protocol import keyword_options
from ._result import Segmentation, _check_common, _result, check_prompts


@dataclass
class Watershed:
    """The classical baseline: a seeded watershed of the TL image from the nuclei.

    Cells grow from the nuclei (its prompts) over the TL image's gradient,
    inside a foreground of textured pixels. Use it for comparison and
    offline demos; cellnb never uses it silently in place of SAM.

    Examples
    --------
    >>> from cellnb.data import synthetic_pairs
    >>> from cellnb import locate, prompt
    >>> pair = synthetic_pairs(1, shape=(96, 96), n_cells=4, seed=0)[0]
    >>> nuclei = locate(pair.fluorescence)
    >>> seg = Watershed().segment(pair.tl, prompt(nuclei), nuclei=nuclei)
    >>> int(seg.labels.max()) > 0
    True
    """

    name = "watershed"
    fingerprint = "watershed"
    prompted = True

    def segment(self, image, prompts=None, *, nuclei=None, iou_threshold=0.85, min_area=None,
                progress=False, callback=None):
        """One cell per prompt, grown from its nucleus (see :func:`cellnb.segment`)."""
        return segment_watershed(image, prompts, nuclei=nuclei, iou_threshold=iou_threshold,
                                 min_area=min_area, progress=progress, callback=callback)

    #: read off the signature above, so it cannot drift from what segment takes
    segment_options = keyword_options(segment)


#: Options :meth:`Watershed.segment` takes.
WATERSHED_OPTIONS = Watershed.segment_options


def segment_watershed(image, prompts, *, nuclei, iou_threshold=0.85, min_area=None,
                      progress=False, callback=None) -> Segmentation:
    """Seeded watershed of the TL image from the nuclei (the classical baseline).

    A marker-controlled watershed of the smoothed image's gradient: each
    prompted nucleus is a marker, and so is the background, the pixels
    whose local standard deviation is well below the Otsu threshold of the
    image's texture (cells are textured, the background is flat), away from
    any nucleus. Cells end where they meet the background or each other.
    What :class:`cellnb.models.Watershed` runs; see :func:`segment`.
    """
    from scipy import ndimage
    from skimage.filters import sobel, threshold_otsu
    from skimage.segmentation import watershed

    from .._shared.progress import Progress

    image = check_image(image, "image", rgb=True)
    h, w = image.shape[:2]
    prompts, _ = check_prompts(prompts, (h, w))
    _check_common(iou_threshold, min_area)
    if nuclei is None:
        raise ValueError("the watershed baseline needs `nuclei=` (the seeds), e.g. "
                         "cellnb.locate(fluorescence).")
    nuclei = check_labels(nuclei, "nuclei")
    if nuclei.shape != (h, w):
        raise ValueError(f"`nuclei` (shape {nuclei.shape}) must match the image {(h, w)}.")
    grey = image.mean(axis=-1) if image.ndim == 3 else image.astype(np.float32)
    smooth = ndimage.gaussian_filter(grey.astype(np.float32), 1.5)
    mean = ndimage.uniform_filter(smooth, 9)
    texture = np.sqrt(np.clip(ndimage.uniform_filter(smooth ** 2, 9) - mean ** 2, 0, None))
    markers = np.where(np.isin(nuclei, prompts["label"].to_numpy()), nuclei, 0)
    if texture.max() > texture.min():
        flat = ndimage.binary_erosion(texture < 0.3 * threshold_otsu(texture), iterations=3)
        background = int(nuclei.max()) + 1
        markers[flat & (ndimage.distance_transform_edt(nuclei == 0) > 5)] = background
        grown = watershed(sobel(smooth), markers)
        grown[grown == background] = 0
    else:  # a flat image has no edges: each cell is its nucleus' watershed basin
        grown = watershed(sobel(smooth), markers)
    boxes = ndimage.find_objects(grown)
    crops = []
    with Progress(len(prompts), "segment", progress=progress, callback=callback,
                  unit="cell") as bar:
        for lab in prompts["label"]:
            box = boxes[lab - 1] if lab - 1 < len(boxes) else None
            crops.append((0, 0, np.zeros((0, 0), bool)) if box is None else
                         (box[0].start, box[1].start, grown[box] == lab))
            bar.update()
    return _result(crops, np.ones(len(prompts)), prompts, (h, w), iou_threshold, min_area,
                   {"method": "none (watershed works on the TL image as is)"}, "watershed")
