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

from importlib import import_module

from .config import Config
from .annotate import annotate
from .classify import classify
from .evaluate import compare, evaluate
from .export import export
from .locate import locate, suggest_locate
from .measure import culture, measure
from .model_zoo import export_model
from .prompt import prompt
from .segment import Segmentation, segment
from .train import train
from .trained import TrainedModel, load_trained

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
