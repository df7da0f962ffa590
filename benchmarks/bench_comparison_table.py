"""Benchmark the comparison table of the memorisation notebook: seconds for the real row and three generators.

    python benchmarks/bench_comparison_table.py --images 6000

The table judges every source of tiles (other real tiles, then each generator) on the same records: realism, FID and KID,
precision and recall, attribute agreement, TSTR and the memorisation audit over the whole training split. Before the
floors refactor (issue 19) each row streamed the training split once for its audit and measured the real reference
again; now `judge_sources` audits every source in one pass. The three generators are painted-disc generators (no
network: the cost measured is the table's, not sampling). The training split is that of a phantom set of --images
images at 32 px, rendered once under runs/bench. The script runs on either version of the package (it uses
`judge_sources` where it exists, else the old per-row calls), so the same command measures before and after.
Prints one JSON document with the CPU model and the training-stream passes counted: compare ratios within one machine.

    python benchmarks/bench_comparison_table.py --before /tmp/before   # a checkout of the old version (git worktree add)

measures the old version in a child process (PYTHONPATH=that checkout) and then this one, in the same run, and prints
both with the ratio of their seconds.
"""
import argparse, json, sys, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gan import cpu_model, phantom  # noqa: E402


def counting_passes(memorisation, counter: list):
    "Count how often the audit starts a pass over the training set (whichever reader this version uses)."
    name = "tile_blocks" if hasattr(memorisation, "tile_blocks") else "training_blocks"
    original = getattr(memorisation, name)
    def counted(*args, **kwargs):
        counter.append(1)
        return original(*args, **kwargs)
    setattr(memorisation, name, counted)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=96)
    parser.add_argument("--train-sample", type=int, default=96)
    parser.add_argument("--before", help="a checkout of the old version: measure it first, in a child process")
    args = parser.parse_args()
    if args.before:
        import os, subprocess
        command = [sys.executable, __file__, "--images", str(args.images), "--held-out", str(args.held_out), "--train-sample", str(args.train_sample)]
        environment = {**os.environ, "PYTHONPATH": args.before}
        before = json.loads(subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout)
        after = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        print(json.dumps({"before": before, "after": after, "seconds_ratio_before_over_after": round(before["seconds"] / after["seconds"], 2),
                          "same_rows": before["copy_rates"] == after["copy_rates"] and before["fid"] == after["fid"]}, indent=2))
        return
    warnings.simplefilter("ignore")
    import numpy as np
    import dermlab, dermlab.memorisation as memorisation
    from dermlab.data import TabularEncoder, split_by_patient
    from dermlab.evaluate import AttributeReader, read_tiles, train_attribute_network  # read_tiles: from data since issue 19, re-exported
    from dermlab.generators import PaintedDiscGenerator
    data = phantom(f"table_{args.images}", args.images)
    split = split_by_patient(data.table, seed=0)
    train, held_out = data.subset(split == "train"), data.subset(split != "train")
    held, records = read_tiles(held_out, 32, n=2 * args.held_out)
    real, other, real_records, other_records = held[:args.held_out], held[args.held_out:], records[:args.held_out], records[args.held_out:]
    train_tiles, train_records = read_tiles(train, 32, n=2000)
    train_records = train_records.assign(train_index=np.arange(len(train_records)))
    sample = np.random.default_rng(1).choice(len(train_tiles), args.train_sample, replace=False)
    network = train_attribute_network(train_tiles, train_records, epochs=2, seed=0)
    reference = memorisation.RealReference(real, real_records.reset_index(drop=True), train, train_tiles[sample],
                                           train_records.iloc[sample].reset_index(drop=True), network.features,
                                           AttributeReader.fit(train_tiles, train_records), seed=0)
    encoder = TabularEncoder.for_table(train.table)
    generators = {f"painted disc {size}": PaintedDiscGenerator(encoder, 32) for size in ("a", "b", "c")}
    passes = []
    counting_passes(memorisation, passes)
    started = time.perf_counter()
    if hasattr(memorisation, "judge_sources"):
        sources = {"real": memorisation.TileSource(other, other_records.reset_index(drop=True), reference.train_tiles, audit_train_tiles=False)}
        sources.update({name: memorisation.generator_source(generator, reference) for name, generator in generators.items()})
        rows, audits = memorisation.judge_sources(reference, sources)
        api = "judge_sources (one pass)"
    else:
        rows = {"real": memorisation.judge_tiles(reference, other, other_records.reset_index(drop=True), reference.train_tiles, audit_train_tiles=False)[0]}
        rows.update({name: memorisation.judge_generator(generator, reference)[0] for name, generator in generators.items()})
        api = "judge_tiles + judge_generator (a pass per row)"
    seconds = time.perf_counter() - started
    print(json.dumps({"cpu": cpu_model(), "dermlab": dermlab.__file__, "api": api, "training_tiles": len(train),
                      "rows": len(rows), "training_passes": len(passes), "seconds": round(seconds, 1),
                      "copy_rates": {name: round(row["copy_rate"], 4) for name, row in rows.items()},
                      "fid": {name: round(row["fid"], 3) for name, row in rows.items()}}, indent=2))


if __name__ == "__main__":
    main()
