"""How :func:`cellnb.locate` finds nuclei (private machinery behind the verb).

- ``cellnb._nuclei.auto``: the ``auto`` method (Gaussian-smoothed threshold,
  size-aware seeds, shape split) and the nucleus-radius estimate.
- ``cellnb._nuclei.learned``: pretrained / trained nucleus models
  (StarDist, Cellpose, a cellnb U-Net run).

The verb module :mod:`cellnb.locate` holds Cell-APP's threshold methods and
dispatches to these; nothing here imports it.
"""
