"""Share a trained model through the BioImage Model Zoo (bioimage.io): :func:`export_model`.

A run folder of :func:`cellnb.train` is readable by cellnb only. A BioImage
Model Zoo package (a zip: ``rdf.yaml`` in the bioimage.io model format 0.5,
the weights, an architecture, test input and output, a cover and the
documentation) runs in every tool that reads the format: bioimageio.core,
napari, Fiji / deepImageJ, QuPath, ilastik. :func:`export_model` writes one,
validated with bioimageio.core's ``test_model`` (the package's own pipeline,
its pre-processing included, must reproduce cellnb's prediction of the test
image) before the file appears.

What the format describes, per recipe:

- ``unet``: the U-Net (torch_em's ``UNet2d``, from torch_em itself; and as
  TorchScript, for Fiji / deepImageJ and QuPath) with cellnb's percentile
  normalisation as ``scale_range`` pre-processing; any image whose sides
  are multiples of 16 (at least 32). Output: the three maps (foreground,
  centre distance, boundary distance).
- ``microsam``: SAM's image encoder + micro_sam's UNETR decoder (the
  architecture file ``bioimageio_sam.py`` travels in the package: torch,
  segment_anything and torch_em, no cellnb), min-max to 0-255 as
  pre-processing, on windows of the training patch (the scale it learnt
  at). Output: the same three maps.

Both turn maps into cells with μSAM's seeded watershed, which the format
cannot express: the package's documentation gives it with the run's
parameters (:func:`cells_from_maps` in cellnb).
:data:`NOT_EXPORTABLE` says why the other recipes are not exported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["export_model", "cells_from_maps", "EXPORTABLE", "NOT_EXPORTABLE"]

#: Recipes whose trained models :func:`export_model` packages.
EXPORTABLE = ("unet", "microsam")
#: Why the other recipes are not packaged (what the model format cannot describe).
NOT_EXPORTABLE = {
    "samcell": "not yet: its SAM regresses one distance map, which the format can describe, "
               "but its CLAHE pre-processing is not one of the format's operations",
    "cellseg1": "its cells come from a 32 x 32 grid of point prompts decoded one by one and "
                "two-stage NMS, a loop over the network that the format's single forward "
                "pass cannot describe",
    "cellsam": "it segments from box prompts, an input per cell that the format's tools do "
               "not supply",
    "cellpose": "its cells come from cellpose's flow dynamics; cellpose exports its own "
                "BioImage Model Zoo packages (cellpose's own export, with its post-processing)",
    "maskrcnn": "its output is a variable number of detections (boxes, classes, box-relative "
                "masks) pasted after non-maximum suppression, which the format cannot "
                "describe as a tensor",
}
_CITE = {
    "unet": [("Ronneberger, Fischer & Brox (2015). U-Net: Convolutional Networks for "
              "Biomedical Image Segmentation. MICCAI.", "10.1007/978-3-319-24574-4_28")],
    "microsam": [("Archit et al. (2025). Segment Anything for Microscopy. Nature Methods.",
                  "10.1038/s41592-024-02580-4")],
}
_CELL_APP = ("Virdi & Joglekar (2025). Cell-APP, Molecular Biology of the Cell: the annotation "
             "protocol cellnb automates.", "10.1091/mbc.E25-02-0076")
_MAPS = ("foreground", "center_distance", "boundary_distance")


# ---------------------------------------------------------------------------
# what each recipe puts in the package
# ---------------------------------------------------------------------------
def _unet_parts(trained, image, folder: Path) -> dict:
    """Weights, architecture, input side rule and cellnb's maps for a unet run."""
    import torch

    from .recipes import unet

    net = trained._net
    step = 2 ** len(net.encoder.blocks)
    h, w = (min(s, 256) // step * step for s in image.shape)
    if min(h, w) < 2 * step:
        raise ValueError(f"the test image ({image.shape}) must be at least {2 * step} px on "
                         "each side.")
    image = image[:h, :w]
    x, _ = unet.normalize(image, unet._NORMALIZATION)
    maps = unet._forward(net, x)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, folder / "weights.pt")
    _trace(net, x, folder / "weights_torchscript.pt")
    options = trained.settings["options"]
    from bioimageio.spec.model.v0_5 import ArchitectureFromLibraryDescr

    architecture = ArchitectureFromLibraryDescr(
        callable="UNet2d", import_from="torch_em.model.unet",
        kwargs={"in_channels": 1, "out_channels": 3, "depth": options["depth"],
                "initial_features": options["initial_features"],
                "final_activation": "Sigmoid"})
    return {"image": image, "maps": maps, "architecture": architecture, "size": ("step", step),
            "torchscript": folder / "weights_torchscript.pt",
            "preprocessing": [("scale_range", 1.0, 99.8)],
            "dependencies": ["torch_em"], "min_size": options["min_size"]}


