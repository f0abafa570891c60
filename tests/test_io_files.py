"""Atomic files get the umask's permissions, killed writes leave nothing that lasts, and JSON
records are strict (jq and browsers read them)."""

import json
import math
import os
import stat

import pytest

from legw.io import atomic_write_json, atomic_write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode


def test_remove_temporaries_takes_only_what_a_killed_write_left(tmp_path):
    from legw.io import remove_temporaries

    stale = [tmp_path / ".step-000000003.pt.k2b_9x1q.tmp", tmp_path / ".config.json.0a1b2c3d.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / "config.json", tmp_path / ".hidden"]
    for p in stale + keep:
        p.write_text("x")
    assert sorted(remove_temporaries(tmp_path)) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in keep)
    assert remove_temporaries(tmp_path / "absent") == []


def test_json_records_hold_null_for_non_finite_numbers(tmp_path):
    path = tmp_path / "s.json"
    atomic_write_json(path, {"loss": math.inf, "xs": [1.0, math.nan, -math.inf], "n": 3})
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "loss": None, "xs": [1.0, None, None], "n": 3}
