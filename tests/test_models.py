"""Tests of the name schemes (offline: random-init models saved to tmp files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidWeightsError,
    UnknownNameError,
    WeightsNotFoundError,
)
from t2v_automl.models import (
    IMAGENET_MEAN,
    SCHEMES,
    Backbone,
    Preprocessing,
    load_backbone,
    model_preprocessing,
    parse_model_name,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-init checkpoints: timm resnet10t (10 classes, .pth), timm mobilenetv3 (.safetensors),
    torchvision mobilenet_v3_small (7 classes)."""
    import timm
    import torchvision
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    out = {"timm": d / "r10t.pth", "safetensors": d / "mnv3.safetensors",
           "tv": d / "mnv3_tv.pth"}
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=10).state_dict(),
               out["timm"])
    save_file(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(),
              str(out["safetensors"]))
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=7).state_dict(), out["tv"])
    return out


def _x(n: int = 2, size: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, expected", [
    ("timm:resnet18", ("timm", "resnet18", None)),
    ("timm:resnet18.a1_in1k@/w/r.pth", ("timm", "resnet18.a1_in1k", "/w/r.pth")),
    ("torchvision:resnet18.IMAGENET1K_V1", ("torchvision", "resnet18", "IMAGENET1K_V1")),
    ("torchvision:resnet18@/w/r.pth", ("torchvision", "resnet18", "/w/r.pth")),
    ("hf:facebook/dinov2-small", ("hf", "facebook/dinov2-small", None)),
    ("resnet18@/w/r.pth", ("arch", "resnet18", "/w/r.pth")),
    ("mobilenet_v2", None),
])
def test_parse_model_name(name: str, expected: object) -> None:
    assert parse_model_name(name) == expected


def test_unknown_scheme_or_model_lists_schemes_and_how_to_list_models() -> None:
    assert SCHEMES == ("timm", "torchvision", "hf", "<arch>@<path>")
    with pytest.raises(UnknownNameError, match="known schemes: timm, torchvision, hf") as info:
        load_backbone("keras:resnet18")
    assert "timm.list_models" in str(info.value)
    assert "torchvision.models.list_models" in str(info.value)
    with pytest.raises(UnknownNameError, match=r"timm.list_models\('resn"):
        load_backbone("timm:resnet9000")
    with pytest.raises(UnknownNameError, match=r"torchvision.models.list_models\(\)"):
        load_backbone("torchvision:resnet9000")
    with pytest.raises(UnknownNameError, match="has no weights 'NOPE'"):
        model_preprocessing("torchvision:resnet18.NOPE")
    with pytest.raises(UnknownNameError, match="neither a torchvision model"):
        load_backbone("resnet9000@/w/r.pth")
    with pytest.raises(UnknownNameError, match="no weight file"):
        parse_model_name("timm:resnet18@")


# ----------------------------------------------------------------------------- preprocessing
def test_preprocessing_is_keyword_built_and_checked() -> None:
    p = Preprocessing(input_size=64)
    assert (p.mean, p.resizable, p.min_input_size) == (IMAGENET_MEAN, True, 32)
    with pytest.raises(TypeError):
        Preprocessing(64)  # type: ignore[misc]
    with pytest.raises(InvalidParameterError, match="std must be 3 positive"):
        Preprocessing(input_size=64, std=(0.2, 0.0, 0.2))
    with pytest.raises(InvalidParameterError, match="mean must be 3 finite"):
        Preprocessing(input_size=64, mean=(0.5, 0.5))
    with pytest.raises(InvalidParameterError, match="input_size must be a positive integer"):
        Preprocessing(input_size=0)
    with pytest.raises(InvalidParameterError, match="missing input_size"):
        Preprocessing.coerce({"mean": (0.5, 0.5, 0.5)})
    with pytest.raises(InvalidParameterError, match=r"unknown field\(s\) \['size'\]"):
        Preprocessing.coerce({"input_size": 64, "size": 3})
    with pytest.raises(InvalidInputTypeError, match="mapping with input_size"):
        Preprocessing.coerce(64)  # type: ignore[arg-type]
    assert Preprocessing.coerce({"input_size": 96}).input_size == 96


def test_preprocessing_comes_from_the_models_library() -> None:
    timm_p = model_preprocessing("timm:vit_tiny_patch16_224")
    assert (timm_p.input_size, timm_p.mean, timm_p.resizable) == (224, (0.5,) * 3, False)
    tv = model_preprocessing("torchvision:mobilenet_v3_small")
    assert (tv.input_size, tv.mean, tv.resizable) == (224, IMAGENET_MEAN, True)


