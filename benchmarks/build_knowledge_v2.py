"""Knowledge base v2 and the expert zoo (issue 17): one command, resumable, two cores.

What it makes (everything through the package's public functions):

1. **Experts** — :func:`t2v_automl.experts.build_experts` trains the 22 experts of
   :data:`~t2v_automl.experts.EXPERT_RECIPES` (checkpoints, records and ``zoo.toml`` under
   ``benchmarks/.cache/v2/experts/``; the weights are not committed: this phase rebuilds
   them, and the records hold each checkpoint's sha256).
2. **Evaluation** — :func:`t2v_automl.building.build_knowledge_details` with the shared
   joblib cache ``benchmarks/.cache/v2/build``:

   - the 59 tasks of suite ``"v2"`` from the three new domains x (the 13 built-in
     extractors + the experts);
   - the default suite's 54 relabel tasks and 8 subset tasks per source dataset (40,
     drawn with ``numpy.random.default_rng(0)``) x the experts; their embeddings and the
     13 built-in extractors' scores are those of the shipped v1 base
     (``reuse_embeddings=`` and a merge), whose tasks they are image for image (the
     script checks the train and test fingerprints).
     Evaluating the experts on all 189 v1 tasks would take about 2 more core-hours here.
3. **Assembly** (``--phase assemble``): reads every score and embedding from the cache
   (``evaluations="cached"``) and writes

   - ``benchmarks/.cache/v2/knowledge_v2.npz``: v1's 189 tasks + the 59 new ones x the
     13 built-in extractors (the candidate default base);
   - ``t2v_automl/data/knowledge_experts.npz``: the 138 tasks above x (13 built-in
     extractors + experts): ``KnowledgeBase.load("experts")``;
   - ``benchmarks/results/knowledge_v2_build.json``: times (per expert, per phase), file
     sizes, settings, machine.

Settings are those of the v1 base (linear head C=1, resizable networks at 64 px, test
split of subset tasks capped at 500 images) so that the merged scores are comparable.

Usage (the two ``--part`` runs of a phase can run side by side, one core each)::

    python benchmarks/build_knowledge_v2.py --phase experts --part 0/2 &
    python benchmarks/build_knowledge_v2.py --phase experts --part 1/2; wait
    python benchmarks/build_knowledge_v2.py --phase evaluate --part 0/2 &
    python benchmarks/build_knowledge_v2.py --phase evaluate --part 1/2; wait
    python benchmarks/build_knowledge_v2.py --phase assemble
    python benchmarks/build_knowledge_v2.py              # all phases in one process
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import t2v_automl
from t2v_automl.building import build_knowledge_details
from t2v_automl.experts import EXPERT_RECIPES, build_experts
from t2v_automl.extractors import list_extractors, read_zoo
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.suites import NEW_DOMAIN_POOLS, SuiteTask, make_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_correct, log, machine, save_correct  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "v2"
EXPERTS_KB = ROOT / "t2v_automl" / "data" / "knowledge_experts.npz"
RESULTS = ROOT / "benchmarks" / "results" / "knowledge_v2_build.json"
V1_CORRECT = ROOT / "benchmarks" / "results" / "knowledge_correct.npz"
V2_CORRECT = ROOT / "benchmarks" / "results" / "knowledge_v2_correct.npz"
EXPERTS_CORRECT = ROOT / "benchmarks" / "results" / "knowledge_experts_correct.npz"
SETTINGS = {"input_size": 64, "C": 1.0, "test_cap": 500}
#: Subset tasks per v1 source dataset on which the experts are evaluated.
V1_SUBSETS_PER_SOURCE = 8
BUILTIN = [n for n in list_extractors(available_only=True)]


def part_of(spec: str) -> tuple[int, int]:
    i, n = (int(v) for v in spec.split("/"))
    if not 0 <= i < n:
        raise SystemExit(f"--part must be i/n with 0 <= i < n; got {spec!r}")
    return i, n


def v1_sample(v1: KnowledgeBase) -> list[str]:
    """The v1 tasks the experts are evaluated on: every relabel task + 8 subsets/source."""
    rng = np.random.default_rng(0)
    prov = v1.provenance
    names = [n for n, p in zip(v1.task_names, prov, strict=True) if p["kind"] == "relabel"]
    for source in sorted({p["source_dataset"] for p in prov}):
        subs = [n for n, p in zip(v1.task_names, prov, strict=True)
                if p["kind"] == "subset" and p["source_dataset"] == source]
        pick = sorted(rng.choice(len(subs), min(V1_SUBSETS_PER_SOURCE, len(subs)),
                                 replace=False))
        names += [subs[i] for i in pick]
    order = {n: i for i, n in enumerate(v1.task_names)}
    return sorted(names, key=order.__getitem__)


def units(tasks: list[SuiteTask], per_image_s: float) -> list[tuple[float, list[SuiteTask]]]:
    """Tasks grouped so that a relabel pool stays in one process; estimated cost each."""
    groups: dict[str, list[SuiteTask]] = {}
    for st in tasks:
        groups.setdefault(st.provenance["pool"], []).append(st)
    out = []
    for g in groups.values():
        n_img = g[0].train.n_images + min(g[0].test.n_images, SETTINGS["test_cap"]
                                           if g[0].kind == "subset" else 10**9)
        out.append((n_img * per_image_s + 10.0 * len(g), g))
    return out


def split(items: list[tuple[float, list[SuiteTask]]], i: int, n: int) -> list[SuiteTask]:
    """Greedy balance of estimated cost over ``n`` parts; part ``i``'s tasks, in order."""
    loads = [0.0] * n
    mine: list[SuiteTask] = []
    for cost, group in sorted(items, key=lambda x: -x[0]):
        k = int(np.argmin(loads))
        loads[k] += cost
        if k == i:
            mine += group
    return mine


