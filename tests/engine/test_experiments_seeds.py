"""The dropout experiments over seeds: the interval maths (against scipy.stats), the paired comparison with the
network without dropout, every seed kept in the results, and ``--seeds`` on the command line."""
import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from dropcore import cli, experiments, stats
from dropcore.testing import striped_images


# --- the interval maths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[0.1, 0.3], [0.91, 0.93, 0.95, 0.92, 0.90], list(np.linspace(-1, 2, 12))])
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_mean_interval_is_scipys_t_interval(values, confidence):
    got = stats.mean_interval(values, confidence)
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert got["n"] == len(values) and got["mean"] == pytest.approx(np.mean(values), abs=1e-15)
    assert got["std"] == pytest.approx(np.std(values, ddof=1))
    assert got["low"] == pytest.approx(low, rel=1e-12) and got["high"] == pytest.approx(high, rel=1e-12)
    assert got["half_width"] == pytest.approx((high - low) / 2, rel=1e-12)
    assert got["confidence"] == confidence


def test_one_value_has_no_interval():
    got = stats.mean_interval([0.25])
    assert got == {"n": 1, "mean": 0.25, "std": None, "half_width": None, "low": None, "high": None,
                   "confidence": 0.95}
    assert stats.format_interval(got) == "0.2500 ± n/a"
    assert stats.paired_difference([0.3], [0.25])["excludes_zero"] is None


def test_paired_difference_is_the_interval_of_the_differences_and_agrees_with_a_paired_t_test():
    rng = np.random.default_rng(0)
    base = rng.normal(0.10, 0.02, 6)
    for shift, expect in ((0.004, True), (0.0, False)):  # a small shift, against seed-to-seed noise of 0.02
        values = base + shift + np.array([0.001, -0.001, 0.002, -0.002, 0.0005, -0.0005])  # mean 0: no drift
        got = stats.paired_difference(values.tolist(), base.tolist())
        diffs = values - base
        low, high = scipy_stats.t.interval(0.95, 5, loc=diffs.mean(), scale=scipy_stats.sem(diffs))
        assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
        assert got["excludes_zero"] is expect
        # the interval excludes 0 exactly when the two-sided paired t-test rejects at 5%
        assert got["excludes_zero"] == (scipy_stats.ttest_rel(values, base).pvalue < 0.05)
        if expect:  # pairing separates what the two unpaired intervals, each as wide as the noise, cannot
            a, b = stats.mean_interval(values.tolist()), stats.mean_interval(base.tolist())
            assert a["low"] < b["high"] and b["low"] < a["high"]
    same = stats.paired_difference([0.2, 0.3, 0.4], [0.2, 0.3, 0.4])
    assert same["mean"] == 0.0 and same["half_width"] == 0.0 and same["excludes_zero"] is False
    assert stats.format_interval(stats.paired_difference([0.3, 0.5], [0.1, 0.2]), sign=True).startswith("+0.2500 ± ")


