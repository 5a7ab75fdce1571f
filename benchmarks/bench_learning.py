"""How fast each training recipe learns one synthetic image from random initialisation.

For every recipe, trains it by its learning plan (``cellnb.testing.LEARNING_PLANS``,
the settings tests/test_learning.py validates) and prints the optimiser steps
and training seconds until the validation AP@0.5 (the same image, unaugmented)
first reaches 0.8, the final AP@0.5, and the whole run's seconds. cellsam and
cellseg1 start from the microsam run's SAM (the stand-in for pretrained
weights; cellsam's neck drawn afresh), as in the tests.

On the CPU the reduced architectures are used (vit_mini, cpsam_mini, maskrcnn_mini). With
``--device cuda`` add ``--full`` to train SAM's vit_b (1024 px input) on a
512 px image with 512 px patches, the scale the recipes' defaults use (same
plans, patch and image doubled; maskrcnn: the ResNet-50 network from random init).

    python benchmarks/bench_learning.py [--recipes unet microsam ...] [--device cuda --full]
        [--out bench-learning]
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from pathlib import Path

import pandas as pd

import cellnb
from cellnb.io import Record
from cellnb.testing import LEARNING_PLANS, random_checkpoint, stand_in_checkpoint

ORDER = ("unet", "microsam", "samcell", "cellsam", "cellseg1", "cellpose", "maskrcnn")
_NO_INPUT_SIZE = ("unet", "cellpose", "maskrcnn")  # fully convolutional: not scaled up


def _pair(recipe, full):
    from cellnb.data import synthetic_pairs

    side, cells = LEARNING_PLANS[recipe]["image"]
    scale = 4 if full and recipe not in _NO_INPUT_SIZE else 1
    return synthetic_pairs(1, shape=(side * scale, side * scale), n_cells=cells * scale ** 2,
                           seed=3)[0]


def run_one(recipe, out: Path, device: str, full: bool, microsam_run=None):
    plan = LEARNING_PLANS[recipe]
    pair = _pair(recipe, full)
    folder = out / recipe
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    records = [Record(name, pair.tl, pair.labels, pair.truth) for name in ("train", "val")]
    data = cellnb.export(records, folder / "ds", splits={"train": 1, "val": 1})
    settings = dict(plan["settings"])
    architecture = "vit_b" if full else "vit_mini"
    if full and recipe not in _NO_INPUT_SIZE:
        settings["patch_shape"] = tuple(4 * s for s in settings["patch_shape"])
        settings["overlap"] = 4 * settings.get("overlap", 16)
    if full and recipe == "maskrcnn":  # the full-size network, from random init as well
        settings.update(model="maskrcnn_resnet50_fpn_v2", pretrained=False)
    if plan["start"] == "random":
        kind = "cpsam_mini" if recipe == "cellpose" else architecture
        settings.update(model=kind, checkpoint=str(random_checkpoint(
            kind, folder / "random.pt", decoder=recipe == "microsam")))
    elif plan["start"] == "stand-in":
        settings.update(model=architecture, checkpoint=str(stand_in_checkpoint(
            microsam_run, folder / "stand-in.pt", reinitialise=plan.get("reinitialise"))))
    t0 = time.perf_counter()
    trained = cellnb.train(data, recipe=recipe, out=folder / "run", device=device,
                           progress=False, **settings)
    total = time.perf_counter() - t0
    h = trained.history
    reached = h[h["val_ap50"] >= 0.8]
    first = reached.iloc[0] if len(reached) else None
    return trained, {
        "recipe": recipe, "network": settings.get("model", "U-Net (torch_em)"),
        "image": f"{pair.tl.shape[0]}² / {int(pair.labels.max())} cells",
        "steps to AP 0.8": int(first["step"]) if first is not None else None,
        "s to AP 0.8": round(float(h["seconds"].cumsum()[first.name]), 1)
        if first is not None else None,
        "final AP@0.5": round(float(h["val_ap50"].iloc[-1]), 3),
        "steps": int(h["step"].iloc[-1]), "total s": round(total, 1)}


def _stand_in(out: Path, device: str, full: bool):
    """The microsam run after ``stand_in_after`` epochs, as the tests take it (a copy)."""
    plan = LEARNING_PLANS["microsam"]
    original = dict(plan["settings"])
    plan["settings"]["epochs"] = plan["stand_in_after"]
    try:
        trained, _ = run_one("microsam", out / "stand-in", device, full)
    finally:
        plan["settings"].clear()
        plan["settings"].update(original)
    return trained


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(ORDER), choices=ORDER)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="vit_b at 1024 px (use a GPU)")
    parser.add_argument("--out", default="bench-learning")
    args = parser.parse_args(argv)
    recipes = list(args.recipes)
    if any(LEARNING_PLANS[r]["start"] == "stand-in" for r in recipes) and \
            "microsam" not in recipes:
        recipes.insert(0, "microsam")  # the stand-in for pretrained weights
    out = Path(args.out)
    rows, microsam_run = [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for recipe in [r for r in ORDER if r in recipes]:
            if recipe == "microsam" and any(LEARNING_PLANS[r]["start"] == "stand-in"
                                            for r in recipes):
                microsam_run = _stand_in(out, args.device, args.full)
            trained, row = run_one(recipe, out, args.device, args.full, microsam_run)
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)
    print("\nsteps / seconds until the validation AP@0.5 first reaches 0.8 (validated once per "
          f"epoch), device {args.device}:")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