def phase_experts(part: tuple[int, int]) -> None:
    i, n = part
    recipes = list(EXPERT_RECIPES)[i::n]
    log(f"experts part {i}/{n}: {[r.extractor_name for r in recipes]}")
    built = build_experts(CACHE / "experts", recipes)
    for rec in built.records:
        log(f"{rec['name']}: {rec['n_images']} images, {len(rec['classes'])} classes, "
            f"{rec['seconds']:.0f}s, train accuracy {rec['train_accuracy']:.3f}, "
            f"attempts {rec['attempts']}{' (cached)' if rec['cached'] else ''}")
    for name, why in built.dropped.items():
        log(f"DROPPED {name}: {why}")


def all_experts() -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """Every expert (trained by the parts; a missing one is trained here) and the full
    ``zoo.toml``; registered in this process."""
    built = build_experts(CACHE / "experts")
    read_zoo(built.zoo_file)
    return built.names, built.records, built.dropped


def task_sets(v1: KnowledgeBase) -> tuple[list[SuiteTask], list[SuiteTask]]:
    new = make_suite("v2", pools=list(NEW_DOMAIN_POOLS))
    old = make_suite("default", tasks=v1_sample(v1))
    return new, old


def build(tasks: list[SuiteTask], names: list[str], cached: bool,
          reuse: KnowledgeBase | None) -> Any:
    return build_knowledge_details(
        tasks, names, input_size=SETTINGS["input_size"], C=SETTINGS["C"],
        test_cap=SETTINGS["test_cap"], device="cpu",
        evaluations="cached" if cached else "compute", n_jobs=1, memory=CACHE / "build",
        verbose=False, reuse_embeddings=reuse)


def phase_evaluate(part: tuple[int, int]) -> dict[str, float]:
    v1 = KnowledgeBase.default()
    experts, _, _ = all_experts()
    new, old = task_sets(v1)
    mine = split(units(new, 0.17) + units(old, 0.10), *part)
    mine_new = [st for st in new if st in mine]
    mine_old = [st for st in old if st in mine]
    log(f"evaluate part {part[0]}/{part[1]}: {len(mine_new)} new tasks x "
        f"{len(BUILTIN) + len(experts)} extractors, {len(mine_old)} v1 tasks x "
        f"{len(experts)} experts")
    t0 = time.perf_counter()
    if mine_new:
        build(mine_new, BUILTIN + experts, False, None)
    t1 = time.perf_counter()
    if mine_old:
        build(mine_old, experts, False, v1)
    t2 = time.perf_counter()
    log(f"part {part[0]}: new tasks {t1 - t0:.0f}s, v1 tasks {t2 - t1:.0f}s")
    return {"new_s": t1 - t0, "v1_s": t2 - t1}


