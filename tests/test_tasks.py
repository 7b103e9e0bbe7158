from __future__ import annotations

import numpy as np
import pytest
import torch

from t2v_automl.exceptions import (
    ImageFolderError,
    InvalidInputTypeError,
    InvalidTaskError,
    T2VError,
)
from t2v_automl.tasks import Task, as_task


def _imgs(n=8, shape=(10, 12), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape))).astype(dtype)


@pytest.mark.parametrize("shape", [(8, 10, 12), (8, 10, 12, 1), (8, 10, 12, 3), (8, 3, 10, 12),
                                   (8, 1, 10, 12), (8, 10, 12, 4)])
def test_layouts_become_nchw_rgb(shape):
    x = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    t = Task.from_arrays(x, [0, 1] * 4)
    assert t.images.shape == (8, 3, 10, 12)
    assert t.images.dtype == np.float32
    assert 0.0 <= t.images.min() and t.images.max() <= 1.0


def test_grey_is_repeated_and_values_scaled():
    x = np.full((4, 5, 5), 255, dtype=np.uint8)
    t = Task.from_arrays(x, [0, 0, 1, 1])
    assert np.all(t.images == 1.0)


def test_rgba_composited_onto_white():
    x = np.zeros((4, 2, 2, 4), dtype=np.uint8)  # black, fully transparent
    t = Task.from_arrays(x, [0, 0, 1, 1])
    assert np.allclose(t.images, 1.0)


def test_string_and_noncontiguous_labels():
    t = Task.from_arrays(_imgs(6), ["cat", "dog", "cat", "emu", "dog", "emu"])
    assert t.classes.tolist() == ["cat", "dog", "emu"]
    assert t.labels.tolist() == [0, 1, 0, 2, 1, 2]
    t2 = Task.from_arrays(_imgs(4), [7, 42, 7, 42])
    assert t2.labels.tolist() == [0, 1, 0, 1] and t2.classes.tolist() == [7, 42]


def test_fingerprint_stable_and_content_sensitive():
    a = Task.from_arrays(_imgs(), [0, 1] * 4, name="a")
    b = Task.from_arrays(_imgs(), [0, 1] * 4, name="b")
    c = Task.from_arrays(_imgs(seed=1), [0, 1] * 4)
    assert a.fingerprint == b.fingerprint  # name is not content
    assert a.fingerprint != c.fingerprint
    assert a.fingerprint != Task.from_arrays(_imgs(), [1, 0] * 4).fingerprint
    assert len(a.fingerprint) == 64


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (np.zeros((0, 4, 4), np.uint8), [], "empty"),
        (_imgs(4), [1, 1, 1, 1], "at least 2 classes"),
        (_imgs(5), [0, 0, 1, 1, 2], "at least 2 images"),
        (_imgs(4), [0, 1, 0], "different lengths"),
        (np.full((4, 3, 3), np.nan, np.float32), [0, 1, 0, 1], "NaN or infinite"),
        (np.full((4, 3, 3), np.inf, np.float32), [0, 1, 0, 1], "NaN or infinite"),
        (np.zeros(4), [0, 1, 0, 1], "3 dimensions"),
        (np.zeros((4, 1, 3, 3, 3)), [0, 1, 0, 1], "3 dimensions"),
        (np.full((4, 3, 3), 16.0), [0, 1, 0, 1], r"\[0, 1\]"),
        (np.zeros((4, 5, 6, 7)), [0, 1, 0, 1], "channel axis"),
    ],
)
def test_bad_input_gives_clear_error(images, labels, match):
    with pytest.raises(InvalidTaskError, match=match) as exc:
        Task.from_arrays(images, labels)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, T2VError)


def test_from_dataset_tensors():
    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((1, 4, 4), i / 10), torch.tensor(i % 2)

    t = Task.from_dataset(DS(), name="ds")
    assert t.images.shape == (6, 3, 4, 4) and t.n_classes == 2
    assert as_task(DS()).n_images == 6


def test_as_task_pairs_and_bad_types():
    t = as_task((_imgs(4), [0, 1, 0, 1]), name="p")
    assert t.name == "p"
    with pytest.raises(InvalidInputTypeError, match="cannot make a task"):
        as_task(42)


def _write_folder(root, n=3, size=(20, 14)):
    from PIL import Image

    for c, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, color).save(root / c / f"{i}.png")


