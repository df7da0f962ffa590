"Set measures of 05_evaluate: FID, KID, precision and recall must order what we know to differ; features fail fast offline."
import numpy as np
import pytest
from scipy import ndimage

import dermlab.core
from dermlab import evaluate

def blur(tiles, sigma=1.5):
    return np.stack([ndimage.gaussian_filter(t.astype(np.float32), sigma=(sigma, sigma, 0)) for t in tiles]).round().astype(np.uint8)

def test_fid_and_kid_order_a_set_its_blur_and_noise(phantom_tiles, phantom_features):
    _, train_tiles, _, held, _ = phantom_tiles
    real = phantom_features(held)
    noise = phantom_features(np.random.default_rng(0).integers(0, 256, held.shape, dtype=np.uint8))
    blurred = phantom_features(blur(held))
    assert evaluate.frechet_distance(real, real) < 1e-3
    kid_self, kid_noise, kid_blur = (evaluate.kernel_distance(real, other)[0] for other in (real, noise, blurred))
    assert abs(kid_self) < 0.01 * kid_noise and kid_self < kid_blur < kid_noise
    assert 0.0 < evaluate.frechet_distance(real, blurred) < evaluate.frechet_distance(real, noise)
    shuffled = phantom_features(train_tiles[np.random.default_rng(1).permutation(len(train_tiles))])
    errors = [evaluate.kernel_distance(shuffled[:n], shuffled[n:2 * n], seed=2)[1] for n in (16, 96)]
    assert errors[1] < errors[0]  # KID's spread shrinks as the sets grow

def test_precision_falls_for_noise_and_recall_for_copies_of_one_tile(phantom_tiles, phantom_features):
    _, _, _, held, _ = phantom_tiles
    half = len(held) // 2
    real, other = phantom_features(held[:half]), phantom_features(held[half:])
    good = evaluate.precision_recall(real, other)
    noise = evaluate.precision_recall(real, phantom_features(np.random.default_rng(0).integers(0, 256, held[half:].shape, dtype=np.uint8)))
    one = evaluate.precision_recall(real, phantom_features(np.repeat(held[half:half + 1], len(held) - half, axis=0)))
    assert noise["precision"] < 0.1 < 0.6 < good["precision"]
    assert one["recall"] < 0.1 < 0.6 < good["recall"]

def test_inception_features_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "INCEPTION_WEIGHTS", ("missing.h5", "https://weights.dermlab-offline.invalid/missing.h5"))
    asked = []  # the host is asked once, with the bounded timeout (how long that takes: test_generators)
    monkeypatch.setattr(dermlab.core, "host_reachable", lambda url, timeout: asked.append((url, timeout)) or False)
    with pytest.raises(evaluate.FeaturesUnavailable, match="missing.h5.*cannot be reached"):
        evaluate.inception_features(timeout=3, cache=tmp_path)
    assert asked == [("https://weights.dermlab-offline.invalid/", 3)]

def test_attribute_network_saves_and_loads_the_same_features(phantom_tiles, tmp_path):
    _, train_tiles, train_records, held, _ = phantom_tiles
    network = evaluate.train_attribute_network(train_tiles[:64], train_records.head(64), epochs=1, seed=0)
    loaded = evaluate.AttributeNetwork.load(network.save(tmp_path / "network"))
    assert np.allclose(loaded.features(held[:8]), network.features(held[:8]), atol=1e-4)

def test_train_on_synthetic_test_on_real_rewards_tiles_that_match_their_records(phantom_tiles):
    "TSTR: a reader trained on tiles with their own records reads held-out tiles; the same tiles under other records teach it nothing."
    _, train_tiles, train_records, held, held_records = phantom_tiles
    matched = evaluate.train_and_test(train_tiles, train_records, held, held_records)
    shuffled_records = train_records.sample(frac=1, random_state=0).reset_index(drop=True)  # each tile under another lesion's record
    mismatched = evaluate.train_and_test(train_tiles, shuffled_records, held, held_records)
    print({k: (round(matched[k], 3), round(mismatched[k], 3)) for k in matched})
    assert matched["diameter_mm_rank_correlation"] > 0.6 and mismatched["diameter_mm_rank_correlation"] < 0.2
    assert matched["target_auc"] > mismatched["target_auc"] + 0.1

def speckle(tiles, sigma=2.0, seed=0):
    return np.clip(tiles + np.random.default_rng(seed).normal(0, sigma, tiles.shape), 0, 255).astype(np.uint8)

def checkerboard(tiles, amplitude=3.0):
    pattern = np.indices(tiles.shape[1:3]).sum(axis=0) % 2 * 2 - 1
    return np.clip(tiles + amplitude * pattern[None, :, :, None], 0, 255).astype(np.uint8)

def test_texture_ratio_catches_speckle_and_a_checkerboard_and_passes_other_real_tiles(phantom_tiles):
    _, train_tiles, _, held, _ = phantom_tiles
    real = evaluate.measure_tiles(held)
    ratios = lambda tiles: evaluate.realism_ratios(evaluate.measure_tiles(tiles), real)
    other = ratios(train_tiles[:len(held)])
    assert 0.67 < other["skin_texture_ratio"] < 1.5 and 0.5 < other["lesion_texture_ratio"] < 2
    assert ratios(speckle(held))["skin_texture_ratio"] > 2
    checkered = ratios(checkerboard(held))
    assert checkered["skin_texture_ratio"] > 5 and checkered["lesion_texture_ratio"] > 5
    assert ratios(blur(held, 1.0))["skin_texture_ratio"] < 0.7  # smoothing is seen too, not only noise

def test_texture_ratio_on_real_photographs(realdata):
    "HAM10000 photographs: two halves of the sample agree; speckle is caught above the photographs' own grain (σ = 5 of 255 here)."
    from dermlab.data import load_isic, read_tiles
    tiles, _ = read_tiles(load_isic(realdata / "ham10000_sample"), 64)
    first, second = tiles[0::2], tiles[1::2]
    real = evaluate.measure_tiles(first)
    ratio = lambda other: evaluate.realism_ratios(evaluate.measure_tiles(other), real)["skin_texture_ratio"]
    assert 0.67 < ratio(second) < 1.5 and ratio(speckle(first, sigma=5)) > 2

def test_the_two_real_halves_share_patients_and_the_malignant_share():
    "split_in_two: disjoint halves that together hold every tile, of the same patients and within one malignant tile of each other."
    import pandas as pd
    random = np.random.default_rng(3)
    rows = pd.DataFrame({"patient_id": np.repeat([f"p{i}" for i in range(12)], 10), "target": (random.random(120) < 0.15).astype(int)})
    rows = rows.sort_values(["target", "patient_id"], ascending=False).reset_index(drop=True)  # the worst order: malignant tiles first
    first, second = evaluate.split_in_two(rows)
    assert len(np.intersect1d(first, second)) == 0 and len(first) + len(second) == len(rows)
    assert abs(int(rows.target.iloc[first].sum()) - int(rows.target.iloc[second].sum())) <= 1
    assert set(rows.patient_id.iloc[first]) == set(rows.patient_id.iloc[second]) == set(rows.patient_id)
