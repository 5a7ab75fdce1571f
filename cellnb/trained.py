"""A trained segmentation model: the run folder :func:`cellnb.train` wrote, loaded for inference.

:class:`TrainedModel` answers the model protocol (:mod:`cellnb.models`):
``segment(image, prompts=None, **options)`` returns a
:class:`cellnb.Segmentation`, so a trained model goes wherever a SAM model
goes: :func:`cellnb.segment`, :func:`cellnb.annotate` (annotate -> train ->
annotate again), the review widget. Most recipes segment automatically;
prompted ones (``cellsam``) segment one cell per box prompt and keep SAM's
embedding between calls, as :class:`cellnb.models.SamModel` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["TrainedModel", "load_trained"]

@dataclass
class TrainedModel:
    """A trained segmentation model and its run folder.

    Use it with :func:`cellnb.segment` (``segment(image, model=trained)``)
    or :func:`cellnb.annotate` (``annotate(pairs, out, model=trained)``).

    Attributes
    ----------
    path : Path
        The run folder.
    recipe : str
    settings : dict
        Recipe, base model, epochs, batch size, patch shape, lr, seed, options.
    history : DataFrame
        One row per finished epoch (see ``history.csv``).
    info : dict
        Everything in ``trained.json`` (dataset provenance, classes,
        normalisation, versions, status).
    weights : str
        Which weights were loaded: ``"best"`` or ``"last"``.
    fingerprint : str
        Recipe and sha256 of the weight file: what annotate records and
        compares on reruns.
    device : str
    """

    path: Path
    recipe: str
    settings: dict
    history: pd.DataFrame
    info: dict
    _net: object = field(default=None, repr=False)
    _classifier: object = field(default=None, repr=False)
    device: str = "cpu"
    weights: str = "best"
    fingerprint: str = ""
    _prompt_model: object = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """Recipe, run folder and epoch, as recorded in a Segmentation."""
        return f"{self.recipe} ({self.path.name}, epoch {self.best_epoch})"

    @property
    def classes(self) -> list:
        """Cell categories of the training data (empty or one: no classifier)."""
        return list(self.info.get("classes", []))

    @property
    def best_epoch(self) -> int | None:
        """Epoch whose weights are in ``weights/best.pt``."""
        return self.info.get("best_epoch")

    @property
    def prompted(self) -> bool:
        """Whether the model segments from prompts (cellsam: boxes) rather than automatically."""
        from .recipes import get

        return bool(get(self.recipe).PROMPTED)

    @property
    def segment_options(self) -> frozenset:
        """Keyword options :meth:`segment` takes: the keyword-only parameters of the
        recipe's inference function (:func:`cellnb.recipes.segment_options`), so
        ``tile_shape`` / ``halo`` only for the recipes that tile (unet, cellsam)."""
        from .recipes import get, segment_options

        return segment_options(get(self.recipe))

    def __repr__(self) -> str:
        done = len(self.history)
        return (f"TrainedModel(recipe={self.recipe!r}, path='{self.path}', epochs={done}/"
                f"{self.settings.get('epochs')}, best_epoch={self.best_epoch}, "
                f"classes={self.classes})")

    def segment(self, image, prompts=None, *, callback=None, **options):
        """Segment one TL image (the model protocol; see :func:`cellnb.segment`).

        Automatic instance segmentation, or, for prompted recipes
        (``cellsam``), one cell per row of `prompts` (a prompt table of
        :func:`cellnb.prompt`, boxes used; cells keep the prompts' labels).
        `options` are those of :attr:`segment_options`, the keyword
        parameters of the recipe's inference function
        (:func:`cellnb.recipes.inference`); any other is a TypeError.

        Returns
        -------
        segmentation : Segmentation
            Cells carry ``class_name`` when the run had several classes: from
            the network itself for recipes that learn classes (maskrcnn), else
            from the TL classifier trained with the run.
        """
        from ._shared.validation import check_image, check_tiling
        from .models._protocol import keyword_options
        from .recipes import get, inference
        from .segment import Segmentation

        image = check_image(image, "image", rgb=True)
        unknown = sorted(set(options) - self.segment_options)
        if unknown:
            raise TypeError(f"a {self.recipe!r} model's segment takes no option(s) {unknown}; "
                            f"it takes {sorted(self.segment_options)}.")
        check_tiling(options.get("tile_shape"), options.get("halo"))
        grey = image.astype(np.float32).mean(-1) if image.ndim == 3 else image
        recipe = get(self.recipe)
        function = inference(recipe)
        if "callback" in keyword_options(function):
            options["callback"] = callback
        if recipe.PROMPTED:
            if prompts is None:
                raise ValueError(
                    f"a {self.recipe!r} model segments from box prompts: pass prompts=, e.g. "
                    "cellnb.prompt(cellnb.locate(fluorescence), kind='boxes') for a paired "
                    "image, or a prompt table built from your detector's boxes.")
            if self._prompt_model is None:  # built once: SAM's embeddings are kept between calls
                self._prompt_model = recipe.prompt_model(self._net)
            result = function(self._net, grey, prompts, self.settings, model=self._prompt_model,
                              **options)
            result.model = self.name
        else:
            if prompts is not None:
                raise ValueError(f"a {self.recipe!r} model segments automatically; pass "
                                 "prompts=None.")
            # predict_classes gives (labels, scores, classes, normalisation), predict no classes
            labels, scores, *classes, normalization = function(self._net, grey, self.settings,
                                                               **options)
            result = Segmentation.from_labels(labels, scores, normalization=normalization,
                                              model=self.name)
            if classes and len(self.classes) > 1:  # the network predicts each cell's class
                from .classify import CLASS_COLUMN

                result.table[CLASS_COLUMN] = result.table["label"].map(classes[0])
        if callback is not None and "callback" not in options:
            callback(1, 1)
        if self._classifier is not None and result.labels.max() > 0:
            from .classify import CLASS_COLUMN, tl_features

            table = result.table
            feats = tl_features(grey, result.labels)
            kept = table["label"].isin(feats.index).to_numpy()
            table[CLASS_COLUMN] = None
            table.loc[kept, CLASS_COLUMN] = self._classifier.predict(
                feats.loc[table.loc[kept, "label"]]).to_numpy()
        return result

    def plot(self, ax=None):
        """Learning curves (losses and validation AP@0.5 per epoch)."""
        from .plot import learning_curve

        return learning_curve(self.history, ax=ax)


def load_trained(path, *, device: str = "auto", weights: str = "best") -> TrainedModel:
    """Load a training run folder written by :func:`cellnb.train`.

    Parameters
    ----------
    path : str or Path
        The run folder (holds ``trained.json``).
    device : str, default="auto"
        Torch device ("auto": CUDA when available, else CPU).
    weights : {"best", "last"}, default="best"

    Returns
    -------
    trained : TrainedModel

    Raises
    ------
    FileNotFoundError
        `path` is not a run folder, or its weights are missing.

    Examples
    --------
    >>> trained = load_trained("runs/unet")  # doctest: +SKIP
    >>> cellnb.segment(image, model=trained)  # doctest: +SKIP
    """
    from ._training import runs as _runs
    from ._shared.torchutil import resolve_device
    from .recipes import get

    folder = Path(path)
    if weights not in ("best", "last"):
        raise ValueError(f"`weights` must be 'best' or 'last', got {weights!r}.")
    info = _runs.read_info(folder)
    if not isinstance(info, dict) or not {"recipe", "settings"} <= set(info):
        raise ValueError(f"{folder / _runs.INFO} lacks 'recipe' or 'settings'; the run folder "
                         "is damaged.")
    device = resolve_device(device)
    state, digest = _runs.load_weights(folder, weights, device)
    settings = info["settings"]
    import torch

    with torch.random.fork_rng(devices=[]):  # building the network draws initial weights
        try:
            net = get(info["recipe"]).load_net(settings, state, device)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise ValueError(f"{folder / 'weights' / (weights + '.pt')} does not hold the "
                             f"weights of this {info.get('recipe')!r} run ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); the run folder "
                             "is damaged.") from err
    return TrainedModel(folder, info["recipe"], settings, _runs.read_history(folder), info, net,
                        _runs.load_classifier(folder), device, weights,
                        f"{info['recipe']}:sha256:{digest[:16]}")
