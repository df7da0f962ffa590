"The course runner: the README's main command, run through papermill on the phantom set."
import json

import nbformat
import pytest

from dermlab.pipeline import find_course_notebooks, find_notebooks_folder, main, run_course

def test_course_runs_end_to_end_on_the_phantom_set(tmp_path):
    "The README's main command: every course notebook, every cell (test cells included), through papermill in quick mode."
    folder = run_course(tmp_path / "run", quick=True)
    report = json.loads((folder / "run.json").read_text())
    course = [p.name for p in find_course_notebooks(find_notebooks_folder())]
    assert [n["notebook"] for n in report["notebooks"]] == course and course[:4] == ["00_phantom.ipynb", "01_data.ipynb", "02_gan.ipynb", "03_deconv.ipynb"]
    assert all(n["parameters"]["QUICK"] is True for n in report["notebooks"])
    assert report["notebooks"][1]["parameters"]["DATA_DIR"] == str(folder / "phantom")
    assert (folder / "phantom" / "train-image.hdf5").exists() and (folder / "phantom" / "phantom-card.json").exists()
    for name in course:
        executed = nbformat.read(folder / "executed" / name, as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells), name
        assert not any(o.get("output_type") == "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs), name
    assert (folder / "02_gan" / "gan_run" / "losses.png").exists() and list((folder / "02_gan" / "gan_run" / "samples").glob("epoch_*.png"))
    assert (folder / "03_deconv" / "deconv_run" / "history.json").exists()

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