@pytest.mark.parametrize("call, match", [
    (lambda: stats.mean_interval([]), r"mean_interval: Invalid value for `values`: expected a non-empty sequence"),
    (lambda: stats.mean_interval([0.1, float("nan")]), r"\(not nan\). Received: values=\[0.1, nan\]"),
    (lambda: stats.mean_interval([0.1, "0.2"]), r"\(not '0.2'\)"),
    (lambda: stats.mean_interval(0.5), r"`values`: expected a non-empty sequence of finite numbers. Received: "
                                       r"values=0.5"),
    (lambda: stats.mean_interval([1.0, 2.0], confidence=95), r"Invalid value for `confidence`: expected a float "
                                                             r"in \(0.0, 1.0\). Received: confidence=95"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0]), r"paired_difference: Invalid value for `baseline`: "
                                                         r"expected one number per seed, as many as `values` \(2\). "
                                                         r"Received: baseline='1 numbers'"),
])
def test_bad_values_are_explained(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the summary of an experiment's runs ---------------------------------------------------------------------
def _rows(label, seeds, val_loss, val_acc=None, gap=None):
    out = []
    for i, s in enumerate(seeds):
        acc = 0.9 if val_acc is None else val_acc[i]
        g = 0.05 if gap is None else gap[i]
        out.append({"label": label, "seed": s, "train_loss": 0.01, "train_accuracy": acc + g,
                    "val_loss": val_loss[i], "val_accuracy": acc, "gap": g})
    return out


def test_summarize_pairs_each_variant_with_none_seed_by_seed():
    seeds = [4, 5, 6, 7]
    none = _rows("none", seeds, [0.20, 0.30, 0.25, 0.35], val_acc=[0.90, 0.92, 0.91, 0.93])
    # listed from the last seed to the first: the summary pairs by seed, not by position
    drop = _rows("conv", seeds[::-1], [0.31, 0.24, 0.28, 0.18], val_acc=[0.90, 0.93, 0.91, 0.93])
    summary = experiments.summarize(drop + none)
    assert summary["baseline"] == "none" and summary["seeds"] == seeds and summary["confidence"] == 0.95
    conv, base = summary["variants"]
    assert [conv["label"], base["label"]] == ["conv", "none"] and base["vs_baseline"] is None
    assert conv["measures"]["val_loss"] == stats.mean_interval([0.18, 0.28, 0.24, 0.31])
    d = conv["vs_baseline"]["val_loss"]
    assert d == stats.paired_difference([0.18, 0.28, 0.24, 0.31], [0.20, 0.30, 0.25, 0.35])
    assert d["mean"] == pytest.approx(-0.0225) and d["excludes_zero"] is True  # lower on every seed
    assert conv["vs_baseline"]["val_accuracy"]["excludes_zero"] is False
    assert set(conv["vs_baseline"]) == {"val_loss", "val_accuracy", "gap"}
    assert set(conv["measures"]) == set(experiments.MEASURES)

    result = {"summary": summary}
    table = experiments.format_table(result)
    lines = table.splitlines()
    assert lines[0] == "Mean ± 95% interval over 4 seeds [4, 5, 6, 7]"
    assert f"{d['mean']:+.4f} ± {d['half_width']:.4f} *" in table
    assert "Paired against none, seed by seed" in table
    assert f"conv: val loss lower than none by 0.0225 ± {d['half_width']:.4f}" in table
    assert lines[-1] == "Every other difference is within noise."
    # without a "none" the first label is the baseline; another can be named
    assert experiments.summarize(drop)["baseline"] == "conv"
    assert experiments.summarize(drop + none, baseline="conv")["variants"][1]["vs_baseline"]["val_loss"]["mean"] \
        == pytest.approx(0.0225)


def test_summarize_refuses_runs_that_cannot_be_paired():
    none = _rows("none", [0, 1, 2], [0.2, 0.3, 0.25])
    with pytest.raises(ValueError, match=r"summarize: Invalid value for `runs`: expected every label run on the "
                                         r"same seeds \('none' has \[0, 1, 2\]\). Received: runs=\"'conv' on seeds "
                                         r"\[0, 1\]\""):
        experiments.summarize(none + _rows("conv", [0, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match=r"one run per label and seed \('none' has seed 1 twice\)"):
        experiments.summarize(none + none[1:2])
    with pytest.raises(ValueError, match=r"Invalid value for `baseline`: expected one of the labels \['none'\]. "
                                         r"Received: baseline='dense'"):
        experiments.summarize(none, baseline="dense")
    with pytest.raises(ValueError, match=r"Invalid value for `runs`: expected a non-empty list of runs"):
        experiments.summarize([])


def test_no_separated_difference_is_said_so():
    seeds = [0, 1, 2]
    table = experiments.format_table({"summary": experiments.summarize(
        _rows("none", seeds, [0.2, 0.3, 0.25]) + _rows("dense", seeds, [0.3, 0.2, 0.26]))})
    assert table.splitlines()[-1] == "No difference from none is separated from noise: every paired interval " \
                                     "contains 0."
    assert not any(line.endswith("*") for line in table.splitlines())


# --- the experiments over seeds --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images():
    return striped_images(150, 8, background=0.3, stripe=0.7)


@pytest.fixture(scope="module")
def two_seeds(images):
    return experiments.dropout_experiment(*images, variants=["none", "conv+dense"], epochs=2, batch_size=16, seed=5,
                                          seeds=2)


def test_every_variant_runs_on_every_seed(images, two_seeds):
    res = two_seeds
    assert res["seeds"] == [5, 6] and res["seed"] == 5 and res["n_train"] == 120 and res["n_val"] == 30
    assert [(r["seed"], r["label"]) for r in res["runs"]] == [(5, "none"), (5, "conv+dense"), (6, "none"),
                                                             (6, "conv+dense")]
    by = {(r["seed"], r["label"]): r for r in res["runs"]}
    # another seed is another initialisation, split and shuffling: a different run of the same variant
    assert by[5, "none"]["history"]["loss"] != by[6, "none"]["history"]["loss"]
    # each seed's runs are those of that seed alone: the experiment is the union of one-seed experiments
    alone = experiments.dropout_experiment(*images, variants=["none", "conv+dense"], epochs=2, batch_size=16,
                                           seed=6, seeds=1)
    assert alone["runs"] == [by[6, "none"], by[6, "conv+dense"]]
    conv = res["summary"]["variants"][1]
    vals = [by[s, "conv+dense"]["val_loss"] for s in (5, 6)]
    assert conv["measures"]["val_loss"] == stats.mean_interval(vals)
    assert conv["vs_baseline"]["gap"] == stats.paired_difference(
        [by[s, "conv+dense"]["gap"] for s in (5, 6)], [by[s, "none"]["gap"] for s in (5, 6)])


def test_each_seed_splits_the_data_its_own_way(images):
    x, y = images
    a = experiments.split_for((x, y), 5, 0.2)
    b = experiments.split_for((x, y), 6, 0.2)
    assert len(a[2]) == len(b[2]) == 30 and not np.array_equal(a[2], b[2])
    np.testing.assert_array_equal(experiments.split_for((x, y), 5, 0.2)[2], a[2])
    given = (x[:100], y[:100], x[100:], y[100:])
    assert experiments.split_for(given, 5, None) == given  # validation data given: the same for every seed


def test_kinds_over_seeds(images):
    res = experiments.dropout_kinds_experiment(*images, kinds="none,spatial", epochs=1, batch_size=16, seeds=2)
    assert res["seeds"] == [0, 1] and [r["label"] for r in res["runs"]] == ["none", "spatial"] * 2
    assert [v["label"] for v in res["summary"]["variants"]] == ["none", "spatial"]
    assert res["summary"]["variants"][1]["vs_baseline"]["val_loss"]["n"] == 2


@pytest.mark.parametrize("call, match", [
    (lambda x, y: experiments.dropout_experiment(x, y, seeds=0),
     r"dropout_experiment: Invalid value for `seeds`: expected an integer >= 1. Received: seeds=0"),
    (lambda x, y: experiments.dropout_experiment(x, y, seeds=2.5), r"`seeds`: expected an integer >= 1. "
                                                                   r"Received: seeds=2.5"),
    (lambda x, y: experiments.dropout_kinds_experiment(x, y, seeds=True), r"dropout_kinds_experiment: Invalid "
                                                                          r"value for `seeds`.*seeds=True"),
    (lambda x, y: experiments.dropout_experiment(x, y, seed=-1), r"Invalid value for `seed`: expected an integer"),
    (lambda x, y: experiments.dropout_experiment(x, y, variants=["none", "dense", "dense"]),
     r"Invalid value for `variants`: expected variant names without repeats"),
    (lambda x, y: experiments.dropout_kinds_experiment(x, y, kinds="none,spatial,none"),
     r"Invalid value for `kinds`: expected kinds from .* without repeats. Received: kinds='none,spatial,none'"),
])
def test_bad_seed_arguments(images, call, match):
    with pytest.raises(ValueError, match=match):
        call(*images)


# --- the command line ------------------------------------------------------------------------------------------
def test_results_json_keeps_every_seed_and_the_table_has_intervals(tmp_path, capsys):
    out = tmp_path / "exp"
    assert cli.main(["experiment", "dropout", "--variants", "none,dense", "--epochs", "1", "--limit", "150",
                     "--seeds", "3", "--seed", "2", "--quiet", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [2, 3, 4] and len(res["runs"]) == 6
    assert sorted((r["seed"], r["label"]) for r in res["runs"]) == [(s, v) for s in (2, 3, 4) for v in ("dense",
                                                                                                      "none")]
    assert all(len(r["history"]["val_loss"]) == 1 for r in res["runs"])  # every seed's curves
    assert "3 seeds (2 to 4)" in stdout.splitlines()[0]
    assert "Mean ± 95% interval over 3 seeds [2, 3, 4]" in stdout and "Paired against none" in stdout
    dense = res["summary"]["variants"][1]
    assert stats.format_interval(dense["measures"]["val_loss"]) in stdout
    assert stats.format_interval(dense["vs_baseline"]["gap"], sign=True) in stdout
    assert all(f"seed {r['seed']}, {r['label']}: " in stdout for r in res["runs"])  # each run as it ends
    assert math.isclose(dense["measures"]["val_accuracy"]["mean"],
                        np.mean([r["val_accuracy"] for r in res["runs"] if r["label"] == "dense"]))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["experiment", "dropout", "--seeds", "0"], "argument --seeds: expected an integer >= 1, received '0'"),
    (["experiment", "dropout", "--seeds", "three"], "argument --seeds: expected an integer >= 1, received 'three'"),
    (["experiment", "uncertainty", "--seeds", "-2"], "argument --seeds: expected an integer >= 1, received '-2'"),
    (["experiment", "uncertainty", "--seeds", "1.5"], "argument --seeds: expected an integer >= 1, received '1.5'"),
])
def test_seeds_option_is_checked(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_seeds_default_is_three():
    parser = cli.build_parser()
    assert parser.parse_args(["experiment", "dropout"]).seeds == 3
    assert parser.parse_args(["experiment", "uncertainty"]).seeds == 3


# --- the plots -------------------------------------------------------------------------------------------------
def test_plots_over_seeds(tmp_path, two_seeds):
    pytest.importorskip("matplotlib", reason="plots need the optional matplotlib")
    from dropcore import plotting

    path = plotting.plot_experiment(two_seeds, tmp_path / "curves.png", title="two seeds")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"plot_experiment: Invalid value for `result`"):
        plotting.plot_experiment({"runs": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"plot_reliability: Invalid value for `result`: expected an uncertainty "
                                         r"experiment result with 'runs'"):
        plotting.plot_reliability({"datasets": {}}, tmp_path / "x.png")
