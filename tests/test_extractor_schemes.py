"""Candidates by name or by object: scheme names, modules, functions, zoo files, workers.

Offline: random-init timm / torchvision models saved to tmp files, a tiny Hugging Face
config saved locally; every kind in-process and under ``evaluate_zoo(n_jobs=2)`` with loky
and with Dask.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from t2v_automl.evaluation import evaluate_extractor, evaluate_zoo
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    UnknownNameError,
)
from t2v_automl.extractors import (
    ExtractorSpec,
    as_extractor,
    check_available,
    extractor_name,
    extractor_spec,
    get_extractor,
    list_extractors,
    read_zoo,
    register_extractor,
)
from t2v_automl.tasks import Task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import timm
    import torchvision

    d = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    out = {"timm": d / "r10t.pth", "tv": d / "mnv3.pth"}
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=10).state_dict(),
               out["timm"])
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=7).state_dict(), out["tv"])
    return out


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("hf") / "resnet"
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    layer_type="basic")
    transformers.ResNetModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def pair() -> tuple[Task, Task]:
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(0).permutation(np.flatnonzero(d.target < 3))
    tr, te = idx[:30], idx[30:60]
    return (Task.from_arrays(d.images[tr] / 16.0, d.target[tr], name="d012"),
            Task.from_arrays(d.images[te] / 16.0, d.target[te], name="d012-test"))


def _net(seed: int = 0, width: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def _images(n: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3, size, size), dtype=np.float32)


# ----------------------------------------------------------------------------- schemes
def test_scheme_names_resolve_lazily_everywhere(files: dict[str, Path]) -> None:
    name = f"timm:resnet10t@{files['timm']}"
    spec = check_available(name)  # resolved: the model's preprocessing, no weights read
    assert spec.input_size == 176 and spec.resizable and extractor_spec(name) is spec
    assert name in list_extractors()
    ext = get_extractor(name)
    assert ext.transform(_images(), input_size=32).shape == (3, 512)
    assert ext.has_source_head and ext.n_source_classes == 10
    assert ext.source_logits(_images(), input_size=32).shape == (3, 10)
    assert get_extractor(name) is ext and extractor_name(name) == name
    tv = get_extractor(f"torchvision:mobilenet_v3_small@{files['tv']}")
    assert tv.feature_dim == 1024 and tv.n_source_classes == 7
    assert get_extractor(f"mobilenet_v3_small@{files['tv']}").feature_dim == 1024


def test_hugging_face_scheme(hf_folder: Path) -> None:
    ext = get_extractor(f"hf:{hf_folder}")
    assert ext.transform(_images()).shape == (3, 16) and not ext.has_source_head


def test_unknown_scheme_and_name_messages() -> None:
    with pytest.raises(UnknownNameError, match="known schemes: timm, torchvision, hf"):
        get_extractor("keras:resnet18")
    with pytest.raises(UnknownNameError) as info:
        get_extractor("resnet9000")
    msg = str(info.value)
    assert "known extractors: mobilenet_v2" in msg and "timm.list_models()" in msg
    assert "torchvision.models.list_models()" in msg


# ----------------------------------------------------------------------------- objects
def test_modules_and_functions_are_extractors() -> None:
    net = _net()
    ext = get_extractor(net)
    assert ext.feature_dim == 6 and ext.name.startswith("Sequential-")
    assert get_extractor(net) is ext and extractor_name(net) == ext.name  # same object
    assert net.training and next(net.parameters()).requires_grad  # the caller's is untouched

    def grey_means(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    spec = as_extractor(grey_means, name="means", preprocessing={"input_size": 16},
                        trained_on="nothing at all")
    f = get_extractor(spec).transform(_images())
    assert f.shape == (3, 3) and extractor_spec("means").trained_on == "nothing at all"
    assert get_extractor("means").trained_on == "nothing at all"


def test_spec_defaults_and_build_returning_a_module() -> None:
    spec = ExtractorSpec(name="just_a_module", build=lambda device: _net())
    assert (spec.input_size, spec.channels, spec.resizable, spec.trained_on) == (224, 3, True, "")
    assert spec.mean == (0.485, 0.456, 0.406)
    register_extractor(spec)
    assert get_extractor("just_a_module").transform(_images(), input_size=32).shape == (3, 6)
    with pytest.raises(InvalidParameterError, match="mean must be 1"):
        ExtractorSpec(name="grey", build=lambda d: _net(), channels=1)


def test_specs_pickle_by_value_and_register_where_unpickled() -> None:
    spec = as_extractor(_net(3), name="travels", preprocessing={"input_size": 32})
    blob = pickle.dumps(spec)
    assert "travels" not in list_extractors()
    back = pickle.loads(blob)  # as in a worker: it registers itself
    assert back == spec and extractor_spec("travels") is back
    assert get_extractor("travels").feature_dim == 6
    # built-in and scheme specs travel by name (a few bytes)
    assert len(pickle.dumps(extractor_spec("raw_pixels"))) < 200
    assert pickle.loads(pickle.dumps(extractor_spec("raw_pixels"))) is extractor_spec(
        "raw_pixels")


def test_overwrite_drops_every_loaded_instance() -> None:
    def const(v: float):
        return lambda x: torch.full((x.shape[0], 2), v)

    register_extractor(ExtractorSpec(name="c", build=lambda d: const(1.0), input_size=16))
    assert get_extractor("c").transform(_images())[0, 0] == 1.0
    with pytest.raises(UnknownNameError, match="already registered"):
        register_extractor(ExtractorSpec(name="c", build=lambda d: const(2.0), input_size=16))
    register_extractor(ExtractorSpec(name="c", build=lambda d: const(2.0), input_size=16),
                       overwrite=True)
    assert get_extractor("c").transform(_images())[0, 0] == 2.0


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn, error, match", [
    (lambda x: x, InvalidParameterError, r"shape \(2, 3, 16, 16\).*expected shape \(2, d\)"),
    (lambda x: torch.full((x.shape[0], 4), float("nan")), InvalidParameterError,
     "NaN or infinite"),
    (lambda x: x.mean(dim=(2, 3)).tolist(), InvalidInputTypeError, "returned a list"),
])
def test_bad_outputs_are_caught_on_a_first_batch(fn, error, match) -> None:
    spec = as_extractor(fn, name="bad_one", preprocessing={"input_size": 16})
    with pytest.raises(error, match=match) as info:
        get_extractor(spec)
    assert "'bad_one'" in str(info.value)


def test_nan_on_real_images_is_caught_per_batch() -> None:
    def nan_on_bright(x: torch.Tensor) -> torch.Tensor:
        f = x.mean(dim=(2, 3))
        return torch.where(f > 5.0, torch.nan, f)

    ext = get_extractor(as_extractor(nan_on_bright, name="nan_late",
                                     preprocessing={"input_size": 16}))
    with pytest.raises(InvalidParameterError, match="'nan_late' returned NaN"):
        ext.transform(np.ones((2, 3, 16, 16), np.float32) * 5)


def test_missing_or_bad_preprocessing_fields() -> None:
    with pytest.raises(InvalidParameterError, match="'mine' is missing input_size"):
        as_extractor(_net(), name="mine", preprocessing={"mean": (0.5, 0.5, 0.5)})
    with pytest.raises(InvalidParameterError, match="std must be 3 positive"):
        as_extractor(_net(), name="mine", preprocessing={"input_size": 32, "std": (1, 1, 0)})
    with pytest.raises(InvalidInputTypeError, match="instance, not the class"):
        as_extractor(nn.Linear)
    with pytest.raises(InvalidInputTypeError, match="ExtractorSpec"):
        register_extractor(_net())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- zoo files
def _zoo_toml(files: dict[str, Path]) -> str:
    return f'''
[[extractors]]
name = "r10"
arch = "resnet10t"
checkpoint = "{files['timm'].name}"
trained_on = "nothing (random init)"
input_size = 32

[[extractors]]
name = "mnv3"
model = "torchvision:mobilenet_v3_small@{files['tv']}"
'''


@pytest.mark.parametrize("fmt", ["toml", "json", "yaml"])
def test_zoo_file_formats(files: dict[str, Path], fmt: str) -> None:
    import json

    import yaml

    entries = [{"name": "r10", "arch": "resnet10t", "checkpoint": files["timm"].name,
                "trained_on": "nothing (random init)", "input_size": 32},
               {"name": "mnv3", "model": f"torchvision:mobilenet_v3_small@{files['tv']}"}]
    text = {"toml": _zoo_toml(files), "json": json.dumps({"extractors": entries}, indent=1),
            "yaml": yaml.safe_dump({"extractors": entries})}[fmt]
    path = files["timm"].parent / f"zoo.{fmt}"
    path.write_text(text)
    assert read_zoo(path) == ["r10", "mnv3"]
    spec = extractor_spec("r10")
    assert spec.input_size == 32 and spec.trained_on == "nothing (random init)"
    ext = get_extractor("r10")
    assert read_zoo(path) == ["r10", "mnv3"] and get_extractor("r10") is ext  # re-read: kept


def test_zoo_file_duplicates_and_syntax_errors_give_the_line(tmp_path: Path,
                                                              files: dict[str, Path]) -> None:
    dup = tmp_path / "dup.toml"
    dup.write_text(_zoo_toml(files) + '\n[[extractors]]\nname = "r10"\nmodel = "timm:resnet10t"\n')
    with pytest.raises(InvalidParameterError, match=r"'r10' appears twice \(line 3 and line 14\)"):
        read_zoo(dup)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[extractors]]\nname = "x"\nmodel = timm:resnet10t\n')
    with pytest.raises(InvalidParameterError, match="syntax error at line 3"):
        read_zoo(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("extractors:\n  - name: x\n    model: [unclosed\n")
    with pytest.raises(InvalidParameterError, match="syntax error at line"):
        read_zoo(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"extractors": [\n {"name": "x",}\n]}')
    with pytest.raises(InvalidParameterError, match="syntax error at line 2"):
        read_zoo(bad_json)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"extractors": [{"name": "x",\n "model": "keras:resnet"}]}')
    with pytest.raises(UnknownNameError, match=r"entry 1 \(line 1\).*known schemes"):
        read_zoo(unknown)
    builtin = tmp_path / "builtin.json"
    builtin.write_text('{"extractors": [{"name": "raw_pixels", "model": "timm:resnet10t"}]}')
    with pytest.raises(UnknownNameError, match="built-in extractor's"):
        read_zoo(builtin)


# ----------------------------------------------------------------------------- workers
def _every_kind(files: dict[str, Path], hf_folder: Path | None) -> list[object]:
    def means(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    register_extractor(as_extractor(_net(1), name="registered_net",
                                    preprocessing={"input_size": 32}))
    kinds: list[object] = [
        f"timm:resnet10t@{files['timm']}",
        f"torchvision:mobilenet_v3_small@{files['tv']}",
        "registered_net",                                     # registered by name only
        as_extractor(_net(2), name="object_net", preprocessing={"input_size": 32}),
        _net(4),                                              # a plain module
        means,                                                # a plain function
        "raw_pixels",
    ]
    if hf_folder is not None:
        kinds.append(f"hf:{hf_folder}")
    return kinds


def test_every_kind_in_process(files: dict[str, Path], hf_folder: Path,
                               pair: tuple[Task, Task]) -> None:
    kinds = _every_kind(files, hf_folder)
    serial = evaluate_zoo(kinds, [pair], n_jobs=1, input_size=32)
    assert serial.extractors[2:4] == ["registered_net", "object_net"]
    assert np.isfinite(serial.scores).all() and serial.scores.shape == (1, len(kinds))
    single = evaluate_extractor(kinds[3], *pair, input_size=32)
    assert single.score == serial.scores[0, 3]


def test_every_kind_under_loky(files: dict[str, Path], pair: tuple[Task, Task]) -> None:
    """Two worker processes (the cost is their start: torch and timm imports)."""
    kinds = _every_kind(files, None)
    serial = evaluate_zoo(kinds, [pair, pair[::-1]], n_jobs=1, input_size=32)
    parallel = evaluate_zoo(kinds, [pair, pair[::-1]], n_jobs=2, input_size=32)  # loky
    np.testing.assert_array_equal(parallel.scores, serial.scores)


def test_every_kind_under_dask(files: dict[str, Path], pair: tuple[Task, Task]) -> None:
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster
    from joblib import parallel_config

    kinds = _every_kind(files, None)
    serial = evaluate_zoo(kinds, [pair, pair[::-1]], n_jobs=1, input_size=32)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster), \
            parallel_config(backend="dask"):
        dask = evaluate_zoo(kinds, [pair, pair[::-1]], input_size=32)
    np.testing.assert_array_equal(dask.scores, serial.scores)


def test_source_head_and_scheme_overrides(files: dict[str, Path]) -> None:
    net, head = _net(5), nn.Linear(6, 4)
    ext = get_extractor(as_extractor(net, name="with_head", source_head=head,
                                     preprocessing={"input_size": 32}))
    assert ext.has_source_head and ext.n_source_classes == 4
    assert ext.source_logits(_images()).shape == (3, 4)
    spec = as_extractor(f"timm:resnet10t@{files['timm']}", name="r10_small",
                        preprocessing={"input_size": 64}, trained_on="random init")
    assert (spec.input_size, spec.resizable, spec.trained_on) == (64, True, "random init")
    assert spec.mean == (0.485, 0.456, 0.406)  # the rest from timm's data config
    assert get_extractor(spec).transform(_images()).shape == (3, 512)
    with pytest.raises(InvalidInputTypeError, match="plain name 'raw_pixels'"):
        as_extractor("raw_pixels")
