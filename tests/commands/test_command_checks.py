"""Unreadable data files are one line naming the file (the analysis commands' own checks are in
test_comm.py, test_autobatch.py, test_noise_scale.py and test_plan.py)."""

import pytest
from helpers import make_ptb_dir, one_line_error


def test_undecodable_text_names_its_file(tmp_path, capsys):
    data = make_ptb_dir(tmp_path / "ptb")
    (data / "ptb.test.txt").write_bytes(b" w1 w2 \xff\xfe w3 \n")
    line = one_line_error(capsys, ["train", "ptb-small", "--data-dir", str(data),
                                   "--out", str(tmp_path / "run")])
    assert "ptb.test.txt: not a UTF-8 text file" in line


def test_a_non_image_file_in_an_image_folder_names_the_file(tmp_path):
    pytest.importorskip("PIL.Image")
    from legw.data.imagefolder import ImageFolder

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"cat/notes.jpg: not a readable image"):
        ImageFolder(tmp_path, train=True)[0]
