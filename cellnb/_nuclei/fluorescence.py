"""The fluorescence image every locate method starts from."""

from __future__ import annotations

import numpy as np

from .._shared.validation import check_image


def as_float(fluorescence) -> np.ndarray:
    """A checked (H, W) nuclear fluorescence image as float32; a constant image is refused.

    >>> as_float(np.array([[0, 2], [4, 6]], np.uint16)).dtype
    dtype('float32')
    """
    image = check_image(fluorescence, "fluorescence")
    image = image.astype(np.float32, copy=False)
    if image.max() == image.min():
        raise ValueError(f"`fluorescence` is constant (every pixel is {image.flat[0]}); "
                         "check that the right channel and frame were read.")
    return image