def phase_assemble() -> None:
    v1 = KnowledgeBase.default()
    experts, records, dropped = all_experts()
    new, old = task_sets(v1)
    t0 = time.perf_counter()
    b_new = build(new, BUILTIN + experts, True, None)
    b_old = build(old, experts, True, v1)
    log(f"assembled from the cache in {time.perf_counter() - t0:.0f}s")
    # the v1 tasks are the same tasks: same training and test images
    for i, name in enumerate(b_old.knowledge.task_names):
        mine, theirs = b_old.knowledge.provenance[i], v1.provenance[v1.index(name)]
        for key in ("train_fingerprint", "test_fingerprint"):
            if mine[key] != theirs[key]:
                raise SystemExit(f"{name}: {key} differs from the v1 base's; not merging")
    kb_new = b_new.knowledge
    generic_new_build = build(new, BUILTIN, True, None)
    generic_new = generic_new_build.knowledge
    v2 = v1.subset(v1.task_names)
    if set(v1.task_names) & set(generic_new.task_names):
        raise SystemExit("the new domains' task names clash with the v1 base's")
    # disjoint tasks: the only values both bases hold are the extractors' info dicts,
    # whose key "probe" the build now calls "linear_head" (same text): take the new one
    v2.merge(generic_new, overwrite=True)
    (CACHE).mkdir(parents=True, exist_ok=True)
    v2_path = v2.save(CACHE / "knowledge_v2.npz")
    kx = v1.subset(b_old.knowledge.task_names)
    kx.merge(b_old.knowledge, overwrite=True)  # adds the expert columns; provenance of v1
    kx.merge(kb_new, overwrite=True)  # disjoint tasks (checked above); info as above
    kx_path = kx.save(EXPERTS_KB)
    log(f"knowledge v2: {len(v2)} tasks x {len(v2.extractor_names)} extractors, "
        f"{v2_path.stat().st_size / 1e3:.0f} kB; experts base: {len(kx)} tasks x "
        f"{len(kx.extractor_names)} extractors, {kx_path.stat().st_size / 1e3:.0f} kB")
    report = {
        "command": "python benchmarks/build_knowledge_v2.py",
        "date": time.strftime("%Y-%m-%d %H:%M"), "t2v_automl": t2v_automl.__version__,
        "machine": machine(), "settings": SETTINGS,
        "experts": [{k: r[k] for k in ("name", "n_images", "classes", "seconds",
                                       "train_accuracy", "attempts", "lr", "sha256")}
                    | {"n_classes": len(r["classes"])} for r in records],
        "experts_dropped": dropped,
        "expert_training_s_total": float(sum(r["seconds"] for r in records)),
        "new_tasks": len(new), "v1_tasks_with_experts": len(old),
        "new_tasks_eval_s_sum": float(b_new.eval_time.sum()),
        "new_tasks_embed_s_sum": float(kb_new.embed_time.sum()),
        "v1_tasks_expert_eval_s_sum": float(b_old.eval_time.sum()),
        "knowledge_v2": {"tasks": len(v2), "extractors": len(v2.extractor_names),
                         "bytes": v2_path.stat().st_size},
        "knowledge_experts": {"tasks": len(kx), "extractors": len(kx.extractor_names),
                              "bytes": kx_path.stat().st_size,
                              "path": str(kx_path.relative_to(ROOT))},
        "knowledge_v1_bytes": (ROOT / "t2v_automl" / "data" / "knowledge_default.npz"
                               ).stat().st_size,
    }
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    write_correct(v1, v2, kx, b_old, b_new, generic_new_build, report)
    log(f"wrote {RESULTS.relative_to(ROOT)}")


