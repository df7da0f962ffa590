"The generators: conditional fidelity, resuming after a kill, tf.distribute, mixed precision, saving with provenance."
import json, os, subprocess, sys, textwrap, time, warnings

import numpy as np
import pandas as pd
import pytest

from dermlab.data import TabularEncoder, load_isic, split_by_patient
from dermlab.phantom import make_phantom_isic

TINY = dict(image_size=16, batch_size=8, generator_channels=32, discriminator_channels=16, noise_dim=8, jit_compile=False, seed=0)

def quiet_load(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_isic(folder)

@pytest.fixture(scope="module")
def quick_budget_set(tmp_path_factory):
    "2,000 phantom tiles (rendered small: they are trained at 32 px), split by patient."
    data = quiet_load(make_phantom_isic(tmp_path_factory.mktemp("quick") / "set", n_images=2000, n_patients=200,
                                        image_size_range=(48, 72), seed=7))
    split = split_by_patient(data.table, seed=0)
    return data.subset(split == "train"), data.subset(split != "train")

@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return quiet_load(make_phantom_isic(tmp_path_factory.mktemp("small") / "set", n_images=160, n_patients=16, seed=4))

QUICK_BUDGET = dict(epochs=6, steps_per_epoch=50)  # 300 steps of 32 tiles: the GAN notebook's quick profile

def judged(generator, held_out):
    "Conditional fidelity and realism against real held-out tiles of the same records."
    from dermlab.data import read_tiles
    from dermlab.evaluate import compare_with_real, conditional_fidelity
    real, records = read_tiles(held_out, generator.image_size, n=96)
    fidelity = conditional_fidelity(generator, held_out.table, n_per_row=2, seed=0)
    report = {**{k: v for k, v in fidelity.items() if k.endswith("correlation")}, **compare_with_real(generator, real, records)}
    print({k: round(v, 3) for k, v in report.items()})
    return report

def test_gan_learns_to_draw_lesions_that_obey_the_record_in_the_quick_budget(quick_budget_set, tmp_path):
    import keras
    from dermlab.gan import ConditionalGan, GanConfig
    train, held_out = quick_budget_set
    # Keras draws unseeded initial weights from a global generator, so they depend on what ran before in this process:
    # after the diffusion tests, one draw ended at two-sample accuracy 0.953. Seeded, the test no longer depends on test order
    keras.utils.set_random_seed(0)
    # XLA, not "auto": timing under a busy CI machine must not pick the graph, whose float sums differ and change the run
    gan = ConditionalGan(TabularEncoder.for_table(train.table), GanConfig(image_size=32, batch_size=32, seed=0, jit_compile=True))
    history = gan.fit(train, run_dir=tmp_path, progress=False, **QUICK_BUDGET)
    report = judged(gan, held_out)
    print({k: round(v, 3) for k, v in report.items() if isinstance(v, float)})
    assert report["lesion_contrast_ratio"] >= 0.6  # lesions about as dark as real ones, not faint smudges
    assert report["diameter_rank_correlation"] >= 0.6 and report["ita_rank_correlation"] >= 0.9
    # the coloured noise of a generator 25 steps old has contrast ratio 1.5 (lesions darker than real ones, confetti on the
    # skin), rho 0.38-0.70 and 0.90-0.95: the contrast band catches it with a margin of 0.2, where the trained GAN sits 0.3
    # inside (0.93-0.98)
    assert report["lesion_contrast_ratio"] <= 1.3
    # the two-sample classifier tells the noise from real tiles every time (accuracy 1.0); the trained GAN was told apart in
    # 0.86-0.95 of 192 tiles over initialisations (182 here): the bound below fails at 191, some 9 tiles (3 standard
    # deviations) above the worst of them. It no longer carries the test alone: with 576 tiles the noise scored 0.993 and
    # the trained GAN 0.969, too close for any bound between them
    assert report["two_sample_low"] < 0.97
    assert np.isfinite(history.logit_gap).all() and history.logit_gap.iloc[-2:].mean() > 0  # the discriminator separates

def test_deconv_baseline_obeys_the_record_but_blurs_and_ignores_noise(quick_budget_set, tmp_path):
    from dermlab.deconv import DeconvConfig, DeconvGenerator
    from dermlab.generators import sample_diversity
    import keras
    train, held_out = quick_budget_set
    keras.utils.set_random_seed(0)  # initial weights that do not depend on the tests run before (see the GAN test)
    deconv = DeconvGenerator(TabularEncoder.for_table(train.table), DeconvConfig(image_size=32, batch_size=32, seed=0))
    history = deconv.fit(train, run_dir=tmp_path, progress=False, epochs=4, steps_per_epoch=50)
    report = judged(deconv, held_out)
    assert report["diameter_rank_correlation"] >= 0.6 and report["ita_rank_correlation"] >= 0.9  # fidelity passes
    # the phantom's lesions sit in the middle of every tile, so the median of many dark centres stays dark: the contrast
    # ratio was 0.79 here, and cannot tell blur from real; the border gradient and the two-sample test can
    assert report["border_gradient_ratio"] < 0.8 and report["two_sample_low"] > 0.75  # soft borders, told from real tiles
    diversity = sample_diversity(deconv, held_out.table.head(8))
    noise_share = history.noise_diversity / history.condition_diversity
    print("noise diversity / record diversity by epoch:", noise_share.round(3).tolist(), "held-out:", diversity)
    # the pixel loss averages the noise away: its share falls as training goes on, and ends well below the record's
    # (0.28 after 200 steps from one initialisation, below 0.25 from others)
    assert noise_share.iloc[-1] < noise_share.iloc[0] and diversity["noise_diversity"] < 0.5 * diversity["condition_diversity"]
    assert history.pixel_loss.iloc[-1] < history.pixel_loss.iloc[0]

def tiny_generator(kind: str, encoder):
    "The smallest working generator of each kind, for the interface test."
    if kind == "painted_disc":
        from dermlab.generators import PaintedDiscGenerator
        return PaintedDiscGenerator(encoder, image_size=16)
    if kind == "conditional_gan":
        from dermlab.gan import ConditionalGan, GanConfig
        return ConditionalGan(encoder, GanConfig(**TINY))
    if kind == "deconv_baseline":
        from dermlab.deconv import DeconvConfig, DeconvGenerator
        return DeconvGenerator(encoder, DeconvConfig(image_size=16, channels=32, noise_dim=8, batch_size=8))
    if kind == "conditional_diffusion":
        from dermlab.diffusion import DiffusionConfig, DiffusionGenerator
        return DiffusionGenerator(encoder, DiffusionConfig(image_size=16, widths=(16, 32), blocks_per_level=1, attention=False,
                                                           embedding_dim=32, batch_size=8, sampling_steps=3, jit_compile=False))
    raise AssertionError(f"no tiny {kind} for the interface test: add one")

PRETRAINED_KINDS = {"stable_diffusion_prompted"}  # used as downloaded, never trained here: tested offline in test_diffusion

def registered_kinds():
    "Every trainable generator kind the package defines: each must pass the interface test."
    import importlib, pkgutil
    import dermlab
    from dermlab.generators import GENERATOR_KINDS
    for module in pkgutil.iter_modules(dermlab.__path__):  # every module: a kind defined anywhere in the package is found
        if not module.name.startswith("_"): importlib.import_module(f"dermlab.{module.name}")
    return sorted(set(GENERATOR_KINDS) - PRETRAINED_KINDS)

@pytest.mark.parametrize("kind", registered_kinds())
def test_every_generator_fits_generates_saves_and_loads_the_same_images(kind, small_set, tmp_path):
    from dermlab.generators import ConditionalGenerator, GENERATOR_KINDS, save_synthetic_set
    generator = tiny_generator(kind, TabularEncoder.for_table(small_set.table))
    assert type(generator) is GENERATOR_KINDS[kind]
    history = generator.fit(small_set, epochs=1, run_dir=tmp_path / "run", progress=False)
    assert list(history.epoch) == [1] and (tmp_path / "run/samples/epoch_001.png").exists() and (tmp_path / "run/history.json").exists()
    records = small_set.table.head(4)
    images = generator.generate(records, n_per_row=2, seed=3)
    assert images.shape == (8, generator.image_size, generator.image_size, 3) and images.dtype == np.uint8
    rebatched = generator.generate(records, n_per_row=2, seed=3, batch_size=3)  # the same noise, other batches
    # oneDNN may sum in another order for another batch size: at most the last digit of a pixel may change
    assert np.abs(images.astype(int) - rebatched).max() <= 1 and (images != rebatched).mean() < 0.01
    other_seed = generator.generate(records, n_per_row=2, seed=4)  # a generator that ignores its noise fails here
    assert (np.abs(images.astype(int) - other_seed) > 2).mean() > 0.01, "another seed gave (nearly) the same images"
    generator.save(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("*.pkl")) and json.loads((tmp_path / "saved/generator.json").read_text())["kind"] == kind
    loaded = ConditionalGenerator.load(tmp_path / "saved")
    assert type(loaded) is type(generator) and loaded.version == generator.version
    assert np.array_equal(loaded.generate(records, n_per_row=2, seed=3), images)
    with pytest.raises(NotImplementedError, match="generation only"): loaded.fit(small_set, epochs=2, run_dir=tmp_path / "run")
    saved = save_synthetic_set(tmp_path / "synthetic", images, records.loc[records.index.repeat(2)], loaded, seed=3)
    table = pd.read_csv(saved / "synthetic-metadata.csv")
    assert table.synthetic.all() and (table.generator == kind).all() and (table.generator_version == generator.version).all()
    synthetic = quiet_load(saved)  # read back as a student would: provenance kept, the images those generated
    assert len(synthetic) == 8 and synthetic.table.source.eq(f"synthetic: {kind}").all() and synthetic.table.seed.eq(3).all()
    assert list(synthetic.table.condition_source_id) == list(records.image_id.repeat(2))
    assert list(synthetic.table.patient_id) == list(records.patient_id.repeat(2))  # each record's patient, for patient-wise splits
    import io
    from PIL import Image
    def jpeg_round_trip(image):  # what a JPEG of quality 95 keeps of a generated image
        buffer = io.BytesIO(); Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        return np.asarray(Image.open(buffer))
    stored = [np.asarray(Image.open(io.BytesIO(b))) for b in synthetic.images.read(list(synthetic.table.image_id))]
    assert all(np.array_equal(kept, jpeg_round_trip(image)) for kept, image in zip(stored, images))  # each row holds its own image

def test_loading_names_what_is_wrong(tmp_path):
    from dermlab.data import DermlabDataError
    from dermlab.generators import ConditionalGenerator
    with pytest.raises(DermlabDataError, match="no generator.json"): ConditionalGenerator.load(tmp_path)
    (tmp_path / "generator.json").write_text(json.dumps({"kind": "teleporter"}))
    with pytest.raises(DermlabDataError, match="'teleporter' unknown"): ConditionalGenerator.load(tmp_path)

KILLABLE_RUN = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    from dermlab.data import TabularEncoder, load_isic
    from dermlab.gan import ConditionalGan, GanConfig
    data = load_isic(sys.argv[1])
    gan = ConditionalGan(TabularEncoder().fit(data.table), GanConfig(**{tiny}))
    gan.fit(data, epochs=10_000, run_dir=sys.argv[2], progress=False)  # runs until killed
""").format(tiny=TINY)

def test_gan_resumes_after_its_process_is_killed(small_set, tmp_path):
    from dermlab.gan import ConditionalGan, GanConfig
    import tensorflow as tf
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, str(small_set.folder), str(run_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (tf.train.latest_checkpoint(str(run_dir / "checkpoints")) or "").endswith("-2"):
            assert process.poll() is None, "the training process ended before it was killed"
            time.sleep(0.5)
    finally:
        process.kill()  # SIGKILL: no clean-up, as when a Kaggle session ends
        process.wait()
    done = int(tf.train.latest_checkpoint(str(run_dir / "checkpoints")).rsplit("-", 1)[1])
    assert done >= 2
    steps_per_epoch = len(small_set) // TINY["batch_size"]
    gan = ConditionalGan(TabularEncoder().fit(small_set.table), GanConfig(**TINY))
    history = gan.fit(small_set, epochs=done + 1, run_dir=run_dir, progress=False)
    assert gan.trained_epochs == done + 1 and list(history.epoch) == list(range(1, done + 2))
    assert int(gan.generator_optimizer.iterations) == int(gan.discriminator_optimizer.iterations) == steps_per_epoch * (done + 1)

DISTRIBUTED_RUN = textwrap.dedent("""
    from dermlab.data import TabularEncoder, load_isic, make_image_dataset
    from dermlab.gan import ConditionalGan, GanConfig
    data = load_isic(sys.argv[1])
    encoder = TabularEncoder().fit(data.table)
    gan = ConditionalGan(encoder, GanConfig(**{{**{tiny}, "jit_compile": "auto"}}), strategy=strategy)
    batch = next(iter(strategy.experimental_distribute_dataset(
        make_image_dataset(data, encoder, image_size=16, batch_size=8, drop_remainder=True))))
    first = {{k: float(v) for k, v in gan.compiled_step(batch).items()}}
    history = gan.fit(data, epochs=2, run_dir=sys.argv[2], progress=False)
    images = gan.generate(data.table.head(3), seed=0)
    print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "first": first, "epochs": len(history),
                      "finite": bool(history.drop(columns="warnings").select_dtypes("number").notna().all().all()),
                      "images": list(images.shape), "iterations": int(gan.generator_optimizer.iterations.numpy()),
                      "compiled_as": gan.compiled_step.choice, "report": gan.compiled_step.report()}}))
