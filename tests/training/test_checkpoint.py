import random

import numpy as np
import pytest
import torch

from legw.schedule import BaseRecipe
from legw.training import checkpoint
from legw.training.position import Position, resume_position


def _state(step: int) -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "position": Position(step=step).to_dict(8, 4), "ranks": [{"rng": checkpoint.rng_state(),
                                                                   "hidden": None}],
            "recipe": {}, "config": {"milestones": None}, "extra": {"last_eval": {}}}


def test_roundtrip_loads_with_weights_only(tmp_path):
    state = _state(5)
    path = checkpoint.save(tmp_path, state, 5, keep=3)
    assert path.name == "step-000000005.pt"
    back = checkpoint.load(path)
    assert torch.equal(back["model"]["weight"], state["model"]["weight"])
    assert back["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)
    assert back["position"]["step"] == 5


def test_keeps_only_newest(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, _state(step), step, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "step-000000003.pt", "step-000000004.pt"]
    assert not list(checkpoint.checkpoint_dir(tmp_path).glob("*.tmp"))


def test_no_checkpoint_gives_none(tmp_path):
    assert checkpoint.load_latest(tmp_path) is None


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    checkpoint.save(tmp_path, _state(1), 1, keep=5)
    newest = checkpoint.save(tmp_path, _state(2), 2, keep=5)
    newest.write_bytes(newest.read_bytes()[:100])
    warnings = []
    state, path = checkpoint.load_latest(tmp_path, warn=warnings.append)
    assert state["position"]["step"] == 1 and path.name == "step-000000001.pt"
    assert "step-000000002.pt is unreadable" in warnings[0]


def test_all_corrupt_is_a_clear_error(tmp_path):
    checkpoint.save(tmp_path, _state(1), 1, keep=5).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="--resume: no readable checkpoint.*step-000000001.pt"):
        checkpoint.load_latest(tmp_path, warn=lambda m: None)


def test_rng_state_roundtrip_replays_every_generator(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    checkpoint.save(tmp_path, {**_state(0), "ranks": [{"rng": checkpoint.rng_state()}]}, 0, 1)
    first = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    state, _ = checkpoint.load_latest(tmp_path)
    checkpoint.set_rng_state(state["ranks"][0]["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2:] == again[2:]


def test_resume_position_same_batch_is_exact():
    recipe = BaseRecipe(32, 0.1, 0.0, 4.0).scale(32, 256)  # 8 steps per epoch
    saved = Position(step=11, epoch=1, step_in_epoch=3, samples_seen=352).to_dict(32, 8)
    pos, elastic = resume_position(saved, 32, recipe)
    assert not elastic and (pos.step, pos.epoch, pos.step_in_epoch) == (11, 1, 3)


def test_elastic_resume_keeps_epoch_position():
    recipe = BaseRecipe(32, 0.1, 0.0, 4.0).scale(64, 256)  # 4 steps per epoch at 64
    saved = Position(step=12, epoch=1, step_in_epoch=4, samples_seen=384).to_dict(32, 8)
    pos, elastic = resume_position(saved, 64, recipe)
    assert elastic
    assert (pos.epoch, pos.step_in_epoch, pos.step) == (1, 2, 6)  # epoch 1.5 either way
    assert pos.epoch_position(recipe) == 1.5
    assert pos.step == recipe.step_at_epoch(1.5)
