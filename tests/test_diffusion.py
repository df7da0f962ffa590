"""The diffusion model: KerasCV's scheduler with a cosine schedule, the prediction targets, DDIM, tf.distribute and mixed
precision; the Stable Diffusion wrapper's prompts and its offline failure."""
import json, re, textwrap, time, warnings

import numpy as np
import pytest

import dermlab.core
from dermlab.data import TabularEncoder, load_isic
from dermlab.phantom import make_phantom_isic

TINY = dict(image_size=16, widths=(16, 32), blocks_per_level=1, attention=False, embedding_dim=32, batch_size=8,
            sampling_steps=3, jit_compile=False, seed=0)

@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_isic(make_phantom_isic(tmp_path_factory.mktemp("small") / "set", n_images=80, n_patients=8, seed=5))

def test_the_schedules_run_through_kerascv_and_go_from_signal_to_noise():
    import keras
    from keras_cv.models.stable_diffusion import NoiseScheduler
    from dermlab.diffusion import cosine_alphas_cumprod, make_noise_scheduler, signal_fractions
    assert np.allclose(signal_fractions("linear"), keras.ops.convert_to_numpy(NoiseScheduler().alphas_cumprod))  # KerasCV's own betas
    assert np.allclose(signal_fractions("cosine"), cosine_alphas_cumprod(1000), rtol=1e-4, atol=1e-7)
    for name in ("linear", "cosine"):
        fractions = signal_fractions(name)
        assert fractions[0] > 0.999 and fractions[-1] < 1e-3 and np.all(np.diff(fractions) < 0)
    assert signal_fractions("cosine")[500] > 3 * signal_fractions("linear")[500]  # the cosine schedule keeps the picture longer
    images, noise = np.ones((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4, 3), np.float32)
    noised = keras.ops.convert_to_numpy(make_noise_scheduler("cosine").add_noise(images, noise, np.array([0, 999])))
    assert np.allclose(noised[:, 0, 0, 0], np.sqrt(signal_fractions("cosine")[[0, 999]]), atol=1e-5)
    with pytest.raises(ValueError, match="schedule='sigmoid'"): make_noise_scheduler("sigmoid")

def test_velocity_and_noise_targets_give_back_the_clean_tile():
    import tensorflow as tf
    from dermlab.diffusion import PREDICTION_NAMES, split_prediction, training_target
    rng = np.random.default_rng(0)
    clean, noise = rng.uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32), rng.standard_normal((3, 4, 4, 3)).astype(np.float32)
    for fraction in (0.999, 0.5, 0.002):
        noisy = np.sqrt(fraction) * clean + np.sqrt(1 - fraction) * noise
        for kind in PREDICTION_NAMES:
            target = training_target(tf.constant(clean), tf.constant(noise), tf.constant([fraction] * 3), kind).numpy()
            recovered, _ = split_prediction(target, noisy, fraction, kind)
            assert np.allclose(recovered, clean, atol=2e-3 if kind == "noise" and fraction < 0.01 else 1e-4), (kind, fraction)

def test_configuration_names_what_is_wrong():
    from dermlab.diffusion import DiffusionConfig
    for bad, message in [(dict(schedule="sigmoid"), "schedule"), (dict(prediction="score"), "prediction"), (dict(sampler="euler"), "sampler"),
                         (dict(image_size=48), "image_size"), (dict(widths=(12, 24)), "groups"), (dict(record_drop_rate=1.0), "record_drop_rate"),
                         (dict(jit_compile="fast"), "jit_compile")]:
        with pytest.raises(ValueError, match=message): DiffusionConfig(**bad)

def test_ddim_is_deterministic_for_a_seed_and_guidance_is_a_sampling_setting(small_set):
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator, ddim_steps
    model = DiffusionGenerator(TabularEncoder.for_table(small_set.table), DiffusionConfig(**TINY))
    model.denoiser.set_weights([np.random.default_rng(i).normal(0, 0.05, w.shape) for i, w in enumerate(model.denoiser.get_weights())])
    model.ema_denoiser.set_weights(model.denoiser.get_weights())  # a network that outputs something: the zero-initialised one does not
    records = small_set.table.head(4)
    first = model.generate(records, seed=1)
    assert np.array_equal(first, model.generate(records, seed=1)) and not np.array_equal(first, model.generate(records, seed=2))
    version = model.version
    model.guidance_scale = 0.0
    assert model.version != version and not np.array_equal(first, model.generate(records, seed=1))
    assert list(ddim_steps(1000, 3)) == [999, 500, 0] and list(ddim_steps(10, 50)) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match="sampler"): model.sampler = "euler"

