"""Train the CPU-friendly ``unet`` recipe on Cell-APP's example dataset and score its test image.

Cell-APP's example (HeLa, 1024² TL, 2 train images with 372 cells, 1 test
image with 195) has no validation split, so cellnb holds out the bottom 20 %
of each train image for validation (model selection), and the test image is
only used for the final score. Prints the training time, the test metrics
(AP@0.5 = tp / (tp + fp + fn) as Cellpose / CellSeg1 report it, F1, SEG, COCO
AP) and the learning curve.

    python benchmarks/bench_train_unet.py [--epochs 30] [--out bench-unet]
"""

from __future__ import annotations

import argparse
import time
import warnings

import cellnb
from cellnb.data import fetch
from cellnb.io import read_coco


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--out", default="bench-unet")
    args = parser.parse_args(argv)

    folder = fetch("cellapp-example")
    test = read_coco(folder / "test")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no val split": expected here
        trained = cellnb.train(folder, recipe="unet", out=args.out, epochs=args.epochs,
                               steps_per_epoch=args.steps_per_epoch,
                               batch_size=args.batch_size, patch_shape=(args.patch, args.patch),
                               overwrite=True, progress=True)
    seconds = time.perf_counter() - t0
    preds = [cellnb.segment(r.image, model=trained) for r in test]
    table = cellnb.evaluate(test, preds, thresholds=(0.5, 0.75), by="dataset",
                            coco_max_dets=1000)
    cols = ["threshold", "n_true", "n_pred", "tp", "fp", "fn", "ap", "f1", "seg", "coco_ap",
            "coco_ap50"]
    steps = args.epochs * args.steps_per_epoch
    print(f"\nunet on cellapp-example: {args.epochs} epochs x {args.steps_per_epoch} steps x "
          f"batch {args.batch_size} of {args.patch}² patches = {steps} steps in "
          f"{seconds / 60:.1f} min ({seconds / steps:.2f} s/step, incl. per-epoch validation); "
          f"best epoch {trained.best_epoch}")
    print(table[cols].round(3).to_string(index=False))
    print("\nlearning curve:", trained.path / "learning_curve.png")
    print(trained.history[["epoch", "train_loss", "val_loss", "val_ap50"]].round(3)
          .to_string(index=False))


if __name__ == "__main__":
    main()
