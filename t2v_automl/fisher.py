"""Task2Vec in pure torch: frozen features, head fit, per-sample diagonal Fisher.

The recipe (Achille et al., ICCV 2019): put a task's images through a fixed pre-trained
probe, fit a new linear head on its penultimate features, then estimate the diagonal of
the Fisher information of the probe's convolution and linear weights

    F = E_x E_{y ~ p(y|x)} [ (d log p(y|x) / dw)^2 ]

and average it over the weights of each filter (an output channel of a convolution, an
output unit of a linear layer). This module computes it *per sample*:
every image's own gradient is squared before averaging, so the result does not depend
on the batch size (the reference implementation squares the gradient of a batch mean,
which divides the Fisher by the batch size).

How it is fast
--------------
* One no-grad forward pass gives the penultimate features for the head fit and caches
  the activations at the start of the measured layers (``skip_layers`` stages are never
  back-propagated through).
* The weights never require gradients: autograd back-propagates activation gradients
  only, from the first measured layers on, and each layer's per-sample weight gradient
  is formed in a backward hook from its saved input and its output gradient — the work
  the ordinary weight gradient would do anyway, without summing over the batch. Where a
  layer has few positions (pixels or tokens), the per-filter squared norm is computed from
  Gram matrices instead ("ghost norm"), computed once a batch in the forward hook and
  reused by every backward pass, which never materialises the per-sample gradient.

What is measured
----------------
:func:`fisher_layers`: every ``Conv2d`` (dense, grouped, depthwise, pointwise; timm's
``Conv2dSame``) and ``Linear`` in ``stages[skip_layers:]`` (a linear layer on
``(n, ..., d)`` tokens has its per-sample gradient summed over the tokens before it is
squared). Not measured: norm layers, embeddings (a ViT's class token and position
embedding; its patch embedding is a convolution, measured when its stage is), layer
scales, biases, the probe's pooling and classifier, and the linear layers of
``nn.MultiheadAttention``, which calls their weights without running them (timm's
attention runs its ``qkv`` and ``proj`` layers: measured). A weight-standardised
convolution (timm's ``StdConv2d``) is measured with respect to the standardised weight.
A layer that runs twice in one forward pass (shared weights) is refused; one that never
runs is logged (its Fisher is 0).
* Several label draws, or the exact expectation over labels, reuse one forward pass:
  the gradient of ``-log p(y|x)`` with respect to the logits is ``p - e_y``, so each
  draw is one backward pass from the logits. The exact expectation needs ``C - 1``
  passes for ``C`` classes, not ``C``: the covariance of the one-hot label,
  ``diag(p) - p p^T``, has rank ``C - 1`` and is factored into that many vectors.

Memory and devices
------------------
Images are moved to the device one batch at a time (a lazy folder task is also decoded
one batch at a time), the Fisher is accumulated per batch, and the only whole-task
tensors are the pooled penultimate features (``n_images x feature_dim``) and, when they
fit in ``FisherConfig.activation_cache_mb``, the activations at the skip point; past
that budget they are recomputed in the Fisher pass (same values), so peak memory is
bounded by the batch size, not by the task size. On CUDA, ``amp`` runs the probe under
bf16 (or fp16) autocast and ``channels_last`` feeds it NHWC batches; the per-sample
squares and the sums stay in float32/float64. Asking for CUDA where there is none falls
back to the CPU with a :class:`~t2v_automl.exceptions.DeviceFallbackWarning`.

Nothing here mutates the probe: batch norm stays in eval mode and parameters keep
``requires_grad=False``. The hooks only count the thread that installed them, so
threads (joblib's threading backend, a dask cluster with ``processes=False``) may
embed tasks with one shared probe at the same time.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from t2v_automl._logging import logger, progress
from t2v_automl.exceptions import InvalidParameterError, InvalidTaskError, SlowEmbeddingWarning
from t2v_automl.images import check_image_size
from t2v_automl.probes import Probe, resolve_device
from t2v_automl.tasks import LazyImages

__all__ = ["FisherConfig", "FisherResult", "compute_task2vec", "balanced_subsample",
           "METHODS", "fisher_layers", "layer_filters", "EXACT_WARN_CLASSES",
           "warn_slow_exact", "plain_forward_backward_seconds"]

#: Fisher estimators. ``montecarlo``: labels drawn from the head's softmax (the paper's
#: default); ``empirical``: the true labels; ``exact``: the expectation over all labels
#: (``C - 1`` backward passes for ``C`` classes). ``domain`` and ``label_stat`` are
#: forward-only task statistics (mean features; per-feature share of variance explained
#: by the labels), kept here because they are by-products of the same feature pass.
METHODS = ("montecarlo", "empirical", "exact", "domain", "label_stat")

#: Values of ``FisherConfig.amp``: off, on (bf16 where supported, else fp16), or a dtype.
AMP_MODES = (False, True, "bf16", "fp16")

#: Above this many classes ``method="exact"`` (``C - 1`` backward passes a batch) warns.
EXACT_WARN_CLASSES = 50


@dataclass(frozen=True)
class FisherConfig:
    """Settings of one Task2Vec computation (all plain values, hashable).

    ``amp`` (one of :data:`AMP_MODES`), ``channels_last`` and ``activation_cache_mb``
    only change speed and memory: ``amp`` acts on CUDA only (it is ignored on the CPU),
    ``channels_last`` feeds the probe NHWC batches (the values may differ in the last
    bits), and the activation cache gives the same values whether it is used or not.
    ``activation_cache_mb`` (64 MB) caps the activations at the skip point kept between
    the feature pass and the Fisher pass; a task whose activations need more has them
    recomputed batch by batch instead (0 never caches). The default settings need 2 MB.
    """

    method: str = "montecarlo"
    label_samples: int = 1
    max_images: int | None = 500
    image_size: int = 64
    batch_size: int = 64
    head_epochs: int = 10
    head_lr: float = 4e-4
    head_weight_decay: float = 1e-4
    head_batch_size: int = 64
    skip_layers: int = 0
    amp: bool | str = False
    channels_last: bool = False
    seed: int = 0
    activation_cache_mb: float = 64.0


@dataclass
class FisherResult:
    """Output of :func:`compute_task2vec`."""

    values: np.ndarray
    layers: list[str]
    filters_per_layer: list[int]
    n_images: int
    head_train_accuracy: float
    timings: dict[str, float] = field(default_factory=dict)


def balanced_subsample(labels: np.ndarray, max_images: int | None, rng: np.random.Generator
                       ) -> np.ndarray:
    """Indices of at most ``max_images`` images, as class-balanced as possible, sorted."""
    n = labels.shape[0]
    if max_images is None or max_images >= n:
        return np.arange(n)
    classes = np.unique(labels)
    if max_images < 2 * classes.shape[0]:
        raise InvalidTaskError(
            f"max_images={max_images} is too small for a task of {classes.shape[0]} classes: "
            f"at least 2 images per class ({2 * classes.shape[0]}) are needed. Raise "
            "max_images."
        )
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: 0 for c in classes}
    left = max_images
    # round-robin fill: each class gets an equal share, leftovers go to larger classes
    while left > 0:
        progressed = False
        for c in classes:
            if left == 0:
                break
            if quota[c] < pools[c].shape[0]:
                quota[c] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    idx = np.concatenate([pools[c][: quota[c]] for c in classes])
    return np.sort(idx)


def fisher_layers(probe: Probe, skip_layers: int) -> list[tuple[str, nn.Module]]:
    """The layers whose Fisher is measured: every ``Conv2d`` and ``Linear`` of
    ``stages[skip_layers:]``, in module order.

    Dense, grouped, depthwise and pointwise convolutions (timm's ``Conv2dSame`` too) and
    linear layers on ``(n, d)`` or ``(n, ..., d)`` inputs (ViT and MLP blocks; the token
    axes are summed over per sample) are measured exactly. Left out: everything else —
    norm layers, embeddings (a ViT's class token and position embedding, not its patch
    convolution), layer scales, biases — and the linear layers inside
    ``nn.MultiheadAttention``, which calls their weights without running them (timm's
    attention runs its ``qkv`` and ``proj`` layers, which are measured). The probe's
    pooling and classifier are not stages and are never measured.

    Returns
    -------
    list of (name, module)
        Names as ``"stages.<i>.<path>"``.
    """
    out = []
    for i in range(skip_layers, probe.n_stages):
        inside_mha = {id(sub) for mha in probe.stages[i].modules()
                      if isinstance(mha, nn.MultiheadAttention) for sub in mha.modules()}
        for name, mod in probe.stages[i].named_modules():
            if isinstance(mod, nn.Conv2d | nn.Linear) and id(mod) not in inside_mha:
                out.append((f"stages.{i}.{name}" if name else f"stages.{i}", mod))
    return out


def layer_filters(module: nn.Module) -> int:
    """Filters of a measured layer: output channels of a convolution, output units of a
    linear layer (one embedding value each)."""
    return int(module.out_features if isinstance(module, nn.Linear) else module.out_channels)


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _autocast(device: torch.device, amp: bool | str) -> contextlib.AbstractContextManager[Any]:
    """bf16/fp16 autocast on CUDA when ``amp`` asks for it; nothing on other devices."""
    if not amp or device.type != "cuda":
        return contextlib.nullcontext()
    if amp == "fp16" or (amp is True and not torch.cuda.is_bf16_supported()):
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cuda", dtype=torch.bfloat16)


def _fit_head(feats: torch.Tensor, labels: torch.Tensor, n_classes: int, cfg: FisherConfig,
              gen: torch.Generator) -> nn.Linear:
    """Fit a linear head on cached features: Adam, class-balanced sampling (the paper's)."""
    d = feats.shape[1]
    head = nn.Linear(d, n_classes).to(feats.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.head_lr, weight_decay=cfg.head_weight_decay)
    # sampling weights on the CPU: the generator is a CPU one, whatever the device
    counts = torch.bincount(labels.cpu(), minlength=n_classes).double()
    w = (1.0 / counts)[labels.cpu()]
    n = feats.shape[0]
    for _ in range(cfg.head_epochs):
        order = torch.multinomial(w, n, replacement=True, generator=gen).to(feats.device)
        for sl in _batches(n, cfg.head_batch_size):
            b = order[sl]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(feats[b]), labels[b])
            loss.backward()
            opt.step()
    head.requires_grad_(False)
    return head


class _PerSampleFisher:
    """Hooks that accumulate per-sample, per-filter squared weight gradients.

    A forward hook on each measured layer keeps what its backward needs of the layer's
    input — the Gram matrix where the ghost norm is cheaper (computed once, reused by all
    the backward passes of the batch), else the input — and registers a tensor hook on
    the output that forms the per-sample squares from it and the output gradient. A
    measured layer whose output needs no gradient (the first ones after the skip point)
    starts the graph there, so that nothing before it is back-propagated through.
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], device: torch.device,
                 passes: int = 1) -> None:
        self.layers = layers
        self.passes = passes
        self.sums = [torch.zeros(layer_filters(m), dtype=torch.float64, device=device)
                     for _, m in layers]
        self.calls = [0] * len(layers)
        self.weight = 1.0
        self._owner = threading.get_ident()
        self._handles: list[Any] = []
        self._same_pad = [type(m).__name__ == "Conv2dSame" for _, m in layers]

    def __enter__(self) -> _PerSampleFisher:
        for i, (_, m) in enumerate(self.layers):
            self._handles.append(m.register_forward_hook(self._make_hook(i)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def check_calls(self) -> None:
        """Raise where a layer ran more than once in one forward pass (shared weights)."""
        for (name, _), k in zip(self.layers, self.calls, strict=True):
            if k > 1:
                raise InvalidParameterError(
                    f"layer {name} of the probe ran {k} times in one forward pass (its weights "
                    "are shared), so its per-sample Fisher would not be exact; use a probe "
                    "whose Conv2d/Linear layers each run once, or a skip_layers past it.")
        self.calls = [0] * len(self.layers)

    def _make_hook(self, i: int):
        def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
                 ) -> torch.Tensor | None:
            # another thread's pass through the shared probe is not ours to count
            if not torch.is_grad_enabled() or threading.get_ident() != self._owner:
                return None
            self.calls[i] += 1
            new = None
            if not out.requires_grad:  # the graph starts at this layer's output
                new = out = out.detach().requires_grad_(True).clone()
            saved = _save_input(mod, inputs[0].detach(), out.shape, self._same_pad[i],
                                self.passes)

            def grad_hook(g: torch.Tensor) -> None:
                with torch.no_grad():
                    self.sums[i] += self.weight * _per_filter_sq(mod, saved, g.detach()).sum(0)

            out.register_hook(grad_hook)
            return new

        return hook


def _conv_input(m: nn.Conv2d, x: torch.Tensor, same_pad: bool
                ) -> tuple[torch.Tensor, tuple[int, int]]:
    """A convolution's input (padded for timm's ``Conv2dSame``) and its padding."""
    kh, kw = m.kernel_size
    if same_pad:
        from timm.layers.padding import pad_same

        x = pad_same(x, [kh, kw], list(m.stride), list(m.dilation))
        padding: Any = (0, 0)
    else:
        padding = m.padding
    if isinstance(padding, str):  # "same"/"valid" string padding (odd kernels)
        padding = tuple((d * (k - 1)) // 2 for d, k in zip(m.dilation, m.kernel_size, strict=True)
                        ) if padding == "same" else (0, 0)
    return x, tuple(padding)


def _ghost_cheaper(L: int, d: int, cout: int, passes: int = 1) -> bool:
    """Whether the ghost norm costs less than forming the per-sample gradient.

    For ``L`` positions (tokens), ``D`` weights a filter and ``passes`` backward passes a
    batch: the Gram matrix once (``L²·D``) and ``L²·C_out`` a pass, against ``L·D·C_out``
    a pass. One pass gives the rule ``L²(D + C_out) < L·D·C_out``.
    """
    return L * L * (d + passes * cout) < passes * L * d * cout


def _save_input(m: nn.Module, x: torch.Tensor, out_shape: torch.Size, same_pad: bool,
                passes: int = 1) -> tuple[str, Any]:
    """What the backward hook of layer ``m`` needs of its input ``x``, by the method used.

    ``("gram", G)``: the ghost norm, ``G`` the per-sample Gram matrix of the input
    patches (``(N, L, L)``), where :func:`_ghost_cheaper` says so;
    ``("depthwise", (x, padding))``, ``("dense", (x, padding))``: the convolution tricks;
    ``("patches", u)``: the input patches ``(N, D, L)`` (pointwise and grouped
    convolutions); ``("token_gram", G)``, ``("tokens", t)``: the same for a linear layer,
    its input as ``(N, L, D)`` tokens (one token for an ``(N, D)`` input).
    """
    x = x.float()
    n = x.shape[0]
    if isinstance(m, nn.Linear):
        t = x.reshape(n, -1, x.shape[-1])  # (N, L, D): tokens
        if _ghost_cheaper(t.shape[1], t.shape[2], m.out_features, passes):
            return "token_gram", torch.bmm(t, t.transpose(1, 2))  # (N, L, L)
        return "tokens", t
    assert isinstance(m, nn.Conv2d)
    x, padding = _conv_input(m, x, same_pad)
    kh, kw = m.kernel_size
    cin, cout, groups = x.shape[1], m.out_channels, m.groups
    ho, wo = out_shape[2], out_shape[3]
    L = ho * wo
    pointwise = (kh, kw) == (1, 1) and padding == (0, 0)
    if groups == cin == cout and not pointwise:
        return "depthwise", (x, padding)
    if pointwise:
        sx = x[:, :, :: m.stride[0], :: m.stride[1]][:, :, :ho, :wo]
        u = sx.reshape(n, cin, L)  # (N, D, L) with D = cin
    else:
        u = None
    d = cin * kh * kw
    if groups == 1 and _ghost_cheaper(L, d, cout, passes):
        if u is None:
            u = F.unfold(x, (kh, kw), dilation=m.dilation, padding=padding, stride=m.stride)
        return "gram", torch.bmm(u.transpose(1, 2), u)  # (N, L, L)
    if groups == 1 and u is None:
        return "dense", (x, padding)
    if u is None:
        u = F.unfold(x, (kh, kw), dilation=m.dilation, padding=padding, stride=m.stride)
    return "patches", u


def _per_filter_sq(m: nn.Module, saved: tuple[str, Any], g: torch.Tensor) -> torch.Tensor:
    """Per sample and output filter: mean over the filter's weights of the squared gradient.

    ``saved`` is :func:`_save_input`'s; ``g`` the gradient of the layer's output. A
    filter is an output channel of a convolution, an output unit of a linear layer; a
    linear layer's per-sample gradient is summed over its tokens before squaring.

    Returns an ``(N, C_out)`` float64 tensor.
    """
    kind, data = saved
    g = g.float()
    n = g.shape[0]
    if isinstance(m, nn.Linear):
        gt = g.reshape(n, -1, g.shape[-1])  # (N, L, C_out), contiguous
        if kind == "token_gram":  # sum over tokens l, l' of g_l G_ll' g_l'
            sq = (torch.bmm(data, gt) * gt).sum(1)
        else:  # the per-sample gradient (N, C_out, D), summed over tokens
            sq = torch.bmm(gt.transpose(1, 2), data).pow(2).sum(-1)
        return sq.double() / m.in_features
    gg = g.reshape(n, g.shape[1], -1)
    per_filter = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    cout = gg.shape[1]
    if kind == "gram":
        sq = (torch.bmm(gg, data) * gg).sum(-1)  # (N, cout)
    elif kind in ("depthwise", "dense"):
        x, padding = data
        kh, kw = m.kernel_size
        cin, h, w = x.shape[1], x.shape[2], x.shape[3]
        ho, wo = g.shape[2], g.shape[3]
        if kind == "depthwise":
            # one grouped convolution of each channel with its own output gradient
            r = F.conv2d(x.reshape(1, n * cin, h, w), g.reshape(n * cout, 1, ho, wo),
                         padding=padding, dilation=m.stride, stride=m.dilation, groups=n * cin)
            sq = r[0, :, :kh, :kw].reshape(n, cout, kh * kw).pow(2).sum(-1)
            return sq.double() / per_filter
        # batch axis = input channels, groups = samples: (cin, N*cout, kh, kw)
        r = F.conv2d(x.transpose(0, 1), g.reshape(n * cout, 1, ho, wo), padding=padding,
                     dilation=m.stride, stride=m.dilation, groups=n)
        sq = r[:, :, :kh, :kw].pow(2).sum((0, 2, 3)).reshape(n, cout)
    elif m.groups == 1:
        sq = torch.bmm(gg, data.transpose(1, 2)).pow(2).sum(-1)  # (N, cout, D) -> (N, cout)
    else:
        groups, L = m.groups, gg.shape[2]
        ug = data.reshape(n, groups, data.shape[1] // groups, L)
        ggg = gg.reshape(n, groups, cout // groups, L)
        per = torch.einsum("ngol,ngdl->ngod", ggg, ug)
        sq = per.pow(2).sum(-1).reshape(n, cout)
    return sq.double() / per_filter


def _exact_factors(p: torch.Tensor) -> list[torch.Tensor]:
    """Logit-gradient vectors whose squared back-propagations sum to the exact Fisher.

    The expectation over labels of the squared per-sample gradient of ``log p(y|x)`` is
    ``diag(J^T M J)`` with ``J`` the Jacobian of the logits and ``M = diag(p) - p p^T``
    (the covariance of the one-hot label). ``M`` has rank ``C - 1`` (its rows sum to
    zero), so writing it as ``L L^T`` with ``C - 1`` columns, from its eigendecomposition,
    gives the same expectation from ``C - 1`` backward passes, ``J^T l_j`` each, instead
    of one per class: half the passes for two classes.

    Parameters
    ----------
    p : Tensor of shape (N, C), float64
        The head's softmax probabilities.

    Returns
    -------
    list of C - 1 tensors of shape (N, C)
    """
    m = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    evals, evecs = torch.linalg.eigh(m)  # ascending; evals[:, 0] is the null direction
    scaled = evecs * evals.clamp_min(0).sqrt().unsqueeze(1)
    return [scaled[:, :, j] for j in range(p.shape[1] - 1, 0, -1)]


def _label_stat(feats: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per feature: share of its variance explained by the labels (between / total)."""
    f = feats.double()
    mu = f.mean(0)
    total = ((f - mu) ** 2).mean(0)
    between = torch.zeros_like(mu)
    n = f.shape[0]
    for c in range(n_classes):
        sel = labels == c
        k = int(sel.sum())
        if k:
            between += (k / n) * (f[sel].mean(0) - mu) ** 2
    return between / (total + 1e-12)


