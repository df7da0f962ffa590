"""The course at the real size: a stand-in of ISIC 2024's training set, the quick course on it, and the full-size data steps.

    python benchmarks/bench_scale.py                       # stand-in, data steps, then `dermlab run --quick --data <stand-in>`
    python benchmarks/bench_scale.py --skip-course         # the data steps only
    python benchmarks/bench_scale.py --notebooks 01_data 05_memorisation

The stand-in has ISIC 2024's size and layout: 401,059 rows of every column of train-metadata.csv, 1,042 patients with a
skewed number of tiles each, 393 malignant rows, and one HDF5 store of JPEG bytes. Its tiles are a rendered phantom set's,
cycled: malignant rows reuse malignant tiles, benign rows benign ones, each row with its tile's own measurements. It has no
phantom-card.json, so the course reads it as ISIC 2024, not as a phantom; the repeated tiles make it an archive full of
duplicate photographs, which real archives also hold. It is written once, into runs/bench/scale/ (about 1 GB), and reused.

Each data step runs in a fresh process, so that its peak memory is its own: reading the table and checking the images
(`load_isic`), the patient split, one streamed epoch of the training split at 32 px, and the memorisation audit's pass
(96 query tiles against every training tile). The course runs through the `dermlab` command, which records each
notebook's seconds and peak memory in run.json. Prints one JSON document and writes it to runs/bench/scale/report.json.
Not in CI: the course part takes most of an hour on two cores.
"""
import argparse, json, os, resource, shlex, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS, PATIENTS, MALIGNANT = 401_059, 1_042, 393  # ISIC 2024's training set
SOURCE_TILES = 2000  # phantom tiles cycled through the stand-in