def test_folder_loads_and_resizes(tmp_path):
    _write_folder(tmp_path)
    t = Task.from_folder(tmp_path, image_size=16)
    assert t.images.shape == (6, 3, 16, 16)
    assert t.classes.tolist() == ["blue", "red"]
    assert t.provenance["source"] == "folder"
    assert np.allclose(t.images[t.labels == 1][:, 0], 1.0, atol=1e-2)  # red channel


def test_folder_skips_bad_files_with_warning(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "red" / "notes.txt").write_text("hello")
    (tmp_path / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="broken.png"):
        t = Task.from_folder(tmp_path, image_size=8)
    assert t.n_images == 6
    with pytest.raises(ImageFolderError, match="broken.png"):
        Task.from_folder(tmp_path, image_size=8, on_bad_image="fail")
    with pytest.warns(DeprecationWarning, match="on_bad_image"), \
            pytest.raises(ImageFolderError, match="broken.png"):
        Task.from_folder(tmp_path, image_size=8, on_error="raise")  # the old name still works


def test_folder_rejects_decompression_bomb(tmp_path, monkeypatch):
    import t2v_automl.images as images_mod

    _write_folder(tmp_path)
    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageFolderError, match="decompression bomb"):
        Task.from_folder(tmp_path, image_size=8, on_bad_image="fail")


def test_folder_errors(tmp_path):
    with pytest.raises(ImageFolderError, match="does not exist"):
        Task.from_folder(tmp_path / "nope")
    with pytest.raises(ImageFolderError, match="no class sub-folders"):
        Task.from_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.warns(UserWarning), pytest.raises(ImageFolderError, match="no readable images"):
        Task.from_folder(tmp_path)


def test_npz_path(tmp_path):
    p = tmp_path / "t.npz"
    np.savez(p, images=_imgs(4), labels=np.array([0, 1, 0, 1]))
    t = as_task(p)
    assert t.name == "t" and t.n_images == 4
    np.savez(tmp_path / "bad.npz", x=_imgs(4))
    with pytest.raises(InvalidTaskError, match="'images' and 'labels'"):
        as_task(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- lazy folders
def _write_random_folder(root, n_per_class=5, size=(11, 9)):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            mode = "RGBA" if i == 0 else "L" if i == 1 else "RGB"
            shape = (*size[::-1], {"RGBA": 4, "L": 1, "RGB": 3}[mode])
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(root / c / f"{i}.png")


def test_lazy_folder_equals_eager_bit_for_bit(tmp_path):
    from t2v_automl.tasks import LazyImages

    _write_random_folder(tmp_path)
    lazy = Task.from_folder(tmp_path, image_size=16)
    eager = Task.from_folder(tmp_path, image_size=16, lazy=False)
    assert lazy.is_lazy and not eager.is_lazy and isinstance(lazy.images, LazyImages)
    assert lazy.images.shape == eager.images.shape == (15, 3, 16, 16)
    assert lazy.images.dtype == np.float32 and lazy.image_shape == (3, 16, 16)
    assert np.array_equal(lazy.labels, eager.labels)
    assert np.array_equal(lazy.classes, eager.classes)
    full = eager.images
    assert np.array_equal(np.asarray(lazy.images), full)
    mask = lazy.labels == 1
    for key in (3, -1, slice(2, 9, 3), np.array([4, 0, 4]), [1, 2], mask, (mask, 0),
                (slice(None), 1, slice(0, 4)), (2, 0, 5), ...):
        assert np.array_equal(lazy.images[key], full[key]), key
    assert np.array_equal(np.stack(list(lazy.images)), full)
    with pytest.raises(IndexError):
        lazy.images[15]


def test_lazy_folder_subset_pickle_and_fingerprint(tmp_path):
    import pickle

    _write_random_folder(tmp_path)
    t = Task.from_folder(tmp_path, image_size=16)
    sub = t.subset(np.flatnonzero(t.labels != 0))
    assert sub.is_lazy and sub.n_classes == 2 and sub.classes.tolist() == ["b", "c"]
    assert np.array_equal(np.asarray(sub.images), np.asarray(t.images)[t.labels != 0])
    back = pickle.loads(pickle.dumps(t))
    assert len(pickle.dumps(t)) < 10_000  # file names, not pixels
    assert back.fingerprint == t.fingerprint == Task.from_folder(tmp_path, image_size=16
                                                                 ).fingerprint
    assert Task.from_folder(tmp_path, image_size=8).fingerprint != t.fingerprint
    (tmp_path / "a" / "3.png").write_bytes((tmp_path / "a" / "4.png").read_bytes())
    assert Task.from_folder(tmp_path, image_size=16).fingerprint != t.fingerprint


def test_lazy_folder_decodes_only_what_is_used(tmp_path, monkeypatch):
    import t2v_automl.tasks as tasks_mod
    from t2v_automl.estimators import Task2VecEmbedder

    _write_random_folder(tmp_path, n_per_class=20)
    decoded = []
    real = tasks_mod.read_image

    def spy(f, size, Image, decode=True, notes=None):
        if decode:
            decoded.append(f.name)
        return real(f, size, Image, decode, notes)

    monkeypatch.setattr(tasks_mod, "read_image", spy)
    t = Task.from_folder(tmp_path, image_size=16)
    assert decoded == []  # listing reads headers only
    emb = Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=12, head_epochs=1,
                           batch_size=5).fit()
    emb.transform([t])
    assert len(decoded) == 12  # the class-balanced subsample, once (activations cached)


