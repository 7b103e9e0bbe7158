"""Bad input never corrupts a task (issue 18): image files, folders, arrays and .npz files.

Each test asserts the exception or the warning *and* that nothing was silently corrupted:
the pixels that come out are the ones that went in (16-bit, float, transparent images), the
classes are the folder's, skipped things are named.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2v_automl.exceptions import (
    ImageFolderError,
    ImageFolderWarning,
    InvalidParameterError,
    InvalidTaskError,
    PixelRangeWarning,
)
from t2v_automl.images import MAX_IMAGE_SIZE, read_image
from t2v_automl.tasks import Task, as_task

#: A horizontal gradient, 0 .. 1 in 16 steps (what every high-depth fixture encodes).
GRADIENT = np.linspace(0.0, 1.0, 16)


def _folder(root: Path, writer, n: int = 2, classes=("a", "b")) -> Path:
    """``root/<class>/<i>.<ext>`` with ``writer(path_without_ext, i)`` writing each image."""
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            writer(root / c / str(i), i)
    return root


def _png16(path: Path, i: int) -> None:
    Image.fromarray(np.tile(np.rint(GRADIENT * 65535).astype(np.uint16), (16, 1))).save(
        path.with_suffix(".png"))


def _tiff16(path: Path, i: int) -> None:
    Image.fromarray(np.tile(np.rint(GRADIENT * 65535).astype(np.uint16), (16, 1))).save(
        path.with_suffix(".tif"))


def _tiff_float(path: Path, i: int) -> None:
    Image.fromarray(np.tile(GRADIENT.astype(np.float32), (16, 1))).save(path.with_suffix(".tif"))


def _rgb8(path: Path, i: int) -> None:
    Image.new("RGB", (12, 10), (200, 40, 90)).save(path.with_suffix(".png"))


# ---------------------------------------------------------------------- 1. bit depth
@pytest.mark.parametrize("writer", [_png16, _tiff16, _tiff_float], ids=["png16", "tiff16",
                                                                        "tiff_float32"])
@pytest.mark.parametrize("lazy", [True, False])
def test_16_bit_and_float_images_keep_their_gradient(tmp_path, writer, lazy):
    with Image.open(next(_folder(tmp_path, writer).rglob("0.*"))) as im:
        assert im.mode in ("I;16", "F")  # the modes convert("RGB") used to clip
    t = Task.from_folder(tmp_path, image_size=16, lazy=lazy)
    x = np.asarray(t.images)
    assert x.shape == (4, 3, 16, 16)
    # the gradient survives: equal channels, 0 .. 1 left to right, within one 8-bit step
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
    assert np.allclose(x[0, 0, 5], GRADIENT, atol=1 / 255 + 1e-6)
    assert np.all(np.diff(x[0, 0, 5]) > 0)


def test_float_and_wide_integer_ranges_are_scaled_per_image_with_a_warning(tmp_path):
    Image.fromarray(np.tile(np.linspace(-50, 250, 16, dtype=np.float32), (8, 1))).save(
        tmp_path / "wide.tif")
    Image.fromarray(np.tile(np.linspace(0, 200_000, 16).astype(np.int32), (8, 1))).save(
        tmp_path / "i32.tif")
    nan = np.tile(GRADIENT.astype(np.float32), (8, 1))
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    for name in ("wide.tif", "i32.tif"):
        with pytest.warns(PixelRangeWarning, match="own minimum and maximum"):
            a = read_image(tmp_path / name, 16, Image)
        assert a[0, 0, 0] == 0 and a[0, -1, 0] == 255 and np.all(np.diff(a[4, :, 0].astype(int))
                                                                   > 0)
    assert "NaN" in read_image(tmp_path / "nan.tif", 16, Image)  # a bad image, not zeros


# ---------------------------------------------------------------------- 2. unreadable folders
@pytest.mark.parametrize("how", ["chmod", "simulated"])
@pytest.mark.parametrize("lazy", [True, False])
def test_an_unreadable_class_folder_is_reported_like_a_bad_file(tmp_path, monkeypatch, how, lazy):
    _folder(tmp_path, _rgb8, classes=("a", "b", "c"))
    locked = tmp_path / "b"
    if how == "chmod":
        locked.chmod(0)
        if os.access(locked, os.R_OK):  # root reads it anyway
            locked.chmod(0o755)
            pytest.skip("running as a user who can read a chmod 000 folder (root)")
    else:
        real = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        with pytest.warns(ImageFolderWarning, match=r"unreadable folder.*[/\\]b \(Permission"):
            t = Task.from_folder(tmp_path, image_size=8, lazy=lazy)
        assert t.classes.tolist() == ["a", "c"] and t.n_images == 4
        with pytest.raises(ImageFolderError, match=r"[/\\]b .*on_bad_image='skip'"):
            Task.from_folder(tmp_path, image_size=8, lazy=lazy, on_bad_image="fail")
    finally:
        locked.chmod(0o755)


# ---------------------------------------------------------------------- 4. image size bound
def test_image_size_is_bounded_with_a_memory_estimate(tmp_path):
    _folder(tmp_path, _rgb8, n=3)
    for call in (lambda: Task.from_folder(tmp_path, image_size=20000),
                 lambda: Task.from_folder(tmp_path, image_size=20000, lazy=False),
                 lambda: as_task(tmp_path, image_size=MAX_IMAGE_SIZE + 1)):
        with pytest.raises(InvalidParameterError, match=r"1024 px bound: the 6 images .*B as"):
            call()
    with pytest.raises(InvalidParameterError, match="each image would take"):
        as_task((np.zeros((4, 8, 8), np.uint8), [0, 0, 1, 1]), image_size=5000)
    assert Task.from_folder(tmp_path, image_size=MAX_IMAGE_SIZE).image_shape == (3, 1024, 1024)


# ---------------------------------------------------------------------- 5. transparency
def test_colour_key_transparency_is_composited_onto_white(tmp_path):
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[:, 8:] = (200, 40, 90)
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png", transparency=0)
    g16 = np.zeros((8, 16), np.uint16)
    g16[:, 8:] = 30000
    Image.fromarray(g16).save(tmp_path / "grey16.png", transparency=0)
    for name, right in (("rgb.png", (200, 40, 90)), ("grey.png", (200,) * 3),
                        ("grey16.png", (round(30000 / 65535 * 255),) * 3)):
        with Image.open(tmp_path / name) as im:
            assert "transparency" in im.info and im.mode in ("RGB", "L", "I;16")
        a = read_image(tmp_path / name, 16, Image)
        assert np.all(a[:, :7] == 255), name  # the keyed black is white, not black
        assert np.all(a[:, 9:] == right), name  # the rest untouched


# ---------------------------------------------------------------------- 5. linked class folders
def test_class_folders_linking_back_are_skipped_with_a_warning(tmp_path):
    root = _folder(tmp_path / "data", _rgb8)
    outside = _folder(tmp_path / "elsewhere", _rgb8, classes=("c",)) / "c"
    try:
        (root / "loop").symlink_to(root, target_is_directory=True)
        (root / "again").symlink_to(root / "a", target_is_directory=True)
        (root / "up").symlink_to(tmp_path, target_is_directory=True)
        (root / "c").symlink_to(outside, target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    for lazy in (True, False):
        with pytest.warns(ImageFolderWarning, match="3 linked class folder") as rec:
            t = Task.from_folder(root, image_size=8, lazy=lazy)
        msg = str(rec[0].message)
        assert "again" in msg and "loop" in msg and "up" in msg
        assert t.classes.tolist() == ["a", "b", "c"] and t.n_images == 6  # no duplicates


# ---------------------------------------------------------------------- 5. from_arrays
def test_from_arrays_refuses_what_it_would_corrupt_and_detaches_tensors():
    x = np.random.default_rng(0).integers(0, 256, (4, 6, 6), dtype=np.uint8)
    with pytest.raises(InvalidTaskError, match=r"complex.*np\.abs"):
        Task.from_arrays(x + 1j, [0, 0, 1, 1])
    with pytest.raises(InvalidTaskError, match=r"missing \(None or NaN\) at position\(s\) \[2\]"):
        Task.from_arrays(x, [0, 0, None, 1])
    with pytest.raises(InvalidTaskError, match="cannot be ordered"):
        Task.from_arrays(x, np.array([0, "a", 0, "a"], dtype=object))
    ragged = [np.zeros((6, 6)), np.zeros((6, 6)), np.zeros((9, 7)), np.zeros((6, 6))]
    with pytest.raises(InvalidTaskError,
                       match=r"2 different shapes.*item 2: \(9, 7\).*image_size="):
        Task.from_arrays(ragged, [0, 0, 1, 1])
    xt = torch.tensor(x / 255.0, dtype=torch.float32, requires_grad=True)
    t = Task.from_arrays(xt, torch.tensor([0, 0, 1, 1]))  # accepted: detached, not altered
    assert np.array_equal(t.images, Task.from_arrays(xt.detach().numpy(), [0, 0, 1, 1]).images)
    assert xt.requires_grad and t.labels.tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------------- 5. .npz files
class _Boom:
    """Unpickling it would leave a mark: proof that an .npz is never unpickled."""

    def __reduce__(self):
        return (os.makedirs, (os.environ["T2V_TEST_MARK"],))


def test_npz_tasks_truncated_pickled_and_upper_case(tmp_path, monkeypatch):
    x = np.random.default_rng(0).integers(0, 256, (4, 6, 6), dtype=np.uint8)
    good = tmp_path / "good.npz"
    np.savez(good, images=x, labels=np.array([0, 0, 1, 1]))
    upper = tmp_path / "UPPER.NPZ"
    upper.write_bytes(good.read_bytes())
    assert np.array_equal(as_task(upper).images, as_task(good).images)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    mark = tmp_path / "unpickled"
    monkeypatch.setenv("T2V_TEST_MARK", str(mark))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, images=x, labels=np.array([_Boom(), 0, 1, 1], dtype=object))
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(_Boom()))
    for p, match in ((truncated, "BadZipFile|truncated|Error"), (pickled, "allow_pickle|pickled"),
                     (raw, "pickled"), (tmp_path / "missing.npz", "does not exist")):
        with pytest.raises(InvalidTaskError, match=match):
            as_task(p)
    assert not mark.exists()
    assert zipfile.is_zipfile(pickled)  # a real archive: refused for its object array


# ---------------------------------------------------------------------- 6. on_bad_image
def _truncated_png(path: Path) -> None:
    full = path.with_name("full.tmp")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 20, 3), np.uint8)).save(
        full, "PNG")
    path.write_bytes(full.read_bytes()[:150])  # header intact, image data cut
    full.unlink()


def test_on_bad_image_skip_or_fail_for_images_truncated_after_their_header(tmp_path):
    _folder(tmp_path, _rgb8, n=3)
    _truncated_png(tmp_path / "a" / "cut.png")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    with Image.open(tmp_path / "a" / "cut.png") as im:
        assert im.size == (20, 20)  # the header reads fine
    for lazy in (True, False):
        with pytest.warns(ImageFolderWarning, match=r"1 bad image file.*cut\.png.*notes\.txt"):
            t = Task.from_folder(tmp_path, image_size=8, lazy=lazy)
        assert t.n_images == 6 and np.asarray(t.images).shape == (6, 3, 8, 8)
        with pytest.raises(ImageFolderError, match=r"cut\.png.*on_bad_image='skip'"):
            Task.from_folder(tmp_path, image_size=8, lazy=lazy, on_bad_image="fail")
    with pytest.raises(InvalidParameterError, match="'skip'.*'fail'"):
        Task.from_folder(tmp_path, on_bad_image="ignore")
    with pytest.warns(ImageFolderWarning):
        assert as_task(tmp_path, image_size=8, on_bad_image="skip").n_images == 6


def test_a_lazy_jpeg_truncated_after_its_header_fails_clearly_at_decode(tmp_path):
    _folder(tmp_path, _rgb8, n=2)
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), np.uint8)).save(full)
    (tmp_path / "b" / "cut.jpg").write_bytes(full.read_bytes()[:900])
    full.unlink()
    t = Task.from_folder(tmp_path, image_size=8)  # the header check cannot see it
    assert t.n_images == 5
    with pytest.raises(ImageFolderError, match=r"cut\.jpg.*lazy=False.*on_bad_image='skip'"):
        np.asarray(t.images)
    with pytest.warns(ImageFolderWarning, match=r"cut\.jpg"):
        eager = Task.from_folder(tmp_path, image_size=8, lazy=False)  # decoded now: skipped
    assert eager.n_images == 4