def write_stand_in(folder: Path, seed: int) -> Path:
    "Write the stand-in into `folder` once (whole or not at all); return it."
    import h5py, numpy as np, pandas as pd
    from dermlab.core import written_whole
    from dermlab.phantom import make_phantom_isic
    if (folder / "train-metadata.csv").is_file(): return folder
    source = make_phantom_isic(folder.parent / "scale-source", n_images=SOURCE_TILES, n_patients=150, positive_rate=0.05, seed=seed)
    table = pd.read_csv(source / "train-metadata.csv", low_memory=False)
    rng = np.random.default_rng(seed)
    target = np.zeros(ROWS, bool)
    target[rng.choice(ROWS, MALIGNANT, replace=False)] = True
    pools = {True: np.flatnonzero(table.target == 1), False: np.flatnonzero(table.target == 0)}
    origin = np.empty(ROWS, int)
    for malignant, pool in pools.items():
        rows = np.flatnonzero(target == malignant)
        origin[rows] = pool[np.arange(len(rows)) % len(pool)]
    rows = table.iloc[origin].reset_index(drop=True)
    weights = rng.lognormal(0, 1.2, PATIENTS)  # a few patients with thousands of tiles, most with a few hundred
    tiles_per_patient = 1 + rng.multinomial(ROWS - PATIENTS, weights / weights.sum())
    patient_ids = [f"IP_{i:07d}" for i in rng.choice(10_000_000, PATIENTS, replace=False)]
    rows["patient_id"] = np.repeat(patient_ids, tiles_per_patient)[rng.permutation(ROWS)]
    rows["target"] = target.astype(int)
    rows["isic_id"] = [f"ISIC_{i:07d}" for i in rng.choice(10_000_000, ROWS, replace=False)]
    started = time.perf_counter()
    with written_whole(folder) as partial:
        partial.mkdir(parents=True)
        rows.to_csv(partial / "train-metadata.csv", index=False)
        with h5py.File(source / "train-image.hdf5") as images:
            tile_bytes = {i: images[i][()] for i in table.isic_id}
        with h5py.File(partial / "train-image.hdf5", "w") as store:
            for image_id, origin_id in zip(rows.isic_id, table.isic_id.to_numpy()[origin]):
                store[image_id] = np.bytes_(tile_bytes[origin_id])
    print(f"stand-in written to {folder} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return folder

def data_step(step: str, folder: str, seed: int) -> dict:
    "Run inside a child process: time one full-size data step; its own peak memory comes with it."
    import warnings
    import numpy as np
    from dermlab.data import load_isic, make_image_dataset, read_tiles, split_by_patient, tile_blocks
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_isic(folder)
    result = {"load_seconds": time.perf_counter() - started}
    if step != "load":
        started = time.perf_counter()
        split = split_by_patient(data.table, seed=seed)
        result["split_seconds"] = time.perf_counter() - started
        train = data.subset(split == "train")
        result["train_tiles"] = len(train)
    if step == "stream":
        started = time.perf_counter()
        batches = sum(1 for _ in make_image_dataset(train, outputs=("image",), image_size=32, batch_size=64, seed=seed))
        seconds = time.perf_counter() - started
        result.update(stream_seconds=seconds, stream_batches=batches, stream_tiles_per_second=len(train) / seconds)
    if step == "audit":
        from dermlab.memorisation import memorisation_audit
        held_out = data.subset(split == "test")
        queries, _ = read_tiles(held_out, 32, n=96)
        reference = read_tiles(train, 32, n=1000)[0]
        started = time.perf_counter()
        audit = memorisation_audit(queries, tile_blocks(train, 32), (np.arange(len(reference)), reference))
        seconds = time.perf_counter() - started
        result.update(audit_seconds=seconds, audit_queries=len(queries), audit_flagged=int(audit.table.flagged.sum()),
                      audit_training_tiles_per_second=len(train) / seconds)
    result["peak_memory_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)  # kB on Linux
    return result

def child(step: str, folder: Path, seed: int) -> dict:
    "Run `step` in a fresh Python process and return its JSON result."
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, __file__, "--child", step, str(folder), "--seed", str(seed)],
                          capture_output=True, text=True, env=env)
    if done.returncode: raise SystemExit(f"data step {step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

def run_course(folder: Path, run_folder: Path, notebooks: list | None, seed: int) -> dict:
    "Run `dermlab run --quick --data folder`; return its run.json and the wall time."
    command = [sys.executable, "-c", "import sys; from dermlab.pipeline import main; sys.exit(main())",
               "run", "--quick", "--data", str(folder), "--out", str(run_folder), "--seed", str(seed)]
    if notebooks: command += ["--notebooks", *notebooks]
    started = time.perf_counter()
    done = subprocess.run(command)
    seconds = time.perf_counter() - started
    report = json.loads((run_folder / "run.json").read_text()) if (run_folder / "run.json").exists() else {"notebooks": []}
    return {"returncode": done.returncode, "seconds": round(seconds, 1), "notebooks": [
        {"notebook": n["notebook"], "seconds": n["seconds"], "peak_memory_gb": n["peak_memory_gb"]} for n in report["notebooks"]]}

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "scale"), help="where the stand-in and the run are kept")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-course", action="store_true", help="the data steps only")
    parser.add_argument("--skip-data-steps", action="store_true", help="the course only")
    parser.add_argument("--notebooks", nargs="+", metavar="NAME", help="run only these course notebooks")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(data_step(*args.child, seed=args.seed)))
        return
    out = Path(args.out)
    folder = write_stand_in(out / "stand-in", args.seed)
    report = {"command": shlex.join(["python", "benchmarks/bench_scale.py", *sys.argv[1:]]),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
              "stand_in": {"rows": ROWS, "patients": PATIENTS, "malignant": MALIGNANT, "source_tiles": SOURCE_TILES,
                           "hdf5_gb": round((folder / "train-image.hdf5").stat().st_size / 1e9, 2)}}
    if not args.skip_data_steps:
        report["data_steps"] = {step: child(step, folder, args.seed) for step in ("load", "split", "stream", "audit")}
        print(json.dumps(report["data_steps"], indent=2), file=sys.stderr, flush=True)
    if not args.skip_course:
        report["quick_course"] = run_course(folder, out / f"run-{time.strftime('%Y-%m-%d_%H-%M-%S')}", args.notebooks, args.seed)
        rows = report["quick_course"]["notebooks"]
        report["quick_course"]["largest_peak_memory_gb"] = max((n["peak_memory_gb"] for n in rows), default=None)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
