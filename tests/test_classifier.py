"06_classifier: the ISIC 2024 metric against hand-computed areas, patients kept apart in every arm, pseudo-labels without test labels, offline and GPU paths."
import time

import numpy as np
import pandas as pd
import pytest

import dermlab.core
from dermlab import classifier
from dermlab.data import DermlabDataError

def area_above(targets, scores, min_tpr=0.8, points=200_001):
    "The area between the ROC curve (corners joined by straight lines) and TPR = min_tpr, by numerical integration."
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(targets, scores)
    grid = np.linspace(0, 1, points)
    heights = np.maximum(np.interp(grid, fpr, tpr) - min_tpr, 0)
    return float(np.sum((heights[1:] + heights[:-1]) / 2) / (points - 1))

def test_partial_auc_matches_hand_computed_areas():
    assert classifier.partial_auc_above_tpr([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.1)  # drawn by hand in the notebook
    assert classifier.partial_auc_above_tpr([0, 1, 0, 1, 1], [0.1, 0.9, 0.2, 0.8, 0.95]) == pytest.approx(0.2)  # perfect
    assert classifier.partial_auc_above_tpr([0, 1, 0, 1, 1], [0.9, 0.1, 0.8, 0.2, 0.05]) == pytest.approx(0.0)  # inverted
    assert classifier.partial_auc_above_tpr([0, 1] * 50, [0.5] * 100) == pytest.approx(0.02)  # no information: the diagonal
    # by hand, in order of decreasing score: the ROC curve walks (0,.2) (0,.4) (.2,.4) (.2,.6) (.4,.6) (.4,.8) (.6,.8) (.8,.8) (.8,1) (1,1);
    # it is above TPR 0.8 only from FPR 0.8 to 1, at height 1: 0.2 x 0.2
    targets = [1, 1, 0, 1, 0, 1, 0, 0, 1, 0]
    assert classifier.partial_auc_above_tpr(targets, np.arange(10, 0, -1) / 10) == pytest.approx(0.04)
    random = np.random.default_rng(0)
    for n, rate in [(50, 0.3), (400, 0.05), (1000, 0.5)]:
        targets = (random.random(n) < rate).astype(int)
        targets[:2] = [0, 1]
        for scores in (random.random(n), targets + random.normal(0, 1, n), np.round(random.random(n), 1)):  # random, informative, tied
            assert classifier.partial_auc_above_tpr(targets, scores) == pytest.approx(area_above(targets, scores), abs=1e-5)
    assert np.isnan(classifier.partial_auc_above_tpr([0, 0, 0], [0.1, 0.2, 0.3]))

def test_sensitivity_at_specificity_and_bootstrap_by_patient():
    targets, scores = [0] * 10 + [1] * 4, list(range(10)) + [9.5, 8.5, 3.5, 0.5]
    # 95%: no benign lesion may be flagged: threshold 9.5 finds 1 of 4; 90%: one (score 9) may: threshold 8.5 finds 9.5 and 8.5;
    # 40%: six (scores 4-9) may: threshold 3.5 finds three
    assert [classifier.sensitivity_at_specificity(targets, scores, s) for s in (0.95, 0.9, 0.8, 0.4)] == [0.25, 0.5, 0.5, 0.75]
    patients = np.repeat(np.arange(30), 5)
    targets = np.repeat(np.random.default_rng(0).random(30) < 0.4, 5).astype(float)
    scores = targets + np.random.default_rng(1).normal(0, 1, 150)
    by_patient = classifier.patient_bootstrap(targets, scores, patients, classifier.roc_auc, 300)
    by_image = classifier.patient_bootstrap(targets, scores, np.arange(150), classifier.roc_auc, 300)
    assert by_patient[0] < classifier.roc_auc(targets, scores) < by_patient[1]
    assert by_patient[1] - by_patient[0] > by_image[1] - by_image[0]  # patients, not images, are the unit of evidence
    report = classifier.score_classifier(targets, scores, patients, resamples=50)
    assert report["patients"] == 30 and set(classifier.CLASSIFIER_METRICS) <= set(report) and "brier_low" in report

class DrawnDisc:
    "A stand-in generator: a disc whose brightness says its record's label (only `generate` is used)."
    def generate(self, records, seed=0):
        tiles = np.full((len(records), 16, 16, 3), 200, np.uint8)
        tiles[:, 5:11, 5:11] = np.where(records.target.to_numpy()[:, None, None, None] == 1, 40, 150)
        return tiles

def small_split(n_patients=12, per_patient=4):
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n_patients * per_patient)],
                          "patient_id": np.repeat([f"p{k}" for k in range(n_patients)], per_patient),
                          "target": np.tile([1, 0, 0, 0], n_patients).astype(float)})
    tiles = DrawnDisc().generate(table)
    train = table.patient_id.isin([f"p{k}" for k in range(8)]).to_numpy()
    return (tiles[train], table[train].reset_index(drop=True)), (tiles[~train], table[~train].reset_index(drop=True))