def _trace(net, x, path: Path) -> None:
    """TorchScript weights (for Fiji / deepImageJ and QuPath, which run no Python): a trace.

    The U-Net's forward has no branch on the input's size for sides that are
    multiples of its step, so the trace holds for every size the package
    admits; bioimageio.core's test runs it at several.
    """
    import warnings

    import torch

    device = next(net.parameters()).device
    example = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None].to(device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic
        traced = torch.jit.trace(net.eval(), example)
    traced.save(str(path))


def _sam_encoder_kwargs(encoder) -> dict:
    """``ImageEncoderViT`` arguments that rebuild `encoder` (SAM's ViT, vit_b/l/h or vit_mini)."""
    blocks = encoder.blocks
    attn = blocks[0].attn
    return {"img_size": int(encoder.img_size),
            "patch_size": int(encoder.patch_embed.proj.kernel_size[0]),
            "embed_dim": int(encoder.patch_embed.proj.out_channels), "depth": len(blocks),
            "num_heads": int(attn.num_heads),
            "mlp_ratio": float(blocks[0].mlp.lin1.out_features
                               / encoder.patch_embed.proj.out_channels),
            "out_chans": int(encoder.neck[0].out_channels),
            "qkv_bias": attn.qkv.bias is not None, "use_rel_pos": bool(attn.use_rel_pos),
            "window_size": int(max(b.window_size for b in blocks)),
            "global_attn_indexes": [i for i, b in enumerate(blocks) if b.window_size == 0]}


def _microsam_parts(trained, image, folder: Path) -> dict:
    """Weights, architecture file, fixed window and cellnb's maps for a microsam run."""
    import torch
    from bioimageio.spec.model.v0_5 import ArchitectureFromFileDescr

    from .recipes import microsam

    net = trained._net
    encoder = net.unetr.encoder
    if not hasattr(encoder, "blocks") or not hasattr(encoder, "patch_embed"):
        raise ValueError(f"a {net.architecture!r} microsam model cannot be packaged yet: its "
                         "encoder is not SAM's ViT (vit_t is MobileSAM's TinyViT); "
                         "vit_b, vit_l, vit_h and vit_mini runs can.")
    side = int(trained.settings["patch_shape"][0])
    if min(image.shape) < side:
        raise ValueError(f"the test image ({image.shape}) must be at least the training patch, "
                         f"{side} x {side} px.")
    image = image[:side, :side]
    x, _ = microsam.normalize(image, microsam._NORMALIZATION)
    maps = microsam._forward(net.unetr, x)
    state = {k: v.detach().cpu() for k, v in net.unetr.state_dict().items()}
    torch.save(state, folder / "weights.pt")
    source = folder / "sam_unetr.py"
    shutil.copyfile(Path(__file__).parent / "_training" / "bioimageio_sam.py", source)
    conv_transpose = any(".block." in k for k in state if k.startswith("decoder.samplers"))
    architecture = ArchitectureFromFileDescr(
        source=source, callable="SamUNETR",
        kwargs={"encoder": _sam_encoder_kwargs(encoder),
                "initial_features": 16 if net.architecture == "vit_mini" else 64,
                "use_conv_transpose": conv_transpose})
    return {"image": image, "maps": maps, "architecture": architecture, "size": ("fixed", side),
            "preprocessing": [("scale_range", 0.0, 100.0), ("scale_linear", 255.0),
                              ("clip", 0.0, 255.0)],
            "dependencies": ["torch_em", "segment-anything"],
            "min_size": trained.settings["options"]["min_size"]}


_PARTS = {"unet": _unet_parts, "microsam": _microsam_parts}


def cells_from_maps(maps, *, min_size: int = 25) -> np.ndarray:
    """Cells from a package's output maps: μSAM's seeded watershed (the documented post-processing).

    Parameters
    ----------
    maps : (3, H, W) or (1, 3, H, W) array
        Foreground probability, centre distance and boundary distance, as a
        package of :func:`export_model` predicts them.
    min_size : int, default=25
        Smaller cells are removed (the run's ``min_size`` option).

    Returns
    -------
    labels : (H, W) int32, ids 1..n

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> d = np.clip(np.hypot(yy - 20, xx - 20) / 10, 0, 1)
    >>> int(cells_from_maps(np.stack([(d < 1).astype(np.float32), d, d])).max())
    1
    """
    from .recipes._common import distance_watershed

    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3 or maps.shape[0] != 3:
        raise ValueError(f"`maps` must be (3, H, W) (foreground, centre and boundary distance), "
                         f"got shape {maps.shape}.")
    return distance_watershed(*maps, min_size=min_size)[0]


# ---------------------------------------------------------------------------
# the package
# ---------------------------------------------------------------------------
def _test_image(trained, test_image) -> np.ndarray:
    """The image the package is tested on: `test_image`, else the run's first validation image."""
    from ._shared.validation import check_image

    if test_image is not None:
        image = check_image(test_image, "test_image", rgb=True)
    else:
        folder = (trained.info.get("dataset") or {}).get("folder")
        if not folder or not Path(folder).is_dir():
            raise FileNotFoundError(f"the run's dataset ({folder}) is not there to take a test "
                                    "image from; pass test_image= (a TL image).")
        from .dataset import read_dataset

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a held-out split warns
            data = read_dataset(folder)
        image = (data.val or data.train)[0].image
    image = np.asarray(image, np.float32)
    return image.mean(-1) if image.ndim == 3 else image


def _preprocessing(steps):
    from bioimageio.spec.model.v0_5 import (AxisId, ClipDescr, ClipKwargs, ScaleLinearDescr,
                                            ScaleLinearKwargs, ScaleRangeDescr,
                                            ScaleRangeKwargs)

    out = []
    for step in steps:
        if step[0] == "scale_range":
            out.append(ScaleRangeDescr(kwargs=ScaleRangeKwargs(
                axes=[AxisId("y"), AxisId("x")], min_percentile=step[1], max_percentile=step[2])))
        elif step[0] == "scale_linear":
            out.append(ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=step[1], offset=0.0)))
        elif step[0] == "clip":
            out.append(ClipDescr(kwargs=ClipKwargs(min=step[1], max=step[2])))
    return out


