"""Fisher throughput: images/s at 112 and 224 px, and the ratio to a plain forward+backward.

For each probe (``mobilenet_v2``, ``efficientnet_lite0``), image size and device setting,
one Fashion-MNIST task of 5 classes is embedded with the default estimator
(``method="exact"``: C - 1 backward passes for C classes; the probe's default ``skip_layers``;
every image, batch size 64) by :func:`t2v_automl.fisher.compute_task2vec`, and one plain
forward+backward pass of the same probe over the same images is timed
(:func:`t2v_automl.fisher.plain_forward_backward_seconds`, weights trainable: what one
training step over the task would cost). Both are measured side by side, interleaved,
best of 2, after a warm-up; on CUDA the clock is read after synchronising, and the peak
GPU memory of the embedding is recorded (``torch.cuda.max_memory_allocated``).

Run::

    python benchmarks/bench_fisher.py                       # CPU, 128 / 64 images (~5 min)
    python benchmarks/bench_fisher.py --device cuda --images 2048,1024 \\
        --amp off,bf16 --channels-last off,on                # on a GPU machine
    python benchmarks/bench_fisher.py --render               # re-write the .md from .json

Writes ``benchmarks/results/fisher.{json,md}``; rows of the other device kind (CPU or
CUDA) already there are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, md_table, write_results  # noqa: E402

from t2v_automl.datasets import load_pool  # noqa: E402
from t2v_automl.fisher import (  # noqa: E402
    FisherConfig,
    compute_task2vec,
    plain_forward_backward_seconds,
)
from t2v_automl.probes import get_probe, resolve_device  # noqa: E402

PROBES = ("mobilenet_v2", "efficientnet_lite0")
SIZES = (112, 224)
CLASSES = (0, 1, 2, 3, 4)
GPU_BLOCKED = (
    "**GPU figures: blocked.** No GPU machine was lent to this project's sessions (the "
    "device tool reported that this task was not drawn for one), so every row below is "
    "a CPU figure. On a machine with CUDA, `python benchmarks/bench_fisher.py --device cuda "
    "--images 2048,1024 --amp off,bf16 --channels-last off,on` adds the GPU rows to this "
    "table (and `pytest -m gpu` runs the GPU tests)."
)


def fm_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-balanced Fashion-MNIST images of :data:`CLASSES`, as task arrays."""
    from t2v_automl.tasks import Task

    fm = load_pool("fashion_mnist")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(fm.labels == c), -(-n // len(CLASSES)),
                                     replace=False) for c in CLASSES])[:n]
    t = Task.from_arrays(fm.images[np.sort(idx)], fm.labels[np.sort(idx)])
    return np.asarray(t.images), t.labels


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_one(probe_name: str, size: int, n: int, dev: torch.device, amp: bool | str,
              channels_last: bool, batch_size: int, repeats: int) -> dict[str, Any]:
    probe = get_probe(probe_name, device=dev)
    images, labels = fm_images(n)
    k = int(labels.max()) + 1
    cfg = FisherConfig(method="exact", max_images=None, image_size=size,
                       batch_size=batch_size, skip_layers=probe.default_skip_layers,
                       amp=amp, channels_last=channels_last)
    warm = min(n, 2 * k)
    compute_task2vec(probe, images[:warm], labels[:warm], k, cfg)  # warm-up
    plain_forward_backward_seconds(probe, images[:warm], size, batch_size, amp=amp,
                                   channels_last=channels_last)
    floors, embeds, parts, peaks = [], [], [], []
    for _ in range(repeats):
        floors.append(plain_forward_backward_seconds(probe, images, size, batch_size, amp=amp,
                                                     channels_last=channels_last))
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _sync(dev)
        t0 = time.perf_counter()
        res = compute_task2vec(probe, images, labels, k, cfg)
        _sync(dev)
        embeds.append(time.perf_counter() - t0)
        parts.append(res.timings)
        if dev.type == "cuda":
            peaks.append(torch.cuda.max_memory_allocated(dev) / 2**20)
    best = int(np.argmin(embeds))
    floor, embed = min(floors), embeds[best]
    return {"probe": probe_name, "image_size": size, "n_images": n, "n_classes": k,
            "skip_layers": probe.default_skip_layers, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "amp": amp, "channels_last": channels_last, "batch_size": batch_size,
            "embed_s": embed, "floor_s": floor, "images_per_s": n / embed,
            "floor_images_per_s": n / floor, "ratio": embed / floor,
            "timings": parts[best], "peak_gpu_mb": max(peaks) if peaks else None,
            "finite": bool(np.isfinite(res.values).all())}


