"""Datasets: IDX files, MNIST / Fashion-MNIST, Penn Treebank, ImageNet-style image folders."""

from legw.data.idx import read_idx, write_idx
from legw.data.imagefolder import ImageFolder
from legw.data.mnist import load_mnist, normalize
from legw.data.ptb import Corpus, Vocab, batchify, load_ptb

__all__ = ["Corpus", "ImageFolder", "Vocab", "batchify", "load_mnist", "load_ptb", "normalize",
           "read_idx", "write_idx"]
