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
    with pytest.raises(ImageFolderError, match="broken.png|notes.txt"):
        Task.from_folder(tmp_path, image_size=8, on_error="raise")


def test_folder_rejects_decompression_bomb(tmp_path, monkeypatch):
    import t2v_automl.tasks as tasks_mod

    _write_folder(tmp_path)
    monkeypatch.setattr(tasks_mod, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageFolderError, match="decompression bomb"):
        Task.from_folder(tmp_path, image_size=8, on_error="raise")


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
