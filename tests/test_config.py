import json

import pytest

from cellnb import Config
from cellnb.config import CELLAPP_PROPERTIES


def test_defaults_are_cellapp_hela():
    cfg = Config()
    assert (cfg.locate.method, cfg.locate.threshold_division, cfg.locate.sigma,
            cfg.locate.tophat_size, cfg.locate.erosion_radius) == ("isodata", 0.75, 2.0, 71, 8)
    assert (cfg.prompt.kind, cfg.prompt.box_scale, cfg.prompt.box_size) == ("points", 2.5,
                                                                              "median")
    assert cfg.segment.iou_threshold == 0.85
    assert tuple(cfg.measure.properties) == CELLAPP_PROPERTIES
    assert (cfg.pairs.tl, cfg.pairs.fl) == ("*_phs.tif", "*_Texas Red.tif")


def test_yaml_round_trip(tmp_path):
    cfg = Config.from_dict({"locate": {"method": "watershed", "sigma": 3},
                            "segment": {"tile_shape": [512, 512], "halo": [64, 64]},
                            "export": {"name": "cells", "group": r"^(plate\d+)"},
                            "seed": 7})
    assert cfg.segment.tile_shape == (512, 512)
    assert cfg.locate.sigma == 3.0 and isinstance(cfg.locate.sigma, float)
    path = tmp_path / "c.yaml"
    text = cfg.to_yaml(path)
    assert path.read_text() == text
    assert Config.from_yaml(path) == cfg
    assert Config.from_yaml(text) == cfg
    assert Config.from_yaml("") == Config()


def test_classify_section_explains_where_classes_come_from():
    with pytest.raises(ValueError, match="no 'classify' section.*cellnb.classify"):
        Config.from_dict({"classify": {"method": "gmm"}})


def test_unknown_keys_list_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\] in the config; valid "
                                         r"keys: \['pairs', 'locate'"):
        Config.from_dict({"colour": 1})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sigmaa'\] in section 'locate'; "
                                         r"valid keys: \['method', 'threshold_division', 'sigma'"):
        Config.from_dict({"locate": {"sigmaa": 1}})


@pytest.mark.parametrize("data, message", [
    ({"locate": {"sigma": "big"}}, r"'locate.sigma' must be float, got 'big' \(str\)"),
    ({"locate": {"method": "otsu"}}, r"'locate.method' must be one of \['auto', 'isodata', "),
    ({"locate": {"tophat_size": 7.5}}, r"'locate.tophat_size' must be int or null, got 7.5"),
    ({"segment": {"tile_shape": [1, 2, 3]}}, r"'segment.tile_shape' must be"),
    ({"prompt": {"negatives": True}}, r"'prompt.negatives' must be int, got True"),
    ({"locate": 3}, r"'locate' must be a mapping of \['method'"),
    ({"export": {"splits": {"train": "most"}}}, r"'export.splits\['train'\]' must be float"),
])
def test_wrong_types_raise(data, message):
    with pytest.raises(TypeError, match=message):
        Config.from_dict(data)


@pytest.mark.parametrize("data, message", [
    ({"locate": {"threshold_division": 0}},
     r"locate: threshold_division must be a finite number > 0, got 0.0"),
    ({"segment": {"iou_threshold": 1.5}}, r"iou_threshold must be in \(0, 1\], got 1.5"),
    ({"locate": {"erosion_radius": -1}}, r"erosion_radius must be a finite number >= 0, got -1"),
    ({"locate": {"sigma": float("nan")}}, r"locate: sigma must be a finite number >= 0, got nan"),
    ({"locate": {"threshold_division": float("inf")}},
     r"threshold_division must be a finite number > 0, got inf"),
    ({"locate": {"min_area": 50, "max_area": 10}},
     r"locate: min_area \(50\) must not exceed max_area \(10\)"),
])
def test_bad_values_raise(data, message):
    with pytest.raises(ValueError, match=message):
        Config.from_dict(data)


def test_from_yaml_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        Config.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="config text is not valid YAML"):
        Config.from_yaml("locate: [1, 2")
    with pytest.raises(TypeError, match="a config must be a mapping, got list"):
        Config.from_yaml("- 1\n- 2\n")
    with pytest.raises(TypeError, match="expected a path or YAML text, got int"):
        Config.from_yaml(3)


CELLAPP_FILE = {
    "version": 1, "threshold_type": "single", "threshold_division": 0.6,
    "gaussian_sigma": 1.5, "point_prompts": False, "box_prompts": True,
    "propslist": ["area", "convex_area", "major_axis_length"], "iou_thresh": 0.8,
    "morphology": {"tophatstruct": {"func": "square", "args": {"size": 51}},
                   "erosionstruct": None},
    "bbox": {"box_size_scale": 3.0, "bbox_func": "square_box"},
}


def test_from_cellapp_translates_every_field(tmp_path):
    path = tmp_path / "cellapp.json"
    path.write_text(json.dumps(CELLAPP_FILE))
    cfg = Config.from_cellapp(path)
    assert cfg.locate.method == "isodata"
    assert (cfg.locate.threshold_division, cfg.locate.sigma) == (0.6, 1.5)
    assert (cfg.locate.tophat_size, cfg.locate.erosion_radius) == (51, None)
    assert (cfg.prompt.kind, cfg.prompt.box_scale) == ("boxes", 3.0)
    assert cfg.segment.iou_threshold == 0.8
    assert cfg.measure.properties == ["area", "area_convex", "axis_major_length"]


def test_from_cellapp_errors_and_warnings():
    with pytest.raises(ValueError, match=r"threshold_type: Input should be 'single', 'multi' or "
                                         r"'watershed' \(got 'otsu'\)"):
        Config.from_cellapp('{"threshold_type": "otsu"}')
    with pytest.raises(ValueError, match="morphology.erosionstruct must be null or"):
        Config.from_cellapp('{"morphology": {"erosionstruct": {"func": "square", "args": {}}}}')
    with pytest.raises(ValueError, match="point_prompts and box_prompts are both false"):
        Config.from_cellapp('{"point_prompts": false, "box_prompts": false}')
    with pytest.warns(UserWarning, match=r"keys not used by cellnb: \['frame_step'\]"):
        cfg = Config.from_cellapp('{"frame_step": 2, "threshold_type": "watershed"}')
    assert cfg.locate.method == "watershed"
