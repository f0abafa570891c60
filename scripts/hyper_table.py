"""Study 13's table (docs/results.md): test error of every run found under the given
directories, one row per optimizer and rule (the LR rule alone, ``srr``, ``srr`` under
``--scaling adaptive``), one column per batch and epoch budget; seeds listed ``a / b``.

    python scripts/hyper_table.py records/hyper records/long/opt-8192-10ep ...

``--optimizers`` keeps those optimizers' rows (default: Adam, AdamW, LAMB, the study's).

A run is a directory with ``config.json`` and ``summary.json`` (``legw train``'s); the epoch
budget of an adaptive run is its base recipe's, and its cell adds the epochs it used.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from legw.training.run_dir import error_from_accuracy


def runs(roots: list[str]):
    """``(optimizer, rule, batch, epochs, seed, test error, epochs used)`` of every run."""
    for root in roots:
        for summary in sorted(Path(root).rglob("summary.json")):
            config = json.loads((summary.parent / "config.json").read_text())
            c, s = config["config"], json.loads(summary.read_text())
            if s["status"] != "completed" or "test_accuracy" not in s["final"]:
                continue
            rule = c.get("optimizer_scaling", "none")
            rule = "LR only" if rule == "none" else rule
            if c.get("scaling") == "adaptive":
                rule += " + adaptive"
            yield (c["optimizer"], rule, c["global_batch_size"], c["epochs"], c["seed"],
                   error_from_accuracy(s["final"]["test_accuracy"]), s["epochs"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", metavar="DIR")
    p.add_argument("--optimizers", nargs="+", default=["adam", "adamw", "lamb"], metavar="NAME")
    args = p.parse_args()
    cells: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    columns = set()
    for opt, rule, batch, epochs, seed, error, used in runs(args.roots):
        if opt not in args.optimizers:
            continue
        columns.add((batch, epochs))
        cells[(opt, rule)][(batch, epochs)].append((seed, error, used, "adaptive" in rule))
    columns = sorted(columns)
    print("| optimizer | rule | " + " | ".join(f"{b}, {e:g} ep" for b, e in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for (opt, rule), row in sorted(cells.items()):
        shown = []
        for col in columns:
            found = sorted(row.get(col, []))
            text = " / ".join(f"{err:.2f}" for _, err, _, _ in found) or "–"
            if found and found[0][3]:
                text += f" ({found[0][2]:.0f} ep)"
            shown.append(text)
        print(f"| {opt} | {rule} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main()
