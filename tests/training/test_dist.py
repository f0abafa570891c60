"""torch.distributed helpers: the torchrun environment, and no-ops in one process."""

import pytest
import torch

from legw.training import dist


def test_no_torchrun_environment_is_one_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    env = dist.detect()
    assert (env.rank, env.world_size, env.local_rank, env.is_distributed) == (0, 1, 0, False)


def test_torchrun_environment_is_read(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = dist.detect()
    assert (env.rank, env.world_size, env.local_rank, env.is_distributed) == (3, 4, 1, True)


def test_a_rank_outside_the_world_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match=r"RANK: must lie in \[0, WORLD_SIZE=4\), got 4"):
        dist.detect()


def test_helpers_are_identities_in_one_process():
    assert not torch.distributed.is_initialized()
    t = torch.tensor([2.0, 4.0])
    assert dist.all_reduce_mean(t) is t and t.tolist() == [2.0, 4.0]
    assert dist.all_reduce_sum(t) is t and t.tolist() == [2.0, 4.0]
    assert dist.gather_to_main({"a": 1}) == [{"a": 1}]
    assert dist.broadcast_object(5) == 5
    assert dist.is_main()
    dist.barrier()
    dist.init(dist.DistEnv(), torch.device("cpu"))  # one process: joins nothing
    assert not torch.distributed.is_initialized()
    dist.cleanup()