def test_ddpm_runs_kerascv_scheduler_steps_seeded_by_generate(small_set):
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
    model = DiffusionGenerator(TabularEncoder.for_table(small_set.table), DiffusionConfig(**{**TINY, "train_timesteps": 40, "sampler": "ddpm"}))
    model.denoiser.set_weights([np.random.default_rng(i).normal(0, 0.05, w.shape) for i, w in enumerate(model.denoiser.get_weights())])
    model.ema_denoiser.set_weights(model.denoiser.get_weights())
    records = small_set.table.head(3)
    images = model.generate(records, seed=4)
    assert images.shape == (3, 16, 16, 3) and np.array_equal(images, model.generate(records, seed=4))  # fresh noise, from the seed
    assert not np.array_equal(images, model.generate(records, seed=5))
    model.sampler = "ddim"
    assert not np.array_equal(images, model.generate(records, seed=4))  # DDPM adds noise at every step; DDIM does not

DISTRIBUTED_RUN = textwrap.dedent("""
    from dermlab.data import TabularEncoder, load_isic, make_image_dataset
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
    data = load_isic(sys.argv[1])
    encoder = TabularEncoder().fit(data.table)
    config = DiffusionConfig(**{{**{tiny}, "jit_compile": "auto", "prediction": "noise", "loss_weighting": "uniform"}})  # a plain mean
    model = DiffusionGenerator(encoder, config, strategy=strategy)
    batch = next(iter(strategy.experimental_distribute_dataset(
        make_image_dataset(data, encoder, image_size=16, batch_size=8, drop_remainder=True))))
    first = float(model.compiled_step(batch)["loss"])
    history = model.fit(data, epochs=2, run_dir=sys.argv[2], progress=False)
    print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "first": first, "losses": history.loss.tolist(),
                      "iterations": int(model.optimizer.iterations.numpy()), "images": list(model.generate(data.table.head(3)).shape),
                      "compiled_as": model.compiled_step.choice, "report": model.compiled_step.report()}}))
""").format(tiny=TINY)

