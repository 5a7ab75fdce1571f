import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from cellnb import classify, culture, measure
from cellnb.classify import CellClassifier, name_classes, tl_features
from cellnb.data import synthetic_pairs


# -- measure ------------------------------------------------------------------
def test_exact_features_on_hand_made_labels():
    labels = np.zeros((8, 8), np.int32)
    labels[1:3, 1:5] = 2   # 2 x 4 rectangle
    labels[5:8, 5:8] = 9   # 3 x 3 square
    image = np.zeros((8, 8), np.float32)
    image[1:3, 1:5] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    image[5:8, 5:8] = 10
    f = measure(labels, image)
    assert f.index.tolist() == [2, 9] and f.index.name == "label"
    assert f.loc[2, "area"] == 8 and f.loc[9, "area"] == 9
    assert f.loc[2, "extent"] == 1 and f.loc[2, "euler_number"] == 1
    assert f.loc[2, "intensity_mean"] == 4.5 and f.loc[2, "intensity_max"] == 8
    assert f.loc[2, "intensity_min"] == 1 and f.loc[2, "intensity_p50"] == 4.5
    assert f.loc[2, "intensity_std"] == pytest.approx(np.std(np.arange(1, 9)))
    assert f.loc[9, "intensity_std"] == 0 and f.loc[9, "intensity_skew"] == 0
    assert f.loc[2, "centroid_local_0"] == 0.5 and f.loc[2, "centroid_local_1"] == 1.5
    assert f.loc[9, "eccentricity"] == 0
    assert f.loc[2, "axis_major_length"] > f.loc[2, "axis_minor_length"]


def test_measure_without_intensity_and_extra():
    labels = np.zeros((5, 5), np.int32)
    labels[1:4, 1:4] = 1

    def corner_count(mask):
        return float(int(mask[0, 0]) + int(mask[-1, -1]))

    f = measure(labels, properties=("area", "solidity"), extra=[corner_count])
    assert list(f.columns) == ["area", "solidity", "corner_count"]
    assert f.loc[1].tolist() == [9.0, 1.0, 2.0]
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[..., 0] = 30
    assert measure(labels, rgb, properties=("area",)).loc[1, "intensity_mean"] == 10


def test_measure_bad_inputs():
    labels = np.zeros((5, 5), np.int32)
    labels[1, 1] = 1
    with pytest.raises(ValueError, match=r"`labels` \(shape \(5, 5\)\) and `intensity` \(shape "
                                         r"\(4, 5\)\) must have the same height and width"):
        measure(labels, np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match="`labels` must hold integer ids"):
        measure(labels.astype(float))
    with pytest.raises(ValueError, match="holds no objects"):
        measure(np.zeros((5, 5), np.int32))
    with pytest.raises(ValueError, match=r"properties \['intensity_max', 'intensity_min'\] need "
                                         r"an `intensity` image"):
        measure(labels)


def test_culture_metrics():
    labels = np.zeros((10, 30), np.int32)
    labels[:, :5], labels[:, 5:10], labels[:, 10:15], labels[:, 25:] = 1, 2, 3, 4
    metrics = culture(labels)
    assert metrics.to_dict() == {"cell_count": 4.0, "mean_area": 50.0, "median_area": 50.0,
                                 "confluency": 200 / 300, "neighbours_per_cell": 1.0}
    assert culture(np.zeros((3, 3), np.int32))["cell_count"] == 0


# -- classify -----------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(4, shape=(320, 320), n_cells=40, mitotic_fraction=0.25, seed=7)


@pytest.mark.parametrize("method", ["gmm", "kmeans", "threshold"])
def test_mitotic_class_recovered_from_fluorescence(pairs, method):
    for p in pairs:
        features = measure(p.nuclei, p.fluorescence)
        classes = classify(features, method=method, seed=0)
        truth = p.truth["class_id"].reindex(features.index)
        assert balanced_accuracy_score(truth, classes) >= 0.9


def test_hdbscan_marks_noise_and_orders_classes(pairs):
    features = pd.concat([measure(p.nuclei, p.fluorescence) for p in pairs], ignore_index=True)
    features.index.name = "label"
    classes = classify(features, method="hdbscan")
    assert set(classes.unique()) <= {-1, 0, 1, 2, 3}
    found = classes[classes >= 0]
    means = features.loc[found.index, "intensity_mean"].groupby(found).mean()
    assert means.is_monotonic_increasing  # class ids ordered by the first column


