"""Benchmark one GAN training step: the eager GradientTape loop against dermlab's compiled step.

    python benchmarks/bench_gan.py --steps 20

Builds the default conditional GAN at 64 px and batch 16 on a phantom set, then times training steps on one batch:
  eager     ConditionalGan.distributed_step run eagerly (the original notebook's way: every op dispatched from Python)
  compiled  ConditionalGan.compiled_step (the same step traced once into a tf.function graph)
  xla       the same step compiled with XLA (jit_compile=True), for comparison
Prints one JSON document: median seconds per step, images/s, and the ratios.
"""
import argparse, json, os, statistics, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def time_steps(step, batch, steps: int) -> list:
    "Seconds per call of `step(batch)`, after one untimed warm-up call."
    step(batch)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(batch)["generator_loss"])  # wait for the result
        times.append(time.perf_counter() - start)
    return times

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (the median is reported)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import tensorflow as tf
    from dermlab.data import TabularEncoder, load_isic, make_image_dataset
    from dermlab.gan import ConditionalGan, GanConfig
    from dermlab.phantom import make_phantom_isic
    folder = ROOT / "runs" / "bench" / "gan-phantom"
    if not (folder / "phantom-card.json").exists(): make_phantom_isic(folder, n_images=200, n_patients=20, seed=0)
    data = load_isic(folder)
    encoder = TabularEncoder().fit(data.table)
    gan = ConditionalGan(encoder, GanConfig(image_size=args.image_size, batch_size=args.batch_size, seed=0))
    batch = next(iter(make_image_dataset(data, encoder, image_size=args.image_size, batch_size=args.batch_size, drop_remainder=True)))
    xla = tf.function(gan.distributed_step, jit_compile=True)
    results = {}
    for name, step in [("eager", gan.distributed_step), ("compiled", gan.compiled_step), ("xla", xla)]:
        times = time_steps(step, batch, args.steps)
        median = statistics.median(times)
        results[name] = {"median_seconds_per_step": round(median, 4), "images_per_second": round(args.batch_size / median, 1),
                         "steps": args.steps}
    report = {"command": f"python benchmarks/bench_gan.py --steps {args.steps}", "machine": {"cores": os.cpu_count()},
              "image_size": args.image_size, "batch_size": args.batch_size,
              "parameters": {"generator": gan.generator.count_params(), "discriminator": gan.discriminator.count_params()},
              **results,
              "compiled_vs_eager": round(results["eager"]["median_seconds_per_step"] / results["compiled"]["median_seconds_per_step"], 2),
              "xla_vs_eager": round(results["eager"]["median_seconds_per_step"] / results["xla"]["median_seconds_per_step"], 2)}
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
