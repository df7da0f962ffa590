"A course notebook opened alone: the same setup cell everywhere, a header that says what it costs, and training that resumes after a kill."
import json, os, re, signal, subprocess, sys, time

import nbformat
import pytest

from dermlab.phantom import make_phantom_isic
from dermlab.pipeline import find_course_notebooks, find_notebooks_folder
from dermlab.runtime import TIME_BUDGET, budget_durations, course_setup, describe_budget, install_source

COURSE = find_course_notebooks(find_notebooks_folder())

def setup_cells(notebook) -> list:
    return [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code" and "from dermlab.runtime import course_setup" in c.source]

@pytest.mark.parametrize("notebook", COURSE, ids=lambda p: p.stem)
def test_every_notebook_sets_itself_up_before_it_imports_dermlab(notebook):
    "One setup cell, pinned to this release, before any other dermlab import; badges, a time budget and a GPU in the metadata."
    cells = nbformat.read(notebook, as_version=4).cells
    [setup] = setup_cells(notebook)
    reference = setup_cells(find_notebooks_folder() / "00_getting_started.ipynb")[0].source
    install = lambda source: source.split("from dermlab.runtime import course_setup")[0]
    assert install(setup.source) == install(reference)  # the same install lines everywhere
    assert f'setup = course_setup("{notebook.stem}", QUICK, OUT_DIR' in setup.source
    assert f'"{install_source()}"' in setup.source
    first_import = next(i for i, c in enumerate(cells) if c.cell_type == "code" and re.search(r"^\s*(from|import) dermlab", c.source, re.M))
    assert cells[first_import].source == setup.source, f"{notebook.name}: a dermlab import comes before the setup cell"
    header = cells[0].source + cells[1].source
    assert f"colab.research.google.com/github/dermlab/dermlab/blob/main/nbs/{notebook.name}" in header
    assert f"kaggle.com/kernels/welcome?src=https://github.com/dermlab/dermlab/blob/main/nbs/{notebook.name}" in header
    assert notebook.stem in TIME_BUDGET and describe_budget(notebook.stem).split(": ", 1)[1] in header.replace("\n", " ")
    metadata = nbformat.read(notebook, as_version=4).metadata
    assert metadata.accelerator == "GPU" and metadata.colab.gpuType == "T4" and metadata.kaggle.isGpuEnabled

def test_readme_has_a_badge_and_the_time_budget_of_every_notebook():
    readme = (find_notebooks_folder().parent / "README.md").read_text()
    assert set(TIME_BUDGET) == {p.stem for p in COURSE}
    for name in TIME_BUDGET:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` | [![Open In Colab]"))
        assert f"kaggle.com/kernels/welcome?src=https://github.com/dermlab/dermlab/blob/main/nbs/{name}.ipynb" in row
        assert all(duration in row for duration in budget_durations(name)), row

def test_setup_finds_kaggle_folders_and_data(tmp_path):
    (tmp_path / "kaggle/working").mkdir(parents=True)
    (tmp_path / "kaggle/input/isic-2024-challenge").mkdir(parents=True)
    (tmp_path / "kaggle/input/isic-2024-challenge/train-metadata.csv").write_text("isic_id\n")
    setup = course_setup("02_gan", None, "", "", root=tmp_path, environ={}, gpus=2)
    assert setup.platform == "kaggle" and setup.quick is False  # a GPU: the full profile
    assert setup.out_dir == str(tmp_path / "kaggle/working/dermlab-runs/02_gan")
    assert setup.data_dir == str(tmp_path / "kaggle/input/isic-2024-challenge")
    with pytest.raises(FileNotFoundError, match="DATA_DIR /no/such/folder"):
        course_setup("02_gan", True, "", "/no/such/folder", root=tmp_path, environ={}, gpus=0)

def notebook_up_to(notebook, marker: str, path) -> None:
    "Write the cells of `notebook` up to the first code cell that contains `marker`."
    copy = nbformat.read(notebook, as_version=4)
    end = next(i for i, c in enumerate(copy.cells) if c.cell_type == "code" and marker in c.source)
    copy.cells = copy.cells[: end + 1]
    nbformat.write(copy, path)

def papermill_command(notebook, executed, parameters: dict) -> list:
    options = [a for k, v in parameters.items() for a in ("-p", k, str(v))]
    return [sys.executable, "-m", "papermill", str(notebook), str(executed), "-k", "python3", "--cwd", str(find_notebooks_folder()),
            "--log-level", "ERROR", *options]

def test_gan_notebook_killed_during_training_resumes_when_run_again(tmp_path):
    "02_gan's cells up to its training cell: killed after the first checkpoint, then run again, it continues from that epoch."
    data = make_phantom_isic(tmp_path / "phantom", n_images=300, n_patients=30, seed=3)
    notebook = tmp_path / "02_gan_to_training.ipynb"
    notebook_up_to(find_notebooks_folder() / "02_gan.ipynb", "history = gan.fit(", notebook)
    run_dir = tmp_path / "run" / "02_gan" / "gan_run"
    parameters = dict(QUICK=False, DATA_DIR=data, OUT_DIR=tmp_path / "run" / "02_gan", IMAGE_SIZE=32, BATCH_SIZE=16, EPOCHS=4, STEPS_PER_EPOCH=20)
    first = subprocess.Popen(papermill_command(notebook, tmp_path / "first.ipynb", parameters), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.monotonic() + 600
    while not (run_dir / "checkpoints" / "checkpoint").exists():
        assert first.poll() is None, f"the notebook ended before its first checkpoint: {first.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the session ends: papermill and its kernel, mid-training
    first.wait()
    before = json.loads((run_dir / "history.json").read_text())
    assert 1 <= len(before) < 4, f"killed after {len(before)} of 4 epochs: not during training"
    subprocess.run(papermill_command(notebook, tmp_path / "second.ipynb", parameters), check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    executed = nbformat.read(tmp_path / "second.ipynb", as_version=4)
    training = next(c for c in executed.cells if c.cell_type == "code" and "history = gan.fit(" in c.source)
    printed = "".join(o.get("text", "") for o in training.outputs)
    assert f"(epoch {len(before)})" in printed and "resumed from" in printed, printed
    after = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in after] == [1, 2, 3, 4]
    assert after[: len(before)] == before  # the epochs done before the kill were kept, not trained again

def test_a_run_folder_of_another_configuration_is_refused_with_a_clear_message(tmp_path):
    "Resuming never mixes configurations: a checkpoint of 8 px tiles is refused by a 16 px model, naming the folder and FRESH_RUN."
    import warnings
    from dermlab.data import DermlabDataError, TabularEncoder, load_isic
    from dermlab.deconv import DeconvConfig, DeconvGenerator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_isic(make_phantom_isic(tmp_path / "phantom", n_images=40, n_patients=8, seed=1))
    encoder = TabularEncoder.for_table(data.table)
    DeconvGenerator(encoder, DeconvConfig(image_size=8, batch_size=8)).fit(data, epochs=1, run_dir=tmp_path / "run", progress=False, steps_per_epoch=2)
    with pytest.raises(DermlabDataError, match=re.escape(f"{tmp_path / 'run'}: its checkpoint ckpt-1 was written by another model or configuration; set FRESH_RUN = True")):
        DeconvGenerator(encoder, DeconvConfig(image_size=16, batch_size=8)).fit(data, epochs=2, run_dir=tmp_path / "run", progress=False, steps_per_epoch=2)

def test_gan_notebook_stopped_at_its_budget_resumes_in_a_new_kaggle_session(tmp_path):
    "02_gan's training cell stops at TRAIN_MINUTES with a checkpoint; a new Kaggle session with that output attached continues it."
    data = make_phantom_isic(tmp_path / "phantom", n_images=300, n_patients=30, seed=3)
    notebook = tmp_path / "02_gan_to_training.ipynb"
    notebook_up_to(find_notebooks_folder() / "02_gan.ipynb", "history = gan.fit(", notebook)
    first_session = tmp_path / "first" / "kaggle" / "working" / "dermlab-runs"
    parameters = dict(QUICK=False, DATA_DIR=data, IMAGE_SIZE=32, BATCH_SIZE=16, EPOCHS=4, STEPS_PER_EPOCH=20)
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    budgeted = {**parameters, "OUT_DIR": first_session / "02_gan", "TRAIN_MINUTES": 0.001}
    subprocess.run(papermill_command(notebook, tmp_path / "first.ipynb", budgeted), check=True, capture_output=True, env=environment)
    printed = "".join(o.get("text", "") for c in nbformat.read(tmp_path / "first.ipynb", as_version=4).cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "stopped at the budget of 0.001 minutes after 1 of 4 epochs" in printed, printed[-2000:]
    # Save Version keeps /kaggle/working as the version's output; the next session gets it, attached, under /kaggle/input
    root = tmp_path / "second"
    (root / "kaggle" / "working").mkdir(parents=True)
    (root / "kaggle" / "input" / "dermlab-gan-v1").mkdir(parents=True)
    os.replace(first_session, root / "kaggle" / "input" / "dermlab-gan-v1" / "dermlab-runs")
    setup = course_setup("02_gan", False, "", str(data), root=root, environ={}, gpus=1, mount=False)
    assert any(note.startswith("resuming: copied 02_gan") for note in setup.notes), setup.notes
    subprocess.run(papermill_command(notebook, tmp_path / "second.ipynb", {**parameters, "OUT_DIR": setup.out_dir, "TRAIN_MINUTES": 0}),
                   check=True, capture_output=True, env=environment)
    training = next(c for c in nbformat.read(tmp_path / "second.ipynb", as_version=4).cells if "history = gan.fit(" in c.source)
    assert "(epoch 1)" in "".join(o.get("text", "") for o in training.outputs)
    history = json.loads((root / "kaggle/working/dermlab-runs/02_gan/gan_run/history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
