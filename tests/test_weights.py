"""cellnb.weights / `cellnb models`: fetch from a local file server standing in for the
download hosts (no network in tests), verify, doctor a plan for offline compute nodes."""

import functools
import http.server
import threading

import pandas as pd
import pytest

from cellnb import weights
from cellnb.models import ModelNotAvailableError


@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1 serving tmp_path/www; stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _xxh128(data: bytes) -> str:
    import xxhash

    return "xxh128:" + xxhash.xxh128(data).hexdigest()


@pytest.fixture
def zoo(server, monkeypatch):
    """micro_sam's registry with vit_b_lm (+ decoder) served locally, real hashes of the files."""
    import pooch

    from cellnb.models._architectures import _micro_sam_util

    util = _micro_sam_util()  # imported with its dependencies' deprecation noise silenced
    root, url = server
    files = {"vit_b_lm": b"encoder weights", "vit_b_lm_decoder": b"decoder weights",
             "vit_t": b"tiny weights"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    registry = {name: _xxh128(data) for name, data in files.items()}

    def models():
        return pooch.create(path=util.get_cache_directory() / "models", base_url="",
                            registry=registry, urls={n: url + n for n in files})

    monkeypatch.setattr(util, "models", models)
    return root, url, files


def test_fetch_downloads_verifies_and_reports(zoo, tmp_path):
    root, _, files = zoo
    cache = tmp_path / "weights"
    table = weights.fetch("vit_b_lm", cache=cache, progress=False)
    assert table[["file", "status", "verified"]].values.tolist() == [
        ["vit_b_lm", "downloaded", True], ["vit_b_lm_decoder", "downloaded", True]]
    assert (cache / "models" / "vit_b_lm").read_bytes() == files["vit_b_lm"]
    again = weights.fetch(["vit_b_lm", "vit_t"], cache=cache, progress=False)
    assert again["status"].tolist() == ["cached", "cached", "downloaded"]
    assert not list((cache / "models").glob("*.part")) and not list(
        (cache / "models").glob("tmp*"))


def test_fetch_refuses_a_file_whose_hash_is_wrong(zoo, tmp_path):
    root, _, _ = zoo
    (root / "vit_t").write_bytes(b"tampered on the way")
    with pytest.raises(ModelNotAvailableError, match="could not fetch 'vit_t' from http://127"):
        weights.fetch("vit_t", cache=tmp_path / "w", progress=False)
    assert not (tmp_path / "w" / "models" / "vit_t").exists()


def test_fetch_offline_names_the_file_to_put_where(zoo, tmp_path):
    root, _, _ = zoo
    (root / "vit_t").unlink()
    with pytest.raises(ModelNotAvailableError, match=r"save it as .*w/models/vit_t"):
        weights.fetch("vit_t", cache=tmp_path / "w", progress=False)
    with pytest.raises(ValueError, match="unknown model 'vit_q'"):
        weights.fetch("vit_q", cache=tmp_path / "w")


def test_doctor_says_what_is_missing_and_what_to_set(zoo, tmp_path):
    cache = tmp_path / "weights"
    table = weights.doctor(annotate="vit_b_lm", recipes=["unet", "microsam"], cache=cache)
    assert table["needed_by"].tolist() == ["annotate, microsam"] * 2
    assert table.attrs["missing"] == ["vit_b_lm", "vit_b_lm_decoder"]
    weights.fetch("vit_b_lm", cache=cache, progress=False)
    table = weights.doctor(annotate="vit_b_lm", recipes=["microsam"], cache=cache)
    assert table["verified"].all() and table.attrs["missing"] == []
    assert weights.environment_lines(table) == [f"export MICROSAM_CACHEDIR={cache}"]
    (cache / "models" / "vit_b_lm").write_bytes(b"truncated")  # damaged: listed again
    assert weights.doctor(annotate="vit_b_lm", cache=cache).attrs["missing"] == ["vit_b_lm"]
    assert weights.doctor(annotate="watershed", recipes=["unet"]).empty


def test_cellpose_model_from_the_local_server(server, monkeypatch, tmp_path):
    pytest.importorskip("cellpose")
    from cellpose import models

    root, url = server
    (root / "cpsam").write_bytes(b"cellpose weights")
    monkeypatch.setattr(models, "_MODEL_URL", url)
    table = weights.fetch("cpsam", cache=tmp_path / "w", progress=False)
    assert table[["file", "status", "verified"]].values.tolist() == [["cpsam", "downloaded",
                                                                       False]]
    assert (tmp_path / "w" / "cellpose" / "cpsam").read_bytes() == b"cellpose weights"
    doctor = weights.doctor(recipes=["cellpose"], cache=tmp_path / "w")
    assert doctor["present"].all() and doctor.attrs["environment"] == {
        "CELLPOSE_LOCAL_MODELS_PATH": str(tmp_path / "w" / "cellpose")}


def test_cli_models(zoo, tmp_path, capsys):
    from cellnb.cli import main

    cache = str(tmp_path / "w")
    assert main(["models", "doctor", "--annotate", "vit_b_lm", "--cache", cache]) == 1
    out = capsys.readouterr().out
    assert f"cellnb models fetch vit_b_lm --cache {cache}" in out
    assert main(["models", "fetch", "vit_b_lm", "--cache", cache]) == 0
    assert main(["models", "doctor", "--annotate", "vit_b_lm", "--cache", cache]) == 0
    assert f"export MICROSAM_CACHEDIR={cache}" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert isinstance(weights.required(recipes=["unet"]), pd.DataFrame)


def test_torchvision_weights_from_the_local_server(server, monkeypatch, tmp_path):
    """maskrcnn's COCO weights: planned, fetched into TORCH_HOME, checked against the sha256
    prefix in their name; a file that does not match is refused and removed."""
    import hashlib

    root, url = server
    data = b"mask r-cnn weights"
    name = f"maskrcnn_resnet50_fpn_v2_coco-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (root / name).write_bytes(data)
    monkeypatch.setitem(weights.TORCHVISION_MODELS, "maskrcnn_resnet50_fpn_v2", url + name)
    cache = tmp_path / "w"
    plan = weights.doctor(recipes=["maskrcnn"], cache=cache)
    assert plan.attrs["missing"] == [name]
    assert weights.environment_lines(plan) == [f"export TORCH_HOME={cache / 'torch'}"]
    table = weights.fetch("maskrcnn_resnet50_fpn_v2", cache=cache, progress=False)
    assert table[["file", "status", "verified"]].values.tolist() == [[name, "downloaded", True]]
    assert (cache / "torch" / "hub" / "checkpoints" / name).read_bytes() == data
    assert weights.doctor(recipes=["maskrcnn"], cache=cache).attrs["missing"] == []
    assert weights.fetch("maskrcnn_resnet50_fpn_v2", cache=cache,
                         progress=False)["status"].tolist() == ["cached"]

    bad = "maskrcnn_resnet50_fpn_v2_coco-00000000.pth"
    (root / bad).write_bytes(data)
    monkeypatch.setitem(weights.TORCHVISION_MODELS, "maskrcnn_resnet50_fpn_v2", url + bad)
    with pytest.raises(ModelNotAvailableError, match="not the 00000000"):
        weights.fetch("maskrcnn_resnet50_fpn_v2", cache=tmp_path / "v", progress=False)
    assert not (tmp_path / "v" / "torch" / "hub" / "checkpoints" / bad).exists()


def test_maskrcnn_finds_the_weights_fetch_put_under_torch_home(monkeypatch, tmp_path):
    from cellnb.recipes import maskrcnn

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / maskrcnn.coco_weights_file().name
    assert maskrcnn.coco_weights_file() == expected


def test_job_prologue_activates_this_environment_and_exports_the_variables(monkeypatch):
    import sys

    for name in weights.JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CONDA_EXE", raising=False)
    # a virtual environment, with a space in its path: quoted for the shell
    monkeypatch.setattr(sys, "prefix", "/home/me/my env")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.setenv("CELLNB_DATA_DIR", "/project/data")
    plan = pd.DataFrame()
    plan.attrs["environment"] = {"MICROSAM_CACHEDIR": "/project/weights"}
    assert weights.job_prologue(plan) == ["source '/home/me/my env/bin/activate'",
                                          "export MICROSAM_CACHEDIR=/project/weights",
                                          "export CELLNB_DATA_DIR=/project/data"]
    # the plan's value wins over this session's
    monkeypatch.setenv("MICROSAM_CACHEDIR", "/elsewhere")
    assert weights.job_prologue(plan)[1] == "export MICROSAM_CACHEDIR=/project/weights"
    assert weights.job_prologue()[1:] == ["export MICROSAM_CACHEDIR=/elsewhere",
                                          "export CELLNB_DATA_DIR=/project/data"]


def test_job_prologue_activates_a_conda_environment(monkeypatch):
    import sys

    for name in weights.JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "prefix", "/opt/conda/envs/cellnb")
    monkeypatch.setattr(sys, "base_prefix", "/opt/conda/envs/cellnb")
    monkeypatch.setenv("CONDA_EXE", "/opt/conda/bin/conda")
    monkeypatch.setenv("CONDA_PREFIX", "/opt/conda/envs/cellnb")
    assert weights.job_prologue() == ["source /opt/conda/etc/profile.d/conda.sh",
                                      "conda activate /opt/conda/envs/cellnb"]
    monkeypatch.setenv("CONDA_PREFIX", "/opt/conda")  # another environment is active: no guess
    assert weights.job_prologue() == []


