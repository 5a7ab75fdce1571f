"""Command line: ``cellnb demo | annotate | export | evaluate | train | models``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .export import FORMATS as EXPORT_FORMATS
from .recipes import RECIPES

__all__ = ["main", "demo"]

def demo(out, *, n_pairs: int = 4, shape=(512, 512), n_cells: int = 60, seed: int = 0,
         epochs: int = 8, steps_per_epoch: int = 15, say=print) -> dict:
    """Run the main job on the embedded synthetic dataset and report what it wrote.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    n_pairs, shape, n_cells, seed
        Size of the synthetic dataset (see :func:`cellnb.data.synthetic_pairs`).
    epochs, steps_per_epoch
        Length of the U-Net training on the exported annotations.
    say : callable, default=print
        Where progress messages go.

    Returns
    -------
    written : dict
        Paths of what the demo wrote (``pairs``, ``figure``, ``metrics``, ``records``,
        ``cell_metrics``, ``dataset``, ``model``, ``model_metrics``).
    """
    import matplotlib.pyplot as plt

    import pandas as pd

    from . import data, io, plot

    out = Path(out)
    pairs_dir = out / "pairs"
    say(f"cellnb demo: writing {n_pairs} synthetic TL/fluorescence pairs to {pairs_dir}")
    synthetic = data.synthetic_pairs(n_pairs, shape=shape, n_cells=n_cells, seed=seed)
    data.write_pairs(synthetic, pairs_dir)
    table = io.find_pairs(pairs_dir)
    say(f"found {len(table)} pairs by their shared stem:")
    say(table[["pair_id"]].to_string(index=False))
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    from .evaluate import evaluate
    from .locate import locate
    from .prompt import prompt, prompt_counts

    nuclei, prompts, checks = [], [], []
    for row, truth in tqdm(list(zip(table.itertuples(), synthetic)), desc="locate + prompt"):
        tl, fl = io.read_pair((row.tl_path, row.fl_path))
        nuclei.append(locate(fl))
        prompts.append(prompt(nuclei[-1], kind="points+boxes"))
        counts = prompt_counts(prompts[-1], truth.labels)["prompts"]
        checks.append({"pair_id": row.pair_id, "cells": len(truth.truth),
                       "prompts": len(prompts[-1]), "exactly one": int((counts == 1).sum()),
                       "none": int((counts == 0).sum()), "two or more": int((counts > 1).sum())})
    check = pd.DataFrame(checks)
    say("one prompt per cell? (locate method 'auto')")
    say(check.to_string(index=False))
    check.to_csv(out / "prompt_check.csv", index=False)

    first = synthetic[0]
    fig = plot.pair(first.tl, first.fluorescence, cells=first.labels, nuclei=nuclei[0],
                    title=f"{first.id}: true cells (left), located nuclei (right)")
    plot.overlay(first.fluorescence, nuclei[0], prompts[0], ax=fig.axes[1], cmap="magma",
                 color="cyan", percentiles=(0.5, 99.9), title="located nuclei + prompts")
    figure = figures / "pairs.png"
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    say(f"figure: {figure}")

    metrics = evaluate([p.nuclei for p in synthetic], nuclei, by="dataset")
    metrics.to_csv(out / "locate_metrics.csv", index=False)
    shown = metrics.set_index("threshold").loc[[0.5, 0.75], ["tp", "fp", "fn", "f1", "ap",
                                                            "mean_matched_iou", "seg"]]
    say("located nuclei vs true nuclei (cellnb.evaluate):")
    say(shown.round(3).to_string())
    say(f"tables: {out / 'prompt_check.csv'}, {out / 'locate_metrics.csv'}")

    from .annotate import annotate, read_records
    from .config import Config
    from .export import export
    from .models import load_cached

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = load_cached("vit_b_lm", fallback="watershed")
    if model.name == "watershed":
        say("WARNING: " + " ".join(str(w.message) for w in caught) + " The demo segments "
            "cells with the classical WATERSHED BASELINE (recorded in every record).")
    else:
        say("segmenting cells with μSAM vit_b_lm (cached weights)")
    config = Config.from_dict({"locate": {"method": "auto"}, "prompt": {"kind": "points+boxes"},
                               "segment": {"model": model.name}})
    summary = annotate(table, out / "annotate", config=config, model=model)
    say(summary.drop(columns=["record", "error"]).to_string(index=False))
    records = read_records(out / "annotate")
    cell_metrics = evaluate([p.labels for p in synthetic], records, by="dataset")
    cell_metrics.to_csv(out / "cell_metrics.csv", index=False)
    say(f"annotated cells vs true cells ({model}):")
    say(cell_metrics.set_index("threshold").loc[[0.5, 0.75], ["tp", "fp", "fn", "f1", "ap",
                                                              "seg"]].round(3).to_string())
    splits = {"train": 0.5, "val": 0.25, "test": 0.25} if len(records) >= 4 else {"train": 1.0}
    dataset = export(out / "annotate", out / "dataset", name="demo", splits=splits,
                     config=config, overwrite=True)
    split_names = sorted(p.name for p in dataset.iterdir() if p.is_dir())
    say(f"COCO dataset: {dataset} (splits: {', '.join(split_names)})")
    say(f"records: {out / 'annotate' / 'records'}; metrics: {out / 'cell_metrics.csv'}")

    from .io import read_coco
    from .train import train

    patch = min(256, *shape)
    say(f"training the CPU-friendly U-Net on the exported annotations ({epochs} epochs)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small demos have no val split
        trained = train(dataset, recipe="unet", out=out / "model", epochs=epochs,
                        steps_per_epoch=steps_per_epoch, batch_size=4,
                        patch_shape=(patch, patch), overwrite=True, seed=seed)
    curve = figures / "learning_curve.png"
    ax = trained.plot()
    ax.figure.savefig(curve, dpi=100, bbox_inches="tight")
    plt.close(ax.figure)
    split = "test" if (dataset / "test").is_dir() else "train"
    held = [r for r in read_coco(dataset / split) if r.id in {p.id for p in synthetic}]
    truth = {p.id: p.labels for p in synthetic}
    preds = [trained.segment(r.image) for r in held]
    model_metrics = evaluate([truth[r.id] for r in held], preds, by="dataset")
    model_metrics.to_csv(out / "model_metrics.csv", index=False)
    say(f"U-Net on the {split} images (TL only) vs true cells:")
    say(model_metrics.set_index("threshold").loc[[0.5, 0.75], ["tp", "fp", "fn", "f1", "ap",
                                                               "seg"]].round(3).to_string())
    say("where things are:")
    say(f"  dataset  {dataset}")
    say(f"  model    {trained.path} (cellnb.load_trained)")
    say(f"  metrics  {out / 'locate_metrics.csv'}, {out / 'cell_metrics.csv'}, "
        f"{out / 'model_metrics.csv'}")
    say(f"  figures  {figure}, {curve}")
    say("next: the same pipeline step by step, on your own images, in the tutorial notebooks")
    say("  make lab   (JupyterLab on 127.0.0.1), then open notebooks/00_quickstart.ipynb;")
    say("  notebooks/10_review.ipynb checks and corrects annotations by clicking on them")
    return {"pairs": pairs_dir, "figure": figure, "metrics": out / "locate_metrics.csv",
            "records": out / "annotate", "cell_metrics": out / "cell_metrics.csv",
            "dataset": dataset, "model": trained.path, "model_metrics": out / "model_metrics.csv"}


def _focus_plane(text: str) -> int:
    """``--focus Z`` as an int, or a clear exit.

    >>> _focus_plane("2")
    2
    """
    if not text.isdigit():
        raise SystemExit(f"--focus takes 'best' or a plane index (0, 1, ...), got {text!r}.")
    return int(text)


def _options(items) -> dict:
    """``["patience=10", "fill=0.1"]`` -> ``{"patience": 10, "fill": 0.1}``."""
    import ast

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"cellnb train: --option needs KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _models(args) -> int:
    """``cellnb models list | fetch | doctor``."""
    import pandas as pd

    from . import weights
    from .models import available

    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        if args.action == "list":
            print(available().to_string(index=False))
        elif args.action == "fetch":
            table = weights.fetch(args.names, cache=args.cache)
            print(table.drop(columns="hash").to_string(index=False))
        else:
            table = weights.doctor(annotate=args.annotate, recipes=args.recipes,
                                   model=args.model, cache=args.cache)
            if table.empty:
                print("this plan needs no pretrained weights.")
                return 0
            print(table.drop(columns="hash").to_string(index=False))
            missing = table.attrs["missing"]
            if missing:
                names = sorted(set(table.loc[table["file"].isin(missing), "name"]))
                cache = f" --cache {args.cache}" if args.cache else ""
                print(f"missing or damaged: {', '.join(missing)}; on a machine with internet "
                      f"access run: cellnb models fetch {' '.join(names)}{cache}")
            print("on the compute nodes, start each job script with (job_script_prologue=):")
            for line in weights.job_prologue(table):
                print(f"  {line}")
            return 1 if missing else 0
    return 0


def _splits(items) -> dict | None:
    """``["train=0.8", "val=0.2"]`` -> ``{"train": 0.8, "val": 0.2}``, or a clear exit.

    >>> _splits(["train=0.8", "val=0.2"])
    {'train': 0.8, 'val': 0.2}
    """
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f"--split takes NAME=FRACTION, got {item!r}.") from None
        if not sep or not name:
            raise SystemExit(f"--split takes NAME=FRACTION, got {item!r}.")
    return out


def _export(args) -> int:
    """``cellnb export RECORDS --out DATASET``."""
    from .config import Config
    from .export import export

    config = Config.from_yaml(args.config) if args.config else None
    out = export(args.records, args.out, splits=_splits(args.split), seed=args.seed,
                 masks=args.masks, formats=args.formats, zip=args.zip,
                 overwrite=args.overwrite, config=config, progress=True)
    for split in sorted(p for p in Path(out).iterdir() if p.is_dir()):
        images = [f for f in (split / "images").glob("*")] if (split / "images").is_dir() else []
        print(f"{split.name}: {len(images)} images")
    print(f"dataset: {out}")
    return 0


def _annotations(path: str):
    """What `cellnb evaluate` scores: an annotate folder's records, else the path itself
    (COCO json or split folder, read by evaluate)."""
    folder = Path(path)
    if (folder / "records").is_dir():
        from .annotate import read_records

        return read_records(folder)
    if not folder.exists():
        raise SystemExit(f"cellnb evaluate: {path} does not exist.")
    return str(folder)


def _evaluate(args) -> int:
    """``cellnb evaluate TRUTH PRED``."""
    import pandas as pd

    from .evaluate import evaluate

    table = evaluate(_annotations(args.truth), _annotations(args.pred), by=args.by)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))
    if args.out:
        from ._shared.files import atomic_path

        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
        print(f"table: {args.out}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``cellnb`` command."""
    parser = argparse.ArgumentParser(prog="cellnb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run the main job on synthetic pairs")
    p_demo.add_argument("--out", default="cellnb-demo", help="output folder")
    p_demo.add_argument("--pairs", type=int, default=4, help="number of synthetic pairs")
    p_demo.add_argument("--size", type=int, default=512, help="image side in pixels")
    p_demo.add_argument("--cells", type=int, default=60, help="cells per image")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--epochs", type=int, default=8, help="U-Net training epochs")
    p_ann = sub.add_parser("annotate", help="annotate every TL/fluorescence pair in a folder")
    p_ann.add_argument("folder", help="folder of image pairs")
    p_ann.add_argument("--out", required=True, help="output folder for the records")
    p_ann.add_argument("--config", help="YAML config (cellnb.Config)")
    which = p_ann.add_mutually_exclusive_group()
    which.add_argument("--model", help="micro_sam model-zoo name, a cellpose model (cpsam: "
                                       "Cellpose-SAM out of the box), or 'watershed'")
    which.add_argument("--checkpoint", help="SAM / μSAM checkpoint file")
    which.add_argument("--trained", metavar="RUN",
                       help="a training run folder (cellnb train): annotate with that model")
    p_ann.add_argument("--mode", choices=("ais", "apg", "amg"),
                       help="segment without prompts (TL only): μSAM's automatic instance "
                            "segmentation, automatic prompt generation or SAM's automatic mask "
                            "generation, through micro_sam's own classes")
    p_ann.add_argument("--device", default="auto")
    p_ann.add_argument("--scheduler", metavar="ADDRESS|FILE",
                       help="spread pairs over a running Dask cluster: its scheduler address "
                            "(tcp://host:8786) or scheduler file (dask-jobqueue, dask-mpi)")
    p_ann.add_argument("--focus", metavar="best|Z",
                       help="focus series: annotate the sharpest plane ('best') or plane Z of "
                            "each, and reuse its masks for the other planes")
    p_ann.add_argument("--skip-errors", action="store_true",
                       help="a pair that cannot be annotated becomes a 'failed' row instead of "
                            "stopping the run")
    p_exp = sub.add_parser("export", help="an annotate folder as a training dataset (COCO "
                           "json + images, and label TIFFs, Cellpose, OME-Zarr, Fiji ROI or "
                           "QuPath GeoJSON files)")
    p_exp.add_argument("records", help="the folder `cellnb annotate --out` wrote")
    p_exp.add_argument("--out", required=True, help="dataset folder to create")
    p_exp.add_argument("--config", help="YAML config (cellnb.Config): its export section")
    p_exp.add_argument("--format", action="append", dest="formats", choices=EXPORT_FORMATS,
                       help="what to write per split (repeat the option; COCO is always "
                            "written; default coco + labels)")
    p_exp.add_argument("--split", action="append", default=[], metavar="NAME=FRACTION",
                       help="split fractions, e.g. --split train=0.8 --split val=0.2 "
                            "(default train 0.8, val 0.1, test 0.1)")
    p_exp.add_argument("--masks", choices=("rle", "polygon"), help="COCO mask encoding")
    p_exp.add_argument("--seed", type=int, help="seed of the split assignment")
    p_exp.add_argument("--zip", action="store_true", help="also write OUT.zip")
    p_exp.add_argument("--overwrite", action="store_true",
                       help="replace OUT once the new dataset is complete")
    p_eval = sub.add_parser("evaluate", help="score predicted cells against reference ones "
                            "(COCO AP/AR, AP@0.5, F1, SEG / DET)")
    p_eval.add_argument("truth", help="COCO json, a split folder of an exported dataset, or "
                                      "an annotate folder")
    p_eval.add_argument("pred", help="the same kinds, holding the same images")
    p_eval.add_argument("--by", choices=("dataset", "image", "class_name", "class"),
                        default="dataset",
                        help="one row per IoU threshold over all images (default), per image, "
                             "or per cell class (class_name; 'class' is the old spelling)")
    p_eval.add_argument("--out", help="also write the table as CSV here")
    p_models = sub.add_parser("models", help="pretrained weights: list, fetch (login node), "
                              "doctor (what a plan needs on an offline compute node)")
    models_sub = p_models.add_subparsers(dest="action", required=True)
    m_list = models_sub.add_parser("list", help="micro_sam's model zoo and what is cached")
    m_fetch = models_sub.add_parser("fetch", help="download and verify weights")
    m_fetch.add_argument("names", nargs="+", help="micro_sam zoo names, cpsam (cellpose), "
                         "maskrcnn_resnet50_fpn_v2 (torchvision)")
    m_doctor = models_sub.add_parser("doctor", help="what a plan needs, what is missing, "
                                     "and the environment variables for compute nodes")
    m_doctor.add_argument("--annotate", help="the model annotate will use (zoo name)")
    m_doctor.add_argument("--recipes", nargs="*", default=[], help="recipes to train")
    m_doctor.add_argument("--model", default="vit_b_lm", help="what SAM recipes start from")
    for p in (m_fetch, m_doctor):
        p.add_argument("--cache", help="weights folder (used as MICROSAM_CACHEDIR; cellpose's "
                       "files in CACHE/cellpose)")
    del m_list
    p_train = sub.add_parser("train", help="train a segmentation model on an exported dataset "
                             "(run it under torchrun for several GPUs)")
    p_train.add_argument("dataset", help="folder written by `cellnb.export`")
    p_train.add_argument("--out", required=True, help="run folder")
    p_train.add_argument("--recipe", default="unet",
                         choices=RECIPES)
    p_train.add_argument("--model", default=None,
                         help="the model to start from: a μSAM zoo name or an architecture "
                              "with --checkpoint (SAM recipes, default vit_b_lm), a cellpose "
                              "model (cellpose, default cpsam), maskrcnn_resnet50_fpn_v2 / "
                              "maskrcnn_mini (maskrcnn)")
    p_train.add_argument("--checkpoint", help="microsam: start from this checkpoint file")
    p_train.add_argument("--lora-rank", type=int, help="microsam / cellseg1: LoRA rank")
    p_train.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                         help="any recipe option, e.g. --option patience=10 (values read as "
                              "Python literals)")
    p_train.add_argument("--epochs", type=int)
    p_train.add_argument("--steps-per-epoch", type=int)
    p_train.add_argument("--batch-size", type=int, help="per process")
    p_train.add_argument("--patch-shape", type=int, nargs=2, metavar=("H", "W"))
    p_train.add_argument("--lr", type=float)
    p_train.add_argument("--device", default="auto")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument("--overwrite", action="store_true", help="start again in --out")
    p_train.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train import train

        options = {k: v for k, v in (("checkpoint", args.checkpoint),
                                     ("lora_rank", args.lora_rank)) if v is not None}
        options.update(_options(args.option))
        trained = train(args.dataset, recipe=args.recipe, out=args.out, model=args.model,
                        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        batch_size=args.batch_size, patch_shape=args.patch_shape, lr=args.lr,
                        device=args.device, seed=args.seed, overwrite=args.overwrite,
                        progress=not args.no_progress, **options)
        if int(os.environ.get("RANK", "0")) == 0:
            print(trained.history.round(3).to_string(index=False))
            print(f"trained model: {trained.path}")
    elif args.command == "annotate":
        from .annotate import annotate
        from .config import Config
        from .models import CELLPOSE_NAMES

        config = Config.from_yaml(args.config) if args.config else Config()
        model = args.model
        if args.checkpoint:
            from .models import load

            model = load(args.model or config.segment.model, checkpoint=args.checkpoint,
                         device=args.device)
        elif args.trained:
            from .trained import load_trained

            model = load_trained(args.trained, device=args.device)
        elif model not in (None, "watershed") and (args.device != "auto" or args.mode):
            from .models import load

            model = load(model, device=args.device)  # else annotate loads it when needed
        elif model in CELLPOSE_NAMES:  # Cellpose-SAM out of the box
            from .models import load

            model = load(model, device=args.device)
        if args.mode:
            from .models import automatic, load

            if model == "watershed" or args.trained:
                raise SystemExit("--mode is for SAM / μSAM models (--model, --checkpoint).")
            model = automatic(load(config.segment.model, device=args.device)
                              if model is None else model, args.mode)
        errors = "skip" if args.skip_errors else "raise"
        focus = None if args.focus is None else (
            "best" if args.focus == "best" else _focus_plane(args.focus))
        if args.scheduler:
            from dask.distributed import Client

            connect = ({"scheduler_file": args.scheduler} if Path(args.scheduler).is_file()
                       else {"address": args.scheduler})
            with Client(**connect) as client:
                print(f"Dask cluster: {client.dashboard_link}")
                summary = annotate(args.folder, args.out, config=config, model=model,
                                   client=client, errors=errors, focus=focus)
        else:
            summary = annotate(args.folder, args.out, config=config, model=model, errors=errors,
                               focus=focus)
        print(summary.drop(columns="record").to_string(index=False))
        print(f"records: {Path(args.out) / 'records'}")
    elif args.command == "export":
        return _export(args)
    elif args.command == "evaluate":
        return _evaluate(args)
    elif args.command == "models":
        return _models(args)
    elif args.command == "demo":
        import matplotlib

        matplotlib.use("Agg")  # a command line has no display; demo() called in Python keeps yours
        demo(args.out, n_pairs=args.pairs, shape=(args.size, args.size), n_cells=args.cells,
             seed=args.seed, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
