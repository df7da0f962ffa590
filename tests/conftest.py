"Shared fixtures: the real sample files beside the project, and small phantom sets."
import os
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"

@pytest.fixture(scope="session")
def realdata() -> Path:
    "The real sample files (../shared/realdata): required in CI, skipped with a reason elsewhere."
    if REALDATA.is_dir(): return REALDATA
    if os.environ.get("CI"): pytest.fail(f"CI must have the real sample files at {REALDATA}")
    pytest.skip(f"real sample files not found at {REALDATA} (they sit beside the project in CI)")

@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    "A small phantom set with the planted bias, rendered once per test session."
    from dermlab.phantom import make_phantom_isic
    return make_phantom_isic(tmp_path_factory.mktemp("phantom") / "set", n_images=400, n_patients=60, positive_rate=0.1,
                             seed=11, subgroup_effect="low_contrast_dark_skin", jpeg_folder=True)

@pytest.fixture(scope="session", autouse=True)
def fresh_cache(tmp_path_factory):
    "Every test session starts with an empty dermlab cache (pixel skin estimates), so no result depends on an earlier run."
    os.environ["DERMLAB_CACHE"] = str(tmp_path_factory.mktemp("dermlab-cache"))
