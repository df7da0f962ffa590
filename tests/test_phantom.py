"The phantom set: exact ISIC 2024 layout, determinism, the signal and the planted bias it promises."
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from dermlab.colour import individual_typology_angle
from dermlab.core import written_whole
from dermlab.data import ISIC2024_TEST_COLUMNS, ISIC2024_TRAIN_COLUMNS
from dermlab.phantom import MM_PER_PIXEL, make_phantom_isic

def test_columns_match_the_real_files(realdata):
    assert list(pd.read_csv(realdata / "isic2024_train_rows/train-metadata.csv").columns) == ISIC2024_TRAIN_COLUMNS
    assert list(pd.read_csv(realdata / "isic2024_test/test-metadata.csv").columns) == ISIC2024_TEST_COLUMNS

def test_hdf5_layout_matches_the_real_test_file(realdata, phantom_dir):
    with h5py.File(realdata / "isic2024_test/test-image.hdf5") as real, h5py.File(phantom_dir / "train-image.hdf5") as ours:
        real_item, our_item = real[next(iter(real))], ours[next(iter(ours))]
        assert (our_item.shape, our_item.dtype.kind) == (real_item.shape, real_item.dtype.kind) == ((), "S")
        assert our_item[()][:3] == real_item[()][:3] == b"\xff\xd8\xff"

def test_table_is_consistent(phantom_dir):
    table = pd.read_csv(phantom_dir / "train-metadata.csv")
    card = json.loads((phantom_dir / "phantom-card.json").read_text())
    assert len(table) == card["n_images"] == 400 and table.target.sum() == card["n_malignant"] == 40
    assert table.patient_id.nunique() == 60 and table.isic_id.is_unique
    assert table.groupby("patient_id").tbp_lv_Lext.std().max() < 6  # a patient's lesions share a skin tone
    assert (table.loc[table.target == 1, "lesion_id"].notna()).all()
    assert table.age_approx.dropna().between(15, 85).all() and set(table.sex.dropna()) <= {"female", "male"}

def test_diameter_sets_the_size_in_pixels(phantom_dir):
    table = pd.read_csv(phantom_dir / "train-metadata.csv")
    # the rendered long axis is the diameter: an ellipse of that length is at least as large as the measured area
    ellipse_area = np.pi * (table.clin_size_long_diam_mm / 2) * (table.tbp_lv_minorAxisMM / 2)
    assert np.corrcoef(ellipse_area, table.tbp_lv_areaMM2)[0, 1] > 0.95
    assert (table.clin_size_long_diam_mm >= 1.0).all() and MM_PER_PIXEL == 0.1

def test_abcd_signal_is_planted(phantom_dir):
    table = pd.read_csv(phantom_dir / "train-metadata.csv")
    medians = table.groupby("target")[["clin_size_long_diam_mm", "tbp_lv_norm_border", "tbp_lv_color_std_mean", "tbp_lv_symm_2axis"]].median()
    assert (medians.loc[1] > 1.2 * medians.loc[0]).all()

def test_planted_bias_is_where_the_truth_file_says(phantom_dir):
    table = pd.read_csv(phantom_dir / "train-metadata.csv").merge(pd.read_csv(phantom_dir / "phantom-truth.csv")[["isic_id", "planted_effect", "skin_ita"]])
    planted = table[table.planted_effect]
    assert len(planted) > 0 and (planted.target == 1).all() and (planted.skin_ita < 10).all()
    ita = individual_typology_angle(table.tbp_lv_Lext, table.tbp_lv_Bext)
    dark_malignant = table[(table.target == 1) & (ita < 10)]
    light_malignant = table[(table.target == 1) & (ita >= 10)]
    assert dark_malignant.tbp_lv_deltaLBnorm.median() < 0.6 * light_malignant.tbp_lv_deltaLBnorm.median()

def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = make_phantom_isic(tmp_path / "a", n_images=30, n_patients=5, seed=1)
    second = make_phantom_isic(tmp_path / "b", n_images=30, n_patients=5, seed=1)
    third = make_phantom_isic(tmp_path / "c", n_images=30, n_patients=5, seed=2)
    assert (first / "train-metadata.csv").read_bytes() == (second / "train-metadata.csv").read_bytes()
    assert (first / "train-metadata.csv").read_bytes() != (third / "train-metadata.csv").read_bytes()

def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="subgroup_effect"): make_phantom_isic(tmp_path / "x", n_images=5, n_patients=1, subgroup_effect="nope")
    with pytest.raises(ValueError, match="n_patients"): make_phantom_isic(tmp_path / "x", n_images=5, n_patients=9)
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a phantom set"): make_phantom_isic(tmp_path / "mine", n_images=5, n_patients=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"

def test_written_whole_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "model.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with written_whole(target) as partial:
            partial.write_text("new but half")
            raise RuntimeError("stopped")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