def render(data: dict[str, Any]) -> str:
    rows = data["rows"]
    has_gpu = any(r["device"].startswith("cuda") for r in rows)
    lines = [
        "# Fisher throughput (images/s) and the ratio to a plain forward+backward pass",
        "",
    ]
    if not has_gpu:
        lines += [GPU_BLOCKED, ""]
    for kind, m in sorted(data["machines"].items()):
        lines += [
            f"{kind.upper()} rows — machine: {m['platform']}, {m['cpu_count']} CPU cores, "
            f"torch {m['torch']} with {m['torch_threads']} thread(s), GPU: "
            f"{m['cuda'] or 'none'}; {m['date']}, commit {m.get('git_commit', '?')}. "
            f"Command: `{data['commands'][kind]}`.",
            "",
        ]
    lines += [
        "Default embedder settings (`method=\"exact\"`, 4 backward passes for the 5 "
        "Fashion-MNIST classes; the probe's default `skip_layers`; every image; batch 64). "
        "*Embedding* is everything (feature pass, head fit, Fisher pass); *floor* is one "
        "plain forward+backward pass of the same probe over the same images with trainable "
        "weights. Best of 2, measured side by side. On the CPU the image counts are small "
        "(a shared 2-core machine, 1 torch thread, other jobs alongside): read the ratios, "
        "not the absolute rates.",
        "",
    ]
    lines.append(md_table(
        ["probe", "px", "device", "amp", "channels-last", "images", "skip", "embedding s",
         "images/s", "floor images/s", "embedding / floor", "features / head / Fisher s",
         "peak GPU MB"],
        [[r["probe"], r["image_size"], r["device_name"], str(r["amp"]).lower(),
          "yes" if r["channels_last"] else "no", r["n_images"], r["skip_layers"],
          r["embed_s"], r["images_per_s"], r["floor_images_per_s"], r["ratio"],
          " / ".join(f"{r['timings'].get(k, float('nan')):.2f}"
                     for k in ("features", "head", "fisher")),
          r["peak_gpu_mb"]] for r in rows]))
    if data.get("reading"):
        lines += ["", "## Reading", "", data["reading"]]
    return "\n".join(lines)


def _flags(text: str, name: str) -> list[Any]:
    out: list[Any] = []
    for v in text.split(","):
        v = v.strip().lower()
        if name == "amp":
            out.append({"off": False, "on": True, "bf16": "bf16", "fp16": "fp16"}[v])
        else:
            out.append({"off": False, "on": True}[v])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", default="128,64", help="images at 112 px, at 224 px")
    ap.add_argument("--amp", default="off", help="comma-separated: off, on, bf16, fp16")
    ap.add_argument("--channels-last", default="off", help="comma-separated: off, on")
    ap.add_argument("--probes", default=",".join(PROBES))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="fisher")
    ap.add_argument("--render", action="store_true", help="re-write the .md from the .json")
    args = ap.parse_args()
    path = RESULTS / f"{args.out}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    if args.render:
        write_results(args.out, previous, render(previous))
        return
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    counts = dict(zip(SIZES, (int(x) for x in args.images.split(",")), strict=True))
    command = "python benchmarks/bench_fisher.py" + "".join(
        f" --{k} {v}" for k, v in (("device", args.device), ("images", args.images),
                                   ("amp", args.amp), ("channels-last", args.channels_last))
        if v != ap.get_default(k.replace("-", "_")))
    kind = dev.type
    # rows of the other device kind stay (a GPU run adds to the committed CPU table)
    rows = [r for r in previous.get("rows", []) if not r["device"].startswith(kind)]
    for probe in args.probes.split(","):
        for size in SIZES:
            for amp in _flags(args.amp, "amp"):
                for cl in _flags(args.channels_last, "channels_last"):
                    r = bench_one(probe, size, counts[size], dev, amp, cl, args.batch_size,
                                  args.repeats)
                    rows.append(r)
                    print(f"{probe:20s} {size:4d} px amp={amp!s:5s} cl={cl!s:5s}: "
                          f"{r['images_per_s']:8.1f} images/s, floor "
                          f"{r['floor_images_per_s']:8.1f}, ratio {r['ratio']:.2f}", flush=True)
                    data = {**previous, "rows": rows,
                            "machines": {**previous.get("machines", {}), kind: machine()},
                            "commands": {**previous.get("commands", {}), kind: command}}
                    write_results(args.out, data, render(data))


if __name__ == "__main__":
    main()
