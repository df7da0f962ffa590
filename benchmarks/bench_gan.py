"""Benchmark the GAN's training step (eager, graph, XLA) and how many steps it needs to draw lesions as dark as real ones.

    python benchmarks/bench_gan.py --steps 20

1. Step time. Builds the default conditional GAN (32 px, batch 32: the notebook's quick profile) on a phantom set and
   times training steps on one batch, all in this one process:
     eager     ConditionalGan.distributed_step run eagerly (every op dispatched from Python)
     graph     the same step traced once by tf.function (GanConfig.jit_compile=False)
     xla       the same step compiled by XLA (GanConfig.jit_compile=True)
   The variants are timed in alternating rounds, so that a slow phase of the machine hits all of them.
2. Steps to lesions. Trains the default recipe on a 2,000-image phantom set, measuring every --check-every steps the
   ratio of the median lesion contrast of generated tiles to real held-out tiles of the same records, and the diameter
   and ITA rank correlations; reports the steps and training seconds (measuring excluded) until the contrast ratio first
   reaches 0.6, and until all the test's criteria hold at once (contrast ratio >= 0.6, diameter rho >= 0.6, ITA rho >= 0.9,
   two-sample accuracy < 0.95). An untrained generator's coloured noise reaches the first three on its own: read both.
Prints one JSON document with the CPU model: compare ratios within one run, not seconds across machines.
"""
import argparse, contextlib, json, os, platform, statistics, sys, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def cpu_model() -> str:
    "The CPU's model name, from /proc/cpuinfo where there is one."
    try: return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration): return platform.processor() or "unknown"

def time_rounds(steps: dict, batch, rounds: int) -> dict:
    "Seconds per call of each step, after one untimed warm-up call each, in alternating rounds."
    for step in steps.values(): step(batch)
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            float(step(batch)["generator_loss"])  # wait for the result
            times[name].append(time.perf_counter() - start)
    return times

def phantom(name: str, n_images: int, seed: int = 7):
    "A phantom set under runs/bench, rendered once (small source tiles: they are trained at 32 px)."
    from dermlab.data import load_isic
    from dermlab.phantom import make_phantom_isic
    folder = ROOT / "runs" / "bench" / name
    if not (folder / "phantom-card.json").exists():
        make_phantom_isic(folder, n_images=n_images, n_patients=n_images // 10, image_size_range=(48, 72), seed=seed)
    return load_isic(folder)

def steps_to_lesions(threshold: float, check_every: int, max_steps: int, image_size: int, batch_size: int) -> dict:
    "Train the default recipe; report when the lesion contrast ratio first reaches `threshold`, and when all the test's criteria hold."
    from dermlab.data import TabularEncoder, make_image_dataset, split_by_patient
    from dermlab.data import read_tiles
    from dermlab.evaluate import compare_with_real, conditional_fidelity
    from dermlab.gan import ConditionalGan, GanConfig
    data = phantom("gan-2000", 2000)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    gan = ConditionalGan(TabularEncoder.for_table(train.table), GanConfig(image_size=image_size, batch_size=batch_size, seed=0))
    real, records = read_tiles(held_out, image_size, n=96)
    batches = iter(make_image_dataset(train, gan.encoder, image_size=image_size, batch_size=batch_size, drop_remainder=True).repeat())
    trained, curve, first_contrast = 0.0, [], None
    for step in range(1, max_steps + 1):
        start = time.perf_counter()
        float(gan.compiled_step(next(batches))["generator_loss"])
        trained += time.perf_counter() - start
        if step % check_every: continue
        realism = compare_with_real(gan, real, records)
        ratio, two_sample = realism["lesion_contrast_ratio"], realism["two_sample_accuracy"]
        fidelity = conditional_fidelity(gan, held_out.table, seed=0)
        diameter, ita = fidelity["diameter_rank_correlation"], fidelity["ita_rank_correlation"]
        curve.append({"step": step, "seconds": round(trained, 1), "contrast_ratio": round(ratio, 3), "diameter_rho": round(diameter, 3),
                      "ita_rho": round(ita, 3), "two_sample_accuracy": round(two_sample, 3)})
        if ratio >= threshold and first_contrast is None: first_contrast = curve[-1]
        if ratio >= threshold and diameter >= 0.6 and ita >= 0.9 and two_sample < 0.95:
            return {"contrast_ratio_first_at_threshold": first_contrast, "all_test_criteria_first_met": curve[-1],
                    "compiled_as": gan.compiled_step.choice, "curve": curve}
    return {"contrast_ratio_first_at_threshold": first_contrast, "all_test_criteria_first_met": None, "curve": curve}

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds of the three step variants (medians reported)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--check-every", type=int, default=25, help="steps between contrast measurements")
    parser.add_argument("--max-steps", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import tensorflow as tf
    from dermlab.data import TabularEncoder, make_image_dataset
    from dermlab.gan import ConditionalGan, GanConfig
    data = phantom("gan-200", 200)
    encoder = TabularEncoder.for_table(data.table)
    gan = ConditionalGan(encoder, GanConfig(image_size=args.image_size, batch_size=args.batch_size, seed=0))
    batch = next(iter(make_image_dataset(data, encoder, image_size=args.image_size, batch_size=args.batch_size, drop_remainder=True)))
    variants = {"eager": gan.distributed_step, "graph": tf.function(gan.distributed_step),
                "xla": tf.function(gan.distributed_step, jit_compile=True)}
    medians = {name: statistics.median(times) for name, times in time_rounds(variants, batch, args.steps).items()}
    report = {"command": " ".join(["python benchmarks/bench_gan.py", *sys.argv[1:]]), "cpu": cpu_model(), "cores": os.cpu_count(),
              "tensorflow": tf.__version__, "image_size": args.image_size, "batch_size": args.batch_size,
              "parameters": {"generator": gan.generator.count_params(), "discriminator": gan.discriminator.count_params()},
              "median_seconds_per_step": {name: round(m, 4) for name, m in medians.items()},
              "images_per_second": {name: round(args.batch_size / m, 1) for name, m in medians.items()},
              "graph_vs_eager": round(medians["eager"] / medians["graph"], 2), "xla_vs_eager": round(medians["eager"] / medians["xla"], 2),
              "xla_vs_graph": round(medians["graph"] / medians["xla"], 2)}
    with contextlib.redirect_stdout(sys.stderr):  # what 'auto' compilation prints is not part of the JSON report
        report["steps_to_lesions"] = steps_to_lesions(0.6, args.check_every, args.max_steps, args.image_size, args.batch_size)
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