# ----------------------------------------------------------------------------- loading
def test_timm_checkpoint_loads_with_its_class_count(files: dict[str, Path]) -> None:
    bb = load_backbone(f"timm:resnet10t@{files['timm']}")
    assert isinstance(bb, Backbone) and bb.weights_path == str(files["timm"])
    assert bb.module(_x()).shape == (2, 512)
    assert isinstance(bb.classifier, torch.nn.Linear) and bb.classifier.out_features == 10
    assert not bb.module.training and not any(p.requires_grad for p in bb.network.parameters())
    assert bb.preprocessing.input_size == 176 and bb.trained_on == ""
    assert len(bb.weights_sha256) == 64
    # the features feed the classifier: the logits are the network's own
    with torch.no_grad():
        np.testing.assert_allclose(bb.classifier(bb.module(_x())), bb.network(_x()), atol=1e-5)


def test_safetensors_and_arch_at_path(files: dict[str, Path]) -> None:
    bb = load_backbone(f"timm:mobilenetv3_small_050@{files['safetensors']}")
    assert bb.module(_x()).shape[0] == 2 and bb.classifier is not None
    tv = load_backbone(f"torchvision:mobilenet_v3_small@{files['tv']}")
    assert tv.module(_x()).shape == (2, 1024) and tv.classifier.out_features == 7
    with torch.no_grad():
        np.testing.assert_allclose(tv.classifier(tv.module(_x())), tv.network(_x()), atol=1e-5)
    arch = load_backbone(f"mobilenet_v3_small@{files['tv']}")
    assert arch.description == "torchvision mobilenet_v3_small"
    with torch.no_grad():
        np.testing.assert_array_equal(arch.module(_x()), tv.module(_x()))
    timm_arch = load_backbone(f"resnet10t@{files['timm']}")
    assert timm_arch.description == "timm resnet10t"


def test_mismatched_weights_name_the_file_and_keys(files: dict[str, Path]) -> None:
    with pytest.raises(InvalidWeightsError) as info:
        load_backbone(f"timm:resnet10t@{files['tv']}")
    msg = str(info.value)
    assert str(files["tv"]) in msg and "Missing key(s)" in msg and "conv1" in msg
    assert "weights_only=False" not in msg
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_backbone("timm:resnet10t@/no/such/file.pth")


def test_no_download_without_permission(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.delenv("T2V_AUTOML_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    for name in ("timm:resnet10t", "torchvision:mobilenet_v3_small"):
        with pytest.raises(WeightsNotFoundError, match="T2V_AUTOML_ALLOW_DOWNLOAD=1") as info:
            load_backbone(name)
        assert "allow_download=True" in str(info.value) and "@/path/to/weights.pth" in str(
            info.value)


def test_torch_hub_cache_is_used(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    import torchvision

    (tmp_path / "checkpoints").mkdir()
    url = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url
    state = torchvision.models.mobilenet_v3_small().state_dict()
    torch.save(state, tmp_path / "checkpoints" / url.rsplit("/", 1)[1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    bb = load_backbone("torchvision:mobilenet_v3_small")
    assert bb.classifier.out_features == 1000 and bb.trained_on == "ImageNet-1K"
    assert bb.weights_path.startswith(str(tmp_path))


def test_hugging_face_cache_is_used_by_timm(files: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    import timm

    cfg = timm.models.get_pretrained_cfg("mobilenetv3_small_050")
    repo = cfg.hf_hub_id
    snap = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    (snap / "model.safetensors").write_bytes(files["safetensors"].read_bytes())
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    bb = load_backbone("timm:mobilenetv3_small_050")
    assert bb.weights_path == str(snap / "model.safetensors")
    assert bb.trained_on == cfg.tag and bb.module(_x()).ndim == 2


def test_hugging_face_folder(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32)
    transformers.ViTModel(cfg).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(tmp_path / "vit")
    bb = load_backbone(f"hf:{tmp_path / 'vit'}")
    assert bb.preprocessing == Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                                             resizable=False, min_input_size=32)
    assert bb.module(_x(size=32)).shape == (2, 32) and bb.classifier is None
    rn = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                   layer_type="basic")
    transformers.ResNetModel(rn).save_pretrained(tmp_path / "rn")
    bb = load_backbone(f"hf:{tmp_path / 'rn'}")
    assert bb.module(_x()).shape == (2, 16) and bb.preprocessing.resizable
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_backbone(f"hf:{tmp_path / 'nothing'}")


def test_download_only_when_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import timm

    asked = []

    def fake_create(name: str, pretrained: bool = False, **kw: object) -> torch.nn.Module:
        asked.append((name, pretrained, kw))
        raise RuntimeError("download asked")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(timm, "create_model", fake_create)
    monkeypatch.setenv("T2V_AUTOML_ALLOW_DOWNLOAD", "1")
    with pytest.raises(RuntimeError, match="download asked"):
        load_backbone("timm:resnet10t")
    assert asked == [("resnet10t", True, {})]
    monkeypatch.setenv("T2V_AUTOML_ALLOW_DOWNLOAD", "0")
    with pytest.raises(WeightsNotFoundError):
        load_backbone("timm:resnet10t")
    with pytest.raises(RuntimeError, match="download asked"):
        load_backbone("timm:resnet10t", allow_download=True)
