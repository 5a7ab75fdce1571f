"""Regenerate the figures in docs/ (run from the repository root)."""

import matplotlib

matplotlib.use("Agg")

from cellnb import data, plot  # noqa: E402

pair = data.synthetic_pairs(1, shape=(384, 384), n_cells=30, mitotic_fraction=0.2, seed=0)[0]
fig = plot.pair(pair.tl, pair.fluorescence, cells=pair.labels, nuclei=pair.nuclei,
                title="cellnb.data.synthetic_pairs: TL + cells | fluorescence + nuclei")
fig.savefig("docs/synthetic_pair.png", dpi=60)
