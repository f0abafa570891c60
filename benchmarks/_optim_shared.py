"""What the optimizer-step benchmarks (``optim_step.py``, ``gpu_optim_step.py``) share: the
parameter shapes they step over, the memory-traffic floor of each update rule, and timm's
optimizers to compare against."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def resnet50_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's ResNet-50 (bottleneck v1.5), in module order."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]  # stem conv + BN
    in_ch = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            out_ch = width * 4
            shapes += [(width, in_ch, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(out_ch, width, 1, 1), (out_ch,), (out_ch,)]
            if b == 0:
                shapes += [(out_ch, in_ch, 1, 1), (out_ch,), (out_ch,)]  # downsample
            in_ch = out_ch
    shapes += [(1000, 2048), (1000,)]
    return shapes


def bert_large_shapes(layers: int = 24, hidden: int = 1024, intermediate: int = 4096,
                      vocab: int = 30522, positions: int = 512) -> list[tuple[int, ...]]:
    """Parameter shapes of BERT-large (embeddings, encoder layers, pooler), no task head."""
    shapes: list[tuple[int, ...]] = [(vocab, hidden), (positions, hidden), (2, hidden),
                                     (hidden,), (hidden,)]  # embeddings + their LayerNorm
    for _ in range(layers):
        shapes += [(hidden, hidden), (hidden,)] * 4  # Q, K, V, attention output
        shapes += [(hidden,), (hidden,)]  # attention LayerNorm
        shapes += [(intermediate, hidden), (intermediate,), (hidden, intermediate), (hidden,)]
        shapes += [(hidden,), (hidden,)]  # output LayerNorm
    shapes += [(hidden, hidden), (hidden,)]  # pooler
    return shapes


# Tensor passes a step cannot avoid: (reads + writes) per value.
FLOOR_PASSES = {
    "SGD momentum (r w,g,v; w w,v)": 5,
    "AdamW (r w,g,m,v; w w,m,v)": 7,
    "LARS (norms r w,g; then SGD pass)": 7,
    "LAMB (r w,g,m,v w m,v + norms; r w,m,v w w)": 10,
}


def load_timm() -> types.ModuleType | None:
    """timm's ``optim`` folder as a stand-alone package (its ``__init__`` needs torchvision);
    ``None`` when timm is not installed (``pip install timm --no-deps``) or its files do not
    load this way (another timm layout: a note, and the comparison goes on without it)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "optim"
    pkg = types.ModuleType("timm_optim")
    pkg.__path__ = [str(folder)]
    sys.modules["timm_optim"] = pkg
    try:
        for name in ("lars", "lamb"):
            mod_spec = importlib.util.spec_from_file_location(f"timm_optim.{name}",
                                                              folder / f"{name}.py")
            mod = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_spec.name] = mod
            mod_spec.loader.exec_module(mod)
            setattr(pkg, name, mod)
    except Exception as e:  # any failure only drops the timm rows
        print(f"timm's optimizers did not load from {folder} ({type(e).__name__}: {e}); skipped")
        return None
    return pkg
