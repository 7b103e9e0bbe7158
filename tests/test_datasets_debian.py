"""Tests of the emoji, Wesnoth and Oxygen pools (t2v_automl.datasets_debian).

Each pool is loaded from a tiny copy of real installed files in ``tmp_path``; the whole
installed pools are loaded by the ``slow`` test at the end.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2v_automl import datasets, datasets_debian
from t2v_automl.datasets import (
    EMOJI_FONT,
    EMOJI_TEST,
    OXYGEN_ROOT,
    WESNOTH_ROOT,
    DatasetFormatError,
    DatasetNotFoundError,
    Pool,
    load_pool,
)
from t2v_automl.datasets_debian import parse_emoji_test, wesnoth_pose
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError

needs_emoji = pytest.mark.skipif(not (EMOJI_FONT.is_file() and EMOJI_TEST.is_file()),
                                 reason="fonts-noto-color-emoji or unicode-data missing")
needs_wesnoth = pytest.mark.skipif(not WESNOTH_ROOT.is_dir(), reason="wesnoth-1.16-data missing")
needs_oxygen = pytest.mark.skipif(not OXYGEN_ROOT.is_dir(), reason="oxygen-icon-theme missing")


def _check_rgb_pool(pool: Pool, n: int, size: int, class_names: tuple[str, ...]) -> None:
    assert isinstance(pool, Pool)
    assert pool.images.dtype == np.uint8 and pool.images.shape == (n, size, size, 3)
    assert pool.labels.dtype == np.int64 and pool.labels.shape == (n,)
    assert pool.class_names == class_names
    assert sorted(set(pool.labels.tolist())) == list(range(len(class_names)))
    assert pool.paths is not None and len(pool.paths) == n
    # every image has ink, and nothing is black where the source was transparent
    assert (pool.images.reshape(n, -1) < 250).any(axis=1).all()


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and text in r.getMessage()]


def _forbid(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(module, name, fail)


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return dst


def _transparent_corner(path: Path) -> bool:
    with Image.open(path) as im:
        return im.convert("RGBA").getpixel((0, 0))[3] == 0


def _add_bad_files(folder: Path, good: Path, truncated: str, empty: str) -> None:
    """A real PNG cut in half and an empty file."""
    data = good.read_bytes()
    (folder / truncated).write_bytes(data[: len(data) // 2])
    (folder / empty).write_bytes(b"")


# ---------------------------------------------------------------------- registry
def test_new_pools_are_listed_and_take_exactly_their_options() -> None:
    assert datasets.list_pools()[-3:] == ["emoji", "wesnoth", "oxygen"]
    with pytest.raises(InvalidInputTypeError, match="unexpected option.*min_per_category"):
        load_pool("wesnoth", min_per_category=3)
    with pytest.raises(InvalidInputTypeError, match=r"unexpected option.*emoji_test.*accepts"):
        load_pool("oxygen", emoji_test="x")
    with pytest.raises(InvalidInputTypeError, match="unexpected option"):
        load_pool("emoji", size=32)


@pytest.mark.parametrize("name", ["emoji", "wesnoth", "oxygen"])
@pytest.mark.parametrize(("option", "value", "match"), [
    ("image_size", 7, "image_size must be an integer in 8..1024"),
    ("image_size", 1025, "image_size must be an integer in 8..1024"),
    ("image_size", 64.0, "image_size must be an integer"),
    ("min_per_class", 1, "min_per_class must be an integer >= 2"),
    ("min_per_class", True, "min_per_class must be an integer >= 2"),
])
def test_bad_settings(name: str, option: str, value: object, match: str,
                      tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        load_pool(name, root=tmp_path, **{option: value})


@pytest.mark.parametrize(("name", "package"), [
    ("emoji", "fonts-noto-color-emoji"), ("wesnoth", "wesnoth-1.16-data"),
    ("oxygen", "oxygen-icon-theme"),
])
def test_missing_install_names_the_apt_package(name: str, package: str,
                                               tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=f"apt-get install -y {package}") as info:
        load_pool(name, root=tmp_path / "nowhere", cache=False)
    assert str(tmp_path / "nowhere") in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_empty_folders_are_not_an_install(tmp_path: Path) -> None:
    for name, package in (("wesnoth", "wesnoth-1.16-data"), ("oxygen", "oxygen-icon-theme")):
        with pytest.raises(DatasetNotFoundError, match=f"no image files.*{package}"):
            load_pool(name, root=tmp_path, cache=False)


# ---------------------------------------------------------------------- emoji
_EMOJI_SAMPLE = """\
# comment lines and blank lines are ignored

# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 grinning face
1F603                                                  ; fully-qualified     # 😃 big eyes
263A FE0F                                              ; fully-qualified     # ☺️ smiling face
263A                                                   ; unqualified         # ☺ smiling face
1F44B 1F3FB                                            ; fully-qualified     # 👋🏻 skin tone
1F3FB                                                  ; component           # 🏻 light skin tone
1F415 200D 1F9BA                                       ; fully-qualified     # 🐕‍🦺 service dog
2764 FE0F 200D 1F525                                   ; fully-qualified     # ❤️‍🔥 heart on fire
1F441 FE0F 200D 1F5E8 FE0F                             ; fully-qualified     # eye in bubble
1F636 200D 1F32B FE0F                                  ; minimally-qualified # face in clouds

# group: Animals & Nature

# subgroup: animal-mammal
1F43F FE0F                                             ; fully-qualified     # 🐿️ chipmunk
1F43F                                                  ; unqualified         # 🐿 chipmunk
"""


def test_parse_emoji_test_keeps_single_fully_qualified_emoji(tmp_path: Path) -> None:
    path = tmp_path / "emoji-test.txt"
    path.write_text(_EMOJI_SAMPLE, encoding="utf-8")
    entries = parse_emoji_test(path)
    assert [e.code for e in entries] == ["1F600", "1F603", "263A-FE0F", "1F43F-FE0F"]
    assert entries[0].group == "Smileys & Emotion" and entries[0].subgroup == "face-smiling"
    assert entries[-1].group == "Animals & Nature" and entries[-1].subgroup == "animal-mammal"
    assert entries[2].text == "\u263a\ufe0f"
    (tmp_path / "other.txt").write_text("1F600 ; fully-qualified # no group line\n")
    with pytest.raises(DatasetFormatError, match="no fully-qualified single-code-point emoji"):
        parse_emoji_test(tmp_path / "other.txt")


def _cut_emoji_test(dst: Path) -> Path:
    """The real emoji-test.txt cut to 3 subgroups; hand-fingers-open to its first 20 lines
    (4 single emoji among skin-tone variants), plus two code points the font lacks."""
    keep = {"face-smiling": 10_000, "animal-mammal": 10_000, "hand-fingers-open": 20}
    out, left = [], 0
    for line in EMOJI_TEST.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            out.append(line)
        elif line.startswith("# subgroup:"):
            sub = line.split(":", 1)[1].strip()
            left = keep.get(sub, 0)
            if left:
                out.append(line)
                if sub == "face-smiling":
                    out.append("E000 ; fully-qualified # private use: not in the font")
                    out.append("10FFFD ; fully-qualified # private use: not in the font")
        elif line and not line.startswith("#") and left:
            out.append(line)
            left -= 1
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


@needs_emoji
def test_emoji_pool_from_a_cut_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    listing = _cut_emoji_test(tmp_path / "emoji-test.txt")
    entries = parse_emoji_test(listing)
    n_smiling = sum(e.subgroup == "face-smiling" for e in entries) - 2
    n_mammal = sum(e.subgroup == "animal-mammal" for e in entries)
    n_hand = sum(e.subgroup == "hand-fingers-open" for e in entries)
    assert 2 <= n_hand < 12 <= min(n_smiling, n_mammal)
    with caplog.at_level(logging.DEBUG, logger="t2v_automl"):
        pool = load_pool("emoji", emoji_test=listing, image_size=32, cache_dir=tmp_path)
    _check_rgb_pool(pool, n_smiling + n_mammal, 32, ("animal-mammal", "face-smiling"))
    assert pool.super_class_names == ("Animals & Nature", "Smileys & Emotion")
    assert pool.super_categories is not None
    assert set(pool.super_categories[pool.labels == 1]) == {"Smileys & Emotion"}
    assert pool.paths is not None
    assert "1F600" in pool.paths and "1F43F-FE0F" in pool.paths
    assert not any(p in pool.paths for p in ("1F43F", "E000", "10FFFD"))
    assert not any(p.count("-") > 1 or "1F3F" in p or "200D" in p for p in pool.paths)
    # the grinning face: a round glyph, so the corners of its square stay white
    face = pool.images[pool.paths.index("1F600")]
    assert (face[[0, 0, -1, -1], [0, -1, 0, -1]] == 255).all()
    assert (face[12:20, 12:20] < 250).any()
    # the glyphs missing from the font: one warning for both, a debug line each
    (bad,) = _warnings(caplog, "unreadable emoji")
    assert "skipped 2 unreadable emoji" in bad and "E000" in bad and "10FFFD" in bad
    assert sum("skipping emoji image" in r.getMessage() for r in caplog.records) == 2
    (dropped,) = _warnings(caplog, "dropping")
    assert f"hand-fingers-open ({n_hand} images)" in dropped and "min_per_class=12" in dropped
    # the second load reads the cache, renders nothing
    (cached,) = tmp_path.glob("emoji-32px-*.npz")
    _forbid(monkeypatch, datasets_debian, "render_emoji")
    again = load_pool("emoji", emoji_test=listing, image_size=32, cache_dir=tmp_path)
    assert np.array_equal(again.images, pool.images) and again.paths == pool.paths
    assert again.super_class_names == pool.super_class_names
    assert np.array_equal(again.super_labels, pool.super_labels)
    # an unreadable cache is ignored with a warning and written again
    monkeypatch.undo()
    cached.write_bytes(b"PK\x03\x04 not a zip")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        rebuilt = load_pool("emoji", emoji_test=listing, image_size=32, cache_dir=tmp_path)
    assert _warnings(caplog, "ignoring unreadable emoji cache")
    assert np.array_equal(rebuilt.images, pool.images)


@needs_emoji
def test_emoji_missing_list_or_bad_font(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install -y unicode-data"):
        load_pool("emoji", emoji_test=tmp_path / "none.txt")
    fake = tmp_path / "font.ttf"
    fake.write_bytes(b"not a font")
    listing = _cut_emoji_test(tmp_path / "emoji-test.txt")
    with pytest.raises(DatasetFormatError, match="cannot open .*fonts-noto-color-emoji"):
        load_pool("emoji", root=fake, emoji_test=listing, cache=False)


# ---------------------------------------------------------------------- wesnoth
@pytest.mark.parametrize(("stem", "pose"), [
    ("explorer", "base"), ("explorer-ranged-2", "ranged"), ("explorer-melee-3", "attack"),
    ("thunderer-die1", "die"), ("thunderer-n-ranged1", "ranged"),
    ("fighter-ne-hammer-defend1", "defend"), ("archer-bow-attack-1", "ranged"),
    ("drake-takeoff-2", "fly"), ("knight-stand", "bob"), ("lich-death-4", "die"),
    ("mage-magic-3", "magic"), ("fighter-ne-axe1", None), ("bat-se-3", None),
    ("soulless-boar", None), ("attack-1", None),
])
def test_wesnoth_pose(stem: str, pose: str | None) -> None:
    assert wesnoth_pose(stem) == pose


@pytest.fixture
def wesnoth_root(tmp_path: Path) -> Path:
    """Real sprites: dwarves/ranged 4 (one nested), dwarves/attack 4, orcs/bob 4,
    orcs/defend 2 (too few), a sprite without a pose, one without a race, two bad files."""
    if not WESNOTH_ROOT.is_dir():
        pytest.skip("wesnoth-1.16-data missing")
    root = tmp_path / "units"
    src = WESNOTH_ROOT
    for rel in ([f"dwarves/explorer-ranged-{i}.png" for i in (1, 2, 3)]
                + ["dwarves/thunderer/thunderer-n-ranged1.png"]
                + [f"dwarves/explorer-melee-{i}.png" for i in (1, 2, 3, 4)]
                + [f"orcs/archer-bob-{i}.png" for i in (1, 2, 3, 4)]
                + ["orcs/archer-defend-1.png", "orcs/archer-defend-2.png",
                   "dwarves/fighter-ne-axe1.png", "random-dice.png"]):
        _copy(src / rel, root / rel)
    _add_bad_files(root / "dwarves", src / "dwarves/explorer-ranged-1.png",
                   "broken-ranged-9.png", "empty-melee.png")
    return root


@needs_wesnoth
def test_wesnoth_pool(wesnoth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      caplog: pytest.LogCaptureFixture) -> None:
    assert _transparent_corner(wesnoth_root / "dwarves/explorer-ranged-1.png")
    with caplog.at_level(logging.DEBUG, logger="t2v_automl"):
        pool = load_pool("wesnoth", root=wesnoth_root, min_per_class=4, cache_dir=tmp_path)
    _check_rgb_pool(pool, 12, 64, ("dwarves/attack", "dwarves/ranged", "orcs/bob"))
    assert pool.super_class_names == ("dwarves", "orcs")
    assert pool.super_labels is not None and pool.super_labels.tolist() == [0] * 8 + [1] * 4
    assert pool.paths is not None
    assert pool.categories[pool.paths.index("dwarves/thunderer/thunderer-n-ranged1.png")] \
        == "dwarves/ranged"
    assert pool.categories[pool.paths.index("dwarves/explorer-melee-2.png")] \
        == "dwarves/attack"
    assert not any(p.endswith(("axe1.png", "random-dice.png", "-defend-1.png"))
                   for p in pool.paths)
    first = pool.images[pool.paths.index("dwarves/explorer-ranged-1.png")]
    assert tuple(first[0, 0]) == (255, 255, 255)  # transparent corner composited onto white
    (bad,) = _warnings(caplog, "unreadable Wesnoth")
    assert "skipped 2 unreadable Wesnoth image(s)" in bad
    assert "broken-ranged-9.png" in bad and "empty-melee.png" in bad
    (dropped,) = _warnings(caplog, "dropping")
    assert "orcs/defend (2 images)" in dropped
    assert "2 Wesnoth sprite(s) show no known pose" in caplog.text
    _forbid(monkeypatch, datasets, "read_image")
    again = load_pool("wesnoth", root=wesnoth_root, min_per_class=4, cache_dir=tmp_path)
    assert np.array_equal(again.images, pool.images) and again.paths == pool.paths
    assert again.class_names == pool.class_names
    assert np.array_equal(again.super_labels, pool.super_labels)


@needs_wesnoth
def test_wesnoth_cache_follows_the_files(wesnoth_root: Path, tmp_path: Path) -> None:
    first = load_pool("wesnoth", root=wesnoth_root, min_per_class=4, image_size=16,
                      cache_dir=tmp_path / "c")
    _copy(WESNOTH_ROOT / "orcs/archer-bob-5.png", wesnoth_root / "orcs/archer-bob-5.png")
    second = load_pool("wesnoth", root=wesnoth_root, min_per_class=4, image_size=16,
                       cache_dir=tmp_path / "c")
    assert (first.n_images, second.n_images) == (12, 13)
    assert len(list((tmp_path / "c").glob("wesnoth-16px-*.npz"))) == 2
    with pytest.raises(DatasetFormatError, match="no Wesnoth class.*lower min_per_class"):
        load_pool("wesnoth", root=wesnoth_root, min_per_class=50, cache=False)


# ---------------------------------------------------------------------- oxygen
@needs_oxygen
def test_oxygen_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "64x64"
    picks = {"actions": ["address-book-new", "application-exit", "bookmark-new"],
             "apps": ["accessories-calculator", "accessories-character-map",
                      "accessories-text-editor"],
             "places": ["bookmarks", "folder-blue", "folder-brown"],
             "emblems": ["emblem-important", "emblem-mounted"]}
    for cat, names in picks.items():
        for n in names:
            _copy(OXYGEN_ROOT / cat / f"{n}.png", root / cat / f"{n}.png")
    (root / "places" / "alias.png").symlink_to("folder-blue.png")  # the same file twice
    _add_bad_files(root / "apps", root / "apps/accessories-calculator.png", "cut.png",
                   "empty.png")
    assert _transparent_corner(root / "actions/address-book-new.png")
    with caplog.at_level(logging.WARNING, logger="t2v_automl"):
        pool = load_pool("oxygen", root=root, min_per_class=3, image_size=48,
                         cache_dir=tmp_path)
    _check_rgb_pool(pool, 9, 48, ("actions", "apps", "places"))
    assert pool.super_labels is None and pool.super_class_names is None
    assert pool.paths is not None and pool.paths[0] == "actions/address-book-new.png"
    assert sum(p in pool.paths for p in ("places/alias.png", "places/folder-blue.png")) == 1
    assert tuple(pool.images[0, 0, 0]) == (255, 255, 255)
    (bad,) = _warnings(caplog, "unreadable Oxygen")
    assert "skipped 2 unreadable Oxygen image(s)" in bad and "apps/cut.png" in bad
    (dropped,) = _warnings(caplog, "dropping")
    assert "emblems (2 images)" in dropped and "min_per_class=3" in dropped
    _forbid(monkeypatch, datasets, "read_image")
    again = load_pool("oxygen", root=root, min_per_class=3, image_size=48, cache_dir=tmp_path)
    assert np.array_equal(again.images, pool.images) and again.paths == pool.paths
    assert again.super_labels is None


# ---------------------------------------------------------------------- the real pools
@pytest.mark.slow
@pytest.mark.parametrize(("name", "installed", "images", "classes"), [
    ("emoji", EMOJI_FONT.is_file() and EMOJI_TEST.is_file(), (1000, 1150), (45, 55)),
    ("wesnoth", WESNOTH_ROOT.is_dir(), (3400, 4000), (55, 70)),
    ("oxygen", OXYGEN_ROOT.is_dir(), (500, 700), (7, 9)),
])
def test_real_pool(name: str, installed: bool, images: tuple[int, int],
                   classes: tuple[int, int]) -> None:
    """The whole installed pool (decoded in 1-4 s, then read from the default cache).

    Measured with emoji-test 15.0, Noto Color Emoji 2.042, Wesnoth 1.16 and Oxygen 5.103:
    emoji 1,066 images in 49 subgroups (of 1,377 single emoji in 97), Wesnoth 3,694 in 63
    race/pose classes, Oxygen 587 in 8 categories.
    """
    if not installed:
        pytest.skip(f"the {name} pool is not installed")
    pool = load_pool(name)
    assert images[0] <= pool.n_images <= images[1], pool
    assert classes[0] <= pool.n_classes <= classes[1], pool
    assert pool.images.shape[1:] == (64, 64, 3) and pool.images.dtype == np.uint8
    assert min(pool.class_counts().values()) >= {"emoji": 12, "wesnoth": 20, "oxygen": 10}[name]
    assert pool.paths is not None and len(set(pool.paths)) == pool.n_images
    if name == "emoji":
        assert 1300 <= len(parse_emoji_test(EMOJI_TEST)) <= 1450
        assert "animal-mammal" in pool.class_names
        assert pool.super_class_names is not None and "Animals & Nature" in pool.super_class_names
    elif name == "wesnoth":
        assert "dwarves/ranged" in pool.class_names
        assert pool.super_class_names is not None and "dwarves" in pool.super_class_names
    else:
        assert "emblems" not in pool.class_names and "apps" in pool.class_names
