"The quick course's lessons hold on other seeds than the course test's 42: each notebook asserts, beside the sentence, what it teaches."
import json

import nbformat
import pandas as pd
import pytest

from dermlab.pipeline import run_course

def printed(notebook) -> str:
    "Everything an executed notebook's code cells printed."
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)

# seed 43 runs the four notebooks whose quick lessons can fail on a seed; seed 44 only the two whose lessons rest on the test split of
# their lesson phantom (06_classifier and 07_bias: robustness, pseudo-labels, the planted gap), with stand-in generators; seed 45 the
# baseline's lesson (03_deconv, beside 02_gan's GAN): with the course's seed 42, each lesson on three seeds, and CI kept short
LESSONS = {43: ["02_gan", "03_deconv", "06_classifier", "07_bias"], 44: ["06_classifier", "07_bias"], 45: ["02_gan", "03_deconv"]}

@pytest.mark.parametrize("seed", list(LESSONS))
def test_the_quick_lessons_of_the_baseline_the_classifier_and_the_bias_analysis_hold_on_another_seed(tmp_path, seed):
    "The notebooks of `LESSONS` in quick mode on the phantom of another seed (02_gan for 03_deconv's comparison): every assert beside a lesson holds (a failing cell fails the run)."
    folder = run_course(tmp_path / "run", quick=True, notebooks=LESSONS[seed], seed=seed)
    report = json.loads((folder / "run.json").read_text())
    assert [n["notebook"] for n in report["notebooks"]] == ["01_phantom.ipynb"] + [f"{name}.ipynb" for name in LESSONS[seed]]
    shown = {name: printed(nbformat.read(folder / "executed" / f"{name}.ipynb", as_version=4)) for name in LESSONS[seed] if name != "02_gan"}
    for name in {"03_deconv", "06_classifier"} & set(shown):  # the phantom's checks ran: they are the lessons
        assert "the checks of its known truth below are on" in shown[name], name
    if "03_deconv" in shown: assert f"GAN from {folder / '02_gan' / 'gan'}" in shown["03_deconv"]  # blurrier than the course's GAN, not a stand-in's
    if "06_classifier" not in shown: return
    if "02_gan" not in LESSONS[seed]: assert "GAN: training a small stand-in here" in shown["06_classifier"]  # said, where the course's GAN is missing
    experiment = pd.read_csv(folder / "06_classifier" / "experiment.csv")
    assert (experiment.malignant >= 20).all() and experiment.groupby("arm").seed.nunique().min() == 2  # the lesson phantom's test split
    semi = pd.read_csv(folder / "06_classifier" / "semi_supervised.csv")
    assert set(semi.arm) == {"labelled only", "+ pseudo-labels", "all labels"}
    assert "the gap found; nothing planted: no gap invented" in shown["07_bias"]
