"""PTB small against the batch (docs/results.md, study 12): validation perplexity per epoch of
each run, and the batch a ramp trained at, from run directories (``legw train``'s).

    python scripts/ptb_ramp_figure.py --runs "base, 20=DIR" "noise ramp=DIR" ... --out FIG.png
"""

from __future__ import annotations

import argparse

from legw.figures import pyplot, save_figure
from legw.training.run_dir import RunDir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, metavar="LABEL=DIR")
    p.add_argument("--out", required=True, metavar="PNG")
    args = p.parse_args()
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for item in args.runs:
        label, _, path = item.partition("=")
        rows = RunDir(path).metrics()
        evals = [r for r in rows if r["kind"] == "eval" and "valid_perplexity" in r]
        line, = ax.plot([r["epoch"] for r in evals], [r["valid_perplexity"] for r in evals],
                        marker=".", label=label)
        train = [r for r in rows if r["kind"] == "train" and "batch_size" in r]
        if train:
            bx.step([r["epoch"] for r in train], [r["batch_size"] for r in train], where="post",
                    label=label, color=line.get_color())
    ax.set(xlabel="epoch", ylabel="validation perplexity", yscale="log", title="PTB small")
    ax.legend()
    bx.set(xlabel="epoch", ylabel="global batch (streams)", yscale="log",
           title="the ramp's batch")
    bx.legend()
    fig.tight_layout()
    save_figure(fig, args.out)


if __name__ == "__main__":
    main()
