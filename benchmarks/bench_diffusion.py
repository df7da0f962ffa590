"""Benchmark the diffusion model: training and sampling throughput beside the GAN's, and how many steps it needs to draw lesions.

    python benchmarks/bench_diffusion.py --rounds 6 --max-steps 900 --check-every 150

1. Training. Images per second of the diffusion training step (graph or XLA, whichever `jit_compile="auto"` keeps) at
   batch 16 and 64 px, for the two denoiser sizes of DENOISER_SIZES ("cpu_quick" and "t4"), timed in alternating rounds.
2. Sampling. Images per second of `generate` for 16 records at 64 px: the diffusion model with 10, 25 and 50 DDIM
   steps (guidance on: two network passes per step) for the cpu_quick size and 10 steps for the t4 size (on a CPU its
   50 steps take minutes per round; the cost is linear in the steps), and the GAN's one-pass `generate`, in one run.
3. Steps to lesions, through `fit` as a student trains. The quick profile (cpu_quick denoiser, 32 px, batch 32) and the
   GAN, each in epochs of --check-every steps with the loop's per-epoch checks, grids and checkpoints, on a 2,000-image
   phantom of --phantom-seed (11: a seed nobody tuned on). After each epoch: lesion contrast and border ratios, skin and
   lesion texture ratios (generated over real held-out tiles of the same records), diameter and ITA rank correlations,
   two-sample accuracy; the fit's seconds and the share of them not spent in training steps (the per-epoch checks, grids,
   checkpoints, and each epoch's resumed call). Reports when the GAN test's criteria
   (contrast >= 0.6, diameter rho >= 0.6, ITA rho >= 0.9, two-sample accuracy < 0.95) first hold for each model, both
   models at the budget, and the diffusion model's skin texture over the GAN's. Saves real, diffusion and GAN tiles of
   the same records as --grid (the notebook shows it).
Prints one JSON document with the CPU model: compare ratios within one run, not seconds across machines.
"""
import argparse, contextlib, json, os, shlex, statistics, sys, time, warnings
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

ABLATION_SETTINGS = ("prediction", "loss_weighting", "ema_decay", "learning_rate", "widths")
"The settings the report lists as defaults; an --ablate change may set any DiffusionConfig field (e.g. '{\"prediction\": \"noise\"}')."

def judge(model, real, records, held_out) -> dict:
    "Realism (contrast, border, texture, two-sample) against real held-out tiles and fidelity to diameter and ITA."
    from dermlab.evaluate import compare_with_real, conditional_fidelity
    realism = compare_with_real(model, real, records)
    fidelity = conditional_fidelity(model, held_out.table, seed=0)
    return {"contrast_ratio": round(realism["lesion_contrast_ratio"], 3),
            "border_gradient_ratio": round(realism["border_gradient_ratio"], 3),
            "skin_texture_ratio": round(realism["skin_texture_ratio"], 2),
            "lesion_texture_ratio": round(realism["lesion_texture_ratio"], 2),
            "diameter_rho": round(fidelity["diameter_rank_correlation"], 3), "ita_rho": round(fidelity["ita_rank_correlation"], 3),
            "two_sample_accuracy": round(realism["two_sample_accuracy"], 3)}

def meets_criteria(point: dict) -> bool:
    "The criteria of bench_gan.py's steps to lesions (contrast, diameter, ITA, two-sample), which the issue's targets use too."
    return (point["contrast_ratio"] >= 0.6 and point["diameter_rho"] >= 0.6 and point["ita_rho"] >= 0.9
            and point["two_sample_accuracy"] < 0.95)

