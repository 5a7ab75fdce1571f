"""Single image files: read an image or a label image, write a label image.

Images keep their dtype (uint8, uint16, float32) exactly: nothing is rescaled on reading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._shared.files import atomic_path
from .._shared.validation import check_image, check_labels, check_pixels

__all__ = ["read_image", "read_labels", "write_labels"]


_TIFF = {".tif", ".tiff"}


_OTHER = {".png", ".jpg", ".jpeg"}


def _image_header(path: Path, name: str) -> dict:
    """Shape, dtype and plane count of an image file, read from its header alone (nothing
    is decoded, so a file that claims a huge image costs nothing)."""
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise ValueError("it holds no image")
                series = tif.series[0]
                return {"shape": tuple(series.shape), "dtype": np.dtype(series.dtype),
                        "planes": len(tif.pages), "axes": series.axes, "bit_depth": None}
        with open(path, "rb") as f:
            head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":  # PNG's own header
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            depth, colour = head[24], head[25]
            bands = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 1)  # grey, RGB, palette, +alpha
            frames = 1
        else:
            from PIL import Image

            with Image.open(path) as im:  # reads the header only
                (width, height), bands = im.size, len(im.getbands())
                frames, depth = getattr(im, "n_frames", 1), 8
        shape = (height, width) if bands == 1 else (height, width, bands)
        return {"shape": shape, "dtype": np.dtype(np.uint16 if depth == 16 else np.uint8),
                "planes": frames, "axes": None, "bit_depth": depth}
    except Exception as err:  # corrupt or truncated files: name the file, keep the cause
        raise ValueError(f"cannot read {name} file {path}: {err}") from err


def read_image(path, *, name: str = "image", rgb: bool = True) -> np.ndarray:
    """Read one 2-D image (TIFF, PNG or JPEG) keeping its dtype.

    Parameters
    ----------
    path : str or Path
        Image file.
    name : str, default="image"
        What the image is, for error messages.
    rgb : bool, default=True
        Accept (H, W, 3) RGB images (an opaque alpha channel is dropped, and
        16-bit colour PNGs keep their 16 bits). With False, RGB raises.

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray
        uint8, uint16 or float32, exactly as stored.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        For files of several planes (time series, stacks, channels),
        unreadable files, wrong shapes, NaN or inf, and files whose header
        claims more than ``MAX_PIXELS`` pixels (16384 x 16384) or more
        memory than is free (checked before anything is decoded).
    TypeError
        For dtypes other than uint8, uint16, float32.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(path, np.ones((4, 5), np.uint16))
    >>> read_image(path).dtype
    dtype('uint16')
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in _TIFF | _OTHER:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r}; expected one of "
                         f"{sorted(_TIFF | _OTHER)}.")
    header = _image_header(path, name)
    shape = header["shape"]
    if header["planes"] > 1 or len(shape) > 3 or (len(shape) == 3 and shape[-1] not in (2, 3, 4)):
        axes = f", axes {header['axes']!r}" if header.get("axes") else ""
        raise ValueError(
            f"{path.name} holds {header['planes']} planes (shape {shape}{axes}: channels, "
            "time points or z), and read_image reads one 2-D image. Pair it with "
            "cellnb.io.find_pairs, which makes one pair per plane (time point, position, z), "
            "or read a plane with cellnb.io.microscope.read_plane (both need: pip install "
            "'cellnb[bioio]')."
        )
    check_pixels(shape[:2], header["dtype"], f"{name} file {path}")
    try:
        if suffix in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                image = tif.series[0].asarray()
        elif header["bit_depth"] == 16:  # Pillow cuts 16-bit colour PNGs to 8 bits
            import imagecodecs

            image = imagecodecs.png_decode(path.read_bytes())
        else:
            import warnings

            import imageio.v3 as iio
            from PIL import Image

            with warnings.catch_warnings():  # the size is checked above, against MAX_PIXELS
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = np.asarray(iio.imread(path))
    except Exception as err:  # corrupt or truncated files: name the file, keep the cause
        raise ValueError(f"cannot read {name} file {path}: {err}") from err
    if image.ndim == 3 and image.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
        alpha = image[..., -1]
        if alpha.min() != alpha.max():  # a real extra channel, not an opaque alpha
            raise ValueError(f"{path.name} has {image.shape[-1]} channels and the last varies "
                             f"(values {alpha.min()}-{alpha.max()}), so it is data, not "
                             f"transparency; save the channel you want as its own {name} file.")
        image = image[..., 0] if image.shape[-1] == 2 else image[..., :3]
    try:
        return check_image(image, name, rgb=rgb)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path.name}: {err}") from None


def read_labels(path) -> np.ndarray:
    """Read a label image (TIFF or PNG) as (H, W) int32, 0 = background.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.tif"
    >>> write_labels(path, np.array([[0, 1], [2, 2]]))
    >>> read_labels(path)
    array([[0, 1],
           [2, 2]], dtype=int32)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist.")
    check_pixels(_image_header(path, "label")["shape"][:2], np.int32, f"label file {path}")
    if path.suffix.lower() in _TIFF:
        import tifffile

        try:
            labels = tifffile.imread(path)
        except Exception as err:
            raise ValueError(f"cannot read label file {path}: {err}") from err
    else:
        import imageio.v3 as iio

        try:
            labels = np.asarray(iio.imread(path))
        except Exception as err:
            raise ValueError(f"cannot read label file {path}: {err}") from err
    try:
        return check_labels(labels, "labels")
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path.name}: {err}") from None


def write_labels(path, labels) -> None:
    """Write a label image atomically as a compressed int32 TIFF.

    Parameters
    ----------
    path : str or Path
        Target ``.tif`` / ``.tiff`` file; parent folders are created.
    labels : (H, W) ndarray of int
        Label image, 0 = background.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.tif"
    >>> write_labels(path, np.zeros((3, 3), np.int32))
    >>> path.exists()
    True
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in _TIFF:
        raise ValueError(f"label images are written as TIFF; got {path.name}, use a .tif name.")
    labels = check_labels(np.asarray(labels) if not isinstance(labels, np.ndarray) else labels)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, compression="zlib")