def test_no_arm_trains_on_a_patient_it_is_evaluated_on(monkeypatch):
    train, test = small_split()
    pools = {"disc": {"all": classifier.synthetic_pool(DrawnDisc(), train[1], 64, seed=0, name="disc"),
                      "malignant": classifier.synthetic_pool(DrawnDisc(), train[1], 16, malignant_only=True, seed=1, name="disc")}}
    assert set(pools["disc"]["all"][1].patient_id) <= set(train[1].patient_id) and (pools["disc"]["malignant"][1].target == 1).all()
    chosen = train[1].patient_id.isin(["p0", "p1"]).to_numpy()
    chosen.flags.writeable = False  # as a mask read from pandas can be
    _, group_pool = classifier.synthetic_pool(DrawnDisc(), train[1], 10, malignant_only=True, where=chosen, seed=2)
    assert set(group_pool.condition_source_id) <= set(train[1].image_id[chosen & (train[1].target == 1)]) and chosen.sum() == 8
    arms = classifier.experiment_arms(len(train[0]), int(train[1].target.sum()), ["disc"], [1, 2], targeted_multiple=2)
    seen = []
    real_check = classifier.check_patients_apart
    def checked(train_table, test_table, arm=""):  # every arm's training rows, as the experiment assembles them
        seen.append((arm, set(train_table.patient_id), len(train_table)))
        real_check(train_table, test_table, arm)
    monkeypatch.setattr(classifier, "check_patients_apart", checked)
    monkeypatch.setattr(classifier, "train_classifier", lambda build, tiles, targets, seed=0, **kw: len(tiles))
    monkeypatch.setattr(classifier, "predict_scores", lambda model, tiles: np.random.default_rng(0).random(len(tiles)))
    results, scores = classifier.run_augmentation_experiment(None, train, test, pools, arms, seeds=[0, 1], resamples=0, progress=False)
    assert len(seen) == len(arms) * 2 == len(results) and scores.shape == (len(test[0]), len(arms) * 2)
    for arm, patients, n in seen:
        assert not patients & set(test[1].patient_id), arm
    assert [n for _, _, n in seen[:len(arms)]] == [len(train[0]) + k for k in arms.synthetic_tiles]
    leaky = {"disc": {"all": (pools["disc"]["all"][0], pools["disc"]["all"][1].assign(patient_id=test[1].patient_id[0])),
                      "malignant": pools["disc"]["malignant"]}}
    with pytest.raises(DermlabDataError, match=r"arm '\+ disc 1:1'.*cross splits"):
        classifier.run_augmentation_experiment(None, train, test, leaky, arms, seeds=[0], resamples=0, progress=False)

