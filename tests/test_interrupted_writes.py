"A write killed half-way (SIGKILL, as when a Kaggle session ends) leaves the previous version whole and loadable; the next write removes what it left."
import io, json, os, signal, subprocess, sys, textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

PREAMBLE = textwrap.dedent("""
    import os, pathlib, sys, time, warnings
    import numpy as np, pandas as pd
    target, version, stop = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "stop"
    if stop:  # block inside the write, once its partial folder holds a file: the parent kills the process there
        def blocking(original):
            def write(self, *args, **kwargs):
                where = str(args[0] if args and not isinstance(self, pathlib.Path) else self)
                result = original(self, *args, **kwargs)
                if ".partial-" in where:
                    print("MID-WRITE", flush=True)
                    time.sleep(3600)
                return result
            return write
        pathlib.Path.write_text = blocking(pathlib.Path.write_text)
        pd.DataFrame.to_csv = blocking(pd.DataFrame.to_csv)
    tiles = np.full((8, 16, 16, 3), 30 * version, np.uint8)
    records = pd.DataFrame({"image_id": [f"real_{i}" for i in range(8)], "patient_id": [f"p{i % 3}" for i in range(8)], "age": 50.0})
""")

WRITES = {  # what each writer writes as version `version`
    "phantom set": "from dermlab.phantom import make_phantom_isic\nmake_phantom_isic(target, n_images=30, n_patients=6, seed=version)",
    "synthetic set": textwrap.dedent("""
        from types import SimpleNamespace
        from dermlab.generators import save_synthetic_set
        save_synthetic_set(target, tiles, records, SimpleNamespace(kind="stand-in", version=f"v{version}"), seed=version)"""),
    "classifier": textwrap.dedent("""
        from dermlab.classifier import build_small_cnn, save_classifier
        save_classifier(build_small_cnn(16, width=4), target, version=version)"""),
    "review kit": textwrap.dedent("""
        from dermlab.memorisation import make_review_kit
        make_review_kit(target, tiles, records, {"stand-in": (tiles[::-1].copy(), records)}, n_tiles=8, display_size=32, seed=version)"""),
}

def version_of(kind: str, target) -> int:
    "Load what `target` holds as a user would, and say which version it is."
    import warnings
    warnings.simplefilter("ignore")
    if kind == "phantom set":
        from dermlab.data import load_isic
        assert len(load_isic(target)) == 30
        return json.loads((target / "phantom-card.json").read_text())["seed"]
    if kind == "synthetic set":
        from dermlab.data import load_isic
        data = load_isic(target)
        assert len(data) == 8 and (data.table.patient_id.str.startswith("p")).all()
        pixels = np.asarray(Image.open(io.BytesIO(data.images.read([data.table.image_id[0]])[0])))
        assert abs(pixels.mean() / 30 - int(data.table.generator_version[0][1:])) < 0.1  # the pixels are the version's too
        return int(data.table.generator_version[0][1:])
    if kind == "classifier":
        from dermlab.classifier import load_classifier
        model, description = load_classifier(target)
        assert model.predict(np.zeros((1, 16, 16, 3)), verbose=0).shape == (1, 1)
        return description["version"]
    assert len(pd.read_csv(target / "key.csv")) == 8
    images = sorted((target / "sheet" / "images").glob("*.png"))
    assert len(images) == 8 and (target / "sheet" / "answers.csv").is_file()
    return round(np.asarray(Image.open(images[0])).mean() / 30)  # every tile of version v is 30 v grey

def write(kind: str, target, version: int, stop: bool = False) -> subprocess.Popen:
    "Write version `version` of `kind` into `target` in a child process (with `stop`, one that blocks mid-write)."
    command = [sys.executable, "-c", PREAMBLE + WRITES[kind], str(target), str(version), "stop" if stop else "go"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})

@pytest.mark.parametrize("kind", list(WRITES))
def test_a_write_killed_half_way_keeps_the_previous_version_and_the_next_write_tidies_up(kind, tmp_path):
    target = tmp_path / "written"
    first = write(kind, target, 1)
    assert first.wait(timeout=300) == 0, first.communicate()[1][-2000:]
    killed = write(kind, target, 2, stop=True)
    try:
        import select
        assert select.select([killed.stdout], [], [], 300)[0], "the write never reached its partial folder"
        assert killed.stdout.readline().strip() == "MID-WRITE", killed.communicate()[1][-2000:]
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".written.partial-"), leftovers  # the kill fell inside the write
    assert version_of(kind, target) == 1  # the previous version, whole and loadable
    third = write(kind, target, 3)
    assert third.wait(timeout=300) == 0, third.communicate()[1][-2000:]
    assert "removed 1 partial writes of written left by stopped processes" in third.communicate()[1]
    assert [p.name for p in tmp_path.iterdir()] == ["written"] and version_of(kind, target) == 3
