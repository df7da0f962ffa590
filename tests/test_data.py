"Loading, cleaning, encoding, splitting and streaming ISIC data, on the real sample files and the phantom set."
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from dermlab.data import (CANONICAL_COLUMNS, LEAKY_COLUMNS, SITES, DermlabDataError, FolderImages, Hdf5Images,
                          LabelLeakWarning, TabularEncoder, assert_no_group_leak, detect_format, jpeg_scale_for,
                          load_isic, make_image_dataset, split_by_patient)

def first_batch(data, **options):
    return next(iter(make_image_dataset(data, outputs=("index", "image"), shuffle=False, **options)))

# --- the real sample files -------------------------------------------------------------------------

def test_official_isic2024_test_hdf5(realdata):
    data = load_isic(realdata / "isic2024_test", split="test")
    assert isinstance(data.images, Hdf5Images) and len(data) == 3 and data.table.target.isna().all()
    assert list(data.table.columns[:len(CANONICAL_COLUMNS)]) == CANONICAL_COLUMNS
    assert data.table.ita.notna().all() and data.table.site.notna().all() and (data.table.source == "isic2024").all()
    with h5py.File(realdata / "isic2024_test/test-image.hdf5") as handle:  # the offset reads give h5py's bytes
        assert data.images.read(list(data.table.image_id)) == [handle[i][()] for i in data.table.image_id]
    index, images = first_batch(data)
    assert images.shape == (3, 64, 64, 3) and sorted(index.numpy()) == [0, 1, 2]

def test_labelled_isic2024_rows_with_jpeg_folder(realdata):
    with pytest.warns(LabelLeakWarning, match="iddx_full"):
        data = load_isic(realdata / "isic2024_train_rows")
    assert isinstance(data.images, FolderImages) and len(data) == 5 and data.table.target.sum() == 3
    assert not set(LEAKY_COLUMNS) & set(data.table.columns) and data.table.diagnosis.notna().all()
    assert data.table.diameter_mm.notna().all() and set(data.table.site.dropna()) <= set(SITES)
    assert first_batch(data, image_size=32)[1].shape == (5, 32, 32, 3)

def test_ham10000_sample(realdata):
    data = load_isic(realdata / "ham10000_sample")
    assert len(data) == 70 and data.table.target.sum() == 30  # mel, bcc, akiec: 10 images each
    assert (data.table.source == "ham10000").all() and data.table.patient_id.notna().all()
    assert data.table.skin_tone_source.str.startswith(("estimated from image pixels", "unknown: ")).all()
    assert data.table.ita.notna().mean() > 0.8 and (data.table.ita.isna() == (data.table.skin_tone == "unknown")).all()
    assert data.table.site.isna().sum() == (pd.read_csv(realdata / "ham10000_sample/HAM10000_metadata.csv").localization == "unknown").sum()
    assert jpeg_scale_for(data, 64) == 4  # 600x450 images decode at a quarter of their size
    index, images = first_batch(data, batch_size=70, value_range=(0, 1))
    assert images.shape == (70, 64, 64, 3) and 0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1

def build_isic2020(realdata, tmp_path):
    "ISIC 2020 files are not in shared/: build the layout around 12 real HAM10000 images."
    ham = pd.read_csv(realdata / "ham10000_sample/HAM10000_metadata.csv").head(12)
    (tmp_path / "jpeg" / "train").mkdir(parents=True)
    for image_id in ham.image_id: (tmp_path / "jpeg/train" / f"{image_id}.jpg").symlink_to(realdata / "ham10000_sample/images" / f"{image_id}.jpg")
    pd.DataFrame({"image_name": ham.image_id, "patient_id": ham.lesion_id, "sex": ham.sex, "age_approx": ham.age,
                  "anatom_site_general_challenge": "torso", "diagnosis": ham.dx, "benign_malignant": "benign",
                  "target": (ham.dx == "mel").astype(int)}).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path

