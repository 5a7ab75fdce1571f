"""Pieces the recipes share: patch sampling, the μSAM-style distance watershed, and a
driver for torch_em trainers (normalisation and tiling come from cellnb's own
``_normalize`` and ``_tiling``, shared with :func:`cellnb.segment`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._shared.normalize import normalize  # noqa: F401  (the recipes' normalisation)
from .._shared.tiling import predict_tiled  # noqa: F401  (the recipes' tiled inference)


# ---------------------------------------------------------------------------
# patches
# ---------------------------------------------------------------------------
def _copy_index(n: int, pad: int) -> np.ndarray:
    """Which reflected copy each index of ``np.pad(range(n), (0, pad), "reflect")`` is in."""
    index = np.arange(n + pad)
    return np.where(index < n, 0, 1 + (index - n) // max(n - 1, 1))


def pad_pair(image: np.ndarray, labels: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad an image and its labels (bottom / right) to at least `shape`, alike.

    The labels are reflected with the image, so every mirrored cell is a
    cell in the target too; each mirrored copy gets ids of its own (a cell
    and its mirror image touch at the border but are two instances).

    Examples
    --------
    >>> labels = np.array([[0, 1, 1], [0, 1, 1]])
    >>> image, padded = pad_pair(labels.astype(np.float32), labels, (2, 5))
    >>> image[0].tolist(), padded[0].tolist()
    ([0.0, 1.0, 1.0, 1.0, 0.0], [0, 1, 1, 3, 0])
    """
    h, w = labels.shape
    ph, pw = max(0, shape[0] - h), max(0, shape[1] - w)
    if not (ph or pw):
        return image, labels
    pad = ((0, ph), (0, pw))
    mode = "reflect" if min(h, w) > 1 else "edge"
    image = np.pad(image, pad, mode=mode)
    padded = np.pad(labels, pad, mode=mode).astype(np.int64)
    rows, cols = _copy_index(h, ph), _copy_index(w, pw)
    copy = rows[:, None] * (int(cols.max()) + 1) + cols[None, :]
    padded = np.where(padded > 0, padded + copy * (int(labels.max()) + 1), 0)
    return image, padded.astype(labels.dtype if padded.max() <= np.iinfo(np.int32).max
                                else np.int64)


class PatchDataset:
    """Random training patches (image, target) from whole images.

    Each item is a crop of `patch_shape` that holds at least `min_instances`
    cells, flipped / rotated at random (plus the recipe's `extra_augment`),
    its labels turned into targets by `label_transform`. With `classes` (one
    per-pixel class image per image, 0 on background), the class image is
    cropped, padded and turned with the labels and `label_transform` is
    called as ``label_transform(labels, classes)``. Item ``i`` of epoch
    ``e`` is drawn from a generator seeded by ``(seed, e, i)``, so a resumed
    run sees the same patches.
    Pickling keeps only the settings (torch_em stores its datasets in every
    checkpoint; the images stay out of them).
    """

    def __init__(self, images, labels, patch_shape, n_samples, label_transform, *, seed=0,
                 min_instances=1, augment=True, fixed=False, extra_augment=None, classes=None):
        self.images = list(images)
        self.labels = list(labels)
        self.classes = None if classes is None else list(classes)
        self.patch_shape = tuple(int(s) for s in patch_shape)
        self.n_samples = int(n_samples)
        self.label_transform = label_transform
        self.seed = int(seed)
        self.min_instances = int(min_instances)
        self.augment = augment
        self.fixed = fixed  # validation: the same patches every epoch
        self.extra_augment = extra_augment  # (image, labels, rng) -> (image, labels)
        self.epoch = 0
        self.rank = 0  # process index under torchrun: each draws its own patches
        sizes = np.array([im.size for im in self.images], float)
        self.weights = sizes / sizes.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_samples

    def __getstate__(self):
        state = dict(self.__dict__)
        state["images"], state["labels"] = [], []
        state["classes"] = None if self.classes is None else []
        return state

    def _crop(self, rng):
        """(image, labels, classes or None) of one random crop."""
        k = rng.choice(len(self.images), p=self.weights)
        image, labels = self.images[k], self.labels[k]
        ph, pw = self.patch_shape
        classes = None
        if self.classes is not None:  # padded as the labels are: reflected alike
            classes = pad_pair(self.classes[k], labels, self.patch_shape)[0]
        image, labels = pad_pair(image, labels, self.patch_shape)
        y = rng.integers(0, image.shape[0] - ph + 1)
        x = rng.integers(0, image.shape[1] - pw + 1)
        window = (slice(y, y + ph), slice(x, x + pw))
        return image[window], labels[window], None if classes is None else classes[window]

    def __getitem__(self, index):
        import torch

        epoch = -1 if self.fixed else self.epoch
        key = [self.seed, epoch + 1, int(index)] + ([self.rank] if self.rank else [])
        rng = np.random.default_rng(key)
        for _ in range(50):
            image, labels, classes = self._crop(rng)
            if len(np.unique(labels[labels > 0])) >= self.min_instances:
                break
        if self.augment:
            planes = [image, labels, classes]
            if rng.random() < 0.5:
                planes = [None if p is None else p[::-1] for p in planes]
            if rng.random() < 0.5:
                planes = [None if p is None else p[:, ::-1] for p in planes]
            if image.shape[0] == image.shape[1]:
                k = int(rng.integers(4))
                planes = [None if p is None else np.rot90(p, k) for p in planes]
            image, labels, classes = planes
            if self.extra_augment is not None:
                image, labels = self.extra_augment(image, labels, rng)
        if classes is None:
            target = self.label_transform(np.ascontiguousarray(labels))
        else:
            target = self.label_transform(np.ascontiguousarray(labels),
                                          np.ascontiguousarray(classes))
        return (torch.from_numpy(np.ascontiguousarray(image, np.float32)[None]),
                torch.from_numpy(np.ascontiguousarray(target, np.float32)))