def test_classify_is_deterministic_and_named():
    features = pd.DataFrame({"intensity_mean": [1.0, 1.2, 0.8, 6.0, 6.5, 1.1],
                             "area": [50, 52, 48, 20, 22, 51.0]},
                            index=pd.Index([3, 4, 5, 6, 7, 8], name="label"))
    a = classify(features, method="gmm", seed=1)
    assert a.equals(classify(features, method="gmm", seed=1))
    assert a.tolist() == [0, 0, 0, 1, 1, 0] and a.index.tolist() == [3, 4, 5, 6, 7, 8]
    named = name_classes(a, {0: "interphase", 1: "mitotic"})
    assert named.tolist() == ["interphase"] * 3 + ["mitotic"] * 2 + ["interphase"]
    with pytest.raises(ValueError, match=r"class id\(s\) \[1\] have no name"):
        name_classes(a, {0: "interphase"})


def test_classify_bad_inputs():
    f = pd.DataFrame({"intensity_mean": [1.0, np.nan, 3.0]}, index=pd.Index([1, 2, 3]))
    with pytest.raises(ValueError, match=r"1 cell\(s\) have NaN or infinite features"):
        classify(f)
    with pytest.raises(ValueError, match=r"`method` must be one of \['gmm'"):
        classify(f, method="svm")
    with pytest.raises(ValueError, match="`n_classes` must be an int >= 2"):
        classify(f, n_classes=1)
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in `features`"):
        classify(f, columns=["nope"])
    with pytest.raises(ValueError, match="has none of the default columns"):
        classify(pd.DataFrame({"x": [1.0, 2.0]}))
    with pytest.raises(TypeError, match="`features` must be a DataFrame"):
        classify(np.zeros((3, 2)), columns=["a"])
    with pytest.raises(ValueError, match="is empty"):
        classify(pd.DataFrame({"intensity_mean": []}))


def test_tl_only_classifier_beats_chance_on_held_out_pairs(pairs):
    train = [(tl_features(p.tl, p.labels), p.truth["class_id"]) for p in pairs[:3]]
    x = pd.concat([f for f, _ in train], ignore_index=True)
    y = pd.concat([c.reindex(f.index) for f, c in train], ignore_index=True)
    model = CellClassifier(seed=0).fit(x, y)
    test = tl_features(pairs[3].tl, pairs[3].labels)
    predicted = model.predict(test)
    assert predicted.index.equals(test.index)
    score = balanced_accuracy_score(pairs[3].truth["class_id"].reindex(test.index), predicted)
    assert score >= 0.75  # chance is 0.5
    proba = model.predict_proba(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1)


def test_cell_classifier_errors():
    with pytest.raises(RuntimeError, match="not fitted yet"):
        CellClassifier().predict(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="at least two classes"):
        CellClassifier().fit(pd.DataFrame({"a": [1.0, 2.0]}), [0, 0])
    with pytest.raises(ValueError, match="must give a class for every row"):
        CellClassifier().fit(pd.DataFrame({"a": [1.0, 2.0]}), [0])


def test_hela_features_cluster_like_cellapp(hela_features):
    from sklearn.metrics import adjusted_rand_score

    values = np.load(hela_features / "metricdf_HeLa.npy")
    truth = np.load(hela_features / "metriclabels_HeLa.npy")
    features = pd.DataFrame({"intensity_max": values[:, 12], "area": values[:, 0]})
    classes = classify(features, method="threshold", columns=["intensity_max"])
    assert adjusted_rand_score(truth[truth >= 0], classes[truth >= 0]) > 0.8


def test_class_examples_plot(pairs):
    import matplotlib

    matplotlib.use("Agg")
    from cellnb.plot import class_examples

    p = pairs[0]
    classes = classify(measure(p.nuclei, p.fluorescence))
    fig = class_examples(p.fluorescence, p.nuclei, classes, n=4,
                         names={0: "interphase", 1: "mitotic"})
    assert len(fig.axes) == 8
    assert fig.axes[4].get_title(loc="left").startswith("mitotic (")


def test_tl_training_table_is_what_a_tl_classifier_learns_from():
    from cellnb.classify import tl_training_table
    from cellnb.io import Record

    labels = np.zeros((8, 8), np.int32)
    labels[1:4, 1:4], labels[5:8, 4:8], labels[0, 7] = 1, 2, 3
    image = np.ones((8, 8), np.float32)
    cells = pd.DataFrame({"class_name": ["small", "large", None]},
                         index=pd.Index([1, 2, 3], name="label"))
    unclassed = Record("b", image, labels, cells.drop(columns="class_name"))
    features, classes = tl_training_table([Record("a", image, labels, cells), unclassed])
    assert features["area"].tolist() == [9.0, 12.0]  # cell 3 has no class: left out
    assert classes.tolist() == ["small", "large"] and classes.name == "class_name"
    assert list(features.index) == [0, 1] and list(features.columns) == list(
        tl_features(image, labels).columns)
    with pytest.raises(ValueError, match="no record holds a cell with a 'class_name'"):
        tl_training_table([unclassed])
    with pytest.raises(TypeError, match=r"records\[0\] must be a cellnb.io.Record"):
        tl_training_table([labels])
