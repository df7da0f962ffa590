"""Benchmark the memorisation audit's throughput and memory, and feature extraction for FID and KID.

    python benchmarks/bench_evaluate.py --generated 1000 --training 10000 50000

1. Memorisation audit. 1,000 generated tiles (32 px; phantom held-out tiles stand in: the content does not change the
   cost) against a training stream of each --training size, in both spaces (pixels with 40 alignments, dermlab features
   with 8), with a 500-tile reference sample. The training stream is a 2,000-image phantom set, decoded from its HDF5
   store like the training pipeline, streamed again and again until the size is reached: decoding is included, and no
   50,000-image set needs rendering. Reports seconds, generated x training comparisons per second, and the peak resident
   memory above the level before the audit (sampled every 50 ms), the median seconds per block of 1,024 training tiles,
   and the cost per 1,000 training tiles (the slope between the sizes) with the fixed cost (the intercept), from which
   it extrapolates to ISIC 2024's 401,059 training images.
2. Feature extraction, images per second: dermlab's features (attribute network and tile_features, 32 px), and
   InceptionV3 at 299 px with random weights (the same computation as with ImageNet weights; nothing is downloaded).
3. The comparison table of 05_memorisation (the real row and three generators), before and after its audit became one
   pass over the training set: `python benchmarks/bench_evaluate.py --table --before /tmp/before` runs
   benchmarks/bench_comparison_table.py (see there; /tmp/before is a checkout of the old version).
Prints one JSON document with the CPU model: compare ratios within one run, not seconds across machines.
"""
import argparse, itertools, json, statistics, sys, threading, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import cpu_model, phantom  # noqa: E402

ISIC_2024_TRAINING_IMAGES = 401_059

class PeakMemory:
    "Peak resident memory of this process above its level at the start, sampled in a thread."
    def __enter__(self):
        import psutil
        self.process, self.running = psutil.Process(), True
        self.start = self.peak = self.process.memory_info().rss
        def sample():
            while self.running:
                self.peak = max(self.peak, self.process.memory_info().rss)
                time.sleep(0.05)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self
    def __exit__(self, *_):
        self.running = False
        self.thread.join()
    @property
    def megabytes(self) -> float: return (self.peak - self.start) / 2**20

def repeated_blocks(train, size: int, image_size: int, block_size: int, block_seconds: list):
    "Stream the training set again and again until `size` tiles have passed, with indices that keep counting; time each full block."
    from dermlab.data import tile_blocks
    passed, last = 0, None
    for repeat in itertools.count():
        for indices, tiles in tile_blocks(train, image_size, block_size):
            now = time.perf_counter()
            if last is not None: block_seconds.append(now - last)  # decoding this block and searching the one before
            last = now
            take = min(len(tiles), size - passed)
            yield indices[:take] + repeat * len(train), tiles[:take]
            passed += take
            if passed >= size: return

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=1000)
    parser.add_argument("--training", type=int, nargs="+", default=[10000, 50000])
    parser.add_argument("--reference", type=int, default=500)
    parser.add_argument("--table", action="store_true", help="benchmark the comparison table instead (bench_comparison_table.py)")
    args, rest = parser.parse_known_args()
    if args.table:
        import bench_comparison_table
        sys.argv = [sys.argv[0], *rest]
        return bench_comparison_table.main()
    if rest: parser.error(f"unrecognized arguments: {' '.join(rest)}")
    warnings.simplefilter("ignore")
    import numpy as np
    from dermlab.data import split_by_patient
    from dermlab.data import read_tiles
    from dermlab.evaluate import train_attribute_network
    from dermlab.memorisation import memorisation_audit
    data = phantom("evaluate_2000", 2000)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    train_tiles, train_records = read_tiles(train, 32)
    held_tiles, _ = read_tiles(held_out, 32)
    generated = np.resize(held_tiles, (args.generated, *held_tiles.shape[1:]))  # repeated if the held-out split is smaller
    network = train_attribute_network(train_tiles, train_records, epochs=3, seed=0)
    reference = (np.arange(args.reference), train_tiles[:args.reference])
    report = {"cpu": cpu_model(), "generated": args.generated, "reference": args.reference, "audit": []}
    for size in args.training:
        block_seconds = []
        with PeakMemory() as memory:
            started = time.perf_counter()
            audit = memorisation_audit(generated, repeated_blocks(train, size, 32, 1024, block_seconds), reference, network.features)
            seconds = time.perf_counter() - started
        report["audit"].append({"training_tiles": size, "seconds": round(seconds, 1),
                                "median_seconds_per_1024_tile_block": round(statistics.median(block_seconds), 2),
                                "comparisons_per_second": round(args.generated * size / seconds),
                                "peak_memory_mb_above_start": round(memory.megabytes), "copy_rate": audit.copy_rate})
        print(json.dumps(report["audit"][-1]), flush=True)
    first, largest = report["audit"][0], report["audit"][-1]
    per_tile = (largest["seconds"] - first["seconds"]) / (largest["training_tiles"] - first["training_tiles"])  # the marginal cost
    fixed = first["seconds"] - per_tile * first["training_tiles"]  # queries, reference and start-up
    report["seconds_per_1000_training_tiles"] = round(1000 * per_tile, 2)
    report["fixed_seconds"] = round(fixed, 1)
    report["isic_2024_full_audit_minutes_extrapolated"] = round((fixed + per_tile * ISIC_2024_TRAINING_IMAGES) / 60, 1)
    report["time_ratio_largest_over_smallest"] = round(largest["seconds"] / first["seconds"], 2)
    report["size_ratio_largest_over_smallest"] = round(largest["training_tiles"] / first["training_tiles"], 2)
    report["features_images_per_second"] = feature_speeds(np.resize(train_tiles, (512, *train_tiles.shape[1:])), network)
    print(json.dumps(report, indent=2))

def feature_speeds(tiles, network) -> dict:
    "Images per second of dermlab's features at 32 px and of InceptionV3 at 299 px (random weights), median of 3 rounds."
    import keras, tensorflow as tf
    inception = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg", input_shape=(299, 299, 3))
    def inception_features(batch):
        return inception(keras.applications.inception_v3.preprocess_input(tf.image.resize(tf.cast(batch, tf.float32), (299, 299))), training=False)
    speeds = {}
    for name, extract, n in [("dermlab_32px", network.features, len(tiles)), ("inception_v3_299px", None, 64)]:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            if extract is not None: extract(tiles[:n])
            else:
                for start in range(0, n, 32): inception_features(tiles[start:start + 32])
            times.append(time.perf_counter() - started)
        speeds[name] = round(n / statistics.median(times), 1)
    return speeds

if __name__ == "__main__":
    main()
