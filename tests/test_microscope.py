"""Microscope files through bioio: describe, planes as pairs, annotate, export, focus series."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from cellnb import annotate, export
from cellnb.io import microscope
from cellnb.annotate import read_records
from cellnb.data import synthetic_movie, synthetic_pairs, write_ome_tiff, write_pairs
from cellnb.io import find_pairs, plane_of, read_image, read_pair

pytest.importorskip("bioio")
CHANNELS = {"tl": "BF", "fluorescence": "mCherry"}


def _stack(t=3, z=1, size=32, seed=0):
    """(T, 2, Z, Y, X) uint16 with every value unique to its plane: 1000 * (t, c, z) code + y."""
    out = np.zeros((t, 2, z, size, size), np.uint16)
    for ti in range(t):
        for c in range(2):
            for zi in range(z):
                out[ti, c, zi] = 1000 * (1 + ti * 100 + c * 10 + zi) % 60000 + np.arange(
                    size, dtype=np.uint16)[:, None]
    return out


def test_describe_reports_scenes_channels_and_pixel_sizes(tmp_path):
    path = write_ome_tiff(tmp_path / "run.ome.tif", [_stack(3, 2), _stack(1, 1)],
                          channels=["BF", "mCherry"], pixel_size_um=0.325, z_step_um=2.0)
    table = microscope.describe(path)
    assert table[["T", "C", "Z", "Y", "X"]].values.tolist() == [[3, 2, 2, 32, 32],
                                                                [1, 2, 1, 32, 32]]
    assert table["channels"].tolist() == [["BF", "mCherry"]] * 2
    assert table["pixel_size_y_um"].tolist() == [0.325, 0.325]
    assert table["dtype"].tolist() == ["uint16", "uint16"]


def test_plain_tiff_pixel_size_only_when_the_file_says_it(tmp_path):
    movie = np.zeros((5, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "bare.tif", movie, metadata={"axes": "TYX"},
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "ij.tif", movie, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TYX", "unit": "um"})
    tifffile.imwrite(tmp_path / "cm.tif", movie, resolution=(1e4 / 0.25, 1e4 / 0.25),
                     resolutionunit="CENTIMETER", metadata={"axes": "TYX"},
                     photometric="minisblack")
    assert np.isnan(microscope.describe(tmp_path / "bare.tif")["pixel_size_y_um"].iloc[0])
    assert microscope.describe(tmp_path / "ij.tif")["pixel_size_x_um"].iloc[0] == 0.5
    assert microscope.describe(tmp_path / "cm.tif")["pixel_size_x_um"].iloc[0] == pytest.approx(
        0.25)


def test_find_pairs_expands_every_plane_of_multichannel_files(tmp_path):
    stacks = {"A01": _stack(2, 2), "B02": _stack(3, 1)}
    for name, stack in stacks.items():
        write_ome_tiff(tmp_path / f"{name}.ome.tif", stack, channels=["BF", "mCherry"],
                       pixel_size_um=0.65)
    pairs = find_pairs(tmp_path, files="*.ome.tif", channels=CHANNELS)
    assert pairs["pair_id"].tolist() == ["A01/s0_t0_z0", "A01/s0_t0_z1", "A01/s0_t1_z0",
                                         "A01/s0_t1_z1", "B02/s0_t0_z0", "B02/s0_t1_z0",
                                         "B02/s0_t2_z0"]
    assert pairs["position"].tolist() == ["A01/s0"] * 4 + ["B02/s0"] * 3
    assert set(pairs["pixel_size_y_um"]) == {0.65}
    for _, row in pairs.iterrows():
        tl, fl = read_pair(row)
        stack = stacks[row["pair_id"].split("/")[0]]
        np.testing.assert_array_equal(tl, stack[row["t"], 0, row["z"]])
        np.testing.assert_array_equal(fl, stack[row["t"], 1, row["z"]])
    # channels by index give the same table
    by_index = find_pairs(tmp_path, files="*.ome.tif", channels={"tl": 0, "fluorescence": 1})
    pd.testing.assert_frame_equal(by_index, pairs)


def test_each_scene_is_its_own_position(tmp_path):
    write_ome_tiff(tmp_path / "plate.ome.tif", [_stack(1), _stack(1), _stack(2)],
                   channels=["BF", "mCherry"])
    pairs = find_pairs(tmp_path, files="*.ome.tif", channels=CHANNELS)
    assert pairs["position"].tolist() == ["plate/s0", "plate/s1", "plate/s2", "plate/s2"]
    tl, _ = read_pair(pairs.iloc[3])
    np.testing.assert_array_equal(tl, _stack(2)[1, 0, 0])


def test_channel_errors_name_what_the_file_has(tmp_path):
    write_ome_tiff(tmp_path / "a.ome.tif", _stack(1), channels=["BF", "mCherry"])
    with pytest.raises(ValueError, match=r"no channel named 'GFP' for fluorescence; its "
                                         r"channels are \['BF', 'mCherry'\]"):
        find_pairs(tmp_path, files="*.ome.tif", channels={"tl": "BF", "fluorescence": "GFP"})
    with pytest.raises(ValueError, match="tl channel 5 does not exist; the file has 2"):
        find_pairs(tmp_path, files="*.ome.tif", channels={"tl": 5, "fluorescence": 1})
    with pytest.raises(ValueError, match="'tl' and 'fluorescence' are the same channel"):
        find_pairs(tmp_path, files="*.ome.tif", channels={"tl": 1, "fluorescence": "mCherry"})
    with pytest.raises(ValueError, match="keys 'tl' and 'fluorescence'"):
        find_pairs(tmp_path, files="*.ome.tif", channels={"tl": "BF"})
    with pytest.raises(ValueError, match="need both `files`"):
        find_pairs(tmp_path, channels=CHANNELS)
    with pytest.raises(FileNotFoundError, match=r"no files matching '\*.nd2'"):
        find_pairs(tmp_path, files="*.nd2", channels=CHANNELS)


def test_separate_tl_and_fluorescence_movies_pair_frame_by_frame(tmp_path):
    movie = synthetic_movie(3, shape=(64, 64), n_cells=3, seed=0)
    tifffile.imwrite(tmp_path / "mv_phs.tif", movie.tl, metadata={"axes": "TYX"},
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "mv_Texas Red.tif", movie.fluorescence, metadata={"axes": "TYX"},
                     photometric="minisblack")
    write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3), tmp_path, truth=False)
    pairs = find_pairs(tmp_path)
    assert pairs["pair_id"].tolist() == ["mv/s0_t0_z0", "mv/s0_t1_z0", "mv/s0_t2_z0",
                                         "synthetic_000"]
    assert pairs["t"].tolist()[:3] == [0, 1, 2] and pd.isna(pairs["t"].iloc[3])
    assert plane_of(pairs.iloc[3]) is None
    for k in range(3):
        tl, fl = read_pair(pairs.iloc[k])
        np.testing.assert_array_equal(tl, movie.tl[k])
        np.testing.assert_array_equal(fl, movie.fluorescence[k])
    assert read_pair(pairs.iloc[3])[0].shape == (64, 64)
    # a single multi-frame file is still refused by read_image, with the way out
    with pytest.raises(ValueError, match="Pair it with cellnb.io.find_pairs"):
        read_image(tmp_path / "mv_phs.tif")


def test_separate_movies_must_match_plane_for_plane(tmp_path):
    tifffile.imwrite(tmp_path / "mv_phs.tif", np.ones((3, 16, 16), np.uint16),
                     metadata={"axes": "TYX"},
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "mv_Texas Red.tif", np.ones((2, 16, 16), np.uint16),
                     metadata={"axes": "TYX"},
                     photometric="minisblack")
    with pytest.raises(ValueError, match=r"mv_phs.tif and mv_Texas Red.tif do not match plane "
                                         r"for plane: TL has scenes x \(T, Z, Y, X\) "
                                         r"\[\[3, 1, 16, 16\]\], fluorescence \[\[2, 1, 16, 16\]\]"):
        find_pairs(tmp_path)


def test_a_multichannel_file_in_separate_mode_says_to_name_channels(tmp_path):
    write_ome_tiff(tmp_path / "a_phs.ome.tif", _stack(1), channels=["BF", "mCherry"])
    write_ome_tiff(tmp_path / "a_fl.ome.tif", _stack(1), channels=["BF", "mCherry"])
    with pytest.raises(ValueError, match=r"holds 2 channels \(\['BF', 'mCherry'\]\); pair it by "
                                         r"channel"):
        find_pairs(tmp_path, tl="*_phs.ome.tif", fl="*_fl.ome.tif")


def test_missing_plugin_names_the_extra_and_corrupt_files_name_the_file(tmp_path, monkeypatch):
    (tmp_path / "run.nd2").write_bytes(b"not an nd2 file")
    with pytest.raises(ImportError, match=r"bioio plugin bioio-nd2: pip install 'cellnb\[nd2\]'"):
        microscope.describe(tmp_path / "run.nd2")
    (tmp_path / "broken.ome.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises((ValueError, ImportError), match="broken.ome.tif"):
        microscope.describe(tmp_path / "broken.ome.tif")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        microscope.describe(tmp_path / "gone.ome.tif")
    # without bioio at all
    tifffile.imwrite(tmp_path / "m.tif", np.ones((2, 8, 8), np.uint16), metadata={"axes": "TYX"},
                     photometric="minisblack")
    microscope._open_cached.cache_clear()
    monkeypatch.setitem(sys.modules, "bioio", None)
    with pytest.raises(ImportError, match=r"needs bioio: pip install 'cellnb\[bioio\]'"):
        microscope.describe(tmp_path / "m.tif")
    microscope._open_cached.cache_clear()


def test_read_plane_checks_its_indices_and_pixels(tmp_path):
    path = write_ome_tiff(tmp_path / "a.ome.tif", _stack(2, 1), channels=["BF", "mCherry"])
    with pytest.raises(ValueError, match="t=2 is out of range"):
        microscope.read_plane(path, t=2)
    with pytest.raises(ValueError, match="scene 1 does not exist"):
        microscope.read_plane(path, scene=1)
    with pytest.raises(TypeError, match="`z` must be an int >= 0"):
        microscope.read_plane(path, z=-1)
    bad = np.zeros((1, 2, 1, 8, 8), np.float32)
    bad[0, 1, 0, 2, 2] = np.nan
    nan_path = write_ome_tiff(tmp_path / "nan.ome.tif", bad, channels=["BF", "mCherry"])
    with pytest.raises(ValueError, match=r"nan.ome.tif \(scene 0, t 0, z 0, channel 1\): .*NaN"):
        microscope.read_plane(nan_path, channel=1)
    with pytest.raises(TypeError, match="int16"):
        microscope.read_plane(write_ome_tiff(tmp_path / "i.ome.tif",
                                             np.zeros((1, 2, 1, 8, 8), np.int16),
                                             channels=["BF", "mCherry"]))


def _movie_files(folder, n_positions=3, frames=3):
    movie = synthetic_movie(frames, shape=(96, 96), n_cells=5, seed=1)
    stack = np.stack([movie.tl, movie.fluorescence], axis=1)[:, :, None]
    for k in range(n_positions):
        write_ome_tiff(folder / f"pos{k}.ome.tif", stack, channels=["BF", "mCherry"],
                       pixel_size_um=0.65)
    return movie


def test_annotate_and_export_planes_keep_each_position_in_one_split(tmp_path):
    movie = _movie_files(tmp_path)
    pairs = find_pairs(tmp_path, files="*.ome.tif", channels=CHANNELS)
    summary = annotate(pairs, tmp_path / "out", model="watershed", progress=False)
    assert summary["status"].tolist() == ["done"] * 9
    again = annotate(pairs, tmp_path / "out", model="watershed", progress=False)
    assert again["status"].tolist() == ["skipped"] * 9
    records = read_records(tmp_path / "out")
    first = next(r for r in records if r.id == "pos1/s0_t2_z0")
    np.testing.assert_array_equal(first.image, movie.tl[2])
    assert first.provenance["position"] == "pos1/s0"
    assert first.provenance["pixel_size_um"] == [0.65, 0.65]
    assert first.provenance["plane"] == {"scene": 0, "t": 2, "z": 0, "tl_channel": 0,
                                         "fl_channel": 1}
    out = export(records, tmp_path / "ds", splits={"train": 2, "test": 1})
    splits = json.loads((out / "provenance.json").read_text())["splits"]
    positions = {split: {i.split("/")[0] for i in ids} for split, ids in splits.items()}
    assert len(positions["test"]) == 1 and not positions["test"] & positions["train"]
    assert sorted(len(ids) for ids in splits.values()) == [3, 6]


def _focus_file(folder):
    pair = synthetic_pairs(1, shape=(96, 96), n_cells=5, seed=2)[0]
    tl = pair.tl.astype(float)
    planes = np.stack([ndimage.gaussian_filter(tl, 3), tl, ndimage.gaussian_filter(tl, 1.5)])
    stack = np.stack([planes, np.stack([pair.fluorescence] * 3)])[None].astype(np.uint16)
    write_ome_tiff(folder / "field.ome.tif", stack, channels=["BF", "mCherry"])
    return find_pairs(folder, files="*.ome.tif", channels=CHANNELS), pair


def test_choose_focus_marks_the_sharpest_plane_or_the_users(tmp_path):
    pairs, _ = _focus_file(tmp_path)
    chosen = microscope.choose_focus(pairs)
    assert chosen["in_focus"].tolist() == [False, True, False]
    assert chosen["focus_score"].iloc[1] > chosen["focus_score"].iloc[2] > \
        chosen["focus_score"].iloc[0]
    assert microscope.choose_focus(pairs, z=2)["in_focus"].tolist() == [False, False, True]
    with pytest.raises(ValueError, match=r"has no plane z=7 \(it has \[0, 1, 2\]\)"):
        microscope.choose_focus(pairs, z=7)


def test_annotate_focus_reuses_in_focus_masks_for_defocused_planes(tmp_path):
    pairs, pair = _focus_file(tmp_path)
    summary = annotate(pairs, tmp_path / "out", model="watershed", focus="best", progress=False)
    assert summary["status"].tolist() == ["reused", "done", "reused"]
    records = {r.id: r for r in read_records(tmp_path / "out")}
    sharp = records["field/s0_t0_z1"]
    for pid in ("field/s0_t0_z0", "field/s0_t0_z2"):
        np.testing.assert_array_equal(records[pid].labels, sharp.labels)
        assert records[pid].provenance["labels_from"] == "field/s0_t0_z1"
        assert not np.array_equal(records[pid].image, sharp.image)  # its own, defocused TL
    assert annotate(pairs, tmp_path / "out", model="watershed", focus="best",
                    progress=False)["status"].tolist() == ["skipped"] * 3
    # the user's plane instead: z0 is annotated anew, the others now copy it
    again = annotate(pairs, tmp_path / "out", model="watershed", focus=0, progress=False)
    assert again["status"].tolist() == ["done", "reused", "reused"]
    with pytest.raises(ValueError, match="`focus` must be None, 'best' or a z index"):
        annotate(pairs, tmp_path / "out", model="watershed", focus="sharp", progress=False)
    single = write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3), tmp_path / "single",
                         truth=False)
    with pytest.raises(ValueError, match="these pairs are single images"):
        annotate(single, tmp_path / "out2", model="watershed", focus="best", progress=False)


def test_config_names_the_files_and_channels_for_annotate_and_the_cli(tmp_path):
    from cellnb import Config
    from cellnb.cli import main

    pairs, _ = _focus_file(tmp_path / "raw")
    config = Config()
    config.pairs.files, config.pairs.channels = "*.ome.tif", dict(CHANNELS)
    assert Config.from_yaml(config.to_yaml()).pairs.channels == CHANNELS
    summary = annotate(tmp_path / "raw", tmp_path / "out", config=config, model="watershed",
                       progress=False)
    assert summary["pair_id"].tolist() == pairs["pair_id"].tolist()
    with pytest.raises(ValueError, match="needs the keys 'tl' and 'fluorescence'"):
        config.pairs.channels = {"tl": "BF"}
    alone = Config()
    alone.pairs.files = "*.ome.tif"
    with pytest.raises(ValueError, match="need both `files`"):
        annotate(tmp_path / "raw", tmp_path / "out", config=alone, model="watershed")
    config.to_yaml(tmp_path / "cfg.yaml")
    assert main(["annotate", str(tmp_path / "raw"), "--out", str(tmp_path / "cli"), "--config",
                 str(tmp_path / "cfg.yaml"), "--model", "watershed", "--focus", "best"]) == 0
    statuses = {r.id: r.provenance.get("labels_from") for r in read_records(tmp_path / "cli")}
    assert statuses == {"field/s0_t0_z0": "field/s0_t0_z1", "field/s0_t0_z1": None,
                        "field/s0_t0_z2": "field/s0_t0_z1"}
    with pytest.raises(SystemExit, match="--focus takes 'best' or a plane index"):
        main(["annotate", str(tmp_path / "raw"), "--out", str(tmp_path / "cli"), "--config",
              str(tmp_path / "cfg.yaml"), "--model", "watershed", "--focus", "sharp"])


@pytest.mark.parametrize("suffix", [".nd2", ".czi", ".lif"])
def test_nd2_czi_lif_through_bioio_with_the_plugin_mocked_at_the_file_read(tmp_path, monkeypatch,
                                                                           suffix):
    """No ND2 / CZI / LIF sample can be made or shipped here, so the plugin's file read is
    replaced: bioio's real BioImage is built from in-memory arrays (its ArrayLike reader) for
    these files, and everything above it (scenes, channel names, pixel sizes, planes) is
    cellnb's code and bioio's API as with the real plugin."""
    import bioio
    from bioio_base.types import PhysicalPixelSizes

    scenes = [_stack(2, 1), _stack(1, 3)]
    real = bioio.BioImage

    def fake_plugin(path, *args, **kwargs):
        if str(path).endswith(suffix):
            return real(scenes, dim_order="TCZYX", channel_names=[["BF", "mCherry"]] * 2,
                        physical_pixel_sizes=PhysicalPixelSizes(1.0, 0.2, 0.2))
        return real(path, *args, **kwargs)

    (tmp_path / f"exp{suffix}").write_bytes(b"a microscope file")
    microscope._open_cached.cache_clear()
    monkeypatch.setattr(bioio, "BioImage", fake_plugin)
    try:
        info = microscope.describe(tmp_path / f"exp{suffix}")
        assert info[["T", "Z"]].values.tolist() == [[2, 1], [1, 3]]
        assert info["pixel_size_x_um"].iloc[0] == 0.2  # (bioio's array reader: first scene)
        pairs = find_pairs(tmp_path, files=f"*{suffix}", channels=CHANNELS)
        assert pairs["pair_id"].tolist() == ["exp/s0_t0_z0", "exp/s0_t1_z0", "exp/s1_t0_z0",
                                             "exp/s1_t0_z1", "exp/s1_t0_z2"]
        tl, fl = read_pair(pairs.iloc[4])
        np.testing.assert_array_equal(tl, scenes[1][0, 0, 2])
        np.testing.assert_array_equal(fl, scenes[1][0, 1, 2])
    finally:
        microscope._open_cached.cache_clear()


def test_ome_zarr_round_trip_of_a_movie_and_its_labels(tmp_path):
    import zarr

    movie = synthetic_movie(3, shape=(48, 48), n_cells=3, seed=0)
    path = microscope.write_ome_zarr(tmp_path / "mv.ome.zarr", movie.tl,
                                     {"cells": movie.labels, "nuclei": movie.nuclei},
                                     pixel_size_um=0.325, frame_interval=5.0)
    image, labels, size = microscope.read_ome_zarr(path)
    np.testing.assert_array_equal(image, movie.tl)
    np.testing.assert_array_equal(labels["cells"], movie.labels)
    np.testing.assert_array_equal(labels["nuclei"], movie.nuclei)
    assert size == 0.325 and image.dtype == np.uint16
    meta = zarr.open_group(str(path), mode="r").attrs.asdict()["ome"]["multiscales"][0]
    assert [a["name"] for a in meta["axes"]] == ["t", "y", "x"]
    assert meta["datasets"][0]["coordinateTransformations"][0]["scale"] == [5.0, 0.325, 0.325]
    with pytest.raises(FileExistsError):
        microscope.write_ome_zarr(path, movie.tl)
    with pytest.raises(ValueError, match=r"labels 'cells' \(shape \(2, 48, 48\)\) must match"):
        microscope.write_ome_zarr(tmp_path / "b.ome.zarr", movie.tl, movie.labels[:2])
    with pytest.raises(ValueError, match="name ends in .ome.zarr"):
        microscope.write_ome_zarr(tmp_path / "b.zarr", movie.tl)
    with pytest.raises(TypeError, match="int16"):
        microscope.write_ome_zarr(tmp_path / "c.ome.zarr", movie.tl.astype(np.int16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mv.ome.zarr"]  # nothing half-written
    _, none, unknown = microscope.read_ome_zarr(
        microscope.write_ome_zarr(tmp_path / "d.ome.zarr", movie.tl[0]))
    assert none == {} and np.isnan(unknown)


def test_export_writes_ome_zarr_with_the_pixel_size_of_the_planes(tmp_path):
    _movie_files(tmp_path, n_positions=1, frames=2)
    pairs = find_pairs(tmp_path, files="*.ome.tif", channels=CHANNELS)
    annotate(pairs, tmp_path / "out", model="watershed", progress=False)
    records = read_records(tmp_path / "out")
    out = export(records, tmp_path / "ds", splits={"train": 1}, formats=("coco", "ome-zarr"))
    written = sorted(p.relative_to(out / "train" / "ome-zarr").as_posix()
                     for p in (out / "train" / "ome-zarr").rglob("*.ome.zarr"))
    assert written == ["pos0+s0_t0_z0.ome.zarr", "pos0+s0_t1_z0.ome.zarr"]  # as images/
    image, labels, size = microscope.read_ome_zarr(out / "train" / "ome-zarr" / written[1])
    np.testing.assert_array_equal(image, records[1].image)
    np.testing.assert_array_equal(labels["cells"], records[1].labels)
    assert size == 0.65
