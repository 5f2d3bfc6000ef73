"""trustml_lab.models: architectures, fit, prediction, safetensors weights."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn.metrics
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


def test_sizes_are_checked_with_a_hint_instead_of_a_deep_traceback():
    with pytest.raises(TypeError, match=r"^hidden: .*hidden=\(16,\)"):
        models.MLP(8, hidden=16)
    with pytest.raises(TypeError, match=r"^channels: .*channels=\(16, 16\)"):
        models.SmallCNN(channels=16)
    with pytest.raises(TypeError, match="^in_features: expected an int"):
        models.MLP(8.0)
    # NumPy integers are sizes too, and lists work like tuples
    mlp = models.MLP(np.int64(3), hidden=[np.int32(5)], out_features=np.int64(4))
    assert [m.out_features for m in mlp if isinstance(m, nn.Linear)] == [5, 4]
    cnn = models.SmallCNN(channels=[np.int64(2), 3], hidden=np.int16(5), num_classes=np.int64(7))
    assert cnn(torch.zeros(1, 1, 28, 28)).shape == (1, 7)


def test_fit_learns_and_returns_epoch_losses():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = models.MLP(4, hidden=(16,))
    history = models.fit(model, x, y, epochs=15, batch_size=32, lr=0.02,
                         generator=torch.Generator().manual_seed(0), progress=False)
    assert len(history) == 15 and history[-1] < 0.5 * history[0]
    assert models.accuracy(model, x, y) > 0.9


@pytest.mark.parametrize("training", [True, False])
def test_fit_trains_in_train_mode_and_restores_every_submodule(training):
    """A dropout layer is active during fit (the loss differs from eval mode) and the modes found come back."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2)).train(training)
    model[2].train(not training)  # a mixed state, restored exactly
    before = {name: m.training for name, m in model.named_modules()}
    seen = []

    def loss_fn(logits, target):
        seen.append(all(m.training for m in model.modules()))
        return nn.functional.cross_entropy(logits, target, reduction="none")

    models.fit(model, x, y, epochs=1, batch_size=32, lr=0.01, loss_fn=loss_fn, progress=False)
    assert seen == [True, True]
    assert {name: m.training for name, m in model.named_modules()} == before


def test_fit_restores_the_mode_when_it_refuses_midway():
    model = models.MLP(3, hidden=(4,)).eval()
    with pytest.raises(ValueError, match="^loss_fn"):
        models.fit(model, torch.randn(8, 3), torch.zeros(8, dtype=torch.long), epochs=1, batch_size=4, lr=0.1,
                   loss_fn=nn.CrossEntropyLoss(), progress=False)
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_refuses_a_mean_reduced_loss_before_changing_the_model(weighted):
    """nn.CrossEntropyLoss() returns one number: weights could not apply, so it is refused, weights or not."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    model = models.MLP(3, hidden=(4,))
    before = [p.clone() for p in model.parameters()]
    kwargs = {"sample_weight": torch.rand(16)} if weighted else {}
    with pytest.raises(ValueError, match=r'^loss_fn: expected one loss per example.*reduction="none"'):
        models.fit(model, x, y, epochs=1, batch_size=8, lr=0.1, loss_fn=nn.CrossEntropyLoss(), progress=False,
                   **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fit_converts_inputs_to_the_models_dtype_at_the_edge():
    """float64 data into a float32 model trains exactly as the float32 data would."""
    torch.manual_seed(4)
    x, y = torch.randn(48, 3, dtype=torch.float64), torch.randint(0, 2, (48,))
    a, b = models.MLP(3, hidden=(5,)), models.MLP(3, hidden=(5,))
    b.load_state_dict(a.state_dict())
    common = {"epochs": 2, "batch_size": 16, "lr": 0.01, "progress": False}
    ha = models.fit(a, x, y, generator=torch.Generator().manual_seed(0), **common)
    hb = models.fit(b, x.float(), y.numpy(), generator=torch.Generator().manual_seed(0), **common)
    assert ha == hb
    double = models.MLP(3, hidden=(5,)).double()
    models.fit(double, x.float(), y, **common)  # float32 data into a float64 model
    assert all(p.dtype == torch.float64 for p in double.parameters())


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
    ({"lr": float("inf")}, "lr"), ({"epochs": np.float64(2)}, "epochs"),
    ({"sample_weight": -torch.ones(4)}, "sample_weight"), ({"sample_weight": torch.ones(3)}, "sample_weight"),
    ({"sample_weight": torch.tensor([1.0, float("nan"), 1.0, 1.0])}, "sample_weight"),
])
def test_fit_rejects_bad_arguments(kwargs, name):
    arguments = {"epochs": 1, "batch_size": 2, "lr": 0.1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        models.fit(models.MLP(2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long),
                   progress=False, **arguments)


def test_predict_and_proba_agree_for_every_internal_batch_size():
    torch.manual_seed(0)
    model = models.MLP(3)
    x = torch.randn(10, 3)
    proba = models.predict_proba(model, x, internal_batch_size=3)
    torch.testing.assert_close(proba.sum(1), torch.ones(10))
    torch.testing.assert_close(proba, torch.softmax(model(x), dim=1))
    for size in (1, 4, 10, 4096):
        torch.testing.assert_close(models.predict_proba(model, x, internal_batch_size=size), proba)
    assert torch.equal(models.predict(model, x), proba.argmax(1))


def test_the_old_batch_size_keyword_still_works_with_a_future_warning():
    torch.manual_seed(0)
    model, x = models.MLP(3), torch.randn(10, 3)
    y = torch.randint(0, 2, (10,))
    for function, args in ((models.predict_proba, (x,)), (models.predict, (x,)), (models.accuracy, (x, y))):
        with pytest.warns(FutureWarning, match="'batch_size' is renamed 'internal_batch_size'"):
            old = function(model, *args, batch_size=3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            new = function(model, *args, internal_batch_size=3)
        assert old == new if isinstance(old, float) else torch.equal(old, new)


@pytest.mark.parametrize("function", [models.predict, models.predict_proba, models.accuracy])
@pytest.mark.parametrize("training", [True, False])
def test_prediction_runs_in_eval_mode_and_restores_the_mode(function, training):
    """Dropout is off while predicting (the result equals the eval-mode model's), and the mode comes back."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 32), nn.Dropout(0.5), nn.Linear(32, 2)).train(training)
    x, y = torch.randn(50, 3), torch.randint(0, 2, (50,))
    args = (x, y) if function is models.accuracy else (x,)
    first, second = function(model, *args), function(model, *args)
    assert model.training is training and model[1].training is training
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), dim=1)
    if function is models.predict_proba:
        torch.testing.assert_close(first, expected)
    elif function is models.predict:
        assert torch.equal(first, expected.argmax(1))
    assert first == second if isinstance(first, float) else torch.equal(first, second)