def _tensors(parts, folder: Path):
    """Input and output tensor descriptions with their test tensors."""
    from bioimageio.spec.model.v0_5 import (AxisId, BatchAxis, ChannelAxis, FileDescr,
                                            Identifier, InputTensorDescr, OutputTensorDescr,
                                            ParameterizedSize, SizeReference, SpaceInputAxis,
                                            SpaceOutputAxis, TensorId)

    image, maps = parts["image"], parts["maps"]
    np.save(folder / "test_input.npy", image[None, None].astype(np.float32))
    np.save(folder / "test_output.npy", maps[None].astype(np.float32))
    kind, side = parts["size"]
    # the U-Net's bottleneck needs 2 x 2 pixels (instance norm), so twice the step at least
    size = ParameterizedSize(min=2 * side, step=side) if kind == "step" else side
    inputs = [InputTensorDescr(
        id=TensorId("tl"), description="transmitted-light image, one channel",
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier("tl")]),
              SpaceInputAxis(id=AxisId("y"), size=size), SpaceInputAxis(id=AxisId("x"), size=size)],
        test_tensor=FileDescr(source=folder / "test_input.npy"),
        preprocessing=_preprocessing(parts["preprocessing"]))]
    outputs = [OutputTensorDescr(
        id=TensorId("maps"),
        description="foreground probability, distances to the cell centre and boundary; "
                    "cells: μSAM's seeded watershed",
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier(n) for n in _MAPS]),
              SpaceOutputAxis(id=AxisId("y"), size=SizeReference(tensor_id=TensorId("tl"),
                                                                 axis_id=AxisId("y"))),
              SpaceOutputAxis(id=AxisId("x"), size=SizeReference(tensor_id=TensorId("tl"),
                                                                 axis_id=AxisId("x")))],
        test_tensor=FileDescr(source=folder / "test_output.npy"))]
    return inputs, outputs