def test_diffusion_trains_under_mirrored_strategy_on_two_cpu_devices(small_set, tmp_path, two_cpu_devices):
    report = two_cpu_devices(DISTRIBUTED_RUN, small_set.folder, tmp_path / "run")
    assert report["replicas"] == 2 and report["images"] == [3, 16, 16, 3] and report["iterations"] == 1 + 2 * (len(small_set) // 8)
    # the untrained denoiser outputs zeros, so the first loss is the mean square of the noise target, about 1, when each replica
    # averages over the global batch (averaging over its own half and summing the two would give about 2)
    assert 0.9 < report["first"] < 1.1 and np.isfinite(report["losses"]).all()
    assert report["compiled_as"] in ("graph", "xla"), report["report"]

def diffusion_losses(data, mixed: bool, n: int = 6) -> list:
    "The losses of `n` training steps on one batch, from the same initial weights: float32 or mixed precision."
    from conftest import steps_on_one_batch
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
    build = lambda encoder: DiffusionGenerator(encoder, DiffusionConfig(**{**TINY, "mixed_precision": mixed}))
    return [step["loss"] for step in steps_on_one_batch(build, data, n)]

def test_mixed_precision_diffusion_computes_in_float16_with_loss_scaling(small_set, tmp_path):
    import keras
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
    # the first loss does not depend on the untrained denoiser (it outputs zeros): the later ones do, and float16 with
    # loss scaling follows float32 through them (1e-5 apart here)
    assert diffusion_losses(small_set, True) == pytest.approx(diffusion_losses(small_set, False), rel=0.01)
    model = DiffusionGenerator(TabularEncoder().fit(small_set.table), DiffusionConfig(**{**TINY, "mixed_precision": True}))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert {layer.compute_dtype for layer in model.denoiser.layers if "conv2d" in layer.name} == {"float16"}
    assert model.denoiser.output.dtype == "float32"
    history = model.fit(small_set, epochs=1, run_dir=tmp_path, progress=False)
    assert np.isfinite(history.loss.iloc[0]) and int(model.optimizer.iterations) > 0
    assert model.generate(small_set.table.head(2)).dtype == np.uint8

def test_record_prompt_says_the_record_in_plain_words(small_set):
    from dermlab.diffusion import record_prompt
    assert record_prompt({"target": 1, "diameter_mm": 6.6, "site": "lower extremity", "age": 45.0, "sex": "female",
                          "skin_tone": "darkest third"}) == "dermoscopy close-up of a malignant skin lesion, 7 mm, leg, 45-year-old woman, darker skin"
    assert record_prompt({"target": np.nan, "sex": np.nan, "skin_tone": "unknown"}) == "dermoscopy close-up of a skin lesion, person"
    for _, row in small_set.table.head(8).iterrows():  # the phantom's cleaned records: every known value is said, none as "nan"
        prompt = record_prompt(row)
        assert prompt.startswith("dermoscopy close-up of a") and not re.search(r"\bnan\b", prompt) and f"{row.diameter_mm:.0f} mm" in prompt
        assert (f"{row.age:.0f}-year-old" in prompt) == (row.age == row.age) and prompt.endswith(f"{row.skin_tone} skin")

def test_stable_diffusion_offline_fails_within_seconds_naming_what_is_missing(tmp_path, monkeypatch):
    import dermlab.diffusion as diffusion
    offline = {name: f"https://weights.dermlab-offline.invalid/{name}" for name in diffusion.STABLE_DIFFUSION_FILES}
    monkeypatch.setattr(diffusion, "STABLE_DIFFUSION_FILES", offline)  # a host that never resolves, online or not
    asked = []  # the missing files' host is asked once, with the bounded timeout (how long that takes: test_generators)
    monkeypatch.setattr(dermlab.core, "host_reachable", lambda url, timeout: asked.append(timeout) or False)
    with pytest.raises(diffusion.StableDiffusionUnavailable, match="kcv_diffusion_model.h5.*cannot be reached"):
        diffusion.load_stable_diffusion(cache=tmp_path, timeout=3)
    assert asked == [3]  # one host for all its files
    for name in diffusion.STABLE_DIFFUSION_FILES: (tmp_path / name).write_bytes(b"")
    assert diffusion.missing_stable_diffusion_files(tmp_path) == []

class FakeStableDiffusion:
    "Stands in for keras_cv.models.StableDiffusion: a flat image whose grey level comes from the seed, and the prompts it got."
    def __init__(self): self.prompts = []
    def text_to_image(self, prompt, batch_size=1, num_steps=50, seed=None):
        self.prompts.append(prompt)
        return np.full((batch_size, 512, 512, 3), seed % 256, np.uint8)

def test_stable_diffusion_generator_draws_one_prompt_per_record_at_the_asked_size(small_set):
    from dermlab.diffusion import StableDiffusionGenerator, record_prompt
    fake = FakeStableDiffusion()
    generator = StableDiffusionGenerator(TabularEncoder.for_table(small_set.table), image_size=32, model=fake)
    records = small_set.table.head(3)
    images = generator.generate(records, n_per_row=2, seed=10)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert fake.prompts == [record_prompt(row) for _, row in records.iterrows()]
    assert list(images[::2, 0, 0, 0]) == [10, 11, 12]  # one seed per record, from the generate seed
    with pytest.raises(NotImplementedError, match="fine-tuning"): generator.fit(small_set, epochs=1, run_dir="unused")

KILLABLE_DIFFUSION = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    from dermlab.data import TabularEncoder, load_isic
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
    import keras
    keras.utils.set_random_seed(0)
    data = load_isic(sys.argv[1])
    model = DiffusionGenerator(TabularEncoder().fit(data.table), DiffusionConfig(**{tiny}))
    model.fit(data, epochs=int(sys.argv[3]), run_dir=sys.argv[2], progress=False)
    model.save(sys.argv[2] + "/final")
""").format(tiny=TINY)

def test_diffusion_resumed_after_a_kill_ends_where_an_unbroken_run_ends(small_set, tmp_path):
    "Weights, EMA, optimizer and random state come back from the checkpoint, not only the counters: the same final model."
    import os, signal, subprocess, sys, time
    import tensorflow as tf
    from dermlab.generators import ConditionalGenerator
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    unbroken = subprocess.run([sys.executable, "-c", KILLABLE_DIFFUSION, str(small_set.folder), str(tmp_path / "unbroken"), "3"],
                              env=env, capture_output=True, text=True, timeout=600)
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    killed = subprocess.Popen([sys.executable, "-c", KILLABLE_DIFFUSION, str(small_set.folder), str(tmp_path / "killed"), "10000"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not tf.train.latest_checkpoint(str(tmp_path / "killed" / "checkpoints")):
            assert killed.poll() is None, "the training process ended before it was killed"
            time.sleep(0.1)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # no clean-up, as when a Kaggle session ends: mid-epoch, after the first checkpoint
        killed.wait()
    done = int(tf.train.latest_checkpoint(str(tmp_path / "killed" / "checkpoints")).rsplit("-", 1)[1])
    assert 1 <= done < 3, f"killed after epoch {done}: too late for the comparison"
    resumed = subprocess.run([sys.executable, "-c", KILLABLE_DIFFUSION, str(small_set.folder), str(tmp_path / "killed"), "3"],
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    first, second = (json.loads((tmp_path / name / "history.json").read_text()) for name in ("unbroken", "killed"))
    assert [row["epoch"] for row in second] == [1, 2, 3]
    assert [row["loss"] for row in second] == pytest.approx([row["loss"] for row in first], rel=1e-4)  # the same batches and noise
    a, b = (ConditionalGenerator.load(tmp_path / name / "final") for name in ("unbroken", "killed"))
    for weights_a, weights_b in zip(a.network.get_weights(), b.network.get_weights()):  # the EMA weights used for sampling
        assert np.allclose(weights_a, weights_b, atol=1e-5)
    assert np.abs(a.generate(small_set.table.head(4), seed=1).astype(int) - b.generate(small_set.table.head(4), seed=1)).max() <= 1


def test_a_loaded_diffusion_model_has_one_config_and_refuses_unknown_settings(small_set, tmp_path):
    "The sampling settings live in `diffusion_config`; `config` and the version follow; a loaded model rebuilds it from generator.json."
    import dermlab.diffusion as diffusion
    from dermlab.core import DermlabDataError
    from dermlab.generators import ConditionalGenerator
    model = diffusion.DiffusionGenerator(TabularEncoder.for_table(small_set.table), diffusion.DiffusionConfig(
        image_size=16, widths=(16, 32), blocks_per_level=1, attention=False, embedding_dim=32, batch_size=8, sampling_steps=3, jit_compile=False))
    version = model.version
    model.sampling_steps = 2
    assert model.diffusion_config.sampling_steps == model.config["sampling_steps"] == 2 and model.version != version
    loaded = ConditionalGenerator.load(model.save(tmp_path / "model"))
    assert loaded.diffusion_config == model.diffusion_config and loaded.version == model.version
    saved = json.loads((tmp_path / "model" / "generator.json").read_text())
    saved["config"]["denoiser_depth"] = 3
    (tmp_path / "model" / "generator.json").write_text(json.dumps(saved))
    with pytest.raises(DermlabDataError, match=r"generator\.json: diffusion settings \['denoiser_depth'\] unknown"):
        ConditionalGenerator.load(tmp_path / "model")

def test_epoch_checks_draw_with_fewer_steps_and_restore_the_setting(small_set, tmp_path, monkeypatch):
    "The loop's per-epoch diversity check and grid sample with CHECK_SAMPLING_STEPS; generate afterwards uses the chosen steps."
    from dermlab import diffusion as module
    from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
    model = DiffusionGenerator(TabularEncoder.for_table(small_set.table), DiffusionConfig(**{**TINY, "sampling_steps": 7}))
    monkeypatch.setattr(module, "CHECK_SAMPLING_STEPS", 2)
    seen = []
    sample_batch = DiffusionGenerator.sample_batch
    monkeypatch.setattr(DiffusionGenerator, "sample_batch", lambda self, *a: seen.append(self.sampling_steps) or sample_batch(self, *a))
    model.fit(small_set, epochs=1, run_dir=tmp_path / "run", steps_per_epoch=2, progress=False, compiled=False)
    assert seen and set(seen) == {2} and model.sampling_steps == 7 and model.diffusion_config.sampling_steps == 7
    with pytest.raises(RuntimeError, match="inside"):
        with model.epoch_checks(): raise RuntimeError("inside")
    assert model.sampling_steps == 7  # restored after a failure too
