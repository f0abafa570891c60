"""legw.ema: the EMA decay at a k-fold batch (rho ** k), and torch's AveragedModel built on it."""

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from legw.ema import ema_model, scaled_ema_decay

RHO = 0.9


def test_k_1_keeps_the_decay_and_k_4_raises_it_to_the_fourth_power():
    assert scaled_ema_decay(0.9999, 256, 256) == 0.9999
    assert scaled_ema_decay(RHO, 256, 1024) == pytest.approx(RHO ** 4)
    assert scaled_ema_decay(RHO, 1024, 256) == pytest.approx(RHO ** 0.25)  # a smaller batch
    assert scaled_ema_decay(0.0, 1, 8) == 0.0


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()


def _set(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for t in [*model.parameters(), model[1].running_mean, model[1].running_var]:
            t.fill_(value)


def test_one_update_at_4_b0_tracks_the_weights_as_4_updates_at_b0():
    """Weights constant over each large step: ``rho ** 4`` once == ``rho`` four times."""
    model = _model()
    large = ema_model(model, RHO, base_batch_size=32, batch_size=128)
    small = ema_model(model, RHO)
    assert isinstance(large, AveragedModel) and large.use_buffers
    expected = 0.0
    for step, w in enumerate([0.0, 1.0, -2.0, 3.0, 3.0, 0.5]):
        _set(model, w)
        large.update_parameters(model)
        for _ in range(4):
            small.update_parameters(model)
        # by hand: the first update copies, each later one e -> rho^4 e + (1 - rho^4) w
        expected = w if step == 0 else RHO ** 4 * expected + (1 - RHO ** 4) * w
        for a, b in zip(large.module.state_dict().values(), small.module.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(large.module[0].weight,
                                   torch.full_like(model[0].weight, expected))
        # use_buffers: BatchNorm's running statistics are averaged too
        torch.testing.assert_close(large.module[1].running_var,
                                   torch.full_like(model[1].running_var, expected))
    assert int(large.n_averaged) == 6 and int(small.n_averaged) == 24


def test_state_dict_round_trip(tmp_path):
    model = _model()
    ema = ema_model(model, RHO, base_batch_size=32, batch_size=64)
    for w in (1.0, 2.0, 4.0):
        _set(model, w)
        ema.update_parameters(model)
    torch.save(ema.state_dict(), tmp_path / "ema.pt")
    restored = ema_model(_model(), RHO, base_batch_size=32, batch_size=64)
    restored.load_state_dict(torch.load(tmp_path / "ema.pt", weights_only=True))
    assert int(restored.n_averaged) == 3
    _set(model, -1.0)
    for e in (ema, restored):  # and it carries on as the original would
        e.update_parameters(model)
    for a, b in zip(ema.state_dict().values(), restored.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_ema_is_a_copy_on_its_device():
    model = _model()
    ema = ema_model(model, RHO, device="cpu")
    assert ema.module is not model and ema.module[0].weight.device.type == "cpu"
    _set(model, 5.0)
    assert not torch.equal(ema.module[0].weight, model[0].weight)


@pytest.mark.parametrize("args, message", [
    ((1.0, 32, 64), r"ema_decay: must lie in \[0, 1\), got 1.0"),
    ((-0.1, 32, 64), "ema_decay: must lie in"),
    ((RHO, 0, 64), "^base_batch_size: must be a positive integer, got 0"),
    ((RHO, 32, 64.5), "^batch_size: must be a positive integer, got 64.5"),
    ((RHO, 32, True), "^batch_size: must be a positive integer, got True"),
])
def test_bad_inputs_name_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        scaled_ema_decay(*args)
    with pytest.raises(ValueError, match=message):
        ema_model(torch.nn.Linear(2, 2), *args)


def test_ema_model_needs_both_batch_sizes_or_neither():
    with pytest.raises(ValueError, match="base_batch_size, batch_size: give both or neither"):
        ema_model(torch.nn.Linear(2, 2), RHO, batch_size=64)
    with pytest.raises(ValueError, match="ema_decay: must lie"):
        ema_model(torch.nn.Linear(2, 2), 1.5)
