"""common.atomic_files: a file is replaced whole or not at all, and a new name never overwrites."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from common.atomic_files import create_new, replace_whole


def test_replace_whole_writes_text_and_bytes(tmp_path: Path) -> None:
    target = tmp_path / "models.config"
    target.write_text("old")
    assert replace_whole(target, "new ünïcode") == target
    assert target.read_text(encoding="utf-8") == "new ünïcode"
    replace_whole(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["models.config"]


def test_a_symlink_is_written_through_not_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real" / "models.config"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "models.config"
    link.symlink_to(real)
    assert replace_whole(link, "new") == link
    assert link.is_symlink() and real.read_text() == "new"
    assert [p.name for p in real.parent.iterdir()] == ["models.config"]


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("previous")
    with pytest.raises(UnicodeEncodeError):
        replace_whole(target, "half \ud800 written")  # a lone surrogate cannot be encoded: fails mid-write
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a-folder"
    target.mkdir()
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        replace_whole(target, "text")  # a file cannot replace a non-empty folder
    assert (target / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"]


def test_writers_at_once_never_see_each_others_half(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    texts = [str(n) * 200_000 for n in range(8)]
    threads = [threading.Thread(target=replace_whole, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_create_new_takes_the_first_free_name_and_never_overwrites(tmp_path: Path) -> None:
    names = [tmp_path / "skew.json", tmp_path / "skew-2.json", tmp_path / "skew-3.json"]
    names[0].write_text("someone else's")
    assert create_new(names, "mine") == names[1]
    assert names[0].read_text() == "someone else's"
    assert names[1].read_text() == "mine"
    assert create_new(iter(names), "third") == names[2]
    with pytest.raises(FileExistsError):
        create_new(names, "no room")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skew-2.json", "skew-3.json", "skew.json"]