def fit_and_judge(model, train, held_out, real, records, check_every: int, max_steps: int, run_dir: Path) -> tuple:
    """Train through `fit` (one call per epoch of `check_every` steps, each resuming the last, with the loop's checks); judge each epoch.

    `non_step_share_of_fit`: the share of the fit's seconds not spent in training steps: the per-epoch checks and grids, the
    checkpoint, and each call's resume (restore, a new input pipeline), which a single `fit` call pays once."""
    import shutil
    shutil.rmtree(run_dir, ignore_errors=True)
    fit_seconds, curve = 0.0, []
    for epoch in range(1, max_steps // check_every + 1):
        start = time.perf_counter()
        history = model.fit(train, epochs=epoch, run_dir=run_dir, steps_per_epoch=check_every, progress=False)
        fit_seconds += time.perf_counter() - start
        stepping = float(history.training_seconds.sum())
        point = {"step": epoch * check_every, "fit_seconds": round(fit_seconds, 1), "step_seconds": round(stepping, 1),
                 "non_step_share_of_fit": round(1 - stepping / fit_seconds, 3), **judge(model, real, records, held_out)}
        curve.append(point)
        print(type(model).__name__, point, file=sys.stderr, flush=True)
    return curve

def steps_to_lesions(check_every: int, max_steps: int, grid: Path, seed: int, image_size: int = 32, batch_size: int = 32,
                     ablation: dict | None = None) -> dict:
    "Train the quick profile and the GAN through `fit` on a phantom of `seed`: when the criteria first hold, both at the budget, a grid."
    from dermlab.core import save_figure
    from dermlab.data import TabularEncoder, read_tiles, split_by_patient
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    from dermlab.evaluate import show_tile_rows
    from dermlab.gan import ConditionalGan, GanConfig
    data = phantom(f"gan-2000-seed-{seed}", 2000, seed=seed)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    encoder = TabularEncoder.for_table(train.table)
    real, records = read_tiles(held_out, image_size, n=96)
    quick = dict(image_size=image_size, batch_size=batch_size, sampling_steps=25, seed=0, **DENOISER_SIZES["cpu_quick"])
    diffusion = DiffusionGenerator(encoder, DiffusionConfig(**quick))
    gan = ConditionalGan(encoder, GanConfig(image_size=image_size, batch_size=batch_size, seed=0))
    runs = ROOT / "runs" / "bench" / "fit"
    curves = {name: fit_and_judge(model, train, held_out, real, records, check_every, max_steps, runs / name)
              for name, model in (("diffusion", diffusion), ("gan", gan))}
    ablated = {}  # the same budget, one setting changed from the defaults
    for name, change in (ablation or {}).items():
        model = DiffusionGenerator(encoder, DiffusionConfig(**{**quick, **change}))
        curve = fit_and_judge(model, train, held_out, real, records, check_every, max_steps, runs / name)
        ablated[name] = {"change": change, **curve[-1], "curve": curve}
    first = lambda curve: next((point for point in curve if meets_criteria(point)), None)
    steps = curves["diffusion"][-1]["step"]
    figure = show_tile_rows({"real held-out": real[:8], f"diffusion, {steps} steps": diffusion.generate(records.head(8), seed=0),
                             f"GAN, {steps} steps": gan.generate(records.head(8), seed=0)},
                            f"quick-size diffusion model and GAN after {steps} steps of {batch_size} tiles through fit ({cpu_model()})")
    save_figure(figure, grid)
    last = {name: curve[-1] for name, curve in curves.items()}
    return {"phantom_seed": seed, "defaults": {key: getattr(diffusion.diffusion_config, key) for key in ABLATION_SETTINGS},
            "diffusion_criteria_first_met": first(curves["diffusion"]), "ablation": ablated,
            "gan_criteria_first_met": first(curves["gan"]), "at_the_budget": last,
            "diffusion_over_gan_skin_texture": round(last["diffusion"]["skin_texture_ratio"] / last["gan"]["skin_texture_ratio"], 2),
            "grid": str(grid.relative_to(ROOT)), "curves": curves}

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each variant (medians reported)")
    parser.add_argument("--check-every", type=int, default=150, help="training steps of an epoch of the longer run, judged after each")
    parser.add_argument("--max-steps", type=int, default=900, help="training steps of the longer run (0: skip it)")
    parser.add_argument("--grid", type=Path, default=ROOT / "nbs" / "images" / "diffusion_longer_run.png")
    parser.add_argument("--phantom-seed", type=int, default=11, help="seed of the phantom of the longer run (7 was tuned on; 11 was not)")
    parser.add_argument("--ablate", action="append", default=[], metavar="NAME=JSON",
                        help="also train the diffusion model with this change to its defaults, e.g. 'noise={\"prediction\": \"noise\"}'")
    parser.add_argument("--skip-throughput", action="store_true", help="only the longer run")
    parser.add_argument("--report", type=Path, default=ROOT / "nbs" / "images" / "diffusion_longer_run.json",
                        help="where the longer run's report is also written (04_diffusion prints from it)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import tensorflow as tf
    sizes = ["cpu_quick", "t4"]
    if args.max_steps and not 0 < args.check_every <= args.max_steps or args.max_steps % max(args.check_every, 1):
        parser.error(f"--max-steps {args.max_steps} must be a multiple of --check-every {args.check_every}")
    report = {"command": shlex.join(["python", "benchmarks/bench_diffusion.py", *sys.argv[1:]]), "cpu": cpu_model(),
              "cores": os.cpu_count(),
              "tensorflow": tf.__version__}
    with contextlib.redirect_stdout(sys.stderr):  # what 'auto' compilation prints is not part of the JSON report
        if not args.skip_throughput:
            report["training_batch_16_at_64_px"] = training_throughput(sizes, args.rounds)
            # the T4 size at 10 steps only: a step costs the same at any count, and 50 of them take minutes per round on a CPU
            report["sampling_16_images_at_64_px"] = sampling_throughput({"cpu_quick": (10, 25, 50), "t4": (10,)}, max(args.rounds // 2, 3))
        if args.max_steps:
            ablation = {name: json.loads(change) for name, change in (item.split("=", 1) for item in args.ablate)}
            report["steps_to_lesions_at_32_px"] = steps_to_lesions(args.check_every, args.max_steps, args.grid, args.phantom_seed,
                                                                   ablation=ablation)
            from dermlab.core import written_whole
            with written_whole(args.report) as partial:
                kept = {key: report[key] for key in ("command", "cpu", "cores", "steps_to_lesions_at_32_px")}
                partial.write_text(json.dumps(kept, indent=1))
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
