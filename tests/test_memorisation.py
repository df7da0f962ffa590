"The memorisation audit and the expert-review scorer of 05_memorisation: each must catch what it is built to catch."
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from dermlab import memorisation
from dermlab.core import DermlabDataError
from dermlab.data import tile_blocks

def blur(tiles, sigma=1.5):
    return np.stack([ndimage.gaussian_filter(t.astype(np.float32), sigma=(sigma, sigma, 0)) for t in tiles]).round().astype(np.uint8)

def test_memorisation_audit_flags_planted_copies_and_few_new_tiles(phantom_tiles, phantom_features):
    train, train_tiles, train_records, held, _ = phantom_tiles
    random = np.random.default_rng(3)
    source = random.choice(len(train_tiles), 20, replace=False)
    originals = train_tiles[source]
    planted = np.concatenate([originals[:5], np.flip(originals[5:10], axis=1),  # exact, mirrored
                              np.clip(originals[10:15] + random.normal(0, 3, originals[10:15].shape), 0, 255).astype(np.uint8),
                              np.roll(originals[15:20], -1, axis=1)])  # lightly noised, shifted by a pixel
    index = pd.Index(train.table.image_id).get_indexer(train_records.image_id)
    reference = random.choice(len(train_tiles), 100, replace=False)
    audit = memorisation.memorisation_audit(np.concatenate([planted, held]), tile_blocks(train, 32, block_size=64),
                                            (index[reference], train_tiles[reference]), phantom_features)
    assert audit.table.flagged[:20].all() and audit.table.standout_flagged[:20].all()  # close, and closer to one image than to any other
    # new tiles: the threshold promises that about 1% of them are flagged (1 of 117 here). The bound is the count that
    # promise allows at odds of 1 in 1,000 (the binomial's 99.9% quantile, 6 of 117): a correct threshold fails it once in a
    # thousand runs, one that flags 5% of new images one run in three (117 tiles cannot tell more finely)
    from scipy.stats import binom
    new = audit.table.flagged[20:]
    promised = audit.summary()["expected_copy_rate_of_new_images"]
    assert new.sum() <= binom.ppf(0.999, len(new), promised), f"{int(new.sum())} of {len(new)} new tiles flagged"
    assert audit.table.standout_flagged[20:].sum() <= new.sum()  # a standout copy is a flagged tile that also stands out
    assert [nearest[0] for nearest in audit.table.pixel_nearest[:20]] == list(index[source])
    assert audit.summary()["expected_copy_rate_of_new_images"] == pytest.approx(0.01)

def test_one_pass_over_sources_audits_each_as_its_own_pass_would(phantom_tiles):
    train, train_tiles, train_records, held, _ = phantom_tiles
    index = pd.Index(train.table.image_id).get_indexer(train_records.image_id)
    reference = (index[:60], train_tiles[:60])
    first, second = np.concatenate([train_tiles[100:105], held[:15]]), blur(held[15:35])
    passes = []
    def counted(*args, **kwargs):
        passes.append(1)
        return tile_blocks(*args, **kwargs)
    alone = [memorisation.memorisation_audit(tiles, tile_blocks(train, 32, 128), reference) for tiles in (first, second)]
    together = memorisation.memorisation_audit(np.concatenate([first, second]), counted(train, 32, 128), reference)
    assert len(passes) == 1
    split = [together.table.iloc[:len(first)].reset_index(drop=True), together.table.iloc[len(first):].reset_index(drop=True)]
    for own, shared in zip(alone, split):
        pd.testing.assert_frame_equal(own.table, shared)  # the same similarities, nearest tiles and flags
    assert alone[0].table.flagged[:5].all() and alone[0].thresholds == together.thresholds

def test_an_audit_reference_that_is_not_the_streamed_rows_is_refused(phantom_tiles):
    train, train_tiles, train_records, held, _ = phantom_tiles
    index = pd.Index(train.table.image_id).get_indexer(train_records.image_id)
    wrong = (index[:40] + 1, train_tiles[:40])  # the indices of the next rows: its exclude-itself step would break silently
    with pytest.raises(DermlabDataError, match=r"audit reference: its tile for training index \d+ is not the training stream's tile"):
        memorisation.memorisation_audit(held[:5], tile_blocks(train, 32, 128), wrong)
    beyond = (np.r_[index[:10], 10**6], train_tiles[:11])
    with pytest.raises(DermlabDataError, match="1 of its 11 training indices never came in the training stream"):
        memorisation.memorisation_audit(held[:5], tile_blocks(train, 32, 128), beyond)

def test_nearest_training_keeps_the_best_over_blocks_and_never_returns_the_excluded_image():
    vectors = memorisation.unit_rows(np.random.default_rng(0).normal(size=(50, 8)))
    search = memorisation.NearestTraining(vectors[:5], k=2, exclude=np.array([0, -1, -1, -1, -1]))
    for start in range(0, 50, 7): search.add(vectors[start:start + 7], np.arange(start, min(start + 7, 50)))
    similarity = vectors[:5] @ vectors.T
    similarity[0, 0] = -np.inf
    assert (search.index == np.argsort(-similarity, axis=1)[:, :2]).all()
    assert np.allclose(search.similarity, np.sort(similarity, axis=1)[:, ::-1][:, :2], atol=1e-5)

@pytest.fixture()
def kit(tmp_path, phantom_tiles):
    _, _, _, held, held_records = phantom_tiles
    folder = memorisation.make_review_kit(tmp_path / "kit", held[:20], held_records.head(20), {"blurred": (blur(held[20:40]), held_records.iloc[20:40])},
                                      n_tiles=20, seed=0)
    return folder, pd.read_csv(folder / "key.csv"), pd.read_csv(folder / "sheet" / "answers.csv")