def loaders(data, settings, normalization: str, label_transform, *, min_instances=1,
            extra_augment=None, class_images=None):
    """Train and validation DataLoaders of random patches, plus the normalisation record.

    `class_images`: a function of a record returning its per-pixel class
    image (see :class:`PatchDataset`), for recipes that learn classes.
    """
    import torch

    record = {}
    sets = []
    for split in (data.train, data.val):
        images = []
        for r in split:
            x, record = normalize(r.image, normalization)
            images.append(x)
        sets.append((images, [r.labels for r in split]))
    batch, steps = settings["batch_size"], settings["steps_per_epoch"]
    classes = [None, None] if class_images is None else [
        [class_images(r) for r in split] for split in (data.train, data.val)]
    train = PatchDataset(*sets[0], settings["patch_shape"], batch * steps, label_transform,
                         seed=settings["seed"], min_instances=min_instances,
                         extra_augment=extra_augment, classes=classes[0])
    val = PatchDataset(*sets[1], settings["patch_shape"], batch * max(1, steps // 4),
                       label_transform, seed=settings["seed"], min_instances=min_instances,
                       augment=False, fixed=True, classes=classes[1])
    make = lambda ds: torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False,  # noqa: E731
                                                  drop_last=True, num_workers=0)
    return make(train), make(val), record


# ---------------------------------------------------------------------------
# post-processing
# ---------------------------------------------------------------------------
def distance_watershed(foreground, center, boundary, *, min_size: int = 25,
                       foreground_threshold: float = 0.5, center_threshold: float = 0.5,
                       boundary_threshold: float = 0.5, foreground_smoothing: float = 1.0,
                       distance_smoothing: float = 1.6):
    """Instances from foreground, centre- and boundary-distance maps (μSAM's decoder post-processing).

    Seeds are where both distances are below their thresholds; a watershed
    on the smoothed boundary distance grows them inside the smoothed
    foreground. Defaults are micro_sam's ``InstanceSegmentationWithDecoder``.

    Returns
    -------
    labels : (H, W) int32, ids 1..n
    scores : dict {label: mean foreground probability}

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> d = np.hypot(yy - 20, xx - 20) / 10
    >>> labels, scores = distance_watershed((d < 1).astype(np.float32), np.clip(d, 0, 1),
    ...                                     np.clip(d, 0, 1))
    >>> int(labels.max()), int((labels == 1).sum()) > 250
    (1, True)
    """
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential
    from torch_em.util.segmentation import watershed_from_center_and_boundary_distances

    fg = ndimage.gaussian_filter(np.asarray(foreground, np.float32), foreground_smoothing)
    labels = watershed_from_center_and_boundary_distances(
        np.asarray(center, np.float32), np.asarray(boundary, np.float32), fg,
        center_distance_threshold=center_threshold, boundary_distance_threshold=boundary_threshold,
        foreground_threshold=foreground_threshold, distance_smoothing=distance_smoothing,
        min_size=min_size)
    labels = relabel_sequential(np.asarray(labels).astype(np.int32))[0]
    n = int(labels.max())
    means = ndimage.mean(np.asarray(foreground, np.float32), labels, np.arange(1, n + 1)) if n else []
    return labels, {i + 1: float(m) for i, m in enumerate(np.atleast_1d(means))}


