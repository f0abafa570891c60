"""Evaluation: accuracy and loss over the whole test set, sharded by rank; perplexity."""

import math

import torch
from torch import nn

from legw.models.lstm import LSTMLanguageModel
from legw.training.evaluate import image_metrics, perplexity


class Fixed:
    """10 test samples; sample i is labelled i % 3."""

    def __len__(self) -> int:
        return 10

    def get(self, indices: torch.Tensor):
        return indices.float().unsqueeze(1), indices % 3


class PredictZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 3)
        logits[:, 0] = 1.0
        return logits


def test_accuracy_and_loss_over_every_sample():
    m = image_metrics(PredictZero(), Fixed(), batch_size=3, device=torch.device("cpu"),
                      rank=0, world_size=1)
    assert m["test_accuracy"] == 4 / 10  # labels 0 at i = 0, 3, 6, 9
    expected = -math.log(math.e / (math.e + 2))  # every sample: softmax([1, 0, 0])
    loss_wrong = -math.log(1 / (math.e + 2))
    assert math.isclose(m["test_loss"], (4 * expected + 6 * loss_wrong) / 10, rel_tol=1e-6)


def test_rank_slices_partition_the_test_set():
    """Without a process group the sums are not reduced: each rank's counts are its slice."""
    accs = [image_metrics(PredictZero(), Fixed(), 4, torch.device("cpu"), r, 3)
            for r in range(3)]
    # slices [0, 3), [3, 6), [6, 10): zeros-labelled samples 0 | 3 | 6, 9
    assert [round(a["test_accuracy"], 4) for a in accs] == [round(1 / 3, 4), round(1 / 3, 4),
                                                            0.5]


def test_an_untrained_uniform_model_has_perplexity_the_vocabulary_size():
    torch.manual_seed(0)
    model = LSTMLanguageModel(vocab_size=50, hidden_size=8, num_layers=1)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    ppl = perplexity(model, torch.randint(0, 50, (400,)), n_streams=4, bptt=7,
                     device=torch.device("cpu"))
    assert math.isclose(ppl, 50.0, rel_tol=1e-5)
    assert model.training  # the mode is restored