def test_experiment_keeps_its_budget_shares_the_first_classifier_and_resumes_in_a_new_session(monkeypatch, tmp_path, capsys):
    train, test = small_split()
    test = (test[0], test[1].assign(image_id=[f"{k:03d}" for k in range(len(test[1]))]))  # ids that look like numbers ("007") stay text
    pools = {"disc": {"all": classifier.synthetic_pool(DrawnDisc(), train[1], 64, seed=0, name="disc"),
                      "malignant": classifier.synthetic_pool(DrawnDisc(), train[1], 16, malignant_only=True, seed=1, name="disc")}}
    arms = classifier.experiment_arms(len(train[0]), int(train[1].target.sum()), ["disc"], [1, 2], targeted_multiple=2)
    clock, trained = [0.0], []
    def fake_training(build, tiles, targets, seed=0, **kw):  # one clock second per training tile
        clock[0] += len(tiles); trained.append((len(tiles), seed))
        return seed
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(classifier, "train_classifier", fake_training)
    monkeypatch.setattr(classifier, "predict_scores", lambda model, tiles: np.random.default_rng(model).random(len(tiles)))
    first = classifier.training_key("real only", 0)
    shared = {first: np.random.default_rng(0).random(len(test[0]))}
    def run(pools=pools, test=test, minutes=300 / 60, **training):
        return classifier.run_augmentation_experiment(None, train, test, pools, arms, seeds=[0, 1], resamples=0, shared=shared, folder=tmp_path,
                                                      minutes=minutes, seconds_per_tile=1.0, **{"epochs": 3, **training})
    n = len(train[0])  # 32 real tiles: arms of 32, 64, 96 and 48 tiles a seed
    results, scores = run()  # 300 s: the shared one is free, then 64 + 96 + 48 = 208 s; seed 1's real only (32) fits: 240; 64 more overruns
    assert trained == [(2 * n, 0), (3 * n, 0), (n + 16, 0), (n, 1)]
    assert results.training.tolist() == ["shared", "trained here", "trained here", "trained here", "trained here"]
    assert (scores[first] == shared[first]).all() and list(scores.columns) == [classifier.training_key(a, s) for s in (0, 1) for a in arms.arm][:5]
    assert len(pd.read_csv(tmp_path / "experiment.csv")) == 5  # written after every training: a killed session keeps what it did
    assert pd.DataFrame(results.attrs["plan"]).done.sum() == 5 and "3 of 8 trainings left" in capsys.readouterr().out
    trained.clear(); clock[0] = 0.0
    results, scores = run()  # the next session: reads back the five, trains the three left
    assert trained == [(2 * n, 1), (3 * n, 1), (n + 16, 1)] and len(results) == 8 and scores.shape == (len(test[0]), 8)
    trained.clear()
    run(minutes=0, epochs=4)  # other settings: nothing read back is reused, and nothing is lost
    assert len(trained) == 7 and len(pd.read_csv(next(tmp_path.glob("experiment.superseded-*[0-9].csv")))) == 8  # the shared one too
    trained.clear()
    redrawn = {"disc": {**pools["disc"], "all": classifier.synthetic_pool(DrawnDisc(), train[1], 64, seed=5, name="disc")}}
    run(pools=redrawn, minutes=0, epochs=4)  # a pool made anew (the generator trained on): its arms are trained again, the others read back
    assert sorted(trained) == sorted([(2 * n, 0), (3 * n, 0), (2 * n, 1), (3 * n, 1)])
    trained.clear(); clock[0] = 0.0
    run(minutes=1 / 60, epochs=5)  # other settings, and a budget smaller than one training: the session's first training still starts
    assert len(trained) == 1
    other_test = (test[0], test[1].assign(image_id=test[1].image_id + "x"))
    trained.clear()
    run(test=other_test, minutes=0)  # another profile or seed: the earlier results are set aside, never overwritten
    assert len(list(tmp_path.glob("experiment.other-test-tiles-*.csv"))) == 1 and len(trained) == 7 and "set aside" in capsys.readouterr().out

