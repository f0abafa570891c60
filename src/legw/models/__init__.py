"""Models of the LEGW experiments: LSTM classifier / language model, ResNet-50, a small ResNet."""

from legw.models.lstm import LSTMClassifier, LSTMLanguageModel, detach_hidden
from legw.models.resnet import resnet50, small_resnet

__all__ = ["LSTMClassifier", "LSTMLanguageModel", "detach_hidden", "resnet50", "small_resnet"]
