"""cellnb: annotate, train and evaluate cell-segmentation models from paired
transmitted-light / fluorescence images (the Cell-APP protocol, on μSAM).

The pipeline, one verb per stage::

    pairs -> locate -> prompt -> segment -> measure -> classify -> export -> train -> evaluate
    (io)                          ^                                           |
                                  +----------- one model protocol ------------+

Every segmenter answers one protocol (:mod:`cellnb.models`): a SAM / μSAM
model (embed an image once, segment from prompts many times), the watershed
baseline, and every :class:`TrainedModel` that :func:`train` returns. So
:func:`segment`, :func:`annotate` and the review tools take any of them, and
a trained model can annotate again (annotate -> train -> annotate).

The verbs are importable from the top level (``cellnb.evaluate`` is the
function; its helpers live in the module of the same name). Nothing heavy
runs at import: torch, micro_sam, scikit-image and matplotlib are imported by
the functions that need them.

Examples
--------
>>> import cellnb
>>> pairs = cellnb.data.synthetic_pairs(1, shape=(128, 128), n_cells=8)
>>> cellnb.Config().locate.method
'isodata'
"""

import sys as _sys
import types as _types
from importlib import import_module


def _keep_tensorflow_out():
    """torch_em (under micro_sam) imports ``torch.utils.tensorboard``, whose compat layer
    imports TensorFlow when it is installed (the stardist extra brings it): seconds, memory
    and TF / absl lines on stderr in every notebook. tensorboard ships a stub for exactly
    this and uses it when the marker module ``tensorboard.compat.notf`` exists, so the marker
    is registered here, unless TensorFlow is already in use. TensorFlow is then imported only
    by ``locate(method="stardist")``, which asks for it."""
    if "tensorflow" not in _sys.modules:
        _sys.modules.setdefault("tensorboard.compat.notf",
                                _types.ModuleType("tensorboard.compat.notf"))


_keep_tensorflow_out()

from .config import Config  # noqa: E402
from .annotate import annotate  # noqa: E402
from .classify import classify  # noqa: E402
from .evaluate import compare, evaluate  # noqa: E402
from .export import export  # noqa: E402
from .locate import locate, suggest_locate  # noqa: E402
from .measure import culture, measure  # noqa: E402
from .model_zoo import export_model  # noqa: E402
from .prompt import prompt  # noqa: E402
from .segment import Segmentation, segment  # noqa: E402
from .train import train  # noqa: E402
from .trained import TrainedModel, load_trained  # noqa: E402

__version__ = "0.1.0"

# Helper sub-modules load on first attribute access (PEP 562).
_SUBMODULES = ("io", "data", "dataset", "models", "weights", "plot", "widgets", "testing", "config",
               "cli", "recipes", "microscope", "movies", "viewer", "qc", "curate", "model_zoo")

__all__ = ["Config", "locate", "suggest_locate", "prompt", "segment", "Segmentation", "measure",
           "culture", "classify", "annotate", "export", "train", "load_trained", "TrainedModel",
           "evaluate", "compare", "export_model", "__version__",
           *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cellnb' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
