"The course runner: the README's main command, run through papermill on the phantom set."
import json

import nbformat
import pandas as pd
import pytest

from dermlab.pipeline import find_course_notebooks, find_notebooks_folder, main, run_course

def test_course_runs_end_to_end_on_the_phantom_set(tmp_path):
    "The README's main command: every course notebook, every cell (test cells included), through papermill in quick mode."
    folder = run_course(tmp_path / "run", quick=True)
    report = json.loads((folder / "run.json").read_text())
    course = [p.name for p in find_course_notebooks(find_notebooks_folder())]
    assert [n["notebook"] for n in report["notebooks"]] == course
    assert course[:12] == ["00_getting_started.ipynb", "00_phantom.ipynb", "00_skin_colour.ipynb", "01_data.ipynb", "01_generators.ipynb", "02_gan.ipynb",
                          "03_deconv.ipynb", "04_diffusion.ipynb", "05_evaluate.ipynb", "05_memorisation.ipynb", "06_classifier.ipynb", "07_bias.ipynb"]
    assert all(n["parameters"]["QUICK"] is True for n in report["notebooks"])
    assert report["notebooks"][3]["parameters"]["DATA_DIR"] == str(folder / "phantom")  # 01_data
    assert (folder / "phantom" / "train-image.hdf5").exists() and (folder / "phantom" / "phantom-card.json").exists()
    for name in course:
        executed = nbformat.read(folder / "executed" / name, as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells), name
        assert not any(o.get("output_type") == "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs), name
    assert (folder / "02_gan" / "gan_run" / "curves.png").exists() and list((folder / "02_gan" / "gan_run" / "samples").glob("epoch_*.png"))
    assert (folder / "03_deconv" / "deconv_run" / "history.json").exists()
    deconv_notebook = nbformat.read(folder / "executed" / "03_deconv.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in deconv_notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert f"GAN from {folder / '02_gan' / 'gan'}" in shown  # 03_deconv compares with the GAN that 02_gan saved
    comparison = pd.read_csv(folder / "05_memorisation" / "comparison.csv", index_col=0)  # every generator the course trained, in one table
    assert list(comparison.index) == ["real held-out tiles (ceiling)", "GAN", "Conv2DTranspose baseline", "diffusion"]
    assert comparison.copy_rate.notna().all() and (folder / "05_memorisation" / "review_kit" / "key.csv").exists()
    experiment = pd.read_csv(folder / "06_classifier" / "experiment.csv")  # real only and both quick-mode generators, two seeds each
    assert {"real only", "+ GAN 1:1", "+ GAN 4:1", "+ Conv2DTranspose baseline 4:1", "+ GAN malignant x4"} <= set(experiment.arm)
    assert experiment.groupby("arm").seed.nunique().min() == 2 and experiment.pauc_above_80_tpr.between(0, 0.2).all()
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
    nbformat.write(broken, notebooks / "00_phantom.ipynb")
    with pytest.raises(Exception, match="broken on purpose"):
        run_course(tmp_path / "run", quick=True, notebooks_folder=notebooks)
    assert (tmp_path / "run/executed/00_phantom.failed.ipynb").exists() and not (tmp_path / "run/executed/00_phantom.ipynb").exists()

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
    course = [p.name for p in find_course_notebooks(find_notebooks_folder()) if p.stem != "00_phantom"]
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
    assert capsys.readouterr().err == "dermlab: error: positive_rate=2.0 must lie in [0, 1]\n" and not (tmp_path / "set").exists()
    assert main(["phantom", str(tmp_path / "set"), "--images", "3", "--patients", "5"]) == 2
    assert "n_patients (5) <= n_images (3)" in capsys.readouterr().err
    import dermlab
    with pytest.raises(SystemExit) as exit: main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"dermlab {dermlab.__version__}"
    from dermlab.pipeline import _parser
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    assert set(commands) == {"run", "phantom"}
    for name, command in commands.items():  # every option and argument explains itself in --help
        assert all(action.help for action in command._actions), [a.dest for a in command._actions if not a.help]
