"07_bias: subgroup metrics against fairlearn and hand counts; the analysis finds a planted bias and does not invent one."
import numpy as np
import pandas as pd
import pytest

from dermlab import bias

def test_subgroup_report_counts_and_intervals_by_hand():
    table = pd.DataFrame({"target": [1, 1, 1, 0, 0, 1, 1, 0, 0, 0], "score": [0.9, 0.8, 0.3, 0.1, 0.7, 0.9, 0.2, 0.1, 0.2, 0.3],
                          "patient": list("aabbccddee"), "group": ["x"] * 6 + ["y"] * 4})
    report = bias.subgroup_report(table.target, table.score, table.patient, table.group, threshold=0.5, resamples=200, min_malignant=3)
    assert report.loc["x", "sensitivity"] == pytest.approx(3 / 4) and report.loc["x", "specificity"] == pytest.approx(1 / 2)
    assert report.loc["y", "sensitivity"] == 0.0 and report.loc["y", "specificity"] == 1.0
    assert report.images.tolist() == [6, 4] and report.malignant.tolist() == [4, 1] and report.patients.tolist() == [3, 2]
    assert report.loc["x", "warning"] == "" and "too few to judge" in report.loc["y", "warning"]
    assert report.loc["x", "sensitivity_low"] <= 0.75 <= report.loc["x", "sensitivity_high"]

def test_subgroups_keep_unknown_as_a_group():
    table = pd.DataFrame({"sex": pd.Categorical(["male", None, "female"]), "age": [25, np.nan, 80], "site": ["head/neck", None, "palms/soles"],
                          "skin_tone": pd.Categorical(["dark", "unknown", None]), "attribution": ["A", "B", None]})
    groups = bias.subgroups(table)
    assert groups["sex"].tolist() == ["male", "unknown", "female"] and groups["age band"].tolist() == ["0-29", "unknown", "75+"]
    assert groups["skin tone"].tolist() == ["dark", "unknown", "unknown"] and groups["hospital"].tolist() == ["A", "B", "unknown"]

def test_group_gap_sees_through_a_shift_of_the_group_scores():
    rng = np.random.default_rng(0)
    targets, group = (rng.random(800) < 0.5).astype(float), np.repeat(rng.random(400) < 0.3, 2)
    scores = targets * 0.6 + rng.random(800) * 0.8 + 0.3 * group  # the same signal, but every score of the group higher
    patients = np.repeat(np.arange(400), 2)
    by_auc = bias.group_gap(targets, scores, patients, group, resamples=300)
    assert not by_auc["significantly_worse"] and not by_auc["significantly_better"] and by_auc["low"] < 0 < by_auc["high"]
    threshold = bias.operating_threshold(targets, scores)
    assert bias.group_gap(targets, scores, patients, group, bias.sensitivity, threshold=threshold, resamples=300)["significantly_better"]
    assert bias.group_gap(targets, scores, patients, group, bias.specificity_of, threshold=threshold, resamples=300)["significantly_worse"]
    faint = targets * np.where(group, 0.1, 0.6) + rng.random(800) * 0.8
    gap = bias.group_gap(targets, faint, patients, group, resamples=300)
    assert gap["significantly_worse"] and gap["high"] < -0.05 and gap["group_malignant"] == int(targets[group].sum())

def test_operating_threshold_gives_the_asked_specificity():
    targets = np.r_[np.zeros(1000), np.ones(50)]
    scores = np.random.default_rng(0).random(1050)
    threshold = bias.operating_threshold(targets, scores, 0.9)
    assert bias.specificity_of(targets, scores >= threshold) == pytest.approx(0.9, abs=0.002)

@pytest.mark.parametrize("effect, worse", [("low_contrast_dark_skin", True), (None, False)])
def test_bias_analysis_finds_the_planted_gap_and_invents_none(tmp_path, effect, worse):
    "Two phantom sets, same seed, one with malignant lesions on dark skin drawn faint: only that one is significantly worse."
    result = bias.bias_on_phantom(tmp_path / "set", effect, n_images=1600, epochs=8, seed=0, resamples=500)
    assert result["group_malignant"] >= 30  # enough malignant lesions on dark skin for the check to be judged
    assert result["significantly_worse"] == worse, result
    if worse: assert result["group"] < 0.65 and result["difference"] < -0.2, result  # the group's cancers barely told from its benign lesions
    else: assert result["group"] > 0.7, result
