"""What the full profile costs at 128 px, the size of the real tiles (median about 131 px), against 64 px: measured on this CPU, estimated on a T4.

    python benchmarks/bench_128px.py [--steps 3]

Each of the GAN and the diffusion model (the full profile: `GanConfig()`, `DENOISER_SIZES["t4"]`, batch 32) is built at 64 and at 128 px in
a fresh process, which times its compiled training step (the graph, as `bench_time_budget.py` does: median of --steps calls after two
warm-up calls) and measures its memory: the process's peak resident memory, and how far a training step raised it above the built model's
(the tensors a step holds: weights, gradients, optimizer slots and activations; on a GPU the same tensors sit in its memory, in float32,
and mixed precision halves the activations).

The T4 estimate follows `bench_time_budget.py`: this CPU's step time times its measured float32 matrix-multiply rate, divided by the T4's
nominal 8.1 TFLOP/s, and at least 10 ms a step. From it: the steps and images a 240-minute budget (TRAIN_MINUTES of 02_gan and
04_diffusion) holds, and how often each of ISIC 2024's 280,000 training tiles would be seen. An estimate until someone times it on a T4.
Prints one JSON document with the CPU model. Not in CI.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import cpu_model  # noqa: E402
from bench_time_budget import MIN_GPU_STEP, T4_FLOAT32, matmul_rate, seconds_per_compiled_step  # noqa: E402

T4_MEMORY_GB = 15.0  # a T4's 16 GB, less what CUDA and TensorFlow keep for themselves
TRAIN_MINUTES = 240
ISIC_2024_TRAIN_TILES = 280_746  # the training split of the 401,059 tiles (bench_scale.py)
BATCH_SIZE = 32

def resident_gb() -> float:
    "This process's resident memory now, in GB (from /proc)."
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9

def worker(model: str, size: int, steps: int) -> dict:
    "Build one full-profile model at `size` px, time its compiled step and measure its memory."
    from dermlab.data import TabularEncoder, load_isic
    from dermlab.diffusion import DENOISER_SIZES, DiffusionConfig, DiffusionGenerator
    from dermlab.gan import ConditionalGan, GanConfig
    from dermlab.phantom import make_phantom_isic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_isic(make_phantom_isic(Path(tempfile.mkdtemp(prefix="bench_128px_")) / "phantom", n_images=200, n_patients=20, seed=7))
    encoder = TabularEncoder.for_table(data.table)
    if model == "gan": generator = ConditionalGan(encoder, GanConfig(image_size=size, batch_size=BATCH_SIZE, jit_compile=False, seed=0))
    else: generator = DiffusionGenerator(encoder, DiffusionConfig(image_size=size, batch_size=BATCH_SIZE, jit_compile=False, seed=0, **DENOISER_SIZES["t4"]))
    built = resident_gb()
    seconds = seconds_per_compiled_step(generator, data, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    weights = sum(int(w.numpy().size) for w in generator.network.weights)
    return {"model": model, "image_size": size, "seconds_per_step_cpu": seconds, "sampling_network_weights": weights,
            "peak_resident_gb": round(peak, 2), "step_memory_gb": round(peak - built, 2)}

def estimate(row: dict, cpu_rate: float) -> dict:
    "The T4 estimates of one measured row."
    t4_step = max(row["seconds_per_step_cpu"] * cpu_rate / T4_FLOAT32, MIN_GPU_STEP)
    steps = int(TRAIN_MINUTES * 60 / t4_step)
    return {**row, "seconds_per_step_t4_estimate": round(t4_step, 4), f"steps_in_{TRAIN_MINUTES}_min_t4": steps,
            "images_seen": steps * BATCH_SIZE, "passes_over_isic_2024_train": round(steps * BATCH_SIZE / ISIC_2024_TRAIN_TILES, 2),
            "fits_t4_memory": row["step_memory_gb"] < T4_MEMORY_GB}

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (after two warm-up steps)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.steps)))
        return 0
    rows = []
    for model in ("gan", "diffusion"):
        for size in (64, 128):
            done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--worker", model, str(size)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{model} {size} px: {rows[-1]['seconds_per_step_cpu']:.2f} s a step, {rows[-1]['step_memory_gb']} GB", file=sys.stderr, flush=True)
    cpu_rate = matmul_rate()
    rows = [estimate(row, cpu_rate) for row in rows]
    by = {(row["model"], row["image_size"]): row for row in rows}
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "matmul_gflops_cpu": round(cpu_rate / 1e9, 1), "t4_over_cpu": round(T4_FLOAT32 / cpu_rate, 1),
              "batch_size": BATCH_SIZE, "rows": rows,
              "step_time_128_over_64": {m: round(by[m, 128]["seconds_per_step_cpu"] / by[m, 64]["seconds_per_step_cpu"], 2) for m in ("gan", "diffusion")},
              "step_memory_128_over_64": {m: round(by[m, 128]["step_memory_gb"] / max(by[m, 64]["step_memory_gb"], 0.01), 2) for m in ("gan", "diffusion")}}
    print(json.dumps(report, indent=1))
    return 0

if __name__ == "__main__": sys.exit(main())
