"""Fixtures of the ``t2v-automl`` tests: small real data and one knowledge base.

Most commands run in a subprocess (``python -m t2v_automl``) on scikit-learn digits
written as image folders and ``.npz`` files, embedded with the ``tiny_random`` probe at
16 px, so that the whole folder stays light on a shared CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: Options that make the tiny probe fast (the knowledge base built below uses them too).
FAST = ("--probe", "tiny_random", "--image-size", "16", "--method", "montecarlo",
        "--max-images", "40")


class CLI:
    """Run ``t2v-automl`` in a subprocess and check its result."""

    fast = FAST

    @staticmethod
    def env() -> dict[str, str]:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONWARNINGS="ignore::DeprecationWarning")
        return env

    def run(self, *args: str, cwd: Path, script: str | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
        """The command's result (text output)."""
        cmd = [script] if script else [sys.executable, "-m", "t2v_automl"]
        return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=self.env(), check=False)

    @staticmethod
    def ok(res: subprocess.CompletedProcess[str]) -> None:
        assert res.returncode == 0, \
            f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"

    @staticmethod
    def input_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
        """Exit code 3, exactly one error line, no traceback; return the error line."""
        assert res.returncode == 3, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("t2v-automl: error: ")]
        assert len(errors) == 1, res.stderr
        others = [ln for ln in res.stderr.splitlines()
                  if ln.strip() and not ln.startswith("t2v-automl: ")]
        assert not others, res.stderr
        for n in needles:
            assert n in errors[0], errors[0]
        return errors[0]

    @staticmethod
    def png_size(path: Path) -> tuple[int, int]:
        with Image.open(path) as im:
            assert im.format == "PNG"
            return im.size


@pytest.fixture(scope="session")
def cli() -> CLI:
    return CLI()


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits as image folders (pair01, pair23, trio456), a task .npz and an empty folder."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("cli-data")
    d = load_digits()
    rng = np.random.default_rng(0)
    for name, classes in (("pair01", (0, 1)), ("pair23", (2, 3)), ("trio456", (4, 5, 6))):
        for c in classes:
            folder = root / name / f"digit{c}"
            folder.mkdir(parents=True)
            for i in rng.choice(np.flatnonzero(d.target == c), 12, replace=False):
                img = (d.images[i] * 255 / 16).astype(np.uint8)
                Image.fromarray(img).resize((16, 16)).save(folder / f"{i}.png")
    idx = np.flatnonzero(d.target >= 7)[:60]
    np.savez(root / "task789.npz", images=(d.images[idx] / 16).astype(np.float32),
             labels=d.target[idx])
    (root / "empty" / "cats").mkdir(parents=True)
    (root / "empty" / "cats" / "readme.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def kb_file(cli: CLI, data: Path) -> Path:
    """``knowledge build`` over 6 tasks of the mini suite, 2 extractors (extra sets too)."""
    res = cli.run("knowledge", "build", "kb.npz", "--suite", "mini", "--limit", "6",
                  "--extractors", "raw_pixels,mnist_cnn", *FAST, cwd=data)
    cli.ok(res)
    assert "wrote kb.npz: 6 tasks x 2 extractors" in res.stdout
    return data / "kb.npz"


@pytest.fixture(scope="session")
def stripes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Horizontal vs vertical stripes: images unlike the digits of the test base."""
    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(1)
    x = np.arange(16, dtype=np.float64)
    for axis, cls in ((0, "across"), (1, "down")):
        folder = root / "stripes" / cls
        folder.mkdir(parents=True)
        for i in range(12):
            wave = np.sin(rng.uniform(0.5, 1.5) * (x[:, None] if axis else x[None, :])
                          + rng.uniform(0, 6)) * np.ones((16, 16))
            img = np.stack([(wave + 1) * 127, 255 - (wave + 1) * 127, np.full((16, 16), 90)],
                           axis=-1)
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{i}.png")
    return root / "stripes"
