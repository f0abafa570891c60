"""legw: large-batch training for PyTorch.

Tune once at a small batch, then scale the batch k-fold with sqrt LR scaling and linear-epoch
gradual warmup (LEGW) on top of SGD, LARS or LAMB (You et al., arXiv 1901.08256).
"""

from legw.schedule import BaseRecipe, Recipe

__all__ = ["BaseRecipe", "Recipe"]
__version__ = "0.1.0"
