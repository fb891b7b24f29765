"""The uncertainty experiment on small images made here: its scores are those of the saved model's predictions."""
import numpy as np
import pytest

import dropcore
from dropcore import calibration, uncertainty
from dropcore.testing import striped_images


@pytest.fixture(scope="module")
def images():
    """Three classes of 10x10 images told apart by which third is bright, with enough noise for some errors."""
    return striped_images(240, 10, background=0.8, stripe=0.4)


@pytest.fixture(scope="module")
def run(images, tmp_path_factory):
    path = tmp_path_factory.mktemp("unc") / "model.dropcore"
    result = uncertainty.uncertainty_experiment(*images, epochs=2, batch_size=16, mc_samples=(1, 5), rotation=30,
                                                noise=0.3, seed=2, seeds=2, save_model=path)
    return result, path


def test_scores_are_those_of_the_trained_models_predictions(images, run):
    result, path = run
    x, y = images
    assert result["n_train"] == 192 and result["n_test"] == 48 and result["mc_samples"] == [1, 5]
    assert result["seeds"] == [2, 3] and [r["seed"] for r in result["runs"]] == [2, 3]
    first = result["runs"][0]  # the saved model is the first seed's
    assert list(first["datasets"]) == ["held-out", "rotated 30°", "noise 0.3"]
    model = dropcore.load_model(path)
    _, x_te, _, y_te = dropcore.data.train_test_split(x, y, test_size=0.2, seed=2, stratify=True)
    shifted = {"held-out": x_te, "rotated 30°": uncertainty.rotate(x_te, 30),
               "noise 0.3": uncertainty.add_noise(x_te, 0.3, 2)}
    for name, d in first["datasets"].items():
        assert list(d["methods"]) == ["deterministic", "mc-1", "mc-5"]
        for method, row in d["methods"].items():
            if method == "deterministic":
                probs = model.predict(shifted[name])
            else:
                probs = model.predict(shifted[name], mc_samples=int(method[3:]), seed=2)[0]
            assert row == uncertainty.score(probs, y_te, 15)
            assert row["nll"] == calibration.nll(probs, y_te) and row["n"] == 48
            assert row["n_errors"] == int((probs.argmax(1) != y_te).sum())
    det, mc = (first["datasets"]["held-out"]["methods"][m] for m in ("deterministic", "mc-5"))
    assert det != mc  # Monte-Carlo dropout really ran
    assert result["runs"][1]["datasets"]["held-out"] != first["datasets"]["held-out"]  # another seed, another run


def test_summary_over_seeds_and_paired_against_deterministic(run):
    result, _ = run
    summary = result["summary"]
    assert summary["baseline"] == "deterministic" and summary["seeds"] == [2, 3]
    for name, d in summary["datasets"].items():
        assert d["methods"]["deterministic"]["vs_baseline"] is None
        for method, row in d["methods"].items():
            rows = [r["datasets"][name]["methods"][method] for r in result["runs"]]
            base = [r["datasets"][name]["methods"]["deterministic"] for r in result["runs"]]
            for m in ("accuracy", "nll", "ece"):
                assert row["measures"][m]["mean"] == pytest.approx(np.mean([r[m] for r in rows]))
                assert row["measures"][m]["n"] == 2 and row["measures"][m]["half_width"] is not None
                if method != "deterministic":
                    diff = row["vs_baseline"][m]
                    assert diff["mean"] == pytest.approx(np.mean([a[m] - b[m] for a, b in zip(rows, base)]))
    table = uncertainty.format_table(result)
    nll = summary["datasets"]["noise 0.3"]["methods"]["mc-5"]["measures"]["nll"]
    assert f"{nll['mean']:.3f} ± {nll['half_width']:.3f}" in table
    assert "Paired against deterministic" in table and len(table.splitlines()) == 3 + 9 + 2 + 2 + 6 + 1 + \
        len(table.split("\n\n")[-1].splitlines())


def test_same_seed_same_numbers(images, run):
    again = uncertainty.uncertainty_experiment(*images, epochs=2, batch_size=16, mc_samples=(1, 5), rotation=30,
                                               noise=0.3, seed=3, seeds=1)
    assert again["runs"] == run[0]["runs"][1:]  # seed 3 alone gives what it gave as the second of two


def test_shifts():
    x = np.random.default_rng(1).random((3, 6, 6, 2), dtype=np.float32)
    np.testing.assert_allclose(uncertainty.rotate(x, 90), np.rot90(x, 1, axes=(1, 2)), atol=1e-6)
    np.testing.assert_array_equal(uncertainty.rotate(x, 0), x)
    a, b = uncertainty.add_noise(x, 0.5, 3), uncertainty.add_noise(x, 0.5, 3)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= x.min() and a.max() <= x.max() and np.abs(a - x).mean() > 0.1


def test_a_perfect_model_has_no_error_auroc():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    row = uncertainty.score(probs, np.array([0, 1]))
    assert row["auroc_entropy"] is None and row["n_errors"] == 0 and row["accuracy"] == 1.0


@pytest.mark.parametrize("kwargs, match", [
    ({"model": "mlp"}, r"Invalid value for `model`: expected a zoo CNN"),
    ({"mc_samples": 10}, r"Invalid value for `mc_samples`: expected a non-empty list"),
    ({"mc_samples": (1, 0)}, r"Invalid value for `mc_samples`: expected an integer >= 1"),
    ({"noise": -1}, r"Invalid value for `noise`"),
    ({"rate": 0.0}, r"Invalid value for `rate`: expected a float in \(0.0, 1.0\)"),
    ({"seeds": 0}, r"uncertainty_experiment: Invalid value for `seeds`: expected an integer >= 1. Received: seeds=0"),
])
def test_bad_arguments(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        uncertainty.uncertainty_experiment(*images, **kwargs)
    with pytest.raises(ValueError, match=r"`x`: expected images of shape \(N, H, W, C\)"):
        uncertainty.uncertainty_experiment(images[0].reshape(240, -1), images[1])


def test_one_rate_for_every_dropout(images, tmp_path):
    result = uncertainty.uncertainty_experiment(*images, epochs=1, batch_size=32, mc_samples=(2,), rotation=0,
                                                noise=0, rate=0.3, seeds=1, save_model=tmp_path / "m.dropcore")
    rates = [la.rate for la in dropcore.load_model(tmp_path / "m.dropcore").layers if hasattr(la, "rate")]
    assert rates == [0.3, 0.3] and result["rate"] == 0.3 and list(result["runs"][0]["datasets"]) == ["held-out"]
    assert "One seed: no interval" in uncertainty.format_table(result)
