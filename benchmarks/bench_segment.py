"""Segment speed: cellnb vs Cell-APP's per-cell SAM loop, and vs the bare model cost.

Synthetic 1024 x 1024 pairs with ~100 and ~300 cells; random-init SAM of the
real architectures (cellnb.testing.random_sam: same code, same compute as
trained weights). Per model and cell count:

  (a) encoder: one image embedding (predictor.set_image)
  (b) prompt encoder + mask decoder per prompt, at batch size 1 (bare model)
  (c) cellnb.segment (normalise, embed, batched low-res decode, windowed
      upsampling, overlap resolution), point prompts
  (d) Cell-APP's way: set_image once, then one SamPredictor.predict per cell
      with full-resolution masks

Printed: (c)/(d), (c)/((a) + N*(b)), peak resident memory growth of each
(sampled in-process), and (b) at several batch sizes, which is what
segment's batch_size="auto" should follow on this device. Then one more
prompt on the same image, as a click in the review widget sends it:

  (g) cellnb.segment with the embedding the model kept (decode only)
  (h) the same call after clear_embeddings() (encode again, then decode)

With ``--tiled N``: a 2048 x 2048 pair with ~N cells, tiles of 1024 + 128 px
halo, both from the TL image to labels, embeddings included:

  (e) cellnb.segment(tile_shape=, halo=) (micro_sam's tiled embeddings,
      cellnb's decoding)
  (f) micro_sam.inference.batched_tiled_inference, micro_sam's own tiled
      prompt inference, at the same batch size

With ``--auto``: μSAM's automatic instance segmentation (AIS) of one 1024 x 1024
TL image, embedding included, random-init models with micro_sam's decoder,
median of ``--repeats`` alternating runs (nothing else is timed):

  (i) cellnb.segment(tl, model=sam) (no prompts: AIS; embedding cleared first)
  (j) micro_sam.automatic_segmentation.automatic_instance_segmentation on the
      same predictor, decoder and image

Printed: (i), (j), (i)/(j), and whether the two label images are equal.

    python benchmarks/bench_segment.py [--models vit_t vit_b] [--cells 100 300] [--tiled 400]
    python benchmarks/bench_segment.py --auto [--models vit_t vit_b] [--device cuda]
"""

from __future__ import annotations

import argparse
import importlib
import time
import warnings

import numpy as np

from cellnb.data import synthetic_pairs
from cellnb.locate import locate
from cellnb.prompt import prompt
from cellnb.testing import random_sam

S = importlib.import_module("cellnb.segment")


