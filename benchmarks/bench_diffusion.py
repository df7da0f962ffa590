"""Benchmark the diffusion model: training and sampling throughput beside the GAN's, and how many steps it needs to draw lesions.

    python benchmarks/bench_diffusion.py --rounds 6 --max-steps 1500 --check-every 150

1. Training. Images per second of the diffusion training step (graph or XLA, whichever `jit_compile="auto"` keeps) at
   batch 16 and 64 px, for the two denoiser sizes of DENOISER_SIZES ("cpu_quick" and "t4"), timed in alternating rounds.
2. Sampling. Images per second of `generate` for 16 records at 64 px: the diffusion model with 10, 25 and 50 DDIM
   steps (guidance on: two network passes per step) for the cpu_quick size and 10 steps for the t4 size (on a CPU its
   50 steps take minutes per round; the cost is linear in the steps), and the GAN's one-pass `generate`, in one run.
3. Steps to lesions. Trains the quick profile (cpu_quick denoiser, 32 px, batch 32) on a 2,000-image phantom set and
   measures, every --check-every steps, the lesion contrast ratio against real held-out tiles, the diameter and ITA rank
   correlations and the two-sample accuracy; reports the steps and training seconds at which the contrast ratio first
   reaches 0.6 and at which all the GAN test's criteria hold (contrast >= 0.6, diameter rho >= 0.6, ITA rho >= 0.9,
   two-sample accuracy < 0.95). Saves real tiles beside the last check's tiles as --grid (the notebook shows it).
Prints one JSON document with the CPU model: compare ratios within one run, not seconds across machines.
"""
import argparse, contextlib, json, os, statistics, sys, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import ROOT, cpu_model, phantom  # noqa: E402

def training_throughput(sizes: list, rounds: int, batch_size: int = 16, image_size: int = 64) -> dict:
    "Images per second of the training step for each denoiser size, timed in alternating rounds."
    from dermlab.data import TabularEncoder, make_image_dataset
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    data = phantom("gan-200", 200)
    encoder = TabularEncoder.for_table(data.table)
    batch = next(iter(make_image_dataset(data, encoder, image_size=image_size, batch_size=batch_size, drop_remainder=True)))
    models = {size: DiffusionGenerator(encoder, DiffusionConfig(image_size=image_size, batch_size=batch_size, **DENOISER_SIZES[size]))
              for size in sizes}
    for model in models.values():
        while model.compiled_step.choice is None: model.compiled_step(batch)  # "auto" times graph and XLA, then keeps one
        model.compiled_step(batch)
    times = {size: [] for size in sizes}
    for _ in range(rounds):
        for size, model in models.items():
            start = time.perf_counter()
            float(model.compiled_step(batch)["loss"])
            times[size].append(time.perf_counter() - start)
    return {size: {"weights": models[size].denoiser.count_params(), "compiled_as": models[size].compiled_step.choice,
                   "median_seconds_per_step": round(statistics.median(times[size]), 4),
                   "images_per_second": round(batch_size / statistics.median(times[size]), 1)} for size in sizes}

def sampling_throughput(steps_by_size: dict, rounds: int, n_images: int = 16, image_size: int = 64) -> dict:
    "Images per second of `generate` for the diffusion model at each DDIM step count of each size, and for the GAN, in alternating rounds."
    from dermlab.data import TabularEncoder
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    from dermlab.gan import ConditionalGan, GanConfig
    data = phantom("gan-200", 200)
    encoder, records = TabularEncoder.for_table(data.table), data.table.head(n_images)
    gan = ConditionalGan(encoder, GanConfig(image_size=image_size, seed=0))
    samplers = {"gan": lambda: gan.generate(records, seed=0)}
    for size, steps in steps_by_size.items():
        model = DiffusionGenerator(encoder, DiffusionConfig(image_size=image_size, **DENOISER_SIZES[size]))
        for count in steps:
            def sample(model=model, count=count):
                model.sampling_steps = count
                return model.generate(records, seed=0)
            samplers[f"diffusion {size}, DDIM {count}"] = sample
    for sample in samplers.values(): sample()  # warm-up: tracing
    times = {name: [] for name in samplers}
    for _ in range(rounds):
        for name, sample in samplers.items():
            start = time.perf_counter()
            sample()
            times[name].append(time.perf_counter() - start)
    rates = {name: n_images / statistics.median(t) for name, t in times.items()}
    return {"images_per_second": {name: round(rate, 2) for name, rate in rates.items()},
            "gan_vs_diffusion": {name: round(rates["gan"] / rate, 1) for name, rate in rates.items() if name != "gan"}}

