"""Benchmark the small CNN of 06_classifier: training and inference images per second, and what TensorFlow's malloc patch costs.

    python benchmarks/bench_classifier.py --image-size 64 --repeats 5

1. Training, images per second at --image-size (64 px by default), batch 32, balanced sampling, for each augmentation
   setting (none; "cheap": flips, rotations, zooms, shifts, brightness, contrast, noise, hair; full: also KerasCV's
   per-image blur and JPEG quality). Each repeat trains a fresh model for 2 epochs of 2,048 tiles and times the second
   epoch only (the first one traces the graph). The median over --repeats is reported.
2. Inference, images per second (`predict_scores`, batches of 256), median over --repeats.
3. The malloc patch: the same training (no augmentation) in a fresh process that first reads tiles through
   `make_image_dataset` (TensorFlow's `from_generator` then sets glibc's M_TRIM_THRESHOLD), with and without
   `restore_memory_allocator`. Reports the ratio of the median step times.
Prints one JSON document with the CPU model: compare ratios within one run, not seconds across machines.
"""
import argparse, json, statistics, subprocess, sys, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import cpu_model  # noqa: E402

def tiles_and_targets(n: int, size: int):
    import numpy as np
    random = np.random.default_rng(0)
    return random.integers(0, 256, (n, size, size, 3), dtype=np.uint8), (np.arange(n) % 10 == 0).astype(float)

class EpochTimer:
    "A Keras callback that keeps the seconds of every epoch."
    def __new__(cls):
        import keras
        class Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None): self.seconds = []
            def on_epoch_begin(self, epoch, logs=None): self.start = time.perf_counter()
            def on_epoch_end(self, epoch, logs=None): self.seconds.append(time.perf_counter() - self.start)
        return Timer()

def training_rate(size: int, augmentation, repeats: int, n: int = 2048) -> float:
    "Median images per second of the second training epoch."
    import keras
    from dermlab import classifier
    tiles, targets = tiles_and_targets(n, size)
    rates = []
    for repeat in range(repeats):
        timer = EpochTimer()
        keras.utils.set_random_seed(repeat)
        model = classifier.build_small_cnn(size)
        model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
        augment = classifier.imaging_augmentation(size, repeat, blur_and_jpeg=augmentation is True) if augmentation else None
        dataset = classifier.tile_dataset(tiles, targets, batch_size=32, balance_classes=True, augmentation=augment,
                                          hair_rate=0.3 if augmentation else 0.0, shuffle=True, seed=repeat)
        model.fit(dataset, epochs=2, steps_per_epoch=n // 32, callbacks=[timer], verbose=0)
        rates.append(n / timer.seconds[-1])
    return statistics.median(rates)

def inference_rate(size: int, repeats: int, n: int = 4096) -> float:
    "Median images per second of `predict_scores`."
    from dermlab import classifier
    tiles, _ = tiles_and_targets(n, size)
    model = classifier.build_small_cnn(size)
    classifier.predict_scores(model, tiles[:256])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict_scores(model, tiles)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)

MALLOC_RUN = """
import json, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {here!r})
from bench_classifier import training_rate
from dermlab import data
from dermlab.data import read_tiles
from dermlab.phantom import make_phantom_isic
if sys.argv[1] == "patched": data.restore_memory_allocator = lambda: None  # keep TensorFlow's setting
folder = make_phantom_isic(tempfile.mkdtemp() + "/set", n_images=64, n_patients=8, seed=0)
read_tiles(data.load_isic(folder), 32)  # runs from_generator once: TensorFlow sets M_TRIM_THRESHOLD here
print(json.dumps({{"rate": training_rate({size}, False, {repeats})}}))
"""

def malloc_patch_ratio(size: int, repeats: int) -> dict:
    "Training images per second after reading tiles, with TensorFlow's malloc setting kept and with it undone."
    rates = {}
    for mode in ("patched", "restored"):
        script = MALLOC_RUN.format(here=str(Path(__file__).resolve().parent), size=size, repeats=repeats)
        output = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True).stdout
        rates[mode] = json.loads(output.strip().splitlines()[-1])["rate"]
    return {"images_per_second_with_tensorflow_malloc_setting": round(rates["patched"], 1),
            "images_per_second_restored": round(rates["restored"], 1), "speed_up": round(rates["restored"] / rates["patched"], 2)}

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import tensorflow as tf
    report = {"cpu": cpu_model(), "tensorflow": tf.__version__, "image_size": args.image_size, "batch_size": 32, "repeats": args.repeats}
    report["training_images_per_second"] = {name: round(training_rate(args.image_size, setting, args.repeats), 1)
                                            for name, setting in [("no augmentation", False), ("cheap augmentation", "cheap"),
                                                                  ("full augmentation", True)]}
    report["inference_images_per_second"] = round(inference_rate(args.image_size, args.repeats), 1)
    report["malloc_patch"] = malloc_patch_ratio(args.image_size, args.repeats)
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