def test_pseudo_labels_come_from_the_teacher_never_from_test_labels(monkeypatch):
    train, test = small_split()
    test_tiles, test_table = test
    calls = []
    def fake_training(build, tiles, targets, seed=0, **kw):
        calls.append((tiles.copy(), np.asarray(targets).copy()))
        return "model"
    teacher_scores = np.where(test_tiles[:, 8, 8, 0] < 100, 0.99, 0.01)  # what the teacher says: dark centre, malignant
    teacher_scores[:3] = 0.5  # unsure: no pseudo-label
    monkeypatch.setattr(classifier, "train_classifier", fake_training)
    monkeypatch.setattr(classifier, "predict_scores", lambda model, tiles: teacher_scores)
    wrong_labels = 1 - test_table.target.to_numpy()  # the test labels disagree with the teacher everywhere: using them would show
    student, report = classifier.train_with_pseudo_labels(None, train[0], train[1].target.to_numpy(float), test_tiles, seed=0)
    (teacher_tiles, teacher_targets), (student_tiles, student_targets) = calls
    assert len(teacher_tiles) == len(train[0]) and (teacher_targets == train[1].target.to_numpy()).all()
    assert report["pseudo_labelled"] == len(test_tiles) - 3 and (report["chosen"] >= 3).all()
    pseudo = student_targets[len(train[0]):]
    assert (pseudo == (teacher_scores[report["chosen"]] >= 0.95)).all()
    assert (pseudo != wrong_labels[report["chosen"]]).all()
    assert (student_tiles[len(train[0]):] == test_tiles[report["chosen"]]).all()

def test_tabular_features_exclude_labels_and_normalise_within_the_patient():
    table = pd.DataFrame({"image_id": list("abcde"), "patient_id": ["p", "p", "p", "q", "r"], "target": [0, 1, 0, 0, 1],
                          "diameter_mm": [2.0, 6.0, 4.0, 3.0, 5.0], "age": [50.0] * 3 + [60.0, 70.0],
                          "mel_thick_mm": [0, 1.2, 0, 0, 0.8], "tbp_lv_dnn_lesion_confidence": [1.0, 99.0, 2.0, 1.0, 90.0]})
    columns = classifier.tabular_columns(table)
    assert columns == ["diameter_mm", "age"]  # no label, no leaky column
    relative = classifier.patient_normalised(table, ["diameter_mm"])["diameter_mm vs patient"]
    assert relative.tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0, 0.0])  # p: mean 4, sd 2; q and r: one lesion each

def test_degradations_and_augmentation_keep_tiles_valid():
    tiles = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for kind in classifier.DEGRADATIONS:
        out = classifier.degrade_tiles(tiles, kind, seed=1)
        assert out.dtype == np.uint8 and out.shape == tiles.shape
        assert (out == tiles).all() == (kind == "clean"), kind
    with pytest.raises(ValueError, match="choose one of"): classifier.degrade_tiles(tiles, "fog")
    augmented = np.asarray(classifier.imaging_augmentation(32, seed=0)(tiles / 255.0, training=True))
    assert augmented.shape == tiles.shape and np.isfinite(augmented).all()

def test_pretrained_backbone_fails_fast_offline_and_auto_falls_back(tmp_path, capsys, monkeypatch):
    asked = []  # the weights are missing: the host is asked once, with the bounded timeout, and nothing is downloaded
    monkeypatch.setattr(dermlab.core, "host_reachable", lambda url, timeout: asked.append((url, timeout)) or False)
    with pytest.raises(classifier.BackboneUnavailable, match=r"efficientnetv2-b0_notop\.h5.*not in"):
        classifier.build_pretrained_classifier(32, cache=tmp_path, timeout=2)
    assert asked == [("https://storage.googleapis.com/", 2)]  # the weights' host, once, with the bounded timeout
    monkeypatch.setattr(classifier, "keras_cache_folder", lambda: tmp_path)
    monkeypatch.setattr(dermlab.core, "host_reachable", lambda url, timeout: False)
    model = classifier.build_classifier(32, backbone="auto", timeout=1)
    assert model.name == "small_cnn" and "EfficientNetV2-B0 unavailable, using the small CNN" in capsys.readouterr().out

