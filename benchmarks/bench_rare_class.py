"""Is the rare class learnt? The GAN of tests/test_rare_class.py trained at a raised malignant share and at the natural one.

    python benchmarks/bench_rare_class.py --steps 300 600 --seeds 11

On a phantom of 2,000 tiles with 0.5% malignant (7 malignant training tiles), the quick GAN (32 px, batch 32) is trained
with malignant records at 0.3 of the batches and at the data's own share, for each number of steps. Each is then asked
for 192 held-out benign records twice, as benign and as malignant, with the same noise; the phantom's truth has malignant
lesions darker, so the median lesion contrast (L*) of the malignant requests minus that of the benign ones should be
positive, like the real training tiles' gap. Prints one JSON document. Not in CI (the test trains the raised share only).
"""
import argparse, json, os, shlex, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rare_class import RAISED_SHARE, benign_records, contrast_gap, rare_set, trained_gan, truth_gap  # noqa: E402
from bench_gan import cpu_model  # noqa: E402  (benchmarks/ is on the path when run as a script)

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 600], help="training steps (multiples of 50)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11], help="phantom seeds")
    args = parser.parse_args()
    report = {"command": shlex.join(["python", "benchmarks/bench_rare_class.py", *sys.argv[1:]]),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count()}, "runs": []}
    for seed in args.seeds:
        work = Path(tempfile.mkdtemp(prefix="rare_class_"))
        train, held_out = rare_set(work / "set", seed)
        truth, records = truth_gap(train), benign_records(held_out)
        for steps in args.steps:
            for share in (RAISED_SHARE, False):
                started = time.perf_counter()
                gan = trained_gan(train, work / f"share_{share}_{steps}", share, dict(epochs=steps // 50, steps_per_epoch=50))
                report["runs"].append({"seed": seed, "steps": steps, "malignant_share": share or "natural",
                                       "malignant_training_tiles": int(train.table.target.sum()), "truth_gap": round(truth, 2),
                                       "generated_gap": round(contrast_gap(gan, records), 2),
                                       "seconds": round(time.perf_counter() - started, 1)})
                print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