def test_job_prologue_takes_a_doctor_table_only():
    with pytest.raises(TypeError, match="table from cellnb.weights.doctor"):
        weights.job_prologue({"MICROSAM_CACHEDIR": "/x"})


def test_training_plan_says_what_each_recipe_starts_from(tmp_path, monkeypatch):
    """notebook 09's plan: cached weights, else random-init stand-ins; full size needs a GPU."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no COCO weights cached
    plan = weights.training_plan(["unet", "maskrcnn"], tmp_path, gpu=False)
    assert plan.loc["unet"].to_dict() == {"starts_from": "no pretrained weights", "runs": True,
                                          "why_not": "", "base": {}}
    assert plan.loc["maskrcnn"].to_dict() == {
        "starts_from": "random-init ResNet-50", "runs": False,
        "why_not": "needs a GPU at full size",
        "base": {"model": "maskrcnn_resnet50_fpn_v2", "pretrained": False}}
    on_gpu = weights.training_plan(["maskrcnn"], tmp_path, gpu=True).loc["maskrcnn"]
    assert bool(on_gpu["runs"]) and on_gpu["why_not"] == ""
    with pytest.raises(ValueError, match=r"unknown recipe\(s\) \['unet2'\]"):
        weights.training_plan(["unet2"], tmp_path)


def test_training_plan_reduced_gives_one_stand_in_for_every_sam_recipe(tmp_path, monkeypatch):
    from cellnb.models import is_cached

    if is_cached("vit_b_lm"):
        pytest.skip("vit_b_lm is cached here: the SAM recipes start from it")
    with pytest.warns(UserWarning, match="random-init vit_mini") as said:
        plan = weights.training_plan(["samcell", "cellsam", "maskrcnn"], tmp_path, reduced=True,
                                     gpu=False)
    assert len([w for w in said if "vit_mini" in str(w.message)]) == 1
    assert plan["runs"].all() and (plan["why_not"] == "").all()
    assert plan.loc["samcell", "base"] == plan.loc["cellsam", "base"]
    assert plan.loc["samcell", "base"]["model"] == "vit_mini"
    assert (tmp_path / "vit_mini_random.pt").is_file()
    assert plan.loc["samcell", "starts_from"] == "random-init vit_mini"
    assert plan.loc["maskrcnn", "base"] == {"model": "maskrcnn_mini"}
