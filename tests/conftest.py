"Shared fixtures: the real sample files beside the project, small phantom sets, and a runner on two logical CPU devices."
import json, os, subprocess, sys, textwrap
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"

@pytest.fixture(scope="session")
def realdata() -> Path:
    "The real sample files (../shared/realdata): required in CI, skipped with a reason elsewhere."
    if REALDATA.is_dir(): return REALDATA
    if os.environ.get("CI"): pytest.fail(f"CI must have the real sample files at {REALDATA}")
    pytest.skip(f"real sample files not found at {REALDATA} (they sit beside the project in CI)")

@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    "A small phantom set with the planted bias, rendered once per test session."
    from dermlab.phantom import make_phantom_isic
    return make_phantom_isic(tmp_path_factory.mktemp("phantom") / "set", n_images=400, n_patients=60, positive_rate=0.1,
                             seed=11, subgroup_effect="low_contrast_dark_skin", jpeg_folder=True)

@pytest.fixture(scope="session", autouse=True)
def fresh_cache(tmp_path_factory):
    "Every test session starts with an empty dermlab cache (pixel skin estimates), so no result depends on an earlier run."
    os.environ["DERMLAB_CACHE"] = str(tmp_path_factory.mktemp("dermlab-cache"))

@pytest.fixture(scope="session")
def phantom_tiles(phantom_dir):
    "Real training and held-out tiles of the shared phantom set, 32 px, with the training set itself."
    import warnings
    from dermlab.data import load_isic, split_by_patient
    from dermlab.data import read_tiles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_isic(phantom_dir)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    train_tiles, train_records = read_tiles(train, 32)
    held_tiles, held_records = read_tiles(held_out, 32)
    return train, train_tiles, train_records, held_tiles, held_records

@pytest.fixture(scope="session")
def phantom_features(phantom_tiles):
    "dermlab features (attribute network, 8 epochs, and tile_features) trained on those training tiles."
    from dermlab.evaluate import train_attribute_network
    _, train_tiles, train_records, _, _ = phantom_tiles
    return train_attribute_network(train_tiles, train_records, epochs=8, seed=0).features

def steps_on_one_batch(build, data, n: int) -> list:
    "The statistics of `n` compiled training steps on one batch of `data`, from seeded initial weights; `build(encoder)` makes the model."
    import keras
    from dermlab.data import TabularEncoder, make_image_dataset
    keras.utils.set_random_seed(0)
    encoder = TabularEncoder().fit(data.table)
    model = build(encoder)
    batch = next(iter(make_image_dataset(data, encoder, image_size=16, batch_size=8, drop_remainder=True, shuffle=False)))
    return [{k: float(v) for k, v in model.compiled_step(batch).items()} for _ in range(n)]

TWO_CPU_DEVICES = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # as on Kaggle's two GPUs
""")

def run_on_two_cpu_devices(script: str,  # Python that uses `strategy` and prints one JSON line last
                           *arguments, timeout: int = 600) -> dict:
    "Run `script` in a fresh Python whose CPU is split into two logical devices under a `MirroredStrategy`; return its last JSON line."
    result = subprocess.run([sys.executable, "-c", TWO_CPU_DEVICES + textwrap.dedent(script), *map(str, arguments)],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])

@pytest.fixture(scope="session")
def two_cpu_devices():
    "`run_on_two_cpu_devices`: the distributed training path of a GPU machine, tested on this CPU."
    return run_on_two_cpu_devices
