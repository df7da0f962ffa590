"""The course's time budget: quick mode measured on this CPU, the full profile estimated on this CPU and on a T4.

    dermlab run --quick --out /tmp/budgetrun                       # times every notebook in quick mode (run.json)
    python benchmarks/bench_time_budget.py --run /tmp/budgetrun/run.json

1. Quick mode: the seconds of each notebook in the course run's run.json (papermill, every cell): measured.
2. Training steps: on a phantom set, the seconds per training step of each model in its quick and its full profile:
   the GAN's and the diffusion model's compiled step (the graph; "auto" may pick XLA when it is faster), median of 8
   calls after 2 warm-up calls; the baseline's and the classifier's `fit` as the difference between a long and a short
   epoch, so that compiling, sample grids and checkpoints drop out. Medians of --repeats.
3. The full profile on this CPU (estimate). Generator notebooks: the full profile's training steps at the full
   profile's step time, plus the rest of the quick run (evaluation, sampling) scaled by the ratio of step times.
   Notebooks that train many small classifiers (05-07): quick mode scaled by the work their full-profile parameters
   add (CLASSIFIER_WORK). Notebooks that train nothing: quick mode scaled by their data-size ratio.
4. The full profile on a T4 (estimate): arithmetic divided by the ratio of the T4's nominal float32 rate (8.1 TFLOP/s,
   NVIDIA's datasheet; mixed precision would be faster) to this CPU's measured float32 matrix-multiply rate, but at
   least 10 ms per training step (kernel launches and the input pipeline: 01_data measures about 2,800 images/s at 64 px
   on 2 cores, 11 ms per batch of 32, and Colab and Kaggle feed their GPU from 2 cores) and at least
   the quick run's own CPU-side time; notebooks that train nothing take as long as on the CPU. An estimate until
   someone times it on a T4.
Prints one JSON document with the CPU model; the figures for dermlab.runtime.TIME_BUDGET come from its "budget" table.
"""
import argparse, contextlib, json, os, statistics, sys, tempfile, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import cpu_model  # noqa: E402

T4_FLOAT32 = 8.1e12  # FLOP/s, nominal (NVIDIA T4 datasheet)
MIN_GPU_STEP = 0.010  # seconds per training step on a T4, at least: the 2-core input pipeline and kernel launches

def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    "This CPU's float32 matrix-multiply rate in FLOP/s (median of `repeats`)."
    import tensorflow as tf
    a = tf.random.normal((size, size)); b = tf.random.normal((size, size))
    float(tf.reduce_sum(tf.matmul(a, b)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); float(tf.reduce_sum(tf.matmul(a, b))); times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times)

def seconds_per_compiled_step(generator, train, steps: int = 8) -> float:
    "Median seconds of a GAN's or diffusion model's compiled training step (the graph), after two warm-up calls."
    from dermlab.data import make_image_dataset
    config = generator.config
    batches = list(make_image_dataset(train, generator.encoder, image_size=config["image_size"], batch_size=config["batch_size"],
                                      drop_remainder=True, seed=0).repeat().take(steps + 2))
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        [float(v) for v in generator.compiled_step(batch).values()]  # wait for the results
        if i >= 2: times.append(time.perf_counter() - start)
    return statistics.median(times)

def seconds_per_fit_step(generator, train, folder: Path, short: int = 5, long: int = 65) -> float:
    "Seconds per training step of a generator's `fit` (the baseline's `model.fit`): a long epoch minus a short one, after a warm-up epoch."
    with contextlib.redirect_stdout(sys.stderr):  # "resumed from ..." lines: not part of the JSON report
        generator.fit(train, epochs=1, run_dir=folder, progress=False, steps_per_epoch=short)
        timed = []
        for epoch, steps in [(2, short), (3, long)]:
            start = time.perf_counter()
            generator.fit(train, epochs=epoch, run_dir=folder, progress=False, steps_per_epoch=steps)
            timed.append(time.perf_counter() - start)
    return (timed[1] - timed[0]) / (long - short)

def seconds_per_classifier_step(build, image_size: int, short: int = 16, long: int = 112) -> float:
    "Seconds per training step of `train_classifier` (batch 32): one epoch of `long` steps minus one of `short`."
    import numpy as np
    from dermlab.classifier import train_classifier
    rng = np.random.default_rng(0)
    timed = []
    for steps in (short, long):
        tiles = rng.integers(0, 255, (steps * 32, image_size, image_size, 3), dtype=np.uint8)
        start = time.perf_counter()
        train_classifier(build, tiles, (rng.random(len(tiles)) < 0.1).astype(float), epochs=1, augmentation="cheap")
        timed.append(time.perf_counter() - start)
    return (timed[1] - timed[0]) / (long - short)