def test_lazy_folder_file_broken_after_listing(tmp_path):
    _write_random_folder(tmp_path)
    t = Task.from_folder(tmp_path, image_size=8)
    (tmp_path / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageFolderError, match=r"2\.png.*lazy=False"):
        t.images[np.flatnonzero(t.labels == 1)]
    assert t.images[0].shape == (3, 8, 8)  # the other files still work


def test_extractors_read_lazy_images_by_batch(tmp_path):
    from t2v_automl.extractors import get_extractor

    _write_random_folder(tmp_path)
    lazy = Task.from_folder(tmp_path, image_size=16)
    eager = Task.from_folder(tmp_path, image_size=16, lazy=False)
    ext = get_extractor("raw_pixels")
    assert np.array_equal(ext.transform(lazy.images, batch_size=4),
                          ext.transform(eager.images, batch_size=4))


class _CountingDataset(torch.utils.data.Dataset):
    """Items are deterministic uint8 HWC arrays; counts the reads."""

    def __init__(self, n=30, size=12, targets=False, odd_item=None):
        rng = np.random.default_rng(5)
        self.x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.y = [f"c{i % 3}" for i in range(n)]
        if targets:
            self.targets = list(self.y)
        self.odd_item = odd_item
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        if i == self.odd_item:
            return self.x[i][:-1], self.y[i]
        return self.x[i], self.y[i]


def test_lazy_dataset_equals_eager_bit_for_bit():
    import pickle

    from t2v_automl.estimators import Task2VecEmbedder
    from t2v_automl.tasks import LazyDatasetImages

    ds = _CountingDataset()
    eager = Task.from_dataset(ds, name="ds")
    lazy = Task.from_dataset(ds, name="ds", lazy=True)
    assert isinstance(lazy.images, LazyDatasetImages) and lazy.is_lazy
    assert lazy.images.shape == eager.images.shape
    assert np.array_equal(np.asarray(lazy.images), eager.images)
    assert np.array_equal(lazy.labels, eager.labels)
    assert list(lazy.classes) == list(eager.classes)
    idx = np.array([7, 2, 2, 29])
    assert np.array_equal(lazy.images[idx], eager.images[idx])
    sub = lazy.subset([0, 3, 1, 4])
    assert sub.is_lazy and np.array_equal(np.asarray(sub.images), eager.images[[0, 3, 1, 4]])
    again = pickle.loads(pickle.dumps(lazy))
    assert again.fingerprint == lazy.fingerprint
    assert np.array_equal(np.asarray(again.images), eager.images)
    emb = Task2VecEmbedder(probe="tiny_random", image_size=12, max_images=12, head_epochs=1,
                           random_state=0).fit()
    a, b = emb.transform([eager]), emb.transform([lazy])
    assert np.array_equal(a, b)


def test_lazy_dataset_reads_targets_and_checks_items():
    ds = _CountingDataset(targets=True)
    lazy = Task.from_dataset(ds, lazy=True)
    assert ds.reads <= 2  # the first item (shape, validation); labels from .targets
    assert lazy.n_classes == 3
    ds.reads = 0
    lazy.images[[0, 5]]
    assert ds.reads == 2
    odd = Task.from_dataset(_CountingDataset(odd_item=4), lazy=True)
    with pytest.raises(InvalidTaskError, match="item 4"):
        odd.images[:6]
    with pytest.raises(InvalidTaskError, match="empty"):
        Task.from_dataset(_CountingDataset(n=0), lazy=True)