def _cover(parts, labels, path: Path) -> None:
    """A 2:1 cover: the test image with its cells, and the predicted foreground.

    Drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot), so the
    user's backend and open figures are left alone.
    """
    from matplotlib.figure import Figure

    from .plot import overlay

    fig = Figure(figsize=(8, 4), dpi=100)
    axes = fig.subplots(1, 2)
    overlay(parts["image"], labels, ax=axes[0], title=f"{int(labels.max())} cells")
    axes[1].imshow(parts["maps"][0], cmap="magma", vmin=0, vmax=1)
    axes[1].set_title("foreground probability")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)


def _steps_in_words(steps) -> str:
    """The pre-processing steps as a sentence.

    Examples
    --------
    >>> _steps_in_words([("scale_range", 1.0, 99.8), ("scale_linear", 255.0)])
    'percentiles 1.0-99.8 of the image to 0-1, then times 255.0'
    """
    words = {"scale_range": lambda lo, hi: f"percentiles {lo}-{hi} of the image to 0-1",
             "scale_linear": lambda gain: f"times {gain}",
             "clip": lambda lo, hi: f"clipped to {lo}-{hi}"}
    return ", then ".join(words[step[0]](*step[1:]) for step in steps)


def _documentation(trained, parts, labels, path: Path) -> None:
    """README of the package: what it is, how it was trained, and its post-processing."""
    h = trained.history
    best = h.loc[h["epoch"] == trained.best_epoch].iloc[0] if len(h) and \
        trained.best_epoch is not None else None
    settings = {k: v for k, v in trained.settings.items() if k != "options"}
    side = parts["size"][1]
    window = (f"any image whose sides are multiples of {side} px, at least {2 * side}"
              if parts["size"][0] == "step"
              else f"windows of {side} x {side} px, the training patch: tile larger images "
                   "with overlap (cellnb uses 64 px) so that cells are seen at the scale the "
                   "network learnt")
    text = f"""# {trained.recipe} model trained with cellnb

A `{trained.recipe}` model (recipe of `cellnb.train`) segmenting cells in transmitted-light
(TL) images, trained on annotations made the Cell-APP way: nuclei located in a paired
fluorescence image, whole cells segmented by μSAM from those prompts.

## Input
`tl`: one TL channel, float32, {window}. Pre-processing (in the package):
{_steps_in_words(parts["preprocessing"])}.

## Output
`maps`: three channels: foreground probability, distance to the cell centre and distance
to the cell boundary, each normalised per cell (torch_em's PerObjectDistanceTransform).

## Post-processing: cells from the maps
μSAM's seeded watershed (micro_sam's `InstanceSegmentationWithDecoder` defaults; in cellnb
`cellnb.model_zoo.cells_from_maps(maps, min_size={parts["min_size"]})`): smooth the foreground (Gaussian, sigma 1.0)
and the boundary distance (sigma 1.6); seeds where the centre and boundary distances are
both below 0.5; a watershed on the boundary distance grows them inside the region where the
foreground is above 0.5; cells under {parts["min_size"]} px are removed. With torch_em:

```python
from torch_em.util.segmentation import watershed_from_center_and_boundary_distances
from scipy.ndimage import gaussian_filter
fg, center, boundary = maps[0, 0], maps[0, 1], maps[0, 2]
cells = watershed_from_center_and_boundary_distances(
    center, boundary, gaussian_filter(fg, 1.0), center_distance_threshold=0.5,
    boundary_distance_threshold=0.5, foreground_threshold=0.5, distance_smoothing=1.6,
    min_size={parts["min_size"]})
```

On the test image this gives {int(labels.max())} cells.

## Training
Settings: `{json.dumps(settings, default=str)}`.
Recipe options: `{json.dumps(trained.settings.get("options", {}), default=str)}`.
Epochs run: {len(h)}; best epoch {trained.best_epoch}""" + (
        f" (validation AP@0.5 {best['val_ap50']:.3f})." if best is not None else ".") + f"""
Dataset: `{json.dumps((trained.info.get("dataset") or {}).get("splits", {}), default=str)}`.
Versions: `{json.dumps(trained.info.get("versions", {}), default=str)}`.
"""
    path.write_text(text)