""").format(tiny=TINY)

def test_gan_trains_under_mirrored_strategy_on_two_cpu_devices(small_set, tmp_path, two_cpu_devices):
    report = two_cpu_devices(DISTRIBUTED_RUN, small_set.folder, tmp_path / "run")
    assert report["replicas"] == 2 and report["epochs"] == 2 and report["finite"] and report["images"] == [3, 16, 16, 3]
    # each replica averages over the global batch: at the start the hinge loss of an untrained discriminator is about 2
    # (local averaging summed over two replicas would give about 4)
    assert 1.5 < report["first"]["discriminator_loss"] < 2.5
    assert report["iterations"] == 1 + 2 * (len(small_set) // 8)
    assert report["compiled_as"] in ("graph", "xla"), report["report"]  # "auto" chose (or fell back to the graph and said why)
    print(report["report"])

def gan_steps(data, mixed: bool, n: int = 3) -> list:
    "The losses of `n` training steps on one batch, from the same initial weights: float32 or mixed precision."
    from conftest import steps_on_one_batch
    from dermlab.gan import ConditionalGan, GanConfig
    return steps_on_one_batch(lambda encoder: ConditionalGan(encoder, GanConfig(**{**TINY, "mixed_precision": mixed})), data, n)

def test_mixed_precision_step_runs_with_loss_scaling(small_set, tmp_path):
    import keras
    from dermlab.gan import ConditionalGan, GanConfig
    # float16 compute with loss scaling follows float32 step by step (1e-4 apart here): a loss scale left in the
    # gradients, or a layer computing garbage in float16, would part them at once
    for single, mixed in zip(gan_steps(small_set, False), gan_steps(small_set, True)):
        for name in ("discriminator_loss", "generator_loss"):
            assert mixed[name] == pytest.approx(single[name], rel=0.01, abs=1e-3), (name, single, mixed)
    gan = ConditionalGan(TabularEncoder().fit(small_set.table), GanConfig(**{**TINY, "mixed_precision": True}))
    assert isinstance(gan.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    assert {layer.compute_dtype for layer in gan.generator.layers if "conv2d" in layer.name} == {"float16"}
    assert gan.generator.output.dtype == "float32" and gan.discriminator.output.dtype == "float32"
    history = gan.fit(small_set, epochs=1, run_dir=tmp_path, progress=False)
    assert np.isfinite(history.discriminator_loss.iloc[0]) and int(gan.generator_optimizer.iterations) > 0
    assert gan.generate(small_set.table.head(2)).dtype == np.uint8

def test_a_host_that_never_answers_is_given_up_after_the_timeout(monkeypatch):
    "The offline path's promise, 'fail within seconds': a connection that hangs for a minute is abandoned after the timeout."
    import socket, threading
    from dermlab.core import host_reachable
    released = threading.Event()
    def hanging(*args, **kwargs):
        released.wait(60)
        raise OSError("no answer")
    monkeypatch.setattr(socket, "create_connection", hanging)
    started = time.perf_counter()
    assert host_reachable("https://weights.example/x.h5", timeout=0.5) is False
    waited = time.perf_counter() - started
    released.set()
    assert waited < 30, waited  # 0.5 s asked, a minute of hanging avoided: the margin holds on the busiest machine

@pytest.mark.parametrize("kind", [k for k in registered_kinds() if k != "painted_disc"])  # the painted disc learns nothing
def test_every_trained_generator_stops_at_its_time_budget_and_resumes_from_there(kind, small_set, tmp_path):
    "A budget of 6 ms: one epoch, then a checkpoint and a stop; the next call, without a budget, trains the epochs left."
    encoder = TabularEncoder.for_table(small_set.table)
    stopped = tiny_generator(kind, encoder).fit(small_set, epochs=3, run_dir=tmp_path, progress=False, steps_per_epoch=2, minutes=1e-4)
    assert list(stopped.epoch) == [1] and stopped.attrs["stopped_by_budget"]
    finished = tiny_generator(kind, encoder).fit(small_set, epochs=3, run_dir=tmp_path, progress=False, steps_per_epoch=2)
    assert list(finished.epoch) == [1, 2, 3] and not finished.attrs["stopped_by_budget"]
    pd.testing.assert_series_equal(finished.iloc[0], stopped.iloc[0])  # the first epoch kept, not trained again

@pytest.mark.parametrize("kind", ["gan", "diffusion"])
def test_the_full_profiles_build_train_a_step_and_sample_at_128_px(kind, small_set, tmp_path):
    "128 px, the size of the real tiles (median about 131 px): the full profile's network, one training step, images back, saved and loaded."
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    from dermlab.gan import ConditionalGan, GanConfig
    from dermlab.generators import ConditionalGenerator
    encoder = TabularEncoder.for_table(small_set.table)
    if kind == "gan": generator = ConditionalGan(encoder, GanConfig(image_size=128, batch_size=4, jit_compile=False, seed=0))
    else: generator = DiffusionGenerator(encoder, DiffusionConfig(image_size=128, batch_size=2, jit_compile=False, sampling_steps=1, seed=0,
                                                                  **DENOISER_SIZES["t4"]))  # its cost at batch 32: benchmarks/bench_128px.py
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one step in: the GAN's training checks warn of mode collapse, rightly
        history = generator.fit(small_set, epochs=1, steps_per_epoch=1, run_dir=tmp_path / "run", progress=False, compiled=False)  # eager: no compiling
    assert len(history) == 1 and generator.trained_steps == 1 and np.isfinite(history.select_dtypes("number").to_numpy(float)).all()
    images = generator.generate(small_set.table.head(2), seed=0)
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.uint8 and images.std() > 0
    generator.save(tmp_path / "saved")
    again = ConditionalGenerator.load(tmp_path / "saved")
    assert again.image_size == 128 and all(np.array_equal(a, b) for a, b in zip(again.network.get_weights(), generator.network.get_weights()))
    assert again.generate(small_set.table.head(2), seed=0, average_blocks=4).shape == (2, 32, 32, 3)  # averaged down for a 32 px notebook