# ---------------------------------------------------------------------------
# the torch_em driver
# ---------------------------------------------------------------------------
class Losses:
    """torch_em logger keeping the per-step and per-epoch losses in memory.

    ``extra``: index of an additional loss among log_train's positional
    arguments to add to the logged one (micro_sam's joint trainer logs the
    decoder's loss separately).
    """

    extra: int | None = None

    def __init__(self, trainer, save_root, **kwargs):
        # torch_em makes a new logger on every fit(); keep the lists on the trainer.
        self.train: list[float] = trainer.__dict__.setdefault("_cellnb_train_losses", [])
        self.val: list[float] = trainer.__dict__.setdefault("_cellnb_val_losses", [])

    def log_train(self, step, loss, lr, *args, **kwargs):
        value = float(loss)
        if self.extra is not None and len(args) > self.extra:
            value += float(args[self.extra])
        self.train.append(value)

    def log_validation(self, step, metric, loss, *args, **kwargs):
        value = float(loss)
        if self.extra is not None and len(args) > self.extra:
            value += float(args[self.extra])
        self.val.append(value)


class TorchEmRun:
    """One epoch at a time through a torch_em trainer, resumable from ``state/resume.pt``.

    torch_em's own checkpoints pickle the trainer's construction arguments
    (datasets, classes, functions), so loading one can run code. The run
    replaces the trainer's ``save_checkpoint`` with one that writes only
    tensors and numbers (weights, optimizer, scheduler, counters, and the
    UNETR decoder of micro_sam's joint trainer) to ``resume.pt``, read back
    with ``torch.load(weights_only=True)`` and handed to the trainer's own
    ``load_checkpoint`` as a dict.
    """

    def __init__(self, trainer, net, normalization: dict, datasets, weights):
        self.trainer = trainer
        self._weights = weights
        self.net = net
        self.normalization = normalization
        self.datasets = datasets
        trainer.save_checkpoint = self._save_checkpoint

    @property
    def state_file(self) -> Path:
        return Path(self.trainer.checkpoint_folder) / "resume.pt"

    def has_state(self) -> bool:
        return self.state_file.is_file()

    def _save_checkpoint(self, name, current_metric, best_metric, train_time=0.0, **extra):
        """What torch_em's save_checkpoint saves, minus its pickled ``init``; "latest" only."""
        import torch

        from .._shared.files import atomic_path

        trainer = self.trainer
        if name != "latest" or getattr(trainer, "rank", 0):  # cellnb keeps its own best weights
            return
        state = {"iteration": trainer._iteration, "epoch": trainer._epoch,
                 "best_epoch": trainer._best_epoch, "best_metric": float(best_metric),
                 "current_metric": float(current_metric), "train_time": float(train_time),
                 "model_state": trainer.model.state_dict(),
                 "optimizer_state": trainer.optimizer.state_dict()}
        if trainer.lr_scheduler is not None:
            state["scheduler_state"] = trainer.lr_scheduler.state_dict()
        if trainer.scaler is not None:
            state["scaler_state"] = trainer.scaler.state_dict()
        if getattr(trainer, "unetr", None) is not None:  # micro_sam's JointSamTrainer
            state["decoder_state"] = {k: v for k, v in trainer.unetr.state_dict().items()
                                      if not k.startswith("encoder")}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_file) as tmp:
            torch.save(state, tmp)

    def load_state(self) -> int:
        """Load weights, optimizer, scheduler and step; return the next epoch."""
        from .._shared.torchutil import load_state

        self.trainer.load_checkpoint(load_state(self.state_file))
        return int(self.trainer._epoch)

    def weights(self) -> dict:
        """The state :func:`load_net` of the recipe takes (CPU tensors)."""
        return self._weights(self.net)

    @property
    def optimizer(self):
        return self.trainer.optimizer

    def set_rank(self, rank: int) -> None:
        """Under torchrun: each process draws its own training patches; rank 0 saves."""
        self.trainer.rank = rank  # torch_em saves its checkpoints from rank 0 only
        for ds in self.datasets:
            ds.rank = rank if not ds.fixed else 0

    def set_epoch(self, epoch: int) -> None:
        for ds in self.datasets:
            ds.set_epoch(epoch)

    def fit_epoch(self, progress) -> dict:
        before = len(self.trainer.logger.train) if getattr(self.trainer, "logger", None) else 0
        self.trainer.fit(epochs=1, progress=progress)
        logger = self.trainer.logger
        return {"train_loss": float(np.mean(logger.train[before:])),
                "val_loss": float(logger.val[-1])}
