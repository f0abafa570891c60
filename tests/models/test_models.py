import pytest
import torch

from legw.models import LSTMClassifier, LSTMLanguageModel, detach_hidden, resnet50, small_resnet


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lstm_classifier_shapes():
    model = LSTMClassifier()
    x = torch.rand(5, 28, 28)
    assert model(x).shape == (5, 10)
    torch.testing.assert_close(model(x.unsqueeze(1)), model(x))  # (B, 1, 28, 28) accepted
    # 1 layer, 128 hidden: 4*128*(28 + 128 + 2) LSTM weights and biases + 128*10 + 10 head
    assert n_params(model) == 4 * 128 * (28 + 128 + 2) + 1290


def test_lstm_classifier_reads_rows_in_order():
    torch.manual_seed(0)
    model = LSTMClassifier(hidden_size=16)
    x = torch.rand(2, 28, 28)
    assert not torch.allclose(model(x), model(x.flip(1)))


def test_lstm_classifier_rejects_raw_pixels_and_bad_shapes():
    model = LSTMClassifier()
    with pytest.raises(ValueError, match=r"expects float images .* got torch.uint8"):
        model(torch.zeros(2, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"expects \(B, steps, 28\), got \(2, 28, 27\)"):
        model(torch.zeros(2, 28, 27))
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        LSTMClassifier(hidden_size=0)


@pytest.mark.parametrize("dropout, init_range", [(0.0, 0.1), (0.65, 0.04)])
def test_language_model_shapes_and_init(dropout, init_range):
    model = LSTMLanguageModel(50, 12, 2, dropout=dropout, init_range=init_range)
    tokens = torch.randint(0, 50, (7, 3))
    logits, (h, c) = model(tokens, model.init_hidden(3))
    assert logits.shape == (7, 3, 50)
    assert h.shape == c.shape == (2, 3, 12)
    for p in model.parameters():
        assert p.abs().max() <= init_range
    # uniform init fills the whole range (not a constant or a tiny subrange)
    assert model.decoder.weight.abs().max() > 0.9 * init_range


def test_language_model_hidden_carries_state():
    torch.manual_seed(0)
    model = LSTMLanguageModel(20, 8, 2).eval()
    tokens = torch.randint(0, 20, (10, 2))
    full, _ = model(tokens)
    first, hidden = model(tokens[:4])
    second, _ = model(tokens[4:], detach_hidden(hidden))
    torch.testing.assert_close(torch.cat([first, second]), full)
    fresh, _ = model(tokens[4:])  # without the carried state the result differs
    assert not torch.allclose(fresh, second)


def test_detach_hidden_cuts_the_graph():
    model = LSTMLanguageModel(20, 8, 1)
    _, hidden = model(torch.randint(0, 20, (3, 2)))
    assert all(h.requires_grad for h in hidden)
    detached = LSTMLanguageModel.detach_hidden(hidden)
    assert not any(h.requires_grad for h in detached)
    assert all(torch.equal(a, b) for a, b in zip(hidden, detached))


def test_language_model_errors():
    with pytest.raises(ValueError, match="dropout must be in"):
        LSTMLanguageModel(10, 4, 2, dropout=1.0)
    with pytest.raises(ValueError, match="init_range must be > 0"):
        LSTMLanguageModel(10, 4, 2, init_range=0)
    with pytest.raises(ValueError, match=r"tokens must be \(T, B\)"):
        LSTMLanguageModel(10, 4, 2)(torch.zeros(5, dtype=torch.long))


def test_ptb_small_param_count():
    # Zaremba small: embedding 10000x200, 2 LSTM layers of 200, softmax 200 -> 10000
    model = LSTMLanguageModel(10000, 200, 2)
    lstm = 2 * 4 * 200 * (200 + 200 + 2)
    assert n_params(model) == 10000 * 200 + lstm + 200 * 10000 + 10000


def test_resnet50_param_count_and_shape():
    model = resnet50()
    assert n_params(model) == 25_557_032
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    assert n_params(resnet50(num_classes=10)) == 25_557_032 - 2048 * 990 - 990


def test_resnet50_zero_init_residual():
    model = resnet50(zero_init_residual=True)
    last_bn = [m.body[-1].weight for m in model.modules() if hasattr(m, "body")]
    assert len(last_bn) == 16 and all(w.abs().sum() == 0 for w in last_bn)


def test_small_resnet_shapes():
    model = small_resnet()
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    model.eval()
    torch.testing.assert_close(model(x.squeeze(1)), model(x))  # (B, 28, 28) accepted too
    with pytest.raises(ValueError, match="expects normalized float images, got torch.uint8"):
        model(torch.zeros(2, 28, 28, dtype=torch.uint8))
    assert small_resnet(num_classes=3, in_channels=3)(torch.rand(2, 3, 28, 28)).shape == (2, 3)
    assert 100_000 < n_params(model) < 400_000
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        small_resnet(in_channels=0)


@pytest.mark.parametrize("make", [
    lambda: LSTMClassifier(),
    lambda: LSTMLanguageModel(30, 8, 2),
    lambda: small_resnet(),
])
def test_init_is_deterministic_given_seed(make):
    torch.manual_seed(123)
    a = make().state_dict()
    torch.manual_seed(123)
    b = make().state_dict()
    torch.manual_seed(124)
    c = make().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.fixture
def one_thread():
    """Tiny models run faster single-threaded, especially on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fit(model, x, y, steps, lr, loss_of):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("make", [lambda: LSTMClassifier(hidden_size=16),
                                  lambda: small_resnet(widths=(4, 8, 8))])
def test_classifiers_can_fit_a_small_batch(make, one_thread):
    torch.manual_seed(0)
    x, y = torch.randn(8, 28, 28), torch.randint(0, 10, (8,))
    ce = lambda m, x, y: torch.nn.functional.cross_entropy(m(x), y)  # noqa: E731
    losses = _fit(make(), x, y, 30, 3e-2, ce)
    assert losses[-1] < 0.3 * losses[0]


def test_language_model_learns_a_periodic_sequence(one_thread):
    torch.manual_seed(0)
    model = LSTMLanguageModel(7, 16, 2)
    data = torch.arange(7).repeat(4).view(-1, 1).expand(-1, 2)  # (28, 2), period 7

    def loss_of(m, x, y):
        logits, _ = m(x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 7), y.reshape(-1))

    losses = _fit(model, data[:-1], data[1:], 60, 3e-2, loss_of)
    assert losses[0] > 1.5 and losses[-1] < 0.2  # from ~ln 7 to near-deterministic
