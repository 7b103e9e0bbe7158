"""Tests of the experts (tiny: a few digits, one or two epochs, only the last stages)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from t2v_automl.exceptions import InvalidParameterError
from t2v_automl.experts import (
    ExpertRecipe,
    ExpertTrainingError,
    build_experts,
    train_expert,
)
from t2v_automl.extractors import get_extractor, read_zoo
from t2v_automl.extractors._builders import mobilenet_weights_available
from t2v_automl.suites import source_task
from t2v_automl.tasks import Task

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not mobilenet_weights_available(),
                                 reason="the ImageNet MobileNetV2 weights are not installed")]
TINY = {"tune_from": 17, "epochs": 2, "batch_size": 16}


@pytest.fixture(scope="module")
def task() -> Task:
    return source_task("digits", "parity", max_per_class=4)


def test_source_task_is_the_training_reserve_relabelled(task: Task) -> None:
    assert task.n_images == 40 and list(task.classes) == ["even", "odd"]
    assert task.provenance["label_function"] == "parity"
    assert set(task.provenance["label_map"].values()) == {"even", "odd"}


def test_train_expert_is_deterministic_and_checkable(task: Task) -> None:
    a = train_expert(task, **TINY, random_state=3)
    b = train_expert(task, **TINY, random_state=3)
    c = train_expert(task, **TINY, random_state=4)
    sa, sb, sc = (r.network.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.classes == ["even", "odd"] and a.attempts == 1 and len(a.losses) == 2
    assert a.network.classifier[-1].out_features == 2
    assert not any(p.requires_grad for p in a.network.parameters())
    # only the stages from tune_from on moved
    base = get_extractor("mobilenet_v2")
    assert base.weights_path is not None
    ref = torch.load(base.weights_path, map_location="cpu", weights_only=True)
    assert torch.equal(sa["features.16.conv.0.0.weight"], ref["features.16.conv.0.0.weight"])
    assert not torch.equal(sa["features.17.conv.0.0.weight"],
                           ref["features.17.conv.0.0.weight"])


def test_a_diverging_expert_is_retried_then_refused(task: Task,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ExpertTrainingError, match="diverged 2 times") as info:
        train_expert(task, **TINY, lr=1e9, max_attempts=2)
    assert "attempt 1 (lr 1e+09)" in str(info.value) and "attempt 2" in str(info.value)
    assert sum("diverged" in r.message for r in caplog.records) == 2


def test_bad_settings(task: Task) -> None:
    with pytest.raises(InvalidParameterError, match="tune_from must be below"):
        train_expert(task, tune_from=19)
    with pytest.raises(InvalidParameterError, match="lr must be a positive number"):
        train_expert(task, lr=-1.0)
    with pytest.raises(InvalidParameterError, match="must be a t2v_automl Task"):
        train_expert(np.zeros((3, 8, 8)))  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="weights= is needed"):
        train_expert(task, arch="resnet18")


def test_build_experts_writes_a_zoo_and_reuses_its_checkpoints(tmp_path: Path) -> None:
    recipes = [ExpertRecipe("digits", "parity"), ExpertRecipe("digits", "digit", name="dd")]
    built = build_experts(tmp_path, recipes, max_per_class=3, **TINY)
    assert built.names == ["expert-digits-parity", "dd"] and not built.dropped
    assert not any(r["cached"] for r in built.records)
    names = read_zoo(built.zoo_file)
    assert names == built.names
    ext = get_extractor("dd")
    assert "digits labelled by digit (10 classes, 30 images)" in ext.trained_on
    images = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    assert ext.transform(images, input_size=64).shape == (4, 1280)
    record = json.loads((tmp_path / "dd.json").read_text())
    again = build_experts(tmp_path, recipes, max_per_class=3, **TINY)
    assert all(r["cached"] for r in again.records)
    assert [r["sha256"] for r in again.records] == [r["sha256"] for r in built.records]
    # a rebuild from scratch gives the same weights, bit for bit
    fresh = build_experts(tmp_path / "fresh", recipes[1:], max_per_class=3, **TINY)
    assert fresh.records[0]["sha256"] == record["sha256"]
    # other settings: trained again
    other = build_experts(tmp_path, recipes[1:], max_per_class=3, **{**TINY, "epochs": 1})
    assert not other.records[0]["cached"]


def test_build_experts_drops_a_diverging_expert(tmp_path: Path) -> None:
    built = build_experts(tmp_path, [ExpertRecipe("digits", "parity")], max_per_class=3,
                          **{**TINY, "lr": 1e9, "max_attempts": 1})
    assert built.names == [] and "diverged" in built.dropped["expert-digits-parity"]
    assert not (tmp_path / "expert-digits-parity.pt").exists()
    with pytest.raises(InvalidParameterError, match="unique"):
        build_experts(tmp_path, [ExpertRecipe("digits", "parity")] * 2)
