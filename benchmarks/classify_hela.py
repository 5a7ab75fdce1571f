"""Cluster Cell-APP's HeLa nucleus features with every cellnb method; ARI vs Cell-APP's labels.

Data: ``cellapp-hela-features`` (fetched through data_manifests/): 5687 nuclei x 19
columns, the first 15 Cell-APP's property list, and Cell-APP's own cluster label of
each row (-1 noise, 0, 1). The adjusted Rand index (ARI) measures agreement with
Cell-APP's labels (1 = identical partition, 0 = chance); noise counts as its own
group.

    python benchmarks/classify_hela.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from cellnb.classify import classify
from cellnb.data import fetch

COLUMNS = ["area", "solidity", "perimeter_crofton", "area_convex", "eccentricity",
           "axis_major_length", "axis_minor_length", "perimeter", "centroid_local_0",
           "centroid_local_1", "euler_number", "extent", "intensity_max", "intensity_min",
           "area_filled"]


def main():
    folder = fetch("cellapp-hela-features")
    values = np.load(folder / "metricdf_HeLa.npy")
    truth = np.load(folder / "metriclabels_HeLa.npy")
    features = pd.DataFrame(values[:, :15], columns=COLUMNS,
                            index=pd.Index(np.arange(1, len(values) + 1), name="label"))
    print(f"{len(features)} nuclei; Cell-APP labels: "
          f"{pd.Series(truth).value_counts().sort_index().to_dict()}")
    feature_sets = {
        "intensity + shape": ["intensity_max", "area", "eccentricity", "solidity",
                              "intensity_min"],
        "all 13 (no centroid)": [c for c in COLUMNS if not c.startswith("centroid")],
    }
    rows = []
    for set_name, columns in feature_sets.items():
        for method in ("gmm", "kmeans", "hdbscan", "threshold"):
            t0 = time.perf_counter()
            classes = classify(features, method=method, n_classes=2, columns=columns)
            seconds = time.perf_counter() - t0
            rows.append({"features": set_name, "method": method,
                         "classes found": int(classes[classes >= 0].nunique()),
                         "noise": int((classes < 0).sum()),
                         "ARI vs Cell-APP": adjusted_rand_score(truth, classes),
                         "ARI (Cell-APP non-noise rows)": adjusted_rand_score(
                             truth[truth >= 0], classes[truth >= 0]),
                         "seconds": seconds})
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
