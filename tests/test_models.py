"""trustml_lab.models: architectures, fit, prediction, safetensors weights."""

import pickle

import pytest
import torch
from torch import nn

from trustml_lab import data, models


def test_shapes_and_no_batchnorm():
    assert models.MLP(5, hidden=(7, 3), out_features=4)(torch.zeros(2, 5)).shape == (2, 4)
    cnn = models.SmallCNN()
    assert cnn(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in cnn.modules())
    with pytest.raises(ValueError, match="hidden"):
        models.MLP(3, hidden=(0,))


def test_fit_learns_and_returns_epoch_losses():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = models.MLP(4, hidden=(16,))
    history = models.fit(model, x, y, epochs=15, batch_size=32, lr=0.02,
                         generator=torch.Generator().manual_seed(0), progress=False)
    assert len(history) == 15 and history[-1] < 0.5 * history[0]
    assert models.accuracy(model, x, y) > 0.9
    assert not model.training


def test_fit_weights_each_example_loss_like_sklearn():
    """With one full batch, the first epoch's loss is sum(w * ce) / sum(w) at the start."""
    torch.manual_seed(1)
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    w = torch.rand(40) * 3
    model = models.MLP(3, hidden=(5,))
    with torch.no_grad():
        ce = nn.functional.cross_entropy(model(x), y, reduction="none")
    expected = float((w * ce).sum() / w.sum())
    history = models.fit(model, x, y, epochs=1, batch_size=40, lr=0.01, sample_weight=w, progress=False)
    assert history[0] == pytest.approx(expected, rel=1e-5)


def test_fit_zero_weight_examples_do_not_matter():
    torch.manual_seed(2)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    noise_y = 1 - y
    w = torch.cat([torch.ones(32), torch.zeros(32)])
    a, b = models.MLP(3, hidden=(4,)), models.MLP(3, hidden=(4,))
    b.load_state_dict(a.state_dict())
    models.fit(a, x, y, epochs=3, batch_size=64, lr=0.05, progress=False)
    models.fit(b, torch.cat([x, x]), torch.cat([y, noise_y]), epochs=3, batch_size=64, lr=0.05,
               sample_weight=w, progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_fit_adds_the_batch_penalty_to_the_loss():
    """With one full batch, the first epoch's loss is cross-entropy plus the penalty at the start."""
    torch.manual_seed(3)
    x, y = torch.randn(30, 3), torch.randint(0, 2, (30,))
    group = torch.arange(30) % 2
    model = models.MLP(3, hidden=(5,))

    def gap(logits, index):
        p = logits.softmax(dim=1)[:, 1]
        g = group[index]
        return (p[g == 0].mean() - p[g == 1].mean()).abs()

    with torch.no_grad():
        logits = model(x)
        expected = float(nn.functional.cross_entropy(logits, y) + 2.0 * gap(logits, torch.arange(30)))
    history = models.fit(model, x, y, epochs=1, batch_size=30, lr=0.01, progress=False,
                         penalty=lambda logits, index: 2.0 * gap(logits, index))
    assert history[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kwargs, name", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 1.5}, "batch_size"), ({"lr": -1.0}, "lr"),
    ({"sample_weight": -torch.ones(4)}, "sample_weight"), ({"sample_weight": torch.ones(3)}, "sample_weight"),
])
def test_fit_rejects_bad_arguments(kwargs, name):
    arguments = {"epochs": 1, "batch_size": 2, "lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=name):
        models.fit(models.MLP(2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long),
                   progress=False, **arguments)


def test_predict_and_proba_agree():
    model = models.MLP(3)
    x = torch.randn(10, 3)
    proba = models.predict_proba(model, x, batch_size=3)
    torch.testing.assert_close(proba.sum(1), torch.ones(10))
    assert torch.equal(models.predict(model, x), proba.argmax(1))


def test_weights_round_trip_and_refuse_a_wrong_hash(tmp_path):
    model = models.SmallCNN()
    path = tmp_path / "cnn.safetensors"
    digest = models.save_weights(model, path)
    restored = models.load_weights(models.SmallCNN(), path, sha256=digest)
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="cnn.safetensors"):
        models.load_weights(models.SmallCNN(), path, sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        models.load_weights(models.SmallCNN(), tmp_path / "missing.safetensors")


def test_a_pickle_is_not_accepted_as_weights(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weight": 1}))
    with pytest.raises(ValueError, match="not a valid safetensors"):
        models.load_weights(models.MLP(2), path)


def test_reference_cnn_is_verified_and_accurate():
    cnn = models.load_reference(models.SmallCNN(), "mnist_cnn.safetensors")
    _, x_test, _, y_test = data.load_mnist_split()
    assert models.accuracy(cnn, x_test, y_test) > 0.94
