"""Where a diffusion model's speckle comes from: run after bench_diffusion.py's longer run, on the model it trained.

    python benchmarks/bench_speckle_cause.py --run runs/bench/fit/diffusion --epochs 6 --steps-per-epoch 150

1. By step. Real held-out tiles noised at step t (same noise for both networks), denoised once: the skin texture ratio of
   the predicted clean tile x̂0 against the real tiles, for the EMA denoiser (the one that samples) and the raw one. A
   perfect denoiser gives about 1 (or less: at high noise its x̂0 is an average); noise left in x̂0 raises it.
2. Sampler. The same EMA model sampled with other settings (DDIM steps, guidance) and with the raw weights: if the
   ratio barely moves with the settings, the speckle is the network's, not the sampler's.
Prints one JSON document with the CPU model.
"""
import argparse, json, os, shlex, sys, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import ROOT, cpu_model, phantom  # noqa: E402

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench" / "fit" / "diffusion", help="bench_diffusion.py's run folder")
    parser.add_argument("--epochs", type=int, default=6, help="the epochs that run trained (no more are trained here)")
    parser.add_argument("--steps-per-epoch", type=int, default=150)
    parser.add_argument("--phantom-seed", type=int, default=11)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON", help="the run's DiffusionConfig changes, if any")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import contextlib
    import numpy as np
    from dermlab.data import TabularEncoder, read_tiles, split_by_patient
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator, signal_fractions, split_prediction
    from dermlab.evaluate import measure_tiles, realism_ratios
    data = phantom(f"gan-2000-seed-{args.phantom_seed}", 2000, seed=args.phantom_seed)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    changes = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.set)}
    config = DiffusionConfig(image_size=32, batch_size=32, sampling_steps=25, seed=0, **{**DENOISER_SIZES["cpu_quick"], **changes})
    model = DiffusionGenerator(TabularEncoder.for_table(train.table), config)
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(train, epochs=args.epochs, run_dir=args.run, steps_per_epoch=args.steps_per_epoch, progress=False)  # resumes
    real, records = read_tiles(held_out, 32, n=96)
    real_measures = measure_tiles(real)
    texture = lambda tiles: round(realism_ratios(measure_tiles(tiles), real_measures)["skin_texture_ratio"], 2)
    clean = real.astype(np.float64) / 127.5 - 1
    conditions = model.encoder.transform(records).astype(np.float32)
    fractions = signal_fractions(config.schedule, config.train_timesteps)
    as_tiles = lambda x: np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)
    by_step = {}
    for step in (0, 10, 42, 100, 250, 500):
        noise = np.random.default_rng(step).standard_normal(clean.shape)
        noisy = np.sqrt(fractions[step]) * clean + np.sqrt(1 - fractions[step]) * noise
        inputs = [noisy.astype(np.float32), np.full(len(noisy), step, np.int32), conditions, np.ones((len(noisy), 1), np.float32)]
        by_step[step] = {name: texture(as_tiles(split_prediction(np.asarray(network(inputs, training=False), np.float64), noisy,
                                                                   fractions[step], config.prediction)[0]))
                         for name, network in (("ema", model.ema_denoiser), ("raw", model.denoiser))}
    sampler = {}
    for name, setting in [("DDIM 25, guidance 2 (as trained)", {}), ("guidance 1", {"guidance_scale": 1.0}),
                          ("DDIM 50", {"sampling_steps": 50}), ("DDIM 10", {"sampling_steps": 10})]:
        for key, value in setting.items(): setattr(model, key, value)
        sampler[name] = texture(model.generate(records, seed=0))
        model.guidance_scale, model.sampling_steps = config.guidance_scale, config.sampling_steps
    model.network, model._predict = model.denoiser, None  # the raw weights (the cached sampler function is rebuilt)
    sampler["raw weights, DDIM 25"] = texture(model.generate(records, seed=0))
    print(json.dumps({"command": shlex.join(["python", "benchmarks/bench_speckle_cause.py", *sys.argv[1:]]), "cpu": cpu_model(),
                      "trained_steps": int(model.optimizer.iterations), "x0_skin_texture_ratio_by_step": by_step,
                      "sampled_skin_texture_ratio": sampler}, indent=1))

if __name__ == "__main__":
    main()
