"""``benchmarks/bench_selection_latency.py`` runs end to end on tiny knowledge bases."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_benchmark


def test_latency_benchmark_smoke(tmp_path: Path) -> None:
    mod = load_benchmark("bench_selection_latency", "bench_selection_latency")
    data = mod.main(["--sizes", "40", "80", "--repeats", "5", "--dim", "48", "--quick",
                     "--tmp", str(tmp_path)])
    rows = data["rows"]
    assert {(r["path"], r["metric"]) for r in rows} >= {
        ("selector", m) for m in mod.METRICS} | {("index", m) for m in mod.METRICS}
    assert {(r["metric"], r["dtype"]) for r in rows if r["path"] == "selector"} >= {
        (m, "float32") for m in mod.SELECTOR_FLOAT32_METRICS}
    # the index path ranks like the selector wherever both ran
    checked = [r for r in rows if "same_ranking_as_selector" in r]
    assert checked and all(r["same_top1_as_selector"] == "5/5" for r in checked)
    assert all(r["median_ms"] > 0 for r in rows)
    assert {g["to"] for g in data["growth"]} == {80}
    assert list(tmp_path.iterdir()) == []  # the memory maps are removed
    assert "known tasks" in mod.markdown(data)
