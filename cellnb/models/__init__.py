"""Segmentation models: one protocol, the SAM / μSAM models, the watershed baseline.

The model protocol
------------------
Every segmenter in cellnb answers the same calls, so :func:`cellnb.segment`,
:func:`cellnb.annotate`, the review widget and the CLI take any of them:

===========================================  ==================================================
``name``                                     str recorded in every result
``fingerprint``                              str identifying the weights (annotate compares it)
``prompted``                                 True: one cell per prompt; False: automatic
``segment_options``                          the keyword options its ``segment`` takes
``segment(image, prompts=None, **options)``  -> :class:`cellnb.segment.Segmentation`
===========================================  ==================================================

A :class:`SamModel` also segments without prompts (``mode="ais"``, ``"apg"``
or ``"amg"``: μSAM's automatic instance segmentation, automatic prompt
generation and SAM's automatic mask generation, through micro_sam's own
classes); :func:`automatic` wraps it as an automatic model of the protocol
for :func:`cellnb.annotate` and :func:`cellnb.compare`.

Three kinds implement it:

- :class:`SamModel` (``load("vit_b_lm")``, ``load(arch, checkpoint=path)``,
  :func:`cellnb.models.random_sam`): prompted. It adds an explicit
  embedding step, :meth:`SamModel.embed`, whose result is kept in memory
  (the last few images, keyed by image hash and tiling) and optionally on
  disk (micro_sam's zarr embedding files), so segmenting an image again,
  with other prompts or one more click, decodes without re-encoding.
- :class:`Watershed` (``"watershed"``): the classical baseline, prompted by
  the nuclei; never used silently in place of SAM.
- :class:`cellnb.TrainedModel` (:func:`cellnb.train`,
  :func:`cellnb.load_trained`): automatic, or prompted by boxes (cellsam).

Loading
-------
``load("vit_b_lm")`` resolves a micro_sam model-zoo name; micro_sam downloads
the weights into its cache (``$MICROSAM_CACHEDIR`` or ``~/.cache/micro_sam``)
the first time. ``load(arch, checkpoint=path)`` loads weights from a file.
Either way the weights go through ``micro_sam.util.get_sam_model``, the same
code path real and random-init models use. :func:`resolve` is the one place
that turns a name (and checkpoint) into what micro_sam loads; the training
recipes use it too.

Modules
-------
One module per mechanism, layered (each imports only those above it):

- ``cellnb.models._architectures``: the networks (SAM sizes, reduced test sizes, UNETR
  decoder, Cellpose-SAM); ``cellnb.models._result``: :class:`~cellnb.segment.Segmentation`,
  overlap resolution and prompt checks; ``cellnb.models._protocol``: :class:`Segmenter`.
- ``cellnb.models._zoo``: names, the micro_sam cache, checkpoints, fingerprints.
- ``cellnb.models._automatic``: micro_sam's automatic modes (AIS / APG / AMG);
  ``cellnb.models._sam``: embeddings, prompt decoding, :class:`AutomaticSam`;
  ``cellnb.models._watershed``; ``cellnb.models._cellpose``.
- ``cellnb.models._loading``: :func:`load`, :func:`load_cached`, :func:`as_model`,
  :func:`automatic`, :func:`zero_shot`, and the random-init stand-ins :func:`random_sam`,
  :func:`random_checkpoint` (the fallback of :func:`load_cached`).

torch and micro_sam are imported inside the functions, so ``import cellnb``
stays light.
"""

from __future__ import annotations

from . import _architectures, _automatic, _zoo
from ._cellpose import CellposeSam
from ._loading import (as_model, automatic, load, load_cached, random_checkpoint, random_sam,
                       zero_shot)
from ._protocol import Segmenter
from ._sam import AutomaticSam, ImageEmbedding, SamModel
from ._watershed import Watershed
from ._zoo import (ModelNotAvailableError, available, cache_dir, decoder_models, fingerprint,
                  is_cached, resolve, zoo_reachable)

__all__ = ["random_sam", "random_checkpoint", "zoo_reachable", "Segmenter", "SamModel",
           "AutomaticSam", "CellposeSam", "Watershed", "ImageEmbedding",
           "as_model", "load", "automatic", "zero_shot", "decoder_models", "AUTOMATIC_MODES",
           "CELLPOSE_NAMES",
           "load_cached", "resolve", "fingerprint", "available", "is_cached", "cache_dir",
           "ModelNotAvailableError", "ARCHITECTURES"]

#: SAM architectures :func:`load` builds: micro_sam's, then cellnb's reduced ``vit_mini``.
ARCHITECTURES = _architectures.ARCHITECTURES

#: Cellpose's model names :func:`load` gives as :class:`CellposeSam` (zero-shot Cellpose-SAM);
#: ``cpsam_mini`` is cellnb's reduced test network (random weights from a checkpoint).
CELLPOSE_NAMES = _zoo.CELLPOSE_NAMES

#: Modes of :meth:`SamModel.segment` without prompts: μSAM's automatic instance segmentation
#: (decoder), automatic prompt generation (decoder + SAM), SAM's automatic mask generation.
AUTOMATIC_MODES = _automatic.MODES