def test_classifier_trains_with_mixed_precision_and_keeps_float32_scores():
    import keras
    tiles = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    targets = (np.arange(40) % 4 == 0).astype(float)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = classifier.train_classifier(lambda: classifier.build_small_cnn(32), tiles, targets, epochs=1, augmentation=False)
        assert {l.compute_dtype for l in model.layers if "conv2d" in l.name} == {"float16"} and model.output.dtype == "float32"
        scores = classifier.predict_scores(model, tiles)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    single = classifier.build_small_cnn(32)  # the same weights computed in float32: float16 may round, not change, the scores
    single.set_weights(model.get_weights())
    assert np.abs(classifier.predict_scores(single, tiles) - scores).max() < 0.02

DISTRIBUTED_TRAINING = """
import numpy as np
from dermlab.classifier import build_small_cnn, predict_scores, train_classifier
from sklearn.metrics import roc_auc_score
targets = (np.arange(96) % 3 == 0).astype(float)
tiles = np.random.default_rng(0).integers(0, 200, (96, 32, 32, 3), dtype=np.uint8)
tiles[targets == 1, 8:24, 8:24] //= 4  # a dark centre: what the classifier must learn, across both replicas
model = train_classifier(lambda: build_small_cnn(32), tiles, targets, epochs=4, batch_size=16, strategy=strategy, augmentation=False)
scores = predict_scores(model, tiles)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "mirrored": type(model.trainable_variables[0].value).__name__,
                  "finite": bool(np.isfinite(scores).all()), "n": len(scores), "auc": roc_auc_score(targets, scores)}))
"""

def test_classifier_trains_under_mirrored_strategy_on_two_cpu_devices(two_cpu_devices):
    report = two_cpu_devices(DISTRIBUTED_TRAINING)
    assert report["replicas"] == 2 and report["finite"] and report["n"] == 96
    assert report["auc"] > 0.9, report  # it learnt the dark centre: the replicas trained one model together
    assert "Mirrored" in report["mirrored"], report

def test_small_cnn_takes_the_record_beside_the_image():
    tiles = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    targets, records = (np.arange(40) % 4 == 0).astype(float), np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    model = classifier.train_classifier(lambda: classifier.build_small_cnn(32, record_features=5), tiles, targets, records=records,
                                        epochs=1, augmentation="cheap")
    scores = classifier.predict_scores(model, tiles, records)
    assert scores.shape == (40,) and np.isfinite(scores).all()
    assert not np.allclose(scores, classifier.predict_scores(model, tiles, -records))  # the record is used
    with pytest.raises(DermlabDataError, match="40 tiles but 3 records"): classifier.tile_dataset(tiles, records=records[:3])

def test_tabular_baseline_learns_the_record_and_not_noise(phantom_dir):
    "The phantom's record carries the lesion's measurements: real labels are learnt (AUC 0.997 here), shuffled ones are not (0.58-0.65)."
    import warnings
    from dermlab.data import load_isic, split_by_patient
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = load_isic(phantom_dir).table
    split = split_by_patient(table, seed=0)
    train, test = table[split == "train"], table[split != "train"]
    learnt = classifier.roc_auc(test.target, classifier.tabular_scores(classifier.fit_tabular_baseline(train, seed=0), test))
    shuffled = train.assign(target=np.random.default_rng(0).permutation(train.target.to_numpy()))
    noise = classifier.roc_auc(test.target, classifier.tabular_scores(classifier.fit_tabular_baseline(shuffled, seed=0), test))
    assert learnt > 0.9 and learnt - noise > 0.2, (learnt, noise)
