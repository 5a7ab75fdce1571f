"""Classify cells without labels from their features, and carry classes to TL-only prediction.

Unsupervised (:func:`classify`): clusters of fluorescence features, e.g. bright,
condensed mitotic nuclei vs interphase ones, as Cell-APP's optional step.
Class ids are ordered by the mean of the first feature column, so with
``columns=["intensity_mean", ...]`` class 0 is the dimmest.

Supervised (:class:`CellClassifier`): a scikit-learn style fit/predict model
for a few user-labelled cells, or to learn the fluorescence-derived classes
from **transmitted-light-only** features (:func:`tl_features`), so that a
segmentation model trained on TL images can also classify without
fluorescence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._shared.validation import check_seed
from .io._coco import CLASS_COLUMN as _CLASS_COLUMN

__all__ = ["classify", "name_classes", "CellClassifier", "tl_features", "tl_training_table",
           "METHODS", "DEFAULT_COLUMNS", "CLASS_COLUMN"]

#: The one name of the per-cell class column, in records, datasets read back and
#: segmentations of trained models.
CLASS_COLUMN = _CLASS_COLUMN  # defined with the record format, in cellnb.io._coco

#: Unsupervised methods :func:`classify` takes.
METHODS = ("gmm", "kmeans", "hdbscan", "threshold")

#: Fluorescence features used by default: brightness first, then shape.
DEFAULT_COLUMNS = ("intensity_mean", "area", "eccentricity", "solidity", "intensity_max")


def _matrix(features: pd.DataFrame, columns, scale: bool) -> np.ndarray:
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"`features` must be a DataFrame (cellnb.measure), got "
                        f"{type(features).__name__}.")
    if features.empty:
        raise ValueError("`features` is empty: there are no cells to classify.")
    columns = list(columns)
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in `features`; available: "
                         f"{list(features.columns)}.")
    x = features[columns].to_numpy(dtype=float)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} cell(s) have NaN or infinite features in {columns} "
                         f"(labels {features.index[bad][:5].tolist()}); drop or fill them.")
    if scale:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1)
    return x


def classify(features: pd.DataFrame, *, method: str = "gmm", n_classes: int = 2,
             columns=None, scale: bool = True, seed=0) -> pd.Series:
    """Group cells into classes from their features, without labels.

    Parameters
    ----------
    features : DataFrame
        One row per cell, indexed by label (:func:`cellnb.measure`).
    method : {"gmm", "kmeans", "hdbscan", "threshold"}, default="gmm"
        Gaussian mixture, k-means, HDBSCAN (finds its own number of classes
        and marks noise as -1), or a multi-Otsu threshold on the first column
        alone.
    n_classes : int, default=2
        Number of classes (ignored by "hdbscan").
    columns : sequence of str, optional
        Feature columns; default :data:`DEFAULT_COLUMNS` that are present.
    scale : bool, default=True
        Standardise each column first (not for "threshold").
    seed : int or numpy.random.Generator, default=0
        Seed of the clustering, 0 to 2**32 - 1.

    Returns
    -------
    classes : Series
        Class id per label (``int``), ordered by the mean of the first
        column; -1 = noise (HDBSCAN).

    Examples
    --------
    >>> features = pd.DataFrame({"intensity_mean": [1.0, 1.1, 0.9, 5.0, 5.2]},
    ...                         index=pd.Index([1, 2, 3, 4, 5], name="label"))
    >>> classify(features, method="threshold").tolist()
    [0, 0, 0, 1, 1]
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}.")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"`n_classes` must be an int >= 2, got {n_classes!r}.")
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if c in getattr(features, "columns", [])]
        if not columns:
            raise ValueError("`features` has none of the default columns "
                             f"{list(DEFAULT_COLUMNS)}; pass `columns=`.")
    columns = list(columns)
    x = _matrix(features, columns if method != "threshold" else columns[:1],
                scale and method != "threshold")
    if len(x) < n_classes and method != "hdbscan":
        raise ValueError(f"{len(x)} cell(s) cannot form {n_classes} classes.")
    seed = check_seed(seed, generator=True)
    random_state = seed if isinstance(seed, int) else int(seed.integers(2 ** 31))
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        raw = GaussianMixture(n_components=n_classes, covariance_type="full", n_init=3,
                              random_state=random_state).fit_predict(x)
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        raw = KMeans(n_clusters=n_classes, n_init=10, random_state=random_state).fit_predict(x)
    elif method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        raw = HDBSCAN(min_cluster_size=max(5, len(x) // 50), copy=True).fit_predict(x)
        if (raw < 0).all():
            import warnings

            warnings.warn("HDBSCAN found no cluster: every cell is marked noise (-1); try "
                          "fewer columns or method='gmm'.", stacklevel=2)
    else:
        from skimage.filters import threshold_multiotsu

        values = x[:, 0]
        if np.unique(values).size < n_classes:
            raise ValueError(f"column {columns[0]!r} has fewer than {n_classes} distinct values.")
        raw = np.digitize(values, threshold_multiotsu(values, classes=n_classes)) if (
            n_classes > 2) else (values > _otsu(values)).astype(int)
    # order class ids by the mean of the first column (noise stays -1)
    first = features[columns[0]].to_numpy(dtype=float)
    found = [c for c in np.unique(raw) if c >= 0]
    order = sorted(found, key=lambda c: first[raw == c].mean())
    remap = {old: new for new, old in enumerate(order)}
    remap[-1] = -1
    return pd.Series([remap[c] for c in raw], index=features.index, name="class_id",
                     dtype=np.int64)


def _otsu(values) -> float:
    """Exact two-class Otsu threshold: the split of the sorted values that maximises the
    between-class variance (no histogram, so it also holds for a handful of cells)."""
    v = np.sort(np.asarray(values, float))
    n = np.arange(1, len(v))
    left = np.cumsum(v)[:-1]
    mean_left, mean_right = left / n, (v.sum() - left) / (len(v) - n)
    between = n * (len(v) - n) * (mean_left - mean_right) ** 2
    between[v[1:] == v[:-1]] = -1  # never split between equal values
    k = int(np.argmax(between))
    return float((v[k] + v[k + 1]) / 2)


def name_classes(classes: pd.Series, names: dict) -> pd.Series:
    """Map class ids to names (noise -1 becomes ``"noise"`` unless named).

    Examples
    --------
    >>> name_classes(pd.Series([0, 1, -1]), {0: "interphase", 1: "mitotic"}).tolist()
    ['interphase', 'mitotic', 'noise']
    """
    names = {-1: "noise", **{int(k): str(v) for k, v in names.items()}}
    missing = sorted(int(c) for c in set(classes.unique()) - set(names))
    if missing:
        raise ValueError(f"class id(s) {missing} have no name in {names}.")
    return classes.map(names).rename(CLASS_COLUMN)


def tl_features(image, cells) -> pd.DataFrame:
    """Transmitted-light-only features of each cell: shape, intensity and texture.

    :func:`cellnb.measure` on the TL image, without properties that need
    fluorescence or the cell's position.

    Examples
    --------
    >>> cells = np.zeros((8, 8), np.int32); cells[2:6, 2:6] = 3
    >>> list(tl_features(np.ones((8, 8), np.float32), cells).index)
    [3]
    """
    from .measure import measure

    shape = ("area", "solidity", "perimeter", "area_convex", "eccentricity",
             "axis_major_length", "axis_minor_length", "extent", "area_filled")
    return measure(cells, image, properties=shape + ("intensity_max", "intensity_min"))


def tl_training_table(records) -> tuple[pd.DataFrame, pd.Series]:
    """TL features and class of every classed cell of `records`: what a TL classifier learns.

    :func:`tl_features` of each record's TL image under its cell labels,
    with the ``class_name`` of each cell from its cells table. Cells with
    no class, and records whose table has no ``class_name`` column, are left
    out. :func:`cellnb.train` fits the TL classifier of a run on this
    table; fit a :class:`CellClassifier` on it to do the same by hand.

    Parameters
    ----------
    records : sequence of cellnb.io.Record
        Each with its TL ``image``, ``labels`` and ``cells`` table.

    Returns
    -------
    features : DataFrame
        One row per classed cell (a fresh 0..n-1 index), the columns of
        :func:`tl_features`.
    classes : Series of str
        The class of each row, named ``class_name``.

    Raises
    ------
    ValueError
        No record holds a classed cell.

    Examples
    --------
    >>> from cellnb.io import Record
    >>> labels = np.zeros((8, 8), np.int32); labels[1:4, 1:4] = 1; labels[5:8, 4:8] = 2
    >>> cells = pd.DataFrame({"class_name": ["small", "large"]},
    ...                      index=pd.Index([1, 2], name="label"))
    >>> image = np.ones((8, 8), np.float32)
    >>> features, classes = tl_training_table([Record("a", image, labels, cells)])
    >>> features["area"].tolist(), classes.tolist()
    ([9.0, 12.0], ['small', 'large'])
    """
    from .io import Record

    feats, targets = [], []
    for position, record in enumerate(records):
        if not isinstance(record, Record):
            raise TypeError(f"records[{position}] must be a cellnb.io.Record, got "
                            f"{type(record).__name__}.")
        if record.image is None or CLASS_COLUMN not in record.cells.columns:
            continue
        f = tl_features(record.image, record.labels)
        cats = record.cells[CLASS_COLUMN].reindex(f.index)
        keep = cats.notna().to_numpy()
        feats.append(f[keep])
        targets.append(cats[keep].astype(str))
    if not feats or not sum(len(t) for t in targets):
        raise ValueError(f"no record holds a cell with a {CLASS_COLUMN!r}: the TL classifier "
                         "has nothing to learn from.")
    return (pd.concat(feats, ignore_index=True),
            pd.concat(targets, ignore_index=True).rename(CLASS_COLUMN))


class CellClassifier:
    """Supervised cell classifier with scikit-learn's fit/predict conventions.

    Parameters
    ----------
    columns : sequence of str, optional
        Feature columns to use (default: every column given to ``fit``).
    estimator : scikit-learn classifier, optional
        Default: a random forest with balanced class weights (robust to
        unscaled features and rare classes such as mitotic cells).
    seed : int, default=0
        Seed of the default estimator, 0 to 2**32 - 1.

    Examples
    --------
    >>> x = pd.DataFrame({"area": [10, 12, 11, 40, 42, 41.0]})
    >>> model = CellClassifier().fit(x, [0, 0, 0, 1, 1, 1])
    >>> model.predict(pd.DataFrame({"area": [11.0, 39.0]})).tolist()
    [0, 1]
    """

    def __init__(self, columns=None, estimator=None, seed=0):
        self.columns = list(columns) if columns is not None else None
        self.estimator = estimator
        self.seed = check_seed(seed)

    def fit(self, features: pd.DataFrame, classes) -> CellClassifier:
        """Learn classes (Series aligned on the feature index, or a sequence) from features."""
        from sklearn.base import clone
        from sklearn.ensemble import RandomForestClassifier

        columns = self.columns or list(features.columns)
        x = _matrix(features, columns, scale=False)
        if isinstance(classes, pd.Series):
            y = classes.reindex(features.index)
        elif len(classes) == len(features):
            y = pd.Series(list(classes), index=features.index)
        else:
            y = pd.Series([np.nan])
        if len(y) != len(x) or y.isna().any():
            raise ValueError("`classes` must give a class for every row of `features`.")
        if y.nunique() < 2:
            raise ValueError("need at least two classes to learn from.")
        model = (clone(self.estimator) if self.estimator is not None else
                 RandomForestClassifier(n_estimators=200, class_weight="balanced",
                                        random_state=self.seed))
        self.model_ = model.fit(x, y.to_numpy())
        self.columns_ = columns
        self.classes_ = self.model_.classes_
        return self

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """Class per cell, indexed like `features`."""
        if not hasattr(self, "model_"):
            raise RuntimeError("this CellClassifier is not fitted yet; call fit() first.")
        x = _matrix(features, self.columns_, scale=False)
        return pd.Series(self.model_.predict(x), index=features.index, name="class_id")

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """Probability of each class per cell (columns = classes)."""
        if not hasattr(self, "model_"):
            raise RuntimeError("this CellClassifier is not fitted yet; call fit() first.")
        x = _matrix(features, self.columns_, scale=False)
        return pd.DataFrame(self.model_.predict_proba(x), index=features.index,
                            columns=self.classes_)