def write_correct(v1: KnowledgeBase, v2: KnowledgeBase, kx: KnowledgeBase, b_old: Any,
                  b_new: Any, b_generic: Any, report: dict[str, Any]) -> None:
    """The per-test-image correctness of both bases, for ``knowledge_report.py``."""
    meta, v1_rows = load_correct(V1_CORRECT)
    v1_build = meta["build"]
    reproduce = ("Reproduce: `python benchmarks/build_knowledge_v2.py` (all phases; see its "
                 "docstring for the two-process form), then `python "
                 "benchmarks/knowledge_report.py --correct {correct} --kb {kb} --md {md} "
                 "--json {json}`.")
    common = {"settings": {"C": SETTINGS["C"], "input_size": SETTINGS["input_size"],
                           "test_cap_subset_tasks": SETTINGS["test_cap"]},
              "machine": report["machine"], "date": report["date"],
              "t2v_automl": report["t2v_automl"]}
    v2_build = {**common, "title": "Knowledge base v2: does the choice of extractor matter?",
                "tasks_text": "suite `'v2'` (seed 0; the 189 of `'default'` and 59 from the "
                              "three new domains)",
                "notes": [f"The 189 v1 tasks' scores are the v1 build's "
                          f"({v1_build.get('date')}); the 59 new tasks' evaluation: "
                          f"{report['new_tasks_eval_s_sum'] / 60:.0f} min of summed task "
                          f"time (13 + 22 extractors)."],
                "evaluation_phase_wall_s": float("nan"), "embedding_phase_wall_s":
                    report["new_tasks_embed_s_sum"],
                "reproduce": reproduce.format(correct="benchmarks/results/knowledge_v2_correct.npz",
                                              kb="benchmarks/.cache/v2/knowledge_v2.npz",
                                              md="benchmarks/results/knowledge_v2.md",
                                              json="benchmarks/results/knowledge_v2.json")}
    x_build = {**common, "title": "The expert knowledge base: does the choice among experts "
                                  "matter?",
               "tasks_text": "suite `'v2'` (seed 0: the 59 tasks of the new domains, the 54 "
                             "relabel tasks and 40 of the subset tasks of `'default'`)",
               "notes": ["Scores of the 13 built-in extractors on the v1 tasks are the v1 "
                         "build's; the experts' evaluation on those tasks: "
                         f"{report['v1_tasks_expert_eval_s_sum'] / 60:.0f} min of summed task "
                         "time."],
               "evaluation_phase_wall_s": float("nan"),
               "embedding_phase_wall_s": report["new_tasks_embed_s_sum"],
               "reproduce": reproduce.format(
                   correct="benchmarks/results/knowledge_experts_correct.npz",
                   kb="t2v_automl/data/knowledge_experts.npz",
                   md="benchmarks/results/knowledge_experts.md",
                   json="benchmarks/results/knowledge_experts.json")}
    if meta["task_names"] != v1.task_names or meta["extractor_names"] != BUILTIN:
        raise SystemExit(f"{V1_CORRECT} does not match the v1 base's tasks and extractors")
    prov = {n: p for n, p in zip(v1.task_names, v1.provenance, strict=True)}

    def v1_row(name: str) -> dict[str, Any]:
        i = v1.index(name)
        return {**v1_rows[i], "name": name, "kind": prov[name]["kind"], "provenance": prov[name],
                "n_classes": len(prov[name]["classes"]), "n_train": prov[name]["n_train"]}

    rows = [v1_row(n) for n in v1.task_names] + list(b_generic.rows)
    save_correct(V2_CORRECT, rows, BUILTIN,
                 np.concatenate([[r["eval_time"] for r in v1_rows], b_generic.eval_time]),
                 np.concatenate([[r["extract_time_pool"] for r in v1_rows],
                                 b_generic.extract_time]), v2_build)
    assert [r["name"] for r in rows] == v2.task_names
    merged, ev, ex = [], [], []
    old_index = {r["name"]: i for i, r in enumerate(b_old.rows)}
    for name in kx.task_names[:len(b_old.rows)]:
        a, j = v1_row(name), old_index[name]
        b = b_old.rows[j]
        if not np.array_equal(a["y_test"], b["y_test"]):
            raise SystemExit(f"{name}: the v1 and expert evaluations saw other test labels")
        merged.append({**a, **{k: np.concatenate([a[k], b[k]]) for k in
                               ("scores", "stderr", "extract_time", "fit_time",
                                "input_size")},
                       "correct": np.vstack([a["correct"], b["correct"]])})
        ev.append(np.concatenate([a["eval_time"], b_old.eval_time[j]]))
        ex.append(np.concatenate([a["extract_time_pool"], b_old.extract_time[j]]))
    rows = merged + list(b_new.rows)
    ev += list(b_new.eval_time)
    ex += list(b_new.extract_time)
    assert [r["name"] for r in rows] == kx.task_names
    np.testing.assert_array_equal(np.stack([r["scores"] for r in rows]), kx.scores)
    save_correct(EXPERTS_CORRECT, rows, kx.extractor_names, np.stack(ev), np.stack(ex),
                 x_build)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", choices=("experts", "evaluate", "assemble", "all"),
                    default="all")
    ap.add_argument("--part", default="0/1", help="i/n: this process's share of a phase")
    args = ap.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    handler.addFilter(lambda r: r.module in ("building", "experts")
                      or r.levelno >= logging.WARNING)
    pkg = logging.getLogger("t2v_automl")
    pkg.addHandler(handler)
    pkg.setLevel(logging.INFO)
    torch.set_num_threads(1)
    threadpool_limits(1)
    part = part_of(args.part)
    if args.phase in ("experts", "all"):
        phase_experts(part)
    if args.phase in ("evaluate", "all"):
        phase_evaluate(part)
    if args.phase in ("assemble", "all"):
        phase_assemble()
    return 0


if __name__ == "__main__":
    sys.exit(main())
