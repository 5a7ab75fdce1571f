"""Latency of one click in the review widget: cellnb's decode on the kept embedding vs re-encoding.

What a click on empty TL costs in :func:`cellnb.widgets.review`:

- cellnb     ``segment_click`` on the image's kept embedding (SAM's prompt
             decoder + upsampling around the mask only), then ``curate.add``
             (the record rewritten atomically) and the viewer's cell layer
             updated (``Viewer.update_labels``: a PNG of the changed window);
- baseline   what an annotator without a kept embedding does per click:
             SAM's ``SamPredictor.set_image`` (the encoder) + ``predict``.

Real architecture at random initialisation (vit_b by default, SAM's 1024 px
input), a 2048 x 2048 or --size image with ~900 cells; the first (embedding)
call is reported apart. The ratio is baseline / cellnb per click.

    python benchmarks/bench_click.py [--model vit_b] [--size 1024] [--clicks 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from cellnb import annotate, curate
    from cellnb.data import synthetic_pairs, write_pairs
    from cellnb.segment import normalize_for_sam, segment_click
    from cellnb.testing import random_sam
    from cellnb.viewer import Viewer

    torch.set_grad_enabled(False)
    model = random_sam(args.model, device=args.device)
    root = Path(tempfile.mkdtemp(prefix="cellnb-bench-click-"))
    pair = synthetic_pairs(1, shape=(args.size, args.size), n_cells=args.cells, seed=0)[0]
    write_pairs([pair], root / "pairs")
    annotate(root / "pairs", root / "out", model="watershed", progress=False)
    rng = np.random.default_rng(0)
    points = [(float(y), float(x)) for y, x in
              rng.integers(0, args.size, size=(args.clicks + 1, 2))]

    t0 = time.perf_counter()
    model.embed(pair.tl)
    embed_s = time.perf_counter() - t0

    from cellnb.io import read_labels

    record = root / "out" / "records" / pair.id
    viewer = Viewer()
    viewer.add_image(pair.tl, name="TL")
    viewer.add_labels(read_labels(record / "cells.tif"), name="cells")
    ours, parts, areas = [], [], []
    for y, x in points[1:]:
        t0 = time.perf_counter()
        mask, score = segment_click(model, pair.tl, [(y, x, True)])
        t1 = time.perf_counter()
        labels = read_labels(record / "cells.tif")
        free = mask & (labels == 0)
        if free.any():
            curate.add(root / "out", pair.id, free, prompt={"points": [[y, x]]}, score=score)
            labels = read_labels(record / "cells.tif")
        t2 = time.perf_counter()
        viewer.update_labels("cells", labels)
        ours.append(time.perf_counter() - t0)
        parts.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        areas.append(int(free.sum()))

    # the same clicks with cell-sized masks: SAM decodes as before (timed), but the cell written
    # and redrawn is the true cell at the click (what real weights would draw), not the random
    # model's near-whole-image mask
    cells_ids = [int(v) for v in np.unique(pair.labels[pair.labels > 0])]
    realistic, real_parts = [], []
    for k, label in enumerate(rng.choice(cells_ids, size=args.clicks, replace=False)):
        y, x = [float(v) for v in np.argwhere(pair.labels == label).mean(axis=0)]
        t0 = time.perf_counter()
        segment_click(model, pair.tl, [(y, x, True)])
        t1 = time.perf_counter()
        labels = read_labels(record / "cells.tif")
        free = (pair.labels == label) & (labels == 0)
        if not free.any():  # the watershed already has it: redraw it instead
            target = int(np.bincount(labels[pair.labels == label]).argmax())
            if target:
                curate.replace(root / "out", pair.id, target, pair.labels == label)
        else:
            curate.add(root / "out", pair.id, free, prompt={"points": [[y, x]]})
        labels = read_labels(record / "cells.tif")
        t2 = time.perf_counter()
        viewer.update_labels("cells", labels)
        realistic.append(time.perf_counter() - t0)
        real_parts.append((t1 - t0, t2 - t1, time.perf_counter() - t2))

    rgb, _ = normalize_for_sam(pair.tl)
    predictor = model.predictor
    theirs = []
    for y, x in points[1:4]:  # the encoder each time: three clicks are enough to time it
        t0 = time.perf_counter()
        predictor.set_image(rgb)
        predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]),
                          multimask_output=True)
        theirs.append(time.perf_counter() - t0)

    print(f"model {args.model} (random init, real architecture) on {args.device}, "
          f"image {args.size} x {args.size}, {torch.get_num_threads()} threads")
    print(f"first click on an image: embedding {embed_s:.2f} s (once per image)")
    print(f"{'':28s} {'median s':>9s} {'max s':>8s}")
    print(f"{'cellnb (kept embedding)':28s} {np.median(ours):9.3f} {np.max(ours):8.3f}")
    print(f"{'cellnb, cell-sized masks':28s} {np.median(realistic):9.3f} {np.max(realistic):8.3f}")
    print(f"{'baseline (encode + decode)':28s} {np.median(theirs):9.3f} {np.max(theirs):8.3f}")
    decode, write, redraw = np.median(parts, axis=0)
    print(f"cellnb per click: decode {decode:.3f} s, record written {write:.3f} s, viewer "
          f"updated {redraw:.3f} s; masks of median {int(np.median(areas))} px (random weights "
          "draw far larger masks than a cell, so the redraw is near its worst case here)")
    decode, write, redraw = np.median(real_parts, axis=0)
    print(f"cellnb per click, cell-sized masks: decode {decode:.3f} s, record written "
          f"{write:.3f} s, viewer updated {redraw:.3f} s")
    print(f"ratio baseline / cellnb per click: {np.median(theirs) / np.median(ours):.1f}x "
          f"(cell-sized masks: {np.median(theirs) / np.median(realistic):.1f}x)")


if __name__ == "__main__":
    main()