def test_pixel_skin_estimates_are_kept_between_loads(realdata, tmp_path, monkeypatch):
    monkeypatch.setenv("DERMLAB_CACHE", str(tmp_path / "cache"))
    first = load_isic(realdata / "ham10000_sample")
    assert len(list((tmp_path / "cache" / "skin-estimates").glob("ham10000_sample-*.csv"))) == 1
    import dermlab.data
    def estimated_again(*args, **kwargs): raise AssertionError("the cached estimates were not used")
    monkeypatch.setattr(dermlab.data, "estimate_skin_colour", estimated_again)
    pd.testing.assert_frame_equal(load_isic(realdata / "ham10000_sample").table, first.table)
    with pytest.raises(AssertionError, match="not used"):  # without the cache every image is estimated again
        dermlab.data.estimate_skin_tone(first.table.assign(skin_L=np.nan, skin_tone_source=np.nan), first.images, cache=False)

def test_isic2020_layout(realdata, tmp_path):
    assert detect_format(build_isic2020(realdata, tmp_path))[0] == "isic2020"
    data = load_isic(tmp_path)
    assert len(data) == 12 and (data.table.site == "torso").all() and "benign_malignant" not in data.table

def build_isic2019(realdata, tmp_path):
    "ISIC 2019 likewise, around 9 real HAM10000 images."
    ham = pd.read_csv(realdata / "ham10000_sample/HAM10000_metadata.csv").head(9)
    images = tmp_path / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input"  # Kaggle nests it twice
    images.mkdir(parents=True)
    for image_id in ham.image_id: (images / f"{image_id}.jpg").symlink_to(realdata / "ham10000_sample/images" / f"{image_id}.jpg")
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    truth = pd.DataFrame(0.0, index=range(9), columns=classes)
    for row, name in enumerate(["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "NV"]): truth.loc[row, name] = 1.0
    truth.insert(0, "image", ham.image_id)
    truth.to_csv(tmp_path / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame({"image": ham.image_id, "age_approx": ham.age, "anatom_site_general": "anterior torso",
                  "lesion_id": ham.lesion_id, "sex": ham.sex}).to_csv(tmp_path / "ISIC_2019_Training_Metadata.csv", index=False)
    return tmp_path

def test_isic2019_layout(realdata, tmp_path):
    data = load_isic(build_isic2019(realdata, tmp_path))
    assert list(data.table.target) == [1, 0, 1, 0, 0, 0, 0, 1, 0]
    assert data.table.diagnosis[0] == "melanoma" and (data.table.source == "isic2019").all()

def test_every_reader_returns_the_same_types(realdata, phantom_dir, tmp_path):
    "Numbers float64, text str, target Int8, sex/site/skin_tone categoricals with the same levels: whichever dataset was read."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelLeakWarning)
        tables = {"phantom": load_isic(phantom_dir), "isic2024 rows": load_isic(realdata / "isic2024_train_rows"),
                  "isic2024 test": load_isic(realdata / "isic2024_test", split="test"), "ham10000": load_isic(realdata / "ham10000_sample"),
                  "isic2020": load_isic(build_isic2020(realdata, tmp_path / "2020")), "isic2019": load_isic(build_isic2019(realdata, tmp_path / "2019"))}
    dtypes = pd.DataFrame({name: data.table[CANONICAL_COLUMNS].dtypes.astype(str) for name, data in tables.items()})
    assert (dtypes.nunique(axis=1) == 1).all(), dtypes[dtypes.nunique(axis=1) > 1]
    for column in ["sex", "site", "skin_tone"]:
        assert len({tuple(data.table[column].cat.categories) for data in tables.values()}) == 1, column
    for name, data in tables.items():
        assert data.table.image_id.map(type).eq(str).all() and data.table.patient_id.map(type).eq(str).all(), name
        assert data.table.age.dtype == "float64" and str(data.table.target.dtype) == "Int8", name

def test_synthetic_sets_load_like_real_ones(phantom_dir, tmp_path):
    "A folder written by save_synthetic_set reads with load_isic, its provenance kept, so real and synthetic mix in one loader."
    from types import SimpleNamespace
    from dermlab.generators import save_synthetic_set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelLeakWarning)
        real = load_isic(phantom_dir)
    records = real.table.head(6)
    images = np.stack([np.full((32, 32, 3), 40 * i, np.uint8) for i in range(6)])
    stand_in = SimpleNamespace(kind="test_generator", version="test_generator-0-abc")  # save_synthetic_set reads only these
    folder = save_synthetic_set(tmp_path / "synthetic", images, records, stand_in, seed=3)
    assert detect_format(folder)[0] == "synthetic"
    synthetic = load_isic(folder)
    assert len(synthetic) == 6 and synthetic.table.synthetic.all() and (synthetic.table.generator == "test_generator").all()
    assert list(synthetic.table.condition_source_id) == list(records.image_id) and (synthetic.table.source == "synthetic: test_generator").all()
    assert (synthetic.table[CANONICAL_COLUMNS].dtypes.astype(str) == real.table[CANONICAL_COLUMNS].dtypes.astype(str)).all()
    assert synthetic.table.skin_tone_source.str.startswith("requested in the record").all()
    assert list(synthetic.table.skin_tone) == list(records.skin_tone) and np.allclose(synthetic.table.ita, records.ita)
    assert first_batch(synthetic, image_size=32)[1].shape == (6, 32, 32, 3)

def test_kaggle_input_folder_one_level_down(phantom_dir, tmp_path):
    (tmp_path / "isic-2024-challenge").symlink_to(phantom_dir, target_is_directory=True)
    assert detect_format(tmp_path) == ("isic2024", tmp_path / "isic-2024-challenge")
    with pytest.warns(LabelLeakWarning):
        assert len(load_isic(tmp_path)) == 400

# --- clear errors -----------------------------------------------------------------------------------

def test_missing_folder_file_and_columns(tmp_path):
    with pytest.raises(DermlabDataError, match="no ISIC layout found"): load_isic(tmp_path)
    with pytest.raises(DermlabDataError, match="folder not found"): load_isic(tmp_path / "nope")
    (tmp_path / "train-metadata.csv").write_text("isic_id,target\nISIC_1,0\n")
    with pytest.raises(DermlabDataError, match=r"train-metadata.csv: required columns missing: \['patient_id'"): load_isic(tmp_path)
    (tmp_path / "train-metadata.csv").write_text("")
    with pytest.raises(DermlabDataError, match="train-metadata.csv: the file is empty"): load_isic(tmp_path)

def test_ids_absent_from_the_hdf5_are_named(phantom_dir, tmp_path):
    table = pd.read_csv(phantom_dir / "train-metadata.csv")
    table.loc[3, "isic_id"] = "ISIC_9999999"
    table.to_csv(tmp_path / "train-metadata.csv", index=False)
    (tmp_path / "train-image.hdf5").symlink_to(phantom_dir / "train-image.hdf5")
    with pytest.warns(LabelLeakWarning), pytest.raises(DermlabDataError, match=r"train-image.hdf5: 1 ids of the table have no image, e.g. \['ISIC_9999999'\]"):
        load_isic(tmp_path)
    with pytest.warns(UserWarning, match="ISIC_9999999"):
        assert len(load_isic(tmp_path, missing_images="drop")) == 399

def test_unknown_site_and_category_values_are_named(phantom_dir, tmp_path):
    table = pd.read_csv(phantom_dir / "train-metadata.csv")
    table.loc[0, "anatom_site_general"] = "armpit"
    table.to_csv(tmp_path / "train-metadata.csv", index=False)
    (tmp_path / "train-image.hdf5").symlink_to(phantom_dir / "train-image.hdf5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelLeakWarning)
        with pytest.raises(DermlabDataError, match="train-metadata.csv: column 'anatom_site_general' has unknown site names \\['armpit'\\]"):
            load_isic(tmp_path)
        data = load_isic(phantom_dir)
    encoder = TabularEncoder().fit(data.table[data.table.sex == "female"])
    with pytest.raises(DermlabDataError, match="column 'sex' has values not seen .*'male'"):
        encoder.transform(data.table)

def test_corrupt_images_are_skipped_and_counted(tmp_path, phantom_dir):
    with h5py.File(phantom_dir / "train-image.hdf5") as handle:
        good = handle[next(iter(handle))][()]
    with h5py.File(tmp_path / "odd.hdf5", "w") as handle:
        for name, value in {"a": good, "b": good[:100], "c": b"<html>not found</html>", "d": good}.items(): handle[name] = np.bytes_(value)
    from dermlab.data import IsicData
    data = IsicData(pd.DataFrame({"image_id": list("abcd"), "target": [0, 1, 0, 1]}), Hdf5Images(tmp_path / "odd.hdf5"), tmp_path)
    with pytest.warns(UserWarning, match="skipped 2 unreadable images"):
        seen = np.concatenate([b.numpy() for b in make_image_dataset(data, outputs=("index",), shuffle=False)])
    assert sorted(seen) == [0, 3] and set(data.images.skipped) == {"b", "c"}

# --- encoder, splits, pipeline ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom(phantom_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelLeakWarning)
        return load_isic(phantom_dir)

def test_encoder_roundtrip_and_training_only_statistics(phantom, tmp_path):
    split = split_by_patient(phantom.table, seed=0)
    train = phantom.table[split == "train"]
    encoder = TabularEncoder().fit(train)
    assert encoder.statistics["age"]["mean"] == pytest.approx(train.age.fillna(train.age.median()).mean())
    reloaded = TabularEncoder.load(encoder.save(tmp_path / "encoder.json"))
    assert np.array_equal(reloaded.transform(phantom.table), encoder.transform(phantom.table))
    assert "pickle" not in (tmp_path / "encoder.json").read_text() and (tmp_path / "encoder.json").read_text().startswith("{")

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_patient_crosses_splits(phantom, seed):
    split = split_by_patient(phantom.table, seed=seed)
    assert_no_group_leak(phantom.table, split)
    patients = {name: set(phantom.table.patient_id[split == name]) for name in ("train", "valid", "test")}
    assert not (patients["train"] & patients["valid"] or patients["train"] & patients["test"] or patients["valid"] & patients["test"])
    assert phantom.table.target[split == "test"].sum() > 0 and 0.5 < (split == "train").mean() < 0.85

def test_hospital_split_and_leak_detection(phantom):
    split = split_by_patient(phantom.table, group="attribution", seed=0)
    assert_no_group_leak(phantom.table, split, group="attribution")
    broken = split.copy()
    first_patient_rows = phantom.table.index[phantom.table.patient_id == phantom.table.patient_id[0]]
    broken[first_patient_rows[0]] = "test" if broken[first_patient_rows[1]] != "test" else "train"
    with pytest.raises(DermlabDataError, match="cross splits"): assert_no_group_leak(phantom.table, broken)

def test_pipeline_outputs_and_epochs(phantom):
    encoder = TabularEncoder().fit(phantom.table)
    conditions, images, targets = next(iter(make_image_dataset(phantom, encoder, outputs=("conditions", "image", "target"), seed=0)))
    assert conditions.shape == (16, len(encoder.feature_names)) and images.shape == (16, 64, 64, 3) and targets.shape == (16,)
    assert -1 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1
    epoch = lambda seed: np.concatenate([b.numpy() for b in make_image_dataset(phantom, outputs=("index",), seed=seed)])
    one, two = epoch(0), epoch(0)
    assert sorted(one) == list(range(len(phantom))) and np.array_equal(one, two) and not np.array_equal(one, epoch(1))
    with pytest.raises(DermlabDataError, match="needs a fitted TabularEncoder"): make_image_dataset(phantom)

def test_balanced_batches_and_cache(phantom, tmp_path):
    targets = np.concatenate([t.numpy() for t in make_image_dataset(phantom, outputs=("target",), balance_classes=True, batch_size=50)])
    assert len(targets) == len(phantom) and 0.4 < targets.mean() < 0.6  # the table has 10% malignant
    cached = make_image_dataset(phantom, outputs=("index", "image"), cache=tmp_path / "tiles", shuffle=False, batch_size=100)
    first, second = ([np.concatenate([b[k].numpy() for b in cached]) for k in (0, 1)] for _ in range(2))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert any(p.name.startswith("tiles") for p in tmp_path.iterdir())
    shuffled = make_image_dataset(phantom, outputs=("index",), cache=True, batch_size=16, seed=1)  # 400 rows: 2 blocks
    epochs = [np.concatenate([b.numpy() for b in shuffled]) for _ in range(3)]
    assert all(sorted(e) == list(range(len(phantom))) for e in epochs)  # every row exactly once per epoch
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])  # a new order every epoch

