"The course runner: the README's main command, run through papermill on the phantom set."
import json, os, re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from dermlab.pipeline import find_course_notebooks, find_notebooks_folder, main, run_course

def test_course_runs_end_to_end_on_the_phantom_set(tmp_path, capfd):
    "The README's main command: every course notebook, every cell (test cells included), through papermill in quick mode."
    folder = run_course(tmp_path / "run", quick=True)
    report = json.loads((folder / "run.json").read_text())
    course = [p.name for p in find_course_notebooks(find_notebooks_folder())]
    assert [n["notebook"] for n in report["notebooks"]] == course
    terminal = "".join(capfd.readouterr())  # what the kernels and papermill wrote too, at the level of file descriptors
    for noise in ("I0000", "W0000", "E0000", "oneDNN", "Corrupt JPEG", "TqdmWarning", "Kernel"):
        assert noise not in terminal, f"{noise!r} reached the terminal"
    for name in course:  # one closing line per notebook: its cells, time and peak memory
        assert re.search(rf"^  {name[:-6]}: done, \d+ cells in \d+:\d\d, peak memory \d+\.\d GB$", terminal, re.M), name
    assert all(0.1 < n["peak_memory_gb"] < 8 for n in report["notebooks"])  # Colab's free tier must survive every kernel
    assert "Corrupt JPEG data" in (folder / "executed" / "01_data.log").read_text()  # the broken-image lesson's messages, kept
    assert course[:13] == ["00_getting_started.ipynb", "01_phantom.ipynb", "00_core.ipynb", "00_skin_colour.ipynb", "01_data.ipynb", "01_generators.ipynb", "02_gan.ipynb",
                          "03_deconv.ipynb", "04_diffusion.ipynb", "05_evaluate.ipynb", "05_memorisation.ipynb", "06_classifier.ipynb", "07_bias.ipynb"]
    assert all(n["parameters"]["QUICK"] is True for n in report["notebooks"])
    assert report["notebooks"][4]["parameters"]["DATA_DIR"] == str(folder / "phantom")  # 01_data
    assert (folder / "phantom" / "train-image.hdf5").exists() and (folder / "phantom" / "phantom-card.json").exists()
    for name in course:
        executed = nbformat.read(folder / "executed" / name, as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells), name
        assert not any(o.get("output_type") == "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs), name
        if any("IS_PHANTOM = is_phantom(" in c.source for c in executed.cells):  # the phantom's checks ran: a wrong source label would skip them
            said = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
            assert "the checks of its known truth below are on" in said, name
    assert (folder / "02_gan" / "gan_run" / "curves.png").exists() and list((folder / "02_gan" / "gan_run" / "samples").glob("epoch_*.png"))
    assert (folder / "03_deconv" / "deconv_run" / "history.json").exists()
    deconv_notebook = nbformat.read(folder / "executed" / "03_deconv.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in deconv_notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert f"GAN from {folder / '02_gan' / 'gan'}" in shown  # 03_deconv compares with the GAN that 02_gan saved
    comparison = pd.read_csv(folder / "05_memorisation" / "comparison.csv", index_col=0)  # every generator the course trained, in one table
    assert list(comparison.index) == ["real held-out tiles (ceiling)", "GAN", "Conv2DTranspose baseline", "diffusion"]
    assert comparison.copy_rate.notna().all() and (folder / "05_memorisation" / "review_kit" / "key.csv").exists()
    experiment = pd.read_csv(folder / "06_classifier" / "experiment.csv")  # real only and both quick-mode generators, two seeds each
    assert {"real only", "+ GAN 1:1", "+ Conv2DTranspose baseline 1:1", "+ GAN malignant x4", "+ Conv2DTranspose baseline malignant x4"} <= set(experiment.arm)
    assert experiment.groupby("arm").seed.nunique().min() == 2
    from dermlab.classifier import partial_auc_above_tpr, roc_auc
    scores = pd.read_csv(folder / "06_classifier" / "experiment_scores.csv")  # every arm's test scores: its metrics follow from them
    lesson = Path(json.loads((folder / "06_classifier" / "classifier" / "classifier.json").read_text())["data"])
    assert lesson.parent == folder / "phantoms"  # the course phantom is too small for the classifier lessons: they render their own
    truth = pd.read_csv(lesson / "train-metadata.csv").set_index("isic_id").target.loc[scores.image_id].to_numpy()
    assert truth.sum() >= 20 and experiment.malignant.min() >= 20  # the test split the lessons need
    for _, arm in experiment.iterrows():
        scored = scores[f"{arm.arm} | seed {arm.seed}"].to_numpy()
        assert arm.pauc_above_80_tpr == pytest.approx(partial_auc_above_tpr(truth, scored)) and arm.roc_auc == pytest.approx(roc_auc(truth, scored))
        assert arm.pauc_above_80_tpr_low <= arm.pauc_above_80_tpr <= arm.pauc_above_80_tpr_high and arm.malignant == truth.sum()
    assert (folder / "06_classifier" / "classifier" / "classifier.keras").exists()
    bias_notebook = nbformat.read(folder / "executed" / "07_bias.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in bias_notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert f"scores of the classifier in {folder / '06_classifier'}" in shown  # 07_bias analyses the classifier 06_classifier trained

def test_a_failing_notebook_is_kept_for_reading(tmp_path):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    cell = nbformat.v4.new_code_cell("QUICK = False\nOUT_DIR = ''"); cell.metadata["tags"] = ["parameters"]
    broken = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')")],
                                      metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nbformat.write(broken, notebooks / "01_phantom.ipynb")
    with pytest.raises(Exception, match="broken on purpose"):
        run_course(tmp_path / "run", quick=True, notebooks_folder=notebooks)
    assert (tmp_path / "run/executed/01_phantom.failed.ipynb").exists() and not (tmp_path / "run/executed/01_phantom.ipynb").exists()

def test_course_notebooks_are_numbered_and_parameterised():
    import papermill
    course = find_course_notebooks(find_notebooks_folder())
    assert course and all(p.name[:2].isdigit() for p in course)
    for notebook in course:
        tagged = [c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{notebook.name}: needs exactly one cell tagged parameters"
        assert {"QUICK", "OUT_DIR", "SEED"} <= set(papermill.inspect_notebook(str(notebook))), notebook.name

def test_command_line_renders_a_phantom_set(tmp_path):
    assert main(["phantom", str(tmp_path / "set"), "--images", "10", "--patients", "2"]) == 0
    assert (tmp_path / "set" / "train-image.hdf5").exists()

def test_course_runs_end_to_end_on_the_real_ham10000_sample(realdata, tmp_path, capsys):
    "dermlab run --quick --data <HAM10000 sample>: every notebook runs on real images; 01_data shows them, not a phantom."
    assert main(["run", "--quick", "--data", str(realdata / "ham10000_sample"), "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr()
    assert "far too few for its results to mean anything" in printed.err  # 70 images: a warning, not a refusal
    report = json.loads((tmp_path / "run" / "run.json").read_text())
    course = [p.name for p in find_course_notebooks(find_notebooks_folder()) if p.stem != "01_phantom"]
    assert [n["notebook"] for n in report["notebooks"]] == course and not (tmp_path / "run" / "phantom").exists()
    data_notebook = nbformat.read(tmp_path / "run" / "executed" / "01_data.ipynb", as_version=4)
    shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in data_notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "IsicData(70 images" in shown and "ham10000_sample" in shown
    gan_notebook = nbformat.read(tmp_path / "run" / "executed" / "02_gan.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in gan_notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "diameter rank correlation not in this dataset" in shown and "not in this dataset, so not in the record: ['diameter_mm']" in shown

def refused(folder, out, capsys) -> str:
    "Run the course on `folder`; it must be refused in one line, exit code 2, nothing written."
    assert main(["run", "--quick", "--data", str(folder), "--out", str(out)]) == 2
    printed = capsys.readouterr().err
    assert printed.startswith("dermlab: error: ") and printed.count("\n") == 1, printed
    assert not out.exists()  # nothing left behind
    return printed

@pytest.mark.parametrize("folder, message", [
    ("isic2024_train_rows", "too small for the course's patient-level splits: it needs at least 10 patients, 3 malignant and 3 benign images, and has 5 patients"),
    ("isic2024_test", "holds the ISIC 2024 test split"),
])
def test_a_real_dataset_the_course_cannot_use_is_refused_in_one_line(realdata, tmp_path, capsys, folder, message):
    assert message in refused(realdata / folder, tmp_path / "run", capsys)

def test_a_missing_empty_or_unrelated_folder_is_refused_in_one_line(tmp_path, capsys):
    assert "folder not found" in refused(tmp_path / "no" / "such", tmp_path / "run", capsys)
    (tmp_path / "empty").mkdir()
    assert "no ISIC layout found" in refused(tmp_path / "empty", tmp_path / "run", capsys)
    (tmp_path / "empty" / "notes.txt").write_text("text, not a dataset")
    assert "no ISIC layout found" in refused(tmp_path / "empty", tmp_path / "run", capsys)

def test_command_line_errors_version_and_help(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "set"), "--positive-rate", "2"]) == 2
    assert capsys.readouterr().err == "dermlab: error: --positive-rate 2: a share between 0 and 1\n" and not (tmp_path / "set").exists()
    assert main(["phantom", str(tmp_path / "set"), "--images", "3", "--patients", "5"]) == 2
    assert capsys.readouterr().err == "dermlab: error: --patients 5 with --images 3: between 1 patient and one patient per image\n"
    assert main(["phantom", str(tmp_path / "set"), "--images", "50"]) == 0  # --patients follows --images
    assert pd.read_csv(tmp_path / "set" / "train-metadata.csv").patient_id.nunique() == 12
    capsys.readouterr()
    import dermlab
    with pytest.raises(SystemExit) as exit: main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"dermlab {dermlab.__version__}"
    from dermlab.pipeline import _parser
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    assert set(commands) == {"run", "phantom", "tidy"}
    for name, command in commands.items():  # every option and argument explains itself in --help
        assert all(action.help for action in command._actions), [a.dest for a in command._actions if not a.help]

# --- a kernel that dies, a subset of the course, refusals ---------------------------------------------

def one_notebook_course(tmp_path, *cells) -> "Path":
    "A course folder holding one notebook (01_phantom) with a parameters cell, a cell that prints, then `cells`."
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    parameters = nbformat.v4.new_code_cell("QUICK = False\nOUT_DIR = ''"); parameters.metadata["tags"] = ["parameters"]
    body = [nbformat.v4.new_code_cell("import os, time\nos.write(2, b'E0000 a C-level notice\\n')\nprint('before the end')")]
    notebook = nbformat.v4.new_notebook(cells=[parameters, *body, *map(nbformat.v4.new_code_cell, cells)],
                                        metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nbformat.write(notebook, notebooks / "01_phantom.ipynb")
    return notebooks

def test_a_kernel_killed_mid_cell_is_reported_in_one_line(tmp_path, monkeypatch, capfd):
    "papermill says only 'DeadKernelError: Kernel died'; dermlab names the notebook, the cell, how the kernel ended and where to look."
    import dermlab.pipeline
    notebooks = one_notebook_course(tmp_path, "held = b'x' * 300_000_000  # 0.3 GB\ntime.sleep(1.5)\nos.kill(os.getpid(), 9)")
    monkeypatch.setattr(dermlab.pipeline, "find_notebooks_folder", lambda: notebooks)
    assert main(["run", "--quick", "--out", str(tmp_path / "run")]) == 1
    out, err = capfd.readouterr()
    failed = tmp_path / "run" / "executed" / "01_phantom.failed.ipynb"
    assert err.count("\n") == 1, err
    assert err.startswith("dermlab: error: 01_phantom.ipynb: the kernel died in cell 4 of 4 (held = b'x' * 300_000_000  # 0.3 GB): "), err
    assert re.search(r": killed \(SIGKILL\)(, not by the out-of-memory killer: its count did not change|; this system does not say "
                     r"whether for lack of memory) \(its peak memory ", err), err
    assert f"the notebook as far as it ran: {failed}; the kernel's log: {failed.with_name('01_phantom.log')}" in err
    peak = float(err.split("its peak memory ")[1].split(" GB")[0])
    assert 0.3 <= peak < 1.0, err
    shown = "".join(o.get("text", "") for c in nbformat.read(failed, as_version=4).cells if c.cell_type == "code" for o in c.outputs)
    assert "before the end" in shown  # the cells before the death, with their outputs
    assert "E0000" not in out + err and "E0000 a C-level notice" in (tmp_path / "run" / "executed" / "01_phantom.log").read_text()

def memory_group(limit_bytes: int):
    "A new memory cgroup (v1 or v2) below this process's own, limited to `limit_bytes`; (folder, its cgroup.procs), or a skip."
    from dermlab.pipeline import memory_kills
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, group = line.split(":", 2)
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists(): root, limit = Path("/sys/fs/cgroup"), "memory.max"
        elif "memory" in controllers.split(","): root, limit = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"
        else: continue
        folder = root / group.lstrip("/") / f"dermlab-test-{os.getpid()}"
        try:
            folder.mkdir()
            (folder / limit).write_text(str(limit_bytes))
            return folder
        except OSError as error:
            if folder.exists(): folder.rmdir()
            pytest.skip(f"no memory cgroup can be made here ({error}): the out-of-memory kill is not reproduced")
    pytest.skip("this system has no memory cgroup: the out-of-memory kill is not reproduced")

def test_a_kernel_killed_for_memory_says_so(tmp_path):
    "A real out-of-memory kill: `dermlab run` in a memory group of 700 MB, a notebook that takes 1.5 GB."
    import subprocess, sys, textwrap
    notebooks = one_notebook_course(tmp_path, "held = [b'x' * 100_000_000 for _ in range(15)]  # 1.5 GB, 0.1 GB at a time")
    group = memory_group(700_000_000)
    run = textwrap.dedent(f"""
        import sys, dermlab.pipeline
        from pathlib import Path
        dermlab.pipeline.find_notebooks_folder = lambda: Path({str(notebooks)!r})
        sys.exit(dermlab.pipeline.main(["run", "--quick", "--out", {str(tmp_path / 'run')!r}]))""")
    try:
        done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=300,
                              preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
    finally:
        for _ in range(50):  # the group empties once its processes are gone
            try: group.rmdir(); break
            except OSError: __import__("time").sleep(0.1)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "the kernel died in cell 4 of 4 (held = [b'x' * 100_000_000 for _ in range(15)]" in done.stderr
    assert re.search(r"killed by the operating system for lack of memory \(its peak memory 0\.\d GB of 0\.7 GB\)", done.stderr), done.stderr

def test_a_subset_without_the_phantom_notebook_gets_the_phantom_set(tmp_path, capsys):
    folder = run_course(tmp_path / "run", quick=True, notebooks=["00_skin_colour"])
    report = json.loads((folder / "run.json").read_text())
    assert [n["notebook"] for n in report["notebooks"]] == ["01_phantom.ipynb", "00_skin_colour.ipynb"]
    assert f"01_phantom runs too: the notebooks you chose read the phantom set it renders into {folder / 'phantom'}" in capsys.readouterr().out
    assert all(n["peak_memory_gb"] > 0.1 for n in report["notebooks"])
    rendered = (folder / "phantom" / "train-image.hdf5").stat().st_mtime_ns
    again = json.loads((run_course(folder, quick=True, notebooks=["00_skin_colour"]) / "run.json").read_text())
    assert again["notebooks"][0] == report["notebooks"][0] and len(again["notebooks"]) == 2  # the set is there now: kept, not rendered twice
    assert (folder / "phantom" / "train-image.hdf5").stat().st_mtime_ns == rendered
    other_seed = json.loads((run_course(folder, quick=True, seed=7, notebooks=["00_skin_colour"]) / "run.json").read_text())
    assert other_seed["notebooks"][0]["parameters"]["SEED"] == 7  # another seed's phantom set is rendered anew, not mistaken for this one

def test_a_phantom_without_labels_or_malignant_tiles_is_refused(tmp_path, capsys):
    from dermlab.phantom import make_phantom_isic
    benign = make_phantom_isic(tmp_path / "benign", n_images=60, n_patients=20, positive_rate=0, seed=3)
    assert "and has 20 patients, 0 malignant and 60 benign" in refused(benign, tmp_path / "run", capsys)
    table = pd.read_csv(benign / "train-metadata.csv")
    table.assign(target=None).to_csv(benign / "train-metadata.csv", index=False)
    assert "no image has a label (target)" in refused(benign, tmp_path / "run", capsys)
    (tmp_path / "a file").write_text("not a folder")
    assert "not a folder" in refused(tmp_path / "a file", tmp_path / "run", capsys)

def test_tidy_removes_what_killed_writes_left_and_keeps_writes_in_progress(tmp_path, capsys):
    import subprocess
    from dermlab.core import leftover_path
    stopped = subprocess.Popen(["true"]); stopped.wait()  # its process id now belongs to no one
    run = tmp_path / "run"
    leftover = leftover_path(run / "02_gan" / "gan", pid=stopped.pid)
    leftover.mkdir(parents=True); (leftover / "weights.h5").write_bytes(b"0" * 1000)
    in_progress = leftover_path(run / "run.json")  # this process is alive: not a leftover
    in_progress.write_text("{}")
    elsewhere = run / f".notes.csv.partial-{stopped.pid}-0othermachine-0badf00d"  # another machine's, written just now: left alone
    elsewhere.write_text("a,b")
    swapped = leftover_path(run / "05_memorisation" / "review_kit", "old", pid=stopped.pid)  # killed between the two renames
    swapped.mkdir(parents=True); (swapped / "key.csv").write_text("tile_id,truth")
    assert main(["tidy", str(run)]) == 0
    assert not leftover.exists() and in_progress.exists() and elsewhere.exists() and (run / "02_gan").is_dir()
    assert (run / "05_memorisation" / "review_kit" / "key.csv").read_text() == "tile_id,truth"  # the old copy is the data: restored
    printed = capsys.readouterr().out
    assert printed.startswith(f"tidied 2 leftovers of stopped writes below {run} (removed, or restored") and str(leftover) in printed, printed

def test_a_cell_that_raises_ends_the_command_with_one_line_and_exit_code_1(tmp_path, monkeypatch, capsys):
    import dermlab.pipeline
    notebooks = one_notebook_course(tmp_path, "raise RuntimeError('broken on purpose')")
    monkeypatch.setattr(dermlab.pipeline, "find_notebooks_folder", lambda: notebooks)
    assert main(["run", "--quick", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    failed = tmp_path / "run" / "executed" / "01_phantom.failed.ipynb"
    assert err == (f"dermlab: error: 01_phantom.ipynb failed at cell 4: RuntimeError: broken on purpose "
                   f"(the executed copy, stopped at that cell: {failed})\n"), err
    assert failed.exists() and not (tmp_path / "run" / "executed" / "01_phantom.ipynb").exists()
