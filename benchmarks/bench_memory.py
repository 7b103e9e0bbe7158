"""Peak memory vs. task size: embedding an image folder of 1,000 to 50,000 files (issue 8).

A task read with ``Task.from_folder`` is lazy: the files are listed and their headers
read, and only the images the embedder uses are decoded, a batch at a time. This
benchmark writes folders of synthetic 32x32 PNGs (10 classes; class-coloured stripes plus
noise) into a temporary directory (deleted afterwards), then, in a **fresh Python process
per run**, loads the probe, reads the folder and embeds it, and records the process's
peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and what reading
and embedding the folder added: the peak resident size while it ran (``VmHWM``, reset
through ``/proc/self/clear_refs`` just before) minus the resident size before (torch and
the probe loaded, one tiny warm-up task embedded).

Runs, for every folder size:

``lazy-default``
    ``Task2VecEmbedder(probe="tiny_random", image_size=32)``: the default
    ``max_images=500`` class-balanced subsample is all that is decoded.
``lazy-all``
    The same with ``max_images=None``: every image is embedded, in batches of 64 (the
    activations are recomputed in the Fisher pass once they pass the 64 MB cache).
``eager-default``
    ``Task.from_folder(..., lazy=False)``: every image decoded into one array first (how
    folders were read before), then the default embedding.
``mobilenet-lazy-default``
    The default embedder (``mobilenet_v2``, 64 px, 500 images, exact Fisher).
``dataset-lazy-default`` / ``dataset-eager-default``
    The folder as a torchvision ``ImageFolder`` (``Resize`` + ``PILToTensor``) given to
    ``Task.from_dataset(..., lazy=True)`` (labels from ``.targets``, images read when
    used) or ``lazy=False`` (every image read into one array first).

Run::

    python benchmarks/bench_memory.py                         # 1k, 5k, 20k, 50k (~15 min)
    python benchmarks/bench_memory.py --sizes 1000,5000 --out memory_quick
    python benchmarks/bench_memory.py --render                # re-write the .md from .json
    python benchmarks/bench_memory.py --runs dataset-lazy-default,dataset-eager-default \
        --out memory_dataset                                  # torch datasets only

Writes ``benchmarks/results/memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, md_table, write_results  # noqa: E402

N_CLASSES = 10
IMAGE_PX = 32
RUNS: dict[str, dict[str, Any]] = {
    "lazy-default": dict(probe="tiny_random", image_size=32, max_images=500, lazy=True),
    "lazy-all": dict(probe="tiny_random", image_size=32, max_images=None, lazy=True),
    "eager-default": dict(probe="tiny_random", image_size=32, max_images=500, lazy=False),
    "mobilenet-lazy-default": dict(probe="mobilenet_v2", image_size=64, max_images=500,
                                   lazy=True),
    # the same folder as a torchvision ImageFolder (uint8 tensors), through from_dataset
    "dataset-lazy-default": dict(probe="tiny_random", image_size=32, max_images=500,
                                 lazy=True, source="dataset"),
    "dataset-eager-default": dict(probe="tiny_random", image_size=32, max_images=500,
                                  lazy=False, source="dataset"),
}


# ----------------------------------------------------------------------------- folders
def write_pool(root: Path, n: int, seed: int = 0) -> list[list[Path]]:
    """``n`` synthetic PNGs under ``root/<class>/``; the files of each class, in order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    per_class = -(-n // N_CLASSES)
    yy, xx = np.mgrid[:IMAGE_PX, :IMAGE_PX]
    files: list[list[Path]] = []
    for c in range(N_CLASSES):
        d = root / f"class{c:02d}"
        d.mkdir(parents=True)
        colour = rng.integers(40, 216, 3)
        stripes = np.sin((xx * np.cos(c) + yy * np.sin(c)) * (0.3 + 0.1 * c))[..., None]
        base = np.clip(colour + 40 * stripes, 0, 255)
        out = []
        for i in range(per_class):
            img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            f = d / f"{i:05d}.png"
            Image.fromarray(img).save(f, compress_level=1)
            out.append(f)
        files.append(out)
    return files


def link_folder(pool: list[list[Path]], root: Path, n: int) -> Path:
    """A folder of ``n`` images: hard links to the first ``n / N_CLASSES`` of each class."""
    for c, fs in enumerate(pool):
        d = root / f"class{c:02d}"
        d.mkdir(parents=True)
        for f in fs[: n // N_CLASSES]:
            os.link(f, d / f.name)
    return root


# ----------------------------------------------------------------------------- one run
def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current resident size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (fresh) process; returns what it saw."""
    import resource

    import torch

    torch.set_num_threads(1)
    from t2v_automl.estimators import Task2VecEmbedder
    from t2v_automl.tasks import Task

    emb = Task2VecEmbedder(probe=spec["probe"], image_size=spec["image_size"],
                           max_images=spec["max_images"], device="cpu").fit()
    # warm-up on a tiny task, so that lazily imported modules and first-call allocations
    # are not counted as the folder's cost
    rng = np.random.default_rng(0)
    emb.embed([Task.from_arrays(rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                                np.arange(20) % 2)])
    _reset_peak()
    ready = _status_mb("VmRSS")
    t0 = time.perf_counter()
    if spec.get("source") == "dataset":
        from torchvision import datasets, transforms

        size = max(spec["image_size"], 32)
        ds = datasets.ImageFolder(spec["folder"], transform=transforms.Compose(
            [transforms.Resize((size, size)), transforms.PILToTensor()]))
        task = Task.from_dataset(ds, lazy=spec["lazy"])
    else:
        task = Task.from_folder(spec["folder"], image_size=max(spec["image_size"], 32),
                                lazy=spec["lazy"])
    t1 = time.perf_counter()
    [e] = emb.embed([task])
    t2 = time.perf_counter()
    peak_run = _status_mb("VmHWM")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {"n_files": task.n_images, "n_embedded": int(e.meta.n_images),
            "rss_ready_mb": ready, "peak_rss_mb": peak, "added_mb": peak_run - ready,
            "load_s": t1 - t0, "embed_s": t2 - t1,
            "finite": bool(np.isfinite(e.values).all())}


def measure(folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return its result."""
    arg = json.dumps({**spec, "folder": str(folder)})
    proc = subprocess.run([sys.executable, __file__, "--child", arg], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"run {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    rows = data["rows"]
    sizes = sorted({r["n_files"] for r in rows})
    lines = [
        "# Memory vs. task size (streaming image folders)",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPU cores, torch {m['torch']} with 1 "
        f"thread, GPU: {m['cuda'] or 'none'}; {m['date']}, commit {m.get('git_commit', '?')}. "
        f"Command: `{data['command']}`.",
        "",
        f"Folders of synthetic {IMAGE_PX}x{IMAGE_PX} PNGs, {N_CLASSES} classes, in a temporary "
        "directory. Each run is a fresh Python process: load the probe, "
        "`Task.from_folder` (or `Task.from_dataset` of a torchvision `ImageFolder` for the "
        "`dataset-*` runs), `Task2VecEmbedder.embed`. *Peak RSS* is the process's "
        "`ru_maxrss`; *added* is the peak resident size while the folder was read and "
        "embedded (`VmHWM`, reset just before) minus the resident size before it (torch and "
        "the probe loaded, a tiny warm-up task embedded): what the task cost. Seconds are "
        "wall time on a shared 2-core machine (other jobs ran alongside).",
        "",
        "## Added memory (MB) by folder size",
        "",
    ]
    by = {(r["run"], r["n_files"]): r for r in rows}
    lines.append(md_table(["run"] + [f"{n:,} files" for n in sizes],
                          [[run] + [round(by[(run, n)]["added_mb"]) if (run, n) in by else None
                                    for n in sizes] for run in RUNS if
                           any((run, n) in by for n in sizes)]))
    lines += ["", "## Every run", ""]
    lines.append(md_table(
        ["run", "files", "images embedded", "peak RSS MB", "RSS before MB", "added MB",
         "list s", "embed s"],
        [[r["run"], r["n_files"], r["n_embedded"], round(r["peak_rss_mb"]),
          round(r["rss_ready_mb"]), round(r["added_mb"]), r["load_s"], r["embed_s"]]
         for r in rows]))
    if data.get("reading"):
        lines += ["", "## Reading", "", data["reading"]]
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> str:
    """A sentence on how the added memory grows, from the measured rows."""
    parts = []
    for run in RUNS:
        rs = sorted((r for r in rows if r["run"] == run), key=lambda r: r["n_files"])
        if len(rs) >= 2:
            a, b = rs[0], rs[-1]
            parts.append(f"`{run}`: {a['added_mb']:.0f} MB at {a['n_files']:,} files, "
                         f"{b['added_mb']:.0f} MB at {b['n_files']:,}")
    return "; ".join(parts) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,20000,50000")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated run names")
    ap.add_argument("--out", default="memory")
    ap.add_argument("--tmp", default=None, help="where to write the folders (default: $TMPDIR)")
    ap.add_argument("--render", action="store_true", help="re-write the .md from the .json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.render:
        data = json.loads((RESULTS / f"{args.out}.json").read_text())
        write_results(args.out, data, render(data))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [r.strip() for r in args.runs.split(",")]
    unknown = set(runs) - set(RUNS)
    if unknown:
        ap.error(f"unknown runs {sorted(unknown)}; known: {list(RUNS)}")
    command = "python benchmarks/bench_memory.py" + (
        "" if args.sizes == ap.get_default("sizes") else f" --sizes {args.sizes}") + (
        "" if args.runs == ap.get_default("runs") else f" --runs {args.runs}") + (
        "" if args.out == ap.get_default("out") else f" --out {args.out}")
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="t2v_bench_memory_", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        pool = write_pool(tmp / "pool", max(sizes))
        print(f"wrote {max(sizes)} PNGs in {time.perf_counter() - t0:.0f} s", flush=True)
        for n in sizes:
            folder = link_folder(pool, tmp / f"n{n}", n)
            for run in runs:
                r = {"run": run, **RUNS[run], **measure(folder, RUNS[run])}
                rows.append(r)
                print(f"{run:24s} {n:6d} files: peak {r['peak_rss_mb']:7.0f} MB, added "
                      f"{r['added_mb']:6.0f} MB, list {r['load_s']:5.1f} s, embed "
                      f"{r['embed_s']:6.1f} s", flush=True)
                data = {"machine": machine(), "command": command, "rows": rows,
                        "reading": summary(rows)}
                write_results(args.out, data, render(data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
