import numpy as np
import pytest

from cellnb import models
from cellnb.testing import random_sam


def test_random_sam_is_the_real_architecture(vit_t):
    import torch

    assert vit_t.architecture == "vit_t" and vit_t.name == "random_vit_t"
    assert vit_t.device == "cpu" and vit_t.decoder is None
    assert vit_t.weights_hash.startswith("xxh128:")
    n_params = sum(p.numel() for p in vit_t.predictor.model.parameters())
    assert 9e6 < n_params < 11e6  # MobileSAM (TinyViT encoder + SAM decoder): ~10.1 M
    image = np.random.default_rng(0).integers(0, 255, (128, 160, 3), dtype=np.uint8)
    vit_t.predictor.set_image(image)
    assert tuple(vit_t.predictor.features.shape) == (1, 256, 64, 64)
    masks, scores, logits = vit_t.predictor.predict(
        point_coords=np.array([[80.0, 64.0]]), point_labels=np.array([1]),
        multimask_output=False)
    assert masks.shape == (1, 128, 160) and logits.shape == (1, 256, 256)
    assert torch.is_tensor(vit_t.predictor.features)


def test_random_sam_is_deterministic_and_leaves_global_rng_alone():
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_sam("vit_t", seed=1)
    after = torch.rand(1)
    assert torch.equal(before, after)  # global torch RNG untouched
    b = random_sam("vit_t", seed=1)
    assert a.weights_hash == b.weights_hash
    assert random_sam("vit_t", seed=2).weights_hash != a.weights_hash


def test_random_sam_with_decoder_loads_instance_decoder(tmp_path):
    """The decoder micro_sam builds holds exactly the weights of the checkpoint's
    decoder_state (micro_sam's adapter renames the keys: compared tensor by tensor)."""
    import torch

    from cellnb.models import random_checkpoint

    model = random_sam("vit_t", seed=0, decoder=True)
    assert "with instance decoder" in repr(model)
    path = random_checkpoint("vit_t", tmp_path / "c.pt", seed=0, decoder=True)
    saved = torch.load(path, weights_only=True)["decoder_state"]
    loaded = model.decoder.state_dict()

    def tensors(state):
        return sorted((tuple(v.shape), float(v.double().sum())) for v in state.values())

    assert len(loaded) == len(saved) == 66 and tensors(loaded) == tensors(saved)


def test_random_vit_b_size():
    model = random_sam("vit_b", seed=0)
    n_params = sum(p.numel() for p in model.predictor.model.parameters())
    assert model.architecture == "vit_b" and 93e6 < n_params < 94e6  # SAM ViT-B: 93.7 M


def test_random_sam_bad_arguments():
    with pytest.raises(ValueError, match=r"`kind` must be one of \['vit_t', 'vit_b'"):
        random_sam("resnet")
    with pytest.raises(TypeError, match="`seed` must be an int"):
        random_sam("vit_t", seed=1.5)


def test_available_lists_zoo_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path))
    table = models.available()
    assert {"vit_b_lm", "vit_t_lm", "vit_b"} <= set(table["name"])
    assert not table["cached"].any()
    row = table.set_index("name").loc["vit_b_lm"]
    assert row["has_decoder"] and row["path"] == tmp_path / "models" / "vit_b_lm"
    assert models.cache_dir() == tmp_path / "models"


def test_load_cached_falls_back_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path))
    assert not models.is_cached("vit_b_lm")
    with pytest.warns(UserWarning, match="'vit_b_lm' are not in micro_sam's cache .*classical "
                                         "watershed baseline"):
        model = models.load_cached("vit_b_lm")
    assert isinstance(model, models.Watershed) and model.name == "watershed"
    with pytest.warns(UserWarning, match="random-init vit_t"):
        model = models.load_cached("vit_b_lm", fallback="random_vit_t")
    assert model.architecture == "vit_t"


def test_load_cached_downloads_when_the_zoo_answers(monkeypatch, tmp_path):
    """Online, the real weights come (micro_sam's download through `load`); offline or when
    the download fails, the fallback, with the reason and how to get the weights."""
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path))
    monkeypatch.delenv("CELLNB_DOWNLOAD", raising=False)
    asked = []
    loading = models._loading  # load_cached's module: what it calls is looked up there
    monkeypatch.setattr(loading, "zoo_reachable", lambda name, **k: asked.append(name) or False)
    with pytest.warns(UserWarning, match="model zoo cannot be reached from here: using the "
                                         "classical watershed baseline instead. To use μSAM, "
                                         "run `cellnb models fetch vit_b_lm`"):
        assert models.load_cached("vit_b_lm").name == "watershed"
    assert asked == ["vit_b_lm"]
    monkeypatch.setattr(loading, "zoo_reachable", lambda name, **k: True)
    loaded = []
    monkeypatch.setattr(loading, "load", lambda name, **k: loaded.append(name) or "the μSAM model")
    assert models.load_cached("vit_b_lm") == "the μSAM model" and loaded == ["vit_b_lm"]

    def offline(name, **k):
        raise OSError("connection reset")

    monkeypatch.setattr(loading, "load", offline)
    with pytest.warns(UserWarning, match=r"the download failed \(OSError: connection reset\)"):
        assert models.load_cached("vit_b_lm").name == "watershed"
    with pytest.warns(UserWarning, match="downloading is switched off"):
        models.load_cached("vit_b_lm", download=False)
    monkeypatch.setenv("CELLNB_DOWNLOAD", "0")  # what the test suite sets
    with pytest.warns(UserWarning, match="downloading is switched off"):
        models.load_cached("vit_b_lm")
    with pytest.raises(ValueError, match="`download` must be 'auto', True or False"):
        models.load_cached("vit_b_lm", download="yes")


def test_fingerprint_without_loading(tmp_path):
    from cellnb.testing import random_checkpoint

    path = random_checkpoint("vit_t", tmp_path / "w.pt")
    assert models.fingerprint("vit_t", checkpoint=path) == models.load(
        "vit_t", checkpoint=path, device="cpu").fingerprint
    assert models.fingerprint("vit_b_lm").startswith("xxh128:")
    with pytest.raises(ValueError, match="unknown model 'vit_q'"):
        models.fingerprint("vit_q")


def test_every_model_answers_the_protocol(vit_t):
    assert isinstance(vit_t, models.Segmenter) and vit_t.prompted
    assert isinstance(models.Watershed(), models.Segmenter)
    assert models.as_model("watershed").segment_options == models._watershed.WATERSHED_OPTIONS
    assert "embedding" in vit_t.segment_options and "nuclei" not in vit_t.segment_options


def test_load_offline_says_where_to_put_the_file(monkeypatch, tmp_path):
    import pooch

    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path))

    def refuse(self, fname, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch.Pooch, "fetch", refuse)
    with pytest.raises(models.ModelNotAvailableError,
                       match=r"'vit_b_lm' are not cached .*ConnectionError.* save it as "
                             rf"{tmp_path}/models/vit_b_lm .*MICROSAM_CACHEDIR"):
        models.load("vit_b_lm", device="cpu")


def test_load_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model 'vit_z'; micro_sam's model zoo has"):
        models.load("vit_z")
    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.pt does not exist"):
        models.load("vit_b", checkpoint=tmp_path / "nope.pt")
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="`name` must start with the architecture"):
        models.load("mymodel", checkpoint=tmp_path / "w.pt")
    with pytest.raises(TypeError, match="`name` must be a str"):
        models.load(3)


@pytest.mark.weights
def test_load_vit_b_lm_from_cache():
    model = models.load("vit_b_lm", device="cpu")
    assert model.architecture == "vit_b" and model.decoder is not None