def test_accuracy_equals_sklearn_and_accepts_numpy_and_float_labels():
    torch.manual_seed(5)
    model = models.MLP(4, hidden=(8,), out_features=3)
    x = torch.randn(200, 4)
    y = torch.randint(0, 3, (200,))
    expected = sklearn.metrics.accuracy_score(y.numpy(), models.predict(model, x).numpy())
    assert models.accuracy(model, x, y) == pytest.approx(expected, abs=1e-7)
    assert models.accuracy(model, x.numpy().astype(np.float64), y.numpy()) == pytest.approx(expected, abs=1e-7)
    assert models.accuracy(model, x, y.double()) == pytest.approx(expected, abs=1e-7)


def test_accuracy_refuses_labels_that_would_broadcast_into_a_wrong_number():
    """(N, 1) labels against (N,) predictions would compare N x N pairs; they are refused instead."""
    model = models.MLP(3)
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"^y: expected a 1-d array.*\(6, 1\)"):
        models.accuracy(model, x, y[:, None])
    with pytest.raises(ValueError, match="^y: expected labels in 0..1"):
        models.accuracy(model, x, y + 1)
    with pytest.raises(ValueError, match="^y: expected whole-number"):
        models.accuracy(model, x, y + 0.5)


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


def test_a_file_for_another_architecture_is_refused_before_anything_is_copied(tmp_path):
    """The first layer would fit; the refusal still leaves it untouched (no partial load)."""
    path = tmp_path / "three_classes.safetensors"
    digest = models.save_weights(models.MLP(3, hidden=(4,), out_features=3), path)
    model = models.MLP(3, hidden=(4,), out_features=2)
    before = [t.clone() for t in model.state_dict().values()]
    with pytest.raises(ValueError, match=r"^path: three_classes.safetensors does not fit the model: 2.weight"):
        models.load_weights(model, path, sha256=digest)
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))


@pytest.mark.parametrize("digest, error", [
    (lambda d: d.upper(), ValueError), (lambda d: d[:32], ValueError), (lambda d: d + "0", ValueError),
    (lambda d: "", ValueError), (lambda d: bytes.fromhex(d), TypeError),
])
def test_a_malformed_digest_is_named(tmp_path, digest, error):
    path = tmp_path / "mlp.safetensors"
    actual = models.save_weights(models.MLP(3), path)
    with pytest.raises(error, match="^sha256: expected"):
        models.load_weights(models.MLP(3), path, sha256=digest(actual))


def test_a_pickle_is_not_accepted_as_weights(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weight": 1}))
    with pytest.raises(ValueError, match="not a valid safetensors"):
        models.load_weights(models.MLP(2), path)


def test_reference_cnn_is_verified_and_accurate():
    cnn = models.load_reference(models.SmallCNN(), "mnist_cnn.safetensors")
    _, x_test, _, y_test = data.load_mnist_split()
    assert models.accuracy(cnn, x_test, y_test) > 0.94