def test_review_kit_is_blinded_and_balanced(kit):
    folder, key, form = kit
    assert len(key) == 20 and (key.truth == "real").sum() == 10 and not (folder / "sheet" / "key.csv").exists()
    assert list(form.columns) == list(memorisation.REVIEW_COLUMNS) and form.real_or_synthetic.isna().all()
    assert len(list((folder / "sheet" / "images").glob("T*.png"))) == 20 and (folder / "sheet" / "contact_sheet.png").exists()

def test_review_scores_match_known_answer_sheets(kit, tmp_path):
    from scipy.stats import binomtest
    from sklearn.metrics import cohen_kappa_score
    folder, key, form = kit
    wrong_every_fourth = np.where(np.arange(20) % 4 == 0, np.where(key.truth == "real", "synthetic", "real"), key.truth)
    answers = {"A": key.truth, "B": wrong_every_fourth, "C": ["real"] * 20}
    paths = []
    for rater, answer in answers.items():
        paths.append(tmp_path / f"answers_{rater}.csv")
        form.assign(rater=rater, real_or_synthetic=answer).to_csv(paths[-1], index=False)
    scores = memorisation.score_reviews(paths, folder / "key.csv")
    raters = scores["raters"].set_index("rater")
    assert raters.accuracy.to_dict() == {"A": 1.0, "B": 0.75, "C": 0.5}
    assert raters.p_value["B"] == pytest.approx(binomtest(15, 20, 0.5, alternative="greater").pvalue)
    assert raters.p_value["A"] < 1e-4 and raters.p_value["C"] > 0.5
    pairs = scores["pairs"].set_index("raters").cohen_kappa
    assert pairs["A & B"] == pytest.approx(cohen_kappa_score(answers["A"], answers["B"])) and pairs["A & B"] == pytest.approx(0.5)
    # Fleiss' kappa by hand: per tile the share of agreeing rater pairs, against agreement by chance
    table = pd.DataFrame(answers)
    counts = np.stack([(table == label).sum(axis=1) for label in ("real", "synthetic")], axis=1)
    observed = ((counts * (counts - 1)).sum(axis=1) / (3 * 2)).mean()
    chance = ((counts.sum(axis=0) / counts.sum()) ** 2).sum()
    assert scores["fleiss_kappa"] == pytest.approx((observed - chance) / (1 - chance))

def test_review_forms_with_mistakes_are_refused_naming_the_file_and_tile(kit, tmp_path):
    folder, key, form = kit
    bad = tmp_path / "answers_bad.csv"
    form.assign(rater="X", real_or_synthetic=["maybe"] + ["real"] * 19).to_csv(bad, index=False)
    with pytest.raises(DermlabDataError, match=r"answers_bad.csv: tile T001 answers 'maybe'"):
        memorisation.score_reviews([bad], folder / "key.csv")
    form.assign(rater="X", real_or_synthetic="real", tile_id=["T999"] + list(form.tile_id[1:])).to_csv(bad, index=False)
    with pytest.raises(DermlabDataError, match="T999"):
        memorisation.score_reviews([bad], folder / "key.csv")


def test_an_archive_full_of_twins_does_not_blind_the_audit(phantom_tiles):
    "A training set that stores many photographs twice: the twins are left out of the threshold, so an exact copy is still flagged."
    _, train_tiles, _, held, _ = phantom_tiles
    stored = np.concatenate([train_tiles[:200], train_tiles[:100]])  # the first 100 photographs stored twice
    blocks = [(np.arange(len(stored)), stored)]
    reference = (np.arange(150), stored[:150])  # two thirds of the reference have a twin
    audit = memorisation.memorisation_audit(np.concatenate([stored[:5], held[:20]]), blocks, reference)
    assert audit.duplicate_references == {"pixel": 100}
    assert audit.table.flagged[:5].all() and audit.summary()["pixel_duplicate_references"] == 100
    assert audit.table.standout_flagged[:5].all()  # a copy of a twinned photograph: its twin is the second nearest, the third is far
    counted = np.quantile(audit.reference["pixel"], 0.99)  # what the threshold would be with the twins counted: identity
    assert counted >= memorisation.DUPLICATE_SIMILARITY and not (audit.table.pixel_similarity[:5] > counted).all()

def test_a_smooth_average_near_many_training_tiles_is_no_standout_copy(phantom_tiles):
    "Averages of training tiles sit near several of them at once: closeness may flag them, the ratio test does not call them copies."
    _, train_tiles, _, held, _ = phantom_tiles
    blocks = [(np.arange(len(train_tiles)), train_tiles)]
    order = np.argsort(train_tiles.reshape(len(train_tiles), -1).mean(axis=1))  # tiles of like brightness, averaged in fives
    averages = train_tiles[order[:200]].reshape(40, 5, *train_tiles.shape[1:]).mean(axis=1).round().astype(np.uint8)
    audit = memorisation.memorisation_audit(np.concatenate([averages, train_tiles[:5]]), blocks, (np.arange(150), train_tiles[:150]))
    assert audit.table.standout_flagged[-5:].all()  # copies stand out
    assert audit.table.flagged[:40].any()  # closeness alone flags some of the averages (5 of 40 on this phantom)...
    assert audit.table.standout_flagged[:40].mean() <= 0.05  # ...the ratio test none of them
    assert audit.summary()["standout_copy_rate"] == audit.table.standout_flagged.mean()