def scene(n_cells, size=1024, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = synthetic_pairs(1, shape=(size, size), n_cells=n_cells, nucleus_radius=(5, 8),
                               seed=seed)[0]
    nuclei = locate(pair.fluorescence)
    return pair.tl, prompt(nuclei, kind="points")


def encoder(model, tl, prompts):
    rgb, _ = S.normalize_for_sam(tl)
    model.predictor.set_image(rgb)


def decoder_per_prompt(model, tl, prompts, batch_size=1, limit=60):
    rgb, _ = S.normalize_for_sam(tl)
    model.predictor.set_image(rgb)
    rows = prompts.iloc[:limit]
    t0 = time.perf_counter()
    S._decode(model.predictor, rows, True, False, False, batch_size, positions={})
    return (time.perf_counter() - t0) / len(rows)


def cellnb_segment(model, tl, prompts):
    model.clear_embeddings()  # a cold call: encode, then decode every prompt
    S.segment(tl, prompts, model=model)


def cellnb_click(model, tl, prompts):
    """One more prompt on an image segmented before (the review widget's click)."""
    S.segment(tl, prompts.iloc[:1].drop(columns="negatives", errors="ignore"), model=model)


def cellapp_loop(model, tl, prompts):
    rgb, _ = S.normalize_for_sam(tl)
    predictor = model.predictor
    predictor.set_image(rgb)
    for row in prompts.itertuples():
        masks, _, _ = predictor.predict(point_coords=np.array([[row.x, row.y]]),
                                        point_labels=np.array([1]), multimask_output=False)
        np.packbits(masks[0], axis=0)  # Cell-APP keeps each full-resolution mask


def cellnb_tiled(model, tl, prompts, tile_shape, halo):
    model.clear_embeddings()
    S.segment(tl, prompts, model=model, tile_shape=tile_shape, halo=halo)


def micro_sam_tiled(model, tl, prompts, tile_shape, halo):
    from micro_sam.inference import batched_tiled_inference

    rgb, _ = S.normalize_for_sam(tl)
    points = prompts[["x", "y"]].to_numpy(np.float32)[:, None] + 0.5  # as cellnb sends them
    batched_tiled_inference(model.predictor, rgb, S._default_batch_size(model.device),
                            points=points, point_labels=np.ones((len(points), 1)),
                            tile_shape=tile_shape, halo=halo, verbose_embeddings=False)


def cellnb_ais(model, tl):
    model.clear_embeddings()
    return S.segment(tl, model=model, mode="ais").labels


def micro_sam_ais(model, tl):
    from micro_sam.automatic_segmentation import automatic_instance_segmentation
    from micro_sam.instance_segmentation import get_instance_segmentation_generator
    from skimage.segmentation import relabel_sequential

    generator = get_instance_segmentation_generator(model.predictor, False,
                                                    decoder=model.decoder,
                                                    segmentation_mode="ais")
    found = automatic_instance_segmentation(model.predictor, generator, tl, ndim=2,
                                            verbose=False)
    return relabel_sequential(found.astype(np.int64))[0]


def bench_auto(kinds, device, repeats):
    tl, _ = scene(300)
    for kind in kinds:
        model = random_sam(kind, decoder=True, device=device)
        cellnb_ais(model, tl)  # warm-up (imports, CUDA context, kernels)
        ours, theirs = [], []
        for _ in range(repeats):  # alternating, so drift of the machine hits both alike
            seconds, _, labels = measure(cellnb_ais, model, tl)
            ours.append(seconds)
            seconds, _, expected = measure(micro_sam_ais, model, tl)
            theirs.append(seconds)
        i, j = float(np.median(ours)), float(np.median(theirs))
        print(f"{kind} on {device}, AIS of one 1024 x 1024 image ({labels.max()} cells, "
              f"median of {repeats}): (i) cellnb.segment {i:.2f} s | (j) micro_sam "
              f"automatic_instance_segmentation {j:.2f} s | (i)/(j) = {i / j:.3f} | labels "
              f"equal: {bool(np.array_equal(labels, expected))}")


def measure(fn, *args, **kwargs):
    """Seconds, peak memory growth (MB) and the return value.

    Memory is the process' resident memory, sampled every 5 ms, on CPU, and
    torch's peak allocated GPU memory on CUDA (where the clock also waits for
    the GPU to finish). Runs in this process: torch's thread pool does not
    survive a fork.
    """
    import threading

    import psutil
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_start = torch.cuda.memory_allocated()
    proc = psutil.Process()
    start = proc.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    if cuda:
        return seconds, (torch.cuda.max_memory_allocated() - gpu_start) / 2 ** 20, value
    return seconds, (peak[0] - start) / 2 ** 20, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vit_t", "vit_b"])
    parser.add_argument("--cells", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiled", type=int, default=0, metavar="N",
                        help="also time tiled segmentation of a 2048 x 2048 pair with ~N cells")
    parser.add_argument("--auto", action="store_true",
                        help="time μSAM's automatic instance segmentation against micro_sam's "
                             "own (nothing else)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.auto:
        bench_auto(args.models, args.device, args.repeats)
        return
    scenes = {n: scene(n) for n in args.cells}
    big = scene(args.tiled, size=2048) if args.tiled else None
    for kind in args.models:
        model = random_sam(kind, device=args.device)
        print(f"\n== {kind} on {args.device} ==")
        encoder(model, *next(iter(scenes.values())))  # warm-up (CUDA context, kernels)
        for n, (tl, prompts) in scenes.items():
            n_prompts = len(prompts)
            a, _, _ = measure(encoder, model, tl, prompts)
            _, _, b = measure(decoder_per_prompt, model, tl, prompts)
            c, c_mem, _ = measure(cellnb_segment, model, tl, prompts)
            d, d_mem, _ = measure(cellapp_loop, model, tl, prompts)
            print(f"{n_prompts} prompts: (a) encoder {a:.2f} s | (b) decoder {1000 * b:.0f} "
                  f"ms/prompt | (c) cellnb.segment {c:.1f} s ({c_mem:.0f} MB) | "
                  f"(d) Cell-APP loop {d:.1f} s ({d_mem:.0f} MB)")
            print(f"   (c)/(d) = {c / d:.2f}   (c)/((a) + N*(b)) = {c / (a + n_prompts * b):.2f}")
            g, _, _ = measure(cellnb_click, model, tl, prompts)
            one = prompts.iloc[:1]
            model.clear_embeddings()
            h, _, _ = measure(S.segment, tl, one, model=model)
            print(f"   one more prompt on that image: (g) kept embedding {1000 * g:.0f} ms | "
                  f"(h) encoding again {1000 * h:.0f} ms | (g)/(h) = {g / h:.3f}")
        tl, prompts = scenes[max(scenes)]
        sweep = {bs: measure(decoder_per_prompt, model, tl, prompts, bs, 64)[2]
                 for bs in (1, 4, 8, 16, 32, 64)}
        print("   decoder ms/prompt by batch size: "
              + ", ".join(f"{bs}: {1000 * v:.0f}" for bs, v in sweep.items()))
        if big is not None:
            tl, prompts = big
            tiling = ((1024, 1024), (128, 128))
            e, e_mem, _ = measure(cellnb_tiled, model, tl, prompts, *tiling)
            f, f_mem, _ = measure(micro_sam_tiled, model, tl, prompts, *tiling)
            print(f"tiled 2048 x 2048, {len(prompts)} prompts, 1024 + 128 px tiles: "
                  f"(e) cellnb.segment {e:.1f} s ({e_mem:.0f} MB) | (f) micro_sam "
                  f"batched_tiled_inference {f:.1f} s ({f_mem:.0f} MB) | (e)/(f) = {e / f:.2f}")


if __name__ == "__main__":
    main()