def steps_to_lesions(check_every: int, max_steps: int, grid: Path, image_size: int = 32, batch_size: int = 32) -> dict:
    "Train the quick profile; report when the contrast ratio first reaches 0.6 and when all the test criteria hold; save a grid."
    from dermlab.data import TabularEncoder, make_image_dataset, split_by_patient
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    from dermlab.data import read_tiles
    from dermlab.evaluate import compare_with_real, conditional_fidelity, show_tile_rows
    from dermlab.core import save_figure
    data = phantom("gan-2000", 2000)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    model = DiffusionGenerator(TabularEncoder.for_table(train.table), DiffusionConfig(
        image_size=image_size, batch_size=batch_size, sampling_steps=25, seed=0, **DENOISER_SIZES["cpu_quick"]))
    real, records = read_tiles(held_out, image_size, n=96)
    batches = iter(make_image_dataset(train, model.encoder, image_size=image_size, batch_size=batch_size, drop_remainder=True).repeat())
    trained, curve, first_contrast, all_met = 0.0, [], None, None
    for step in range(1, max_steps + 1):
        start = time.perf_counter()
        float(model.compiled_step(next(batches))["loss"])
        trained += time.perf_counter() - start
        if step % check_every: continue
        realism = compare_with_real(model, real, records)
        fidelity = conditional_fidelity(model, held_out.table, seed=0)
        point = {"step": step, "seconds": round(trained, 1), "contrast_ratio": round(realism["lesion_contrast_ratio"], 3),
                 "border_gradient_ratio": round(realism["border_gradient_ratio"], 3),
                 "diameter_rho": round(fidelity["diameter_rank_correlation"], 3), "ita_rho": round(fidelity["ita_rank_correlation"], 3),
                 "two_sample_accuracy": round(realism["two_sample_accuracy"], 3)}
        curve.append(point)
        print(point, file=sys.stderr, flush=True)
        if point["contrast_ratio"] >= 0.6 and first_contrast is None: first_contrast = point
        if all_met is None and point["contrast_ratio"] >= 0.6 and point["diameter_rho"] >= 0.6 and point["ita_rho"] >= 0.9 \
                and point["two_sample_accuracy"] < 0.95: all_met = point
    figure = show_tile_rows({"real held-out": real[:8], f"diffusion, {max_steps} steps": model.generate(records.head(8), seed=0)},
                            f"quick-size diffusion model after {max_steps} steps of 32 tiles ({trained:.0f} s of training on {cpu_model()})")
    save_figure(figure, grid)
    return {"contrast_ratio_first_at_0.6": first_contrast, "all_test_criteria_first_met": all_met, "grid": str(grid.relative_to(ROOT)),
            "compiled_as": model.compiled_step.choice, "curve": curve}

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each variant (medians reported)")
    parser.add_argument("--check-every", type=int, default=100, help="training steps between measurements")
    parser.add_argument("--max-steps", type=int, default=1200, help="training steps of the longer run (0: skip it)")
    parser.add_argument("--grid", type=Path, default=ROOT / "nbs" / "images" / "diffusion_longer_run.png")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import tensorflow as tf
    sizes = ["cpu_quick", "t4"]
    report = {"command": " ".join(["python benchmarks/bench_diffusion.py", *sys.argv[1:]]), "cpu": cpu_model(), "cores": os.cpu_count(),
              "tensorflow": tf.__version__}
    with contextlib.redirect_stdout(sys.stderr):  # what 'auto' compilation prints is not part of the JSON report
        report["training_batch_16_at_64_px"] = training_throughput(sizes, args.rounds)
        # the T4 size at 10 steps only: a step costs the same at any count, and 50 of them take minutes per round on a CPU
        report["sampling_16_images_at_64_px"] = sampling_throughput({"cpu_quick": (10, 25, 50), "t4": (10,)}, max(args.rounds // 2, 3))
        if args.max_steps: report["steps_to_lesions_at_32_px"] = steps_to_lesions(args.check_every, args.max_steps, args.grid)
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