def test_phantom_ita_matches_the_truth(phantom, phantom_dir):
    truth = pd.read_csv(phantom_dir / "phantom-truth.csv").set_index("isic_id").loc[phantom.table.image_id]
    assert np.corrcoef(phantom.table.ita, truth.skin_ita)[0, 1] > 0.98
    assert phantom.table.skin_tone_source.str.endswith("groups: Chardon's ITA categories").all()  # the phantom is calibrated for them
    dark = phantom.table.skin_tone.isin(["brown", "dark"])
    assert 0 < dark.mean() < 0.4  # skewed light, with some darker patients

FIRST_LOAD = """
import os, sys, warnings
import tensorflow  # as every notebook does, before dermlab
warnings.simplefilter("ignore")
from dermlab.data import load_isic
data = load_isic(sys.argv[1])
print(len(data), int(data.table.ita.notna().sum()))
"""

def test_a_first_load_of_ham10000_after_tensorflow_never_crashes(realdata, tmp_path):
    "10 fresh processes, two at a time (a busy machine), each with a fresh copy and an empty estimate cache, TensorFlow imported first."
    import os, shutil, subprocess, sys
    def start(i):
        copy = shutil.copytree(realdata / "ham10000_sample", tmp_path / f"copy{i}" / "ham10000_sample")
        env = {**os.environ, "DERMLAB_CACHE": str(tmp_path / f"cache{i}"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        return subprocess.Popen([sys.executable, "-c", FIRST_LOAD, str(copy)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = []
    for pair in range(5):
        running = [start(2 * pair), start(2 * pair + 1)]
        results += [(p.wait(timeout=300), *p.communicate()) for p in running]
    failures = [err.strip().splitlines()[-1] for code, _, err in results if code != 0]
    assert not failures, f"{len(failures)} of 10 first loads failed: {failures[:3]}"
    assert all(out.split()[0] == "70" and int(out.split()[1]) > 50 for _, out, _ in results)  # every image estimated, most trusted

# --- tables edited the way people edit them ---------------------------------------------------------

def edited_rows(realdata, tmp_path, edit=None, **to_csv) -> "Path":
    "A copy of the real ISIC 2024 training rows whose table is edited by `edit` and written with `to_csv` options."
    import shutil
    folder = shutil.copytree(realdata / "isic2024_train_rows", tmp_path / "rows")
    table = pd.read_csv(folder / "train-metadata.csv")
    (edit(table) if edit else table).to_csv(folder / "train-metadata.csv", index=False, **to_csv)
    return folder

def load_quietly(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelLeakWarning)
        return load_isic(folder)

def second_row(column, value):
    return lambda table: table.assign(**{column: table[column].astype(object).where(table.index != 1, value)})

def test_a_label_that_is_not_0_or_1_is_an_error_naming_file_column_and_id(realdata, tmp_path):
    folder = edited_rows(realdata, tmp_path, second_row("target", "yes"))
    second = pd.read_csv(folder / "train-metadata.csv").isic_id[1]
    with pytest.raises(DermlabDataError, match=rf"train-metadata.csv: column 'target': labels that are not 0 or 1 in 1 row \(e.g. \['yes'\]; ids \['{second}'\]\)"):
        load_quietly(folder)

def test_a_blank_label_is_a_warning_that_counts_and_names_the_rows(realdata, tmp_path):
    from dermlab.data import UnreadableValueWarning
    folder = edited_rows(realdata, tmp_path, second_row("target", None))
    second = pd.read_csv(folder / "train-metadata.csv").isic_id[1]
    with pytest.warns(UnreadableValueWarning, match=rf"column 'target': no label in 1 row \(ids \['{second}'\]\): these images load as unlabelled"):
        data = load_quietly(folder)
    assert data.table.target.isna().tolist() == [False, True, False, False, False]

@pytest.mark.parametrize("column, value, message", [
    ("age_approx", "forty", r"column 'age_approx': text that is no number in 1 row \(e.g. \['forty'\]"),
    ("age_approx", 200, r"column 'age_approx': values outside 0 to 120 in 1 row"),
    ("sex", "X", r"column 'sex': values that are not female or male in 1 row \(e.g. \['X'\]"),
    ("clin_size_long_diam_mm", "3 mm", r"column 'clin_size_long_diam_mm': text that is no number in 1 row"),
])
def test_an_unreadable_value_loads_as_missing_with_a_warning_naming_it(realdata, tmp_path, column, value, message):
    from dermlab.data import UnreadableValueWarning
    folder = edited_rows(realdata, tmp_path, second_row(column, value))
    with pytest.warns(UnreadableValueWarning, match=message):
        data = load_quietly(folder)
    canonical = {"age_approx": "age", "sex": "sex", "clin_size_long_diam_mm": "diameter_mm"}[column]
    assert data.table[canonical].isna().tolist() == [False, True, False, False, False]

def test_spellings_of_missing_load_as_missing_without_a_word(realdata, tmp_path):
    folder = edited_rows(realdata, tmp_path, lambda t: t.assign(sex=["unknown", "F", "", "male", "M"], age_approx=["n/a", 40, "?", 50, 60]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning but the leak warning fails the test
        warnings.simplefilter("ignore", LabelLeakWarning)
        data = load_isic(folder)
    assert data.table.sex.astype(object).where(data.table.sex.notna(), None).tolist() == [None, "female", None, "male", "male"]
    assert data.table.age.isna().tolist() == [True, False, True, False, False]

def test_an_image_without_a_patient_is_an_error(realdata, tmp_path):
    folder = edited_rows(realdata, tmp_path, second_row("patient_id", None))
    with pytest.raises(DermlabDataError, match=r"column 'patient_id': no patient in 1 row"):
        load_quietly(folder)

@pytest.mark.parametrize("options", [dict(sep=";", decimal=","), dict(sep=";"), dict(sep="\t"), dict(encoding="utf-8-sig")])
def test_a_table_saved_by_a_spreadsheet_reads_as_the_original(realdata, tmp_path, options):
    "A European spreadsheet (';' between fields, decimal commas), tabs, and Excel's 'CSV UTF-8' (a byte-order mark)."
    original = load_quietly(realdata / "isic2024_train_rows").table
    saved = load_quietly(edited_rows(realdata, tmp_path, **options)).table
    assert saved.ita.notna().all() and saved.diameter_mm.notna().all()
    pd.testing.assert_frame_equal(saved.drop(columns=["licence"]), original.drop(columns=["licence"]), check_exact=False)

def test_a_table_that_is_not_one_is_refused_in_one_line(tmp_path):
    from dermlab.data import read_csv_checked
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("isic_id;target\nA;1\nB;0;7;8\n")
    with pytest.raises(DermlabDataError, match=r"ragged.csv: not a table with ';' between fields: .*line 3") as error:
        read_csv_checked(ragged, ["isic_id"])
    assert "\n" not in str(error.value)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("isic_id,site\nA,t\xeate\n".encode("latin-1"))
    with pytest.raises(DermlabDataError, match=r"latin.csv: not UTF-8 text"):
        read_csv_checked(latin, ["isic_id"])

def test_a_ham10000_code_it_does_not_know_is_an_error_and_a_blank_one_no_label(realdata, tmp_path):
    import shutil
    from dermlab.data import UnreadableValueWarning
    folder = shutil.copytree(realdata / "ham10000_sample", tmp_path / "ham")
    table = pd.read_csv(folder / "HAM10000_metadata.csv")
    table.assign(dx=table.dx.where(table.index != 0, "melanoma")).to_csv(folder / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DermlabDataError, match=rf"column 'dx': codes that are not HAM10000's .* in 1 row \(e.g. \['melanoma'\]; ids \['{table.image_id[0]}'\]\)"):
        load_isic(folder, skin_tone=False)
    table.assign(dx=table.dx.where(table.index != 0, None)).to_csv(folder / "HAM10000_metadata.csv", index=False)
    with pytest.warns(UnreadableValueWarning, match=rf"column 'dx': no label in 1 row \(ids \['{table.image_id[0]}'\]\)"):
        data = load_isic(folder, skin_tone=False)
    assert data.table.target.isna().sum() == 1 and data.table.target.sum() == 30 - (table.dx[0] in ["mel", "bcc", "akiec"])

def test_a_resumed_stream_gives_the_batches_an_unbroken_one_would_have_given(phantom_dir):
    "resume_at=k: the repeated stream starts at batch k, in the order of that pass, without reading the skipped images."
    data = load_quietly(phantom_dir)
    def indices(dataset, n): return [batch.numpy().tolist() for batch in dataset.repeat().take(n)]
    stream = lambda **options: make_image_dataset(data, outputs=("index",), image_size=16, batch_size=64, drop_remainder=True, seed=3, **options)
    unbroken = indices(stream(), 14)  # 400 tiles: 6 batches a pass, so 14 batches span three passes
    assert unbroken[0] != unbroken[6]  # each pass has its own order
    for k in (1, 6, 9):
        assert indices(stream(resume_at=k), 14 - k) == unbroken[k:], k
    with pytest.raises(DermlabDataError, match="resume_at needs whole batches"):
        make_image_dataset(data, outputs=("index",), balance_classes=True, drop_remainder=True, resume_at=3)
