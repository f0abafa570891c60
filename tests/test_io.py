"""Files are written whole or not at all, and bad JSON names its file."""

import dataclasses
import json
import os

import pytest

from legw.io import atomic_path, atomic_write_json, read_dataclass, read_json


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert os.listdir(path.parent) == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_read_json_names_the_file_on_bad_content(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,,}')
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON \(.* line 1, column 9\)"):
        read_json(bad)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="bin.json: not a UTF-8 text file"):
        read_json(binary)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


@dataclasses.dataclass
class Spec:
    name: str
    size: int = 1


def test_read_dataclass_checks_shape_and_fields(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text('{"name": "a"}')
    assert read_dataclass(Spec, path, size=3) == Spec("a", 3)
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match="spec.json: expected a JSON object"):
        read_dataclass(Spec, path)
    path.write_text('{"name": "a", "colour": 1}')
    with pytest.raises(ValueError, match="spec.json: unknown field 'colour'"):
        read_dataclass(Spec, path)
    path.write_text('{"size": 2}')
    with pytest.raises(ValueError, match="spec.json: not a Spec"):
        read_dataclass(Spec, path)