def export_model(trained, path, *, format: str = "bioimageio", name: str | None = None,
                 authors=None, license: str = "CC-BY-4.0", test_image=None,
                 overwrite: bool = False) -> Path:
    """Package a trained model for the BioImage Model Zoo, validated by bioimageio.core.

    Parameters
    ----------
    trained : TrainedModel or str or Path
        A run of :func:`cellnb.train` (or its folder), recipe one of
        :data:`EXPORTABLE`.
    path : str or Path
        The package to write, a ``.zip``.
    format : {"bioimageio"}, default="bioimageio"
        The BioImage Model Zoo model format 0.5.
    name : str, optional
        The model's name; default ``"cellnb <recipe> (<run folder>)"``.
    authors : sequence of str or dict, optional
        Who made the model (names, or dicts with ``name``, ``affiliation``,
        ``orcid``, ``github_user``); default ``["cellnb user"]``. Put your
        own before uploading.
    license : str, default="CC-BY-4.0"
        An SPDX licence identifier.
    test_image : (H, W) array, optional
        The TL image the package is tested on (its test input and output);
        default the run's first validation image. Cropped to at most 256 px
        (unet) or to the training patch (microsam).
    overwrite : bool, default=False
        Replace an existing file at `path`.

    Returns
    -------
    path : Path
        The package, written only after bioimageio.core's ``test_model``
        passed on it.

    Raises
    ------
    ValueError
        A recipe the format cannot describe (the reason is in
        :data:`NOT_EXPORTABLE`), or a test image smaller than the network's input.
    RuntimeError
        bioimageio.core's test failed (its report is in the message).

    Examples
    --------
    >>> trained = cellnb.train("dataset", recipe="unet", out="runs/unet")  # doctest: +SKIP
    >>> cellnb.export_model(trained, "my_unet.zip", authors=["Ada Lovelace"])  # doctest: +SKIP
    >>> import bioimageio.core  # doctest: +SKIP
    >>> bioimageio.core.predict(model="my_unet.zip", inputs=tl[None, None])  # doctest: +SKIP
    """
    from .trained import TrainedModel, load_trained

    if format != "bioimageio":
        raise ValueError(f"`format` must be 'bioimageio', got {format!r}.")
    if not isinstance(trained, TrainedModel):
        trained = load_trained(trained, device="cpu")
    if trained.recipe not in EXPORTABLE:
        raise ValueError(f"a {trained.recipe!r} model cannot be packaged for the BioImage Model "
                         f"Zoo: {NOT_EXPORTABLE.get(trained.recipe, 'unknown recipe')}. "
                         f"Recipes that can: {list(EXPORTABLE)}.")
    path = Path(path)
    if path.suffix != ".zip":
        raise ValueError(f"`path` must end in .zip (a BioImage Model Zoo package), got {path}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    authors = ["cellnb user"] if authors is None else list(authors)
    if not authors or not all(isinstance(a, (str, dict)) for a in authors):
        raise TypeError("`authors` must be a non-empty sequence of names or dicts with 'name'.")
    image = _test_image(trained, test_image)

    with tempfile.TemporaryDirectory(prefix="cellnb-bioimageio-") as tmp:
        folder = Path(tmp)
        descr = _describe(trained, image, folder, name=name, authors=authors, license=license)
        _check(descr)
        from bioimageio.spec import save_bioimageio_package

        from ._shared.files import atomic_path

        built = save_bioimageio_package(descr, output_path=folder / "package.zip")
        with atomic_path(path) as out:
            shutil.copyfile(built, out)
    return path


def _describe(trained, image, folder: Path, *, name, authors, license):
    """The package's ModelDescr, its files written into `folder`."""
    import torch
    from bioimageio.spec.model.v0_5 import (Author, CiteEntry, Doi, FileDescr, LicenseId,
                                            ModelDescr, PytorchStateDictWeightsDescr,
                                            TorchscriptWeightsDescr, Version, WeightsDescr)

    parts = _PARTS[trained.recipe](trained, image, folder)
    labels = cells_from_maps(parts["maps"], min_size=parts["min_size"])
    inputs, outputs = _tensors(parts, folder)
    _cover(parts, labels, folder / "cover.png")
    _documentation(trained, parts, labels, folder / "README.md")
    (folder / "environment.yaml").write_text(
        "name: cellnb-bioimageio\nchannels: [conda-forge]\ndependencies:\n  - python>=3.10\n"
        "  - pytorch\n  - pip\n  - pip:\n" + "".join(f"    - {d}\n" for d in
                                                      parts["dependencies"]))
    version = Version(torch.__version__.split("+")[0])
    torchscript = None
    if parts.get("torchscript") is not None:
        torchscript = TorchscriptWeightsDescr(source=parts["torchscript"], pytorch_version=version,
                                              parent="pytorch_state_dict")
    weights = WeightsDescr(pytorch_state_dict=PytorchStateDictWeightsDescr(
        source=folder / "weights.pt", architecture=parts["architecture"],
        pytorch_version=version, dependencies=FileDescr(source=folder / "environment.yaml")),
        torchscript=torchscript)
    people = [Author(**a) if isinstance(a, dict) else Author(name=a) for a in authors]
    cite = [CiteEntry(text=text, doi=Doi(doi)) for text, doi in
            [*_CITE[trained.recipe], _CELL_APP]]
    return ModelDescr(
        name=name or f"cellnb {trained.recipe} ({trained.path.name})",
        description=f"Cells in transmitted-light images: a {trained.recipe} model trained with "
                    "cellnb on Cell-APP-style annotations; outputs foreground and distance "
                    "maps, cells by μSAM's seeded watershed (see the documentation).",
        authors=people, cite=cite, license=LicenseId(license),
        documentation=FileDescr(source=folder / "README.md"),
        covers=[FileDescr(source=folder / "cover.png")],
        tags=["cellnb", trained.recipe, "instance-segmentation", "cells", "transmitted-light",
              "2d", "pytorch"],
        inputs=inputs, outputs=outputs, weights=weights)


def _check(descr) -> None:
    """bioimageio.core's test_model on the description; raise with its report unless passed."""
    import gc
    import warnings

    from bioimageio.core import test_model

    with warnings.catch_warnings():  # e.g. torch deprecating torch.jit.load (TorchScript)
        warnings.simplefilter("ignore")
        summary = test_model(descr, devices=["cpu"])  # every weight format it holds
        gc.collect()  # bioimageio.core leaves test tensors' files open: closed here, quietly
    if summary.status != "passed":
        failed = [f"{d.name}: {[e.msg for e in d.errors]}" for d in summary.details
                  if d.status != "passed"]
        raise RuntimeError("bioimageio.core's test of the package failed; nothing was written:\n"
                           + "\n".join(failed))