def warn_slow_exact(n_classes: int, n_images: int, batch_size: int, *,
                    task_name: str | None = None, stacklevel: int = 2) -> bool:
    """Warn (and log) when the exact Fisher of a task takes many backward passes.

    ``method="exact"`` takes ``C - 1`` backward passes a batch for ``C`` classes: above
    :data:`EXACT_WARN_CLASSES` classes that dominates the embedding's cost (200 classes x
    2 images: about 140 s on a laptop CPU against a few seconds for ``"montecarlo"``).

    Parameters
    ----------
    n_classes : int
        Classes of the task.
    n_images : int
        Images the Fisher pass will use (after ``max_images``).
    batch_size : int
        The Fisher pass's batch size.
    task_name : str, optional
        Named in the message.
    stacklevel : int, default=2
        Passed to :func:`warnings.warn`.

    Returns
    -------
    bool
        Whether it warned (a :class:`~t2v_automl.exceptions.SlowEmbeddingWarning` and a
        log warning).
    """
    if n_classes <= EXACT_WARN_CLASSES:
        return False
    passes = n_classes - 1
    total = passes * -(-int(n_images) // max(1, int(batch_size)))
    msg = (f"method='exact' on {'task ' + repr(task_name) if task_name else 'a task'} of "
           f"{n_classes} classes takes {passes} backward passes a batch ({total:,} for its "
           f"{n_images:,} images), about {passes}x the Fisher pass of method='montecarlo' "
           f"with label_samples=1. Above {EXACT_WARN_CLASSES} classes use "
           "method='montecarlo' (label_samples=k: k passes a batch, noisier), or raise "
           "skip_layers.")
    logger.warning("%s", msg)
    warnings.warn(msg, SlowEmbeddingWarning, stacklevel=stacklevel + 1)
    return True


def _check_config(probe: Probe, cfg: FisherConfig) -> None:
    if cfg.method not in METHODS:
        raise InvalidTaskError(f"unknown method {cfg.method!r}; expected one of {METHODS}.")
    if not probe.resizable and cfg.image_size != probe.input_size:
        raise InvalidTaskError(
            f"image_size={cfg.image_size} does not fit probe {probe.name!r}: it takes only "
            f"{probe.input_size} px images (a fixed position embedding). Set image_size="
            f"{probe.input_size}, or use a probe made for that size."
        )
    if cfg.image_size < probe.min_input_size:
        raise InvalidTaskError(
            f"image_size={cfg.image_size} is too small for probe {probe.name!r}: it needs at "
            f"least {probe.min_input_size} px. Raise image_size."
        )
    check_image_size(cfg.image_size, cfg.max_images, of=f"a task at max_images={cfg.max_images}")
    if not 0 <= cfg.skip_layers < probe.n_stages:
        raise InvalidTaskError(
            f"skip_layers={cfg.skip_layers} is out of range for probe {probe.name!r}, which "
            f"has {probe.n_stages} stages; expected 0 <= skip_layers < {probe.n_stages}."
        )
    if cfg.label_samples < 1:
        raise InvalidTaskError(f"label_samples must be >= 1; got {cfg.label_samples}.")
    if cfg.method not in ("domain", "label_stat") and not fisher_layers(probe, cfg.skip_layers):
        raise InvalidTaskError(
            f"probe {probe.name!r} has no Conv2d or Linear layer in stages[{cfg.skip_layers}:] "
            "to measure the Fisher of; lower skip_layers.")
    if not any(cfg.amp is m or (isinstance(m, str) and cfg.amp == m) for m in AMP_MODES):
        raise InvalidParameterError(
            f"amp must be False, True, 'bf16' or 'fp16'; got {cfg.amp!r}.")
    if not cfg.activation_cache_mb >= 0:
        raise InvalidParameterError(
            f"activation_cache_mb must be >= 0 (0: never cache); got {cfg.activation_cache_mb!r}.")


def _task_device(probe: Probe, device: str | torch.device | None) -> torch.device:
    """The device to run on: ``device`` (CUDA falls back to the CPU) or the probe's."""
    if device is None:
        return probe.device
    dev, home = resolve_device(device), probe.device
    if dev.type != home.type or None not in (dev.index, home.index) and dev.index != home.index:
        raise InvalidParameterError(
            f"the probe {probe.name!r} is on {probe.device} but device={str(device)!r} was "
            f"asked for (resolved to {dev}); load the probe there with "
            f"get_probe({probe.name!r}, device={str(dev)!r}), or leave device=None."
        )
    return probe.device


def _input_batch(probe: Probe, images: np.ndarray | LazyImages, rows: np.ndarray,
                 cfg: FisherConfig, dev: torch.device) -> torch.Tensor:
    """Decode (lazy tasks), move and preprocess the images at ``rows``."""
    xb = torch.as_tensor(images[rows])
    if dev.type == "cuda":
        xb = xb.pin_memory().to(dev, non_blocking=True)
    else:
        xb = xb.to(dev)
    xb = probe.preprocess(xb, cfg.image_size)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return xb.contiguous(memory_format=fmt)


def compute_task2vec(probe: Probe, images: np.ndarray | LazyImages, labels: np.ndarray,
                     n_classes: int, cfg: FisherConfig, *,
                     device: str | torch.device | None = None, verbose: int = 0,
                     warn_slow: bool = True) -> FisherResult:
    """Embed one task with a probe.

    Parameters
    ----------
    probe : Probe
        A loaded probe (see :func:`t2v_automl.probes.get_probe`); it is not modified.
    images : ndarray or LazyImages of shape (n, 3, H, W), float32 in [0, 1]
        Only the class-balanced subsample is read, one batch at a time.
    labels : ndarray of shape (n,), int in ``0..n_classes-1``
    n_classes : int
    cfg : FisherConfig
    device : str or torch.device, optional
        Defaults to the probe's device. It must be the probe's device, except that
        ``"cuda"`` where there is no CUDA falls back to the CPU with a
        :class:`~t2v_automl.exceptions.DeviceFallbackWarning`.
    verbose : int
        Progress bars when > 0.
    warn_slow : bool, default=True
        Warn (:class:`~t2v_automl.exceptions.SlowEmbeddingWarning` and the log) when
        ``method="exact"`` meets more than :data:`EXACT_WARN_CLASSES` classes
        (:func:`warn_slow_exact`); ``Task2VecEmbedder`` warns in the calling process
        instead, so that workers stay quiet.

    Returns
    -------
    FisherResult

    Raises
    ------
    InvalidTaskError
        Bad method, image size, layer set or label samples, or a subsample of one class.
    InvalidParameterError
        Bad ``amp`` or ``activation_cache_mb``, an ``image_size`` above
        :data:`~t2v_automl.images.MAX_IMAGE_SIZE` (1024) px, or a device other than the
        probe's.
    """
    _check_config(probe, cfg)
    dev = _task_device(probe, device)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    idx = balanced_subsample(labels, cfg.max_images, rng)
    y_np = labels[idx]
    if np.unique(y_np).shape[0] < 2:
        raise InvalidTaskError("after subsampling to max_images, all labels fall in one class.")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    y = torch.as_tensor(y_np, dtype=torch.long, device=dev)
    n = int(idx.shape[0])
    if warn_slow and cfg.method == "exact":
        warn_slow_exact(n_classes, n, cfg.batch_size, stacklevel=2)
    batches = list(_batches(n, cfg.batch_size))
    fisher_pass = cfg.method not in ("domain", "label_stat")

    # 1. one no-grad pass: activations at the skip point (cached while they fit in the
    #    budget) + penultimate features
    cached: list[torch.Tensor | None] | None = [] if fisher_pass else None
    feats: list[torch.Tensor] = []
    with torch.no_grad(), _autocast(dev, cfg.amp):
        for sl in progress(batches, verbose=verbose, desc="probe features"):
            a = probe.run_stages(_input_batch(probe, images, idx[sl], cfg, dev), 0,
                                 cfg.skip_layers)
            if cached is not None:
                if not cached and a.element_size() * a[0].numel() * n \
                        > cfg.activation_cache_mb * 2**20:
                    logger.info("task2vec: activations of %d images exceed the %g MB cache; "
                                "recomputing them in the Fisher pass", n,
                                cfg.activation_cache_mb)
                    cached = None
                else:
                    cached.append(a)
            feats.append(probe.pool(probe.run_stages(a, cfg.skip_layers)).float())
            del a
    f = torch.cat(feats)
    del feats
    timings["features"] = time.perf_counter() - t0

    if cfg.method == "domain":
        vals = f.double().mean(0)
        return FisherResult(vals.cpu().numpy(), ["penultimate"], [f.shape[1]], n, float("nan"),
                            timings)
    if cfg.method == "label_stat":
        vals = _label_stat(f, y, n_classes)
        return FisherResult(vals.cpu().numpy(), ["penultimate"], [f.shape[1]], n, float("nan"),
                            timings)

    # 2. the head
    t1 = time.perf_counter()
    with torch.enable_grad():
        head = _fit_head(f, y, n_classes, cfg, gen)
    with torch.no_grad():
        train_acc = float((head(f).argmax(1) == y).float().mean())
    timings["head"] = time.perf_counter() - t1

    # 3. the Fisher, one batch at a time
    t2 = time.perf_counter()
    layers = fisher_layers(probe, cfg.skip_layers)
    passes = {"montecarlo": cfg.label_samples, "empirical": 1}.get(cfg.method, n_classes - 1)
    acc = _PerSampleFisher(layers, dev, passes)
    ran = [False] * len(layers)
    eye = torch.eye(n_classes, device=dev, dtype=torch.float64)
    with acc, torch.enable_grad():
        for bi, sl in enumerate(progress(batches, verbose=verbose, desc="Fisher")):
            cached_a = None if cached is None else cached[bi]
            if cached is not None and cached_a is not None:
                a = cached_a
                cached[bi] = None  # free each batch's cache once it is used
            else:
                with torch.no_grad(), _autocast(dev, cfg.amp):
                    a = probe.run_stages(_input_batch(probe, images, idx[sl], cfg, dev), 0,
                                         cfg.skip_layers)
            # no gradient is asked of ``a``: the graph starts at the measured layers
            with _autocast(dev, cfg.amp):
                logits = head(probe.pool(probe.run_stages(a.detach(), cfg.skip_layers)).float())
            ran = [r or k > 0 for r, k in zip(ran, acc.calls, strict=True)]
            acc.check_calls()
            p = torch.softmax(logits.detach().double(), dim=1)
            yb = y[sl]
            grads: list[tuple[torch.Tensor, float]] = []
            if cfg.method == "montecarlo":
                m = cfg.label_samples
                for _ in range(m):
                    ys = torch.multinomial(p.cpu(), 1, replacement=True, generator=gen)[:, 0]
                    grads.append((p - eye[ys.to(dev)], 1.0 / m))
            elif cfg.method == "empirical":
                grads.append((p - eye[yb], 1.0))
            else:  # exact expectation over labels: C - 1 passes (see _exact_factors)
                grads.extend((v, 1.0) for v in _exact_factors(p))
            for j, (dlogits, w) in enumerate(grads):
                acc.weight = w
                logits.backward(dlogits.to(logits.dtype), retain_graph=j < len(grads) - 1)
            del a, logits, grads
    vals = torch.cat(acc.sums) / n
    timings["fisher"] = time.perf_counter() - t2
    idle = [nm for (nm, _), r in zip(layers, ran, strict=True) if not r]
    if idle:
        logger.warning("task2vec: probe %r: layers %s never ran in its forward pass (their "
                       "weights are used another way); their Fisher is 0", probe.name, idle)
    logger.debug("task2vec: %d images, %d layers on %s, timings %s", n, len(layers), dev,
                 timings)
    return FisherResult(vals.cpu().numpy(), [nm for nm, _ in layers],
                        [layer_filters(m) for _, m in layers], n, train_acc, timings)


def plain_forward_backward_seconds(probe: Probe, images: np.ndarray | LazyImages,
                                   image_size: int, batch_size: int = 64,
                                   device: str | torch.device | None = None, *,
                                   amp: bool | str = False, channels_last: bool = False
                                   ) -> float:
    """Wall time of one plain forward+backward pass over ``images`` (the physical floor).

    A copy of the probe (stages, pooling, network) is made so that the probe itself keeps
    frozen weights.
    The weights require gradients, as in training; ``amp`` and ``channels_last`` act as
    in :class:`FisherConfig`, so that the floor is measured like the embedding. On CUDA
    the clock is read after synchronising the device.

    Parameters
    ----------
    probe : Probe
    images : ndarray or LazyImages of shape (n, 3, H, W), float32 in [0, 1]
    image_size : int
    batch_size : int, default=64
    device : str or torch.device, optional
        Defaults to the probe's device (see :func:`compute_task2vec`).
    amp : bool or {"bf16", "fp16"}, default=False
    channels_last : bool, default=False

    Returns
    -------
    float
        Seconds.
    """
    import copy

    cfg = FisherConfig(image_size=int(image_size), batch_size=int(batch_size), amp=amp,
                       channels_last=channels_last)
    dev = _task_device(probe, device)
    twin = copy.deepcopy(probe)
    for part in (twin.stages, twin.pooling, twin.network):
        if part is not None:
            part.requires_grad_(True)
    head = nn.Linear(probe.feature_dim, 10).to(dev)
    rows = np.arange(len(images))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for sl in _batches(rows.shape[0], batch_size):
        xb = _input_batch(probe, images, rows[sl], cfg, dev)
        with _autocast(dev, amp):
            loss = head(twin.pool(twin.run_stages(xb)).float()).logsumexp(1).sum()
        loss.backward()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0
