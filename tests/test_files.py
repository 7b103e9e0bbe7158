"""``t2v_automl._files``: a failed write leaves the old file and no temporary file."""

from __future__ import annotations

import stat

import pytest

from t2v_automl._files import replace_atomically


def test_replace_atomically_writes_and_replaces(tmp_path):
    target = tmp_path / "new" / "cache.bin"
    assert replace_atomically(target, lambda fh: fh.write(b"one")) == target
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's private 0o600
    replace_atomically(target, lambda fh: fh.write(b"two"))
    assert target.read_bytes() == b"two" and sorted(p.name for p in target.parent.iterdir()) \
        == ["cache.bin"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file(tmp_path, error):
    target = tmp_path / "cache.bin"
    target.write_bytes(b"old")

    def fail(fh):
        fh.write(b"half")
        raise error

    with pytest.raises(type(error)):
        replace_atomically(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.bin"]
