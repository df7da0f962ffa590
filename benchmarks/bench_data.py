"""Benchmark dermlab's image pipeline against the naive loop of the original Kaggle notebook.

    python benchmarks/bench_data.py --n 2000 --rounds 5

Renders a phantom HDF5 set of N and 5N images (kept in runs/bench/ for later runs), then measures, each in a
fresh process so that its peak RSS is its own:
  naive     h5py read, PIL decode, resize, numpy stack (the original notebook's way)
  pipeline  dermlab.data.make_image_dataset at 64 px and batch 16, one epoch (streaming)
  cached    the same with the uint8 block cache in a file: an epoch read from the cache
The modes alternate in rounds (naive, pipeline, cached, naive, ...), so that a slow phase of the machine hits all of
them alike. Prints one JSON document: images/s (median over rounds), ratios, and peak RSS in MB for N and 5N.
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def measure(mode: str, folder: str) -> dict:
    "Run inside a child process: time `mode` on the phantom set in `folder`."
    import io
    import h5py, numpy as np
    from PIL import Image
    from dermlab.data import load_isic, make_image_dataset
    data = load_isic(folder)
    if mode == "naive":
        start = time.perf_counter()
        with h5py.File(data.images.path) as handle:
            tiles = [np.asarray(Image.open(io.BytesIO(handle[i][()])).convert("RGB").resize((64, 64))) for i in data.table.image_id]
        np.stack(tiles)
    elif mode == "pipeline":
        dataset = make_image_dataset(data, outputs=("image",), image_size=64, batch_size=16)
        start = time.perf_counter()
        for _ in dataset: pass
    elif mode == "cached":
        with tempfile.TemporaryDirectory() as scratch:
            dataset = make_image_dataset(data, outputs=("image",), image_size=64, batch_size=16, cache=Path(scratch) / "tiles")
            for _ in dataset: pass  # the first epoch fills the cache
            start = time.perf_counter()
            for _ in dataset: pass
    return {"images_per_second": len(data) / (time.perf_counter() - start), "peak_rss_mb": round(peak_rss_mb())}

def child(mode: str, folder: Path) -> dict:
    "Measure `mode` in a fresh Python process and return its JSON result."
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, __file__, "--child", mode, str(folder)],
                            capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images in the small set (the large one has 5N)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three measurements (medians are reported)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench"), help="where the phantom sets are kept")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    from dermlab.phantom import make_phantom_isic
    report = {"command": f"python benchmarks/bench_data.py --n {args.n} --rounds {args.rounds}",
              "machine": {"cores": os.cpu_count()}, "image_size": 64, "batch_size": 16, "sizes": {}}
    for n in (args.n, 5 * args.n):
        folder = Path(args.out) / f"phantom-{n}"
        if not (folder / "phantom-card.json").exists():
            make_phantom_isic(folder, n_images=n, n_patients=max(1, n // 20), seed=0)
        runs = {mode: [] for mode in ("naive", "pipeline", "cached")}
        for _ in range(args.rounds):
            for mode in runs: runs[mode].append(child(mode, folder))
        results = {mode: {"images_per_second": round(statistics.median(r["images_per_second"] for r in found)),
                          "runs": [round(r["images_per_second"]) for r in found],
                          "peak_rss_mb": max(r["peak_rss_mb"] for r in found)} for mode, found in runs.items()}
        results["pipeline_vs_naive"] = round(results["pipeline"]["images_per_second"] / results["naive"]["images_per_second"], 2)
        results["cached_vs_pipeline"] = round(results["cached"]["images_per_second"] / results["pipeline"]["images_per_second"], 2)
        report["sizes"][str(n)] = results
    small, large = (report["sizes"][str(n)] for n in (args.n, 5 * args.n))
    report["pipeline_peak_rss_growth_mb_from_n_to_5n"] = large["pipeline"]["peak_rss_mb"] - small["pipeline"]["peak_rss_mb"]
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
