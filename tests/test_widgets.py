import pytest

from cellnb import Config
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import find_pairs
from cellnb.widgets import tune_locate


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(2, shape=(128, 128), n_cells=8, seed=2)


def test_tuner_drives_locate_and_prompt(pairs):
    tuner = tune_locate(pairs)
    assert tuner.controls["method"].value == "auto"  # what the tutorials recommend
    assert tuner.controls["sigma"].disabled  # auto needs no Cell-APP parameters
    assert tune_locate(pairs, config=Config()).controls["method"].value == "isodata"  # Cell-APP
    assert tuner.viewer.layer_names == ["fluorescence", "TL", "nuclei", "points", "boxes"]
    assert tuner.viewer.label_at("nuclei", *tuner.prompts[["y", "x"]].iloc[0]) == \
        tuner.prompts["label"].iloc[0]
    assert tuner.nuclei.max() == len(tuner.prompts) == len(pairs[0].truth)
    assert tuner.figure is not None and "prompts" in tuner.status.value
    tuner.controls["kind"].value = "boxes"
    assert (tuner.prompts["kind"] == "boxes").all()
    boxes = tuner.viewer.layers[tuner.viewer.layer_names.index("boxes")]["data"]
    assert len(boxes) == len(tuner.prompts)
    tuner.controls["pair"].value = "synthetic_001"
    assert tuner.nuclei.max() == len(pairs[1].truth)
    tuner.controls["method"].value = "isodata"
    assert not tuner.controls["sigma"].disabled
    tuner.controls["erosion_radius"].value = 0
    assert tuner.parameters()["locate"]["erosion_radius"] is None


def test_tuner_saves_config(pairs, tmp_path):
    tuner = tune_locate(pairs, config=Config.from_dict({"locate": {"sigma": 3.0}}))
    assert tuner.controls["sigma"].value == 3.0
    tuner.controls["threshold_division"].value = 0.5
    tuner.path.value = str(tmp_path / "tuned.yaml")
    tuner.save_button.click()
    saved = Config.from_yaml(tmp_path / "tuned.yaml")
    assert saved.locate.threshold_division == 0.5 and saved.locate.sigma == 3.0
    assert "saved" in tuner.status.value


def test_tuner_reads_pairs_from_files(pairs, tmp_path):
    table = find_pairs(write_pairs(pairs, tmp_path).pipe(lambda _: tmp_path))
    tuner = tune_locate(table)
    assert tuner.controls["pair"].options == ("synthetic_000", "synthetic_001")
    tl, fl = pairs[0].tl, pairs[0].fluorescence
    tuner2 = tune_locate((tl, fl))
    assert tuner2.controls["pair"].options == ("pair 0",)


def test_tuner_bad_input():
    with pytest.raises(TypeError, match="item 0 is int"):
        tune_locate([1])
    with pytest.raises(ValueError, match="is empty"):
        tune_locate([])


def test_tuner_keeps_cellapps_odd_tophat_and_recomputes_on_release():
    from cellnb.data import synthetic_pairs
    from cellnb.widgets import tune_locate

    tuner = tune_locate(synthetic_pairs(1, shape=(96, 96), n_cells=4))
    assert tuner.controls["tophat_size"].value == 71  # not snapped to an even 72
    assert tuner.parameters()["locate"]["tophat_size"] == 71
    tuner.controls["tophat_size"].value = 0
    assert tuner.parameters()["locate"]["tophat_size"] is None  # 0 switches it off
    assert all(not c.continuous_update for name, c in tuner.controls.items()
               if hasattr(c, "continuous_update") and name != "tophat_size")
    from cellnb._nuclei.learned import learned_available

    offered = set(tuner.controls["method"].options)
    assert {"auto", "isodata", "multiotsu", "watershed"} <= offered
    assert ("stardist" in offered) == learned_available("stardist")


def test_tuner_says_why_cellapps_controls_are_greyed_out_in_auto():
    from cellnb.widgets import CELLAPP_CONTROLS

    tuner = tune_locate(synthetic_pairs(1, shape=(128, 128), n_cells=3, seed=0))
    assert tuner.controls["method"].value == "auto"
    assert all(tuner.controls[name].disabled for name in CELLAPP_CONTROLS)
    assert "are greyed out" in tuner.note.value and "needs no tuning" in tuner.note.value
    tuner.controls["method"].value = "isodata"
    assert not any(tuner.controls[name].disabled for name in CELLAPP_CONTROLS)
    assert tuner.note.value == ""
    bundle = tuner._repr_mimebundle_()
    assert bundle["image/png"][:4] == b"\x89PNG"  # the docs site shows this picture
