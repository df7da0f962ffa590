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
