"""``t2v-automl similarity``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from t2v_automl.cli import main


def test_similarity_table_figure_map_and_csv(cli, data: Path, tmp_path: Path) -> None:
    fig, tsne, csv = tmp_path / "sim.png", tmp_path / "map.png", tmp_path / "d.csv"
    res = cli.run("similarity", "pair01", "pair23", "trio456", "task789.npz", *cli.fast,
                  "--figure", str(fig), "--map", str(tsne), "--csv", str(csv), cwd=data)
    cli.ok(res)
    assert "4 tasks, hellinger distance" in res.stdout
    assert cli.png_size(fig) == (600, 500)
    assert cli.png_size(tsne) == (700, 600)
    rows = [ln.split(",") for ln in csv.read_text().splitlines()]
    assert rows[0] == ["task", "pair01", "pair23", "trio456", "task789"]
    D = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    assert D.shape == (4, 4) and np.allclose(np.diag(D), 0.0) and np.allclose(D, D.T)
    assert (D[~np.eye(4, dtype=bool)] > 0).all()


def test_similarity_needs_two_datasets(cli, data: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["similarity", str(data / "pair01"), *cli.fast, "--figure", ""]) == 3
    err = capsys.readouterr().err
    assert err.startswith("t2v-automl: error: similarity needs at least two datasets")
    assert len(err.strip().splitlines()) == 1
