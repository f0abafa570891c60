"""``dist.cleanup()`` frees the process group: nothing keeps it (and gloo's worker threads)
alive into interpreter shutdown, where gloo aborts a process now and then ("terminate called
without an active exception"; the cause is in ``cleanup``'s docstring)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import env

# A fresh process (the first import of torch.distributed.nn must come after init, as under
# torchrun): gloo on one rank, a DDP step and an FSDP2 step with legw's helpers, the run's
# objects freed, then cleanup. Prints the references left to the group and the gloo threads.
SCRIPT = textwrap.dedent("""
    import gc, sys
    from pathlib import Path
    import torch
    import torch.distributed as td
    from torch.nn.parallel import DistributedDataParallel
    from legw.training import dist

    def gloo_threads():
        tasks = Path("/proc/self/task").iterdir()
        return sum((t / "comm").read_text().startswith(("pt_gloo", "gloo")) for t in tasks)

    td.init_process_group("gloo", store=td.HashStore(), rank=0, world_size=1)
    group = td.group.WORLD
    ddp = DistributedDataParallel(torch.nn.Linear(4, 2))
    ddp(torch.ones(3, 4)).sum().backward()
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2))
    dist.fully_shard_model(model, torch.device("cpu"))
    model(torch.ones(3, 4)).sum().backward()
    torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    del ddp, model
    gc.collect()
    before = gloo_threads()
    dist.cleanup()
    refs = sys.getrefcount(group) - 2  # this name and getrefcount's argument
    del group
    print(refs, before, gloo_threads())
""")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc/self/task")
def test_cleanup_frees_the_process_group_and_joins_gloo_threads():
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    refs, before, after = map(int, done.stdout.split())
    # torch 2.13 kept 11: ten default arguments of torch.distributed.nn.functional (imported
    # by DDP) and FSDP's DeviceMesh, itself kept by DTensor's caches
    assert refs == 0
    assert before > 0 and after == 0
    assert "terminate called" not in done.stderr