def step_times(repeats: int) -> dict:
    "Median seconds per step of every model the course trains, in its quick and full profile."
    from dermlab.classifier import build_small_cnn
    from dermlab.data import TabularEncoder, load_isic, split_by_patient
    from dermlab.deconv import DeconvConfig, DeconvGenerator
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    from dermlab.gan import ConditionalGan, GanConfig
    from dermlab.phantom import make_phantom_isic
    work = Path(tempfile.mkdtemp(prefix="time_budget_"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_isic(make_phantom_isic(work / "phantom", n_images=400, n_patients=40, seed=7))
    train = data.subset(split_by_patient(data.table, seed=0) == "train")
    encoder = TabularEncoder.for_table(train.table)
    models = {
        "gan quick": lambda: ConditionalGan(encoder, GanConfig(image_size=32, batch_size=32, jit_compile=False, seed=0)),
        "gan full": lambda: ConditionalGan(encoder, GanConfig(image_size=64, batch_size=32, jit_compile=False, seed=0)),
        "deconv quick": lambda: DeconvGenerator(encoder, DeconvConfig(image_size=32, batch_size=16, seed=0)),
        "deconv full": lambda: DeconvGenerator(encoder, DeconvConfig(image_size=64, batch_size=16, seed=0)),
        "diffusion quick": lambda: DiffusionGenerator(encoder, DiffusionConfig(image_size=32, batch_size=16, jit_compile=False, seed=0, **DENOISER_SIZES["cpu_quick"])),
        "diffusion full": lambda: DiffusionGenerator(encoder, DiffusionConfig(image_size=64, batch_size=32, jit_compile=False, seed=0, **DENOISER_SIZES["t4"])),
    }
    times = {name: [] for name in [*models, "small cnn"]}
    for repeat in range(repeats):
        for name, build in models.items():
            generator = build()
            times[name].append(seconds_per_fit_step(generator, train, work / f"{name.replace(' ', '_')}_{repeat}") if name.startswith("deconv")
                               else seconds_per_compiled_step(generator, train))
        times["small cnn"].append(seconds_per_classifier_step(lambda: build_small_cnn(32), 32))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()), file=sys.stderr, flush=True)
    return {name: statistics.median(values) for name, values in times.items()}

# Training steps of each notebook, quick and full, from its parameters (train split 70%; one pass = train images // batch).
passes = lambda images, batch: int(0.7 * images) // batch
TRAINING = {  # notebook: (model, quick steps, full steps)
    "02_gan": ("gan", 6 * 50 + 3 * 50 + 5, 40 * passes(6000, 32) + 10 * passes(6000, 32) + 5),  # training, ablation, resume
    "03_deconv": ("deconv", 4 * passes(600, 16) + passes(600, 16), 40 * passes(4000, 16) + passes(4000, 16)),
    "04_diffusion": ("diffusion", 4 * 50 + 2, 40 * passes(6000, 32) + 2),
}
CLASSIFIER_WORK = {  # notebook: full-profile work / quick-mode work, from the factors its parameters change
    "05_evaluate": (60 / 20) * (2000 / 600),  # feature network epochs x phantom images
    "05_memorisation": (60 / 20) * (2000 / 600),
    "06_classifier": (30 / 4) * (5 / 2) * (3000 / 600) * (1 + 3 * (2 + 5 + 11 + 1.6)) / (1 + 2 * (2 + 5 + 1.6)),  # epochs x seeds x data x arm sizes
    "07_bias": (30 / 6) * (2400 / 1000),  # epochs x planted-bias images
}
DATA_RATIO = {"00_getting_started": 1, "01_phantom": 2000 / 240, "00_skin_colour": 300 / 60, "01_data": 3000 / 300, "01_generators": 400 / 120,
              "02_gan": 6000 / 1000, "03_deconv": 4000 / 600, "04_diffusion": 6000 / 600}

def budget(quick_seconds: dict, steps: dict, cpu_rate: float) -> dict:
    "Per notebook: quick minutes (measured), full-profile hours on a T4 and on this CPU (estimates)."
    speedup = T4_FLOAT32 / cpu_rate
    rows = {}
    for notebook, seconds in quick_seconds.items():
        if notebook in TRAINING:  # training steps counted; the rest (evaluation, sampling) grows with the network's step time
            model, quick_steps, full_steps = TRAINING[notebook]
            step_ratio = steps[f"{model} full"] / steps[f"{model} quick"]
            quick_rest = seconds - min(quick_steps * steps[f"{model} quick"], 0.9 * seconds)
            full_training, full_rest = full_steps * steps[f"{model} full"], quick_rest * step_ratio
            cpu = full_training + full_rest
            t4 = max(full_training / speedup, full_steps * MIN_GPU_STEP) + max(full_rest / speedup, quick_rest)
        elif notebook in CLASSIFIER_WORK:  # small networks: the T4's time is set by the steps' fixed cost more than by arithmetic
            cpu = seconds * CLASSIFIER_WORK[notebook]
            t4 = max(cpu / speedup, cpu / steps["small cnn"] * MIN_GPU_STEP, seconds)
        else:  # rendering, reading and measuring: CPU work, which a GPU does not shorten
            cpu = t4 = seconds * DATA_RATIO.get(notebook, 1)
        rows[notebook] = {"quick_minutes_cpu": round(seconds / 60, 2), "full_hours_t4": round(t4 / 3600, 3), "full_hours_cpu": round(cpu / 3600, 3)}
    return rows

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run.json of a `dermlab run --quick` on this machine")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run = json.loads(Path(args.run).read_text())
    if not run.get("quick"): raise SystemExit(f"{args.run}: not a quick run")
    quick_seconds = {Path(n["notebook"]).stem: n["seconds"] for n in run["notebooks"]}
    cpu_rate = matmul_rate()
    steps = step_times(args.repeats)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "matmul_gflops_cpu": round(cpu_rate / 1e9, 1),
              "t4_float32_gflops_nominal": T4_FLOAT32 / 1e9, "t4_over_cpu": round(T4_FLOAT32 / cpu_rate, 1),
              "seconds_per_step_median": {k: round(v, 4) for k, v in steps.items()},
              "full_over_quick_step": {m: round(steps[f"{m} full"] / steps[f"{m} quick"], 1) for m in ("gan", "deconv", "diffusion")},
              "budget": budget(quick_seconds, steps, cpu_rate)}
    print(json.dumps(report, indent=1))
    return 0

if __name__ == "__main__": sys.exit(main())
