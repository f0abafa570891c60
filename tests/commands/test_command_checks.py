"""Analysis commands read the data they are given, let explicit flags win, and turn absurd
sizes and unreadable files into one line naming the flag or the file."""

import json

import pytest
from helpers import make_mnist_dir, make_ptb_dir, one_line_error

from legw.analysis.autobatch import measure_curve
from legw.cli import main
from legw.training.device import is_out_of_memory


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=16)


def test_an_explicit_flag_beats_the_preset(capsys):
    assert main(["comm", "--preset", "resnet50", "--bytes-per-param", "2", "--json"]) == 0
    setting = json.loads(capsys.readouterr().out)["setting"]
    assert setting["bytes_per_param"] == 2 and setting["model_bytes"] == 52_000_000
    assert "--dataset-size: must be a positive integer, got 0" in one_line_error(
        capsys, ["comm", "--preset", "resnet50", "--dataset-size", "0"])


def test_comm_and_noise_scale_count_the_data_they_were_given(mnist_dir, tmp_path, capsys):
    assert main(["comm", "--task", "fashion-mnist-lstm", "--data-dir", str(mnist_dir),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["setting"]["dataset_size"] == 64
    assert main(["noise-scale", "fashion-mnist-lstm", "--data-dir", str(mnist_dir),
                 "--train-batch-size", "16", "--batch-size", "4", "--micro-batch-size", "2",
                 "--draws", "2", "--points", "1", "--threads", "1",
                 "--out", str(tmp_path / "n.json"), "--plot", str(tmp_path / "n.png")]) == 0
    out = capsys.readouterr().out
    assert f"data {mnist_dir}, 64 samples per epoch" in out
    assert "training at batch 16 for 4 steps" in out  # 64 // 16, not 60,000 // 16


def test_the_cpu_allocators_error_is_out_of_memory(mnist_dir, tmp_path, capsys):
    error = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                         "can't allocate memory: you tried to allocate 3448068464705536 bytes.")
    assert is_out_of_memory(error)

    def timer(size, n):
        if size > 2:
            raise error
        return [0.01] * n

    points = measure_curve(timer, [1, 2, 4, 8], repeats=1)
    assert [p.status for p in points][2] == "out of memory"
    line = one_line_error(capsys, [
        "autobatch", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--repeats", "1",
        "--min-micro-batch-size", str(2**34), "--max-micro-batch-size", str(2**35),
        "--out", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png")])
    assert "--min-micro-batch-size: every size from" in line and "ran out of memory" in line


def test_undecodable_text_names_its_file(tmp_path, capsys):
    data = make_ptb_dir(tmp_path / "ptb")
    (data / "ptb.test.txt").write_bytes(b" w1 w2 \xff\xfe w3 \n")
    line = one_line_error(capsys, ["train", "ptb-small", "--data-dir", str(data),
                                   "--out", str(tmp_path / "run")])
    assert "ptb.test.txt: not a UTF-8 text file" in line
    bad = tmp_path / "curve.json"
    bad.write_text("{'points': []}")
    assert "curve.json: not valid JSON" in one_line_error(
        capsys, ["comm", "--preset", "resnet50", "--throughput-from", str(bad)])
    bad.write_text('{"points": [{"micro_batch_size": "8", "samples_per_s": 100}]}')
    assert "curve.json: micro batch sizes and throughputs must be positive numbers" in \
        one_line_error(capsys, ["comm", "--preset", "resnet50", "--throughput-from", str(bad)])


def test_a_non_image_file_in_an_image_folder_names_the_file(tmp_path):
    pytest.importorskip("PIL.Image")
    from legw.data.imagefolder import ImageFolder

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"cat/notes.jpg: not a readable image"):
        ImageFolder(tmp_path, train=True)[0]
