"""``cellnb export`` and ``cellnb evaluate``: the command line after annotate."""

import json

import pandas as pd
import pytest

from cellnb import Config
from cellnb.cli import _splits, main
from cellnb.data import synthetic_pairs, write_pairs


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_pairs(synthetic_pairs(4, shape=(96, 96), n_cells=5, seed=3), root / "pairs")
    Config.from_dict({"locate": {"method": "auto"}}).to_yaml(root / "config.yaml")
    assert main(["annotate", str(root / "pairs"), "--out", str(root / "ann"), "--config",
                 str(root / "config.yaml"), "--model", "watershed"]) == 0
    return root


def test_export_writes_the_splits_asked_for(annotated, capsys):
    out = annotated / "dataset"
    assert main(["export", str(annotated / "ann"), "--out", str(out), "--split", "train=0.5",
                 "--split", "test=0.5", "--format", "labels", "--format", "qupath-geojson",
                 "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "test: 2 images" in printed and "train: 2 images" in printed
    coco = json.loads((out / "test" / "dataset_test.json").read_text())
    assert len(coco["images"]) == 2 and coco["annotations"]
    assert len(list((out / "test").rglob("*.geojson"))) == 2
    halves = ["--split", "train=0.5", "--split", "test=0.5"]
    with pytest.raises(FileExistsError):  # an existing dataset is kept unless --overwrite
        main(["export", str(annotated / "ann"), "--out", str(out), *halves])
    assert main(["export", str(annotated / "ann"), "--out", str(out), *halves,
                 "--overwrite"]) == 0


def test_evaluate_scores_an_annotate_folder_against_itself_and_writes_csv(annotated, capsys):
    table_path = annotated / "scores.csv"
    assert main(["evaluate", str(annotated / "ann"), str(annotated / "ann"), "--out",
                 str(table_path)]) == 0
    table = pd.read_csv(table_path)
    assert len(table) == 10 and (table["f1"] == 1.0).all()  # one row per IoU threshold
    assert f"table: {table_path}" in capsys.readouterr().out
    assert main(["evaluate", str(annotated / "ann"), str(annotated / "ann"), "--by",
                 "image"]) == 0
    assert capsys.readouterr().out.count("\n") == 4 * 10 + 1
    with pytest.raises(SystemExit, match="does not exist"):
        main(["evaluate", str(annotated / "ann"), str(annotated / "nope")])


def test_split_option_is_checked():
    assert _splits([]) is None
    with pytest.raises(SystemExit, match="NAME=FRACTION"):
        _splits(["train"])
    with pytest.raises(SystemExit, match="NAME=FRACTION"):
        _splits(["train=most"])
