"Installing dermlab beside the TensorFlow a student already has must keep that TensorFlow working."
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDENT_PACKAGES = ["pandas", "matplotlib", "scikit-learn", "seaborn", "h5py"]
ENVIRONMENTS = {  # what a student's machine may already hold: the oldest TensorFlow with a known protobuf clash, and the newest
    "tensorflow 2.19 with keras 3.8": ["tensorflow-cpu==2.19.*", "keras==3.8.*"],
    "the newest tensorflow and keras": ["tensorflow-cpu", "keras"],
}
KEPT = ["tensorflow-cpu", "keras"]
RUN_IT = bool(os.environ.get("CI") or os.environ.get("DERMLAB_TEST_INSTALL"))

def _run(*command, **options) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, **options)

def _versions(python: Path) -> dict:
    listed = json.loads(_run(python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check").stdout)
    return {p["name"].lower().replace("_", "-"): p["version"] for p in listed}

def _student_environment(folder: Path, tensorflow: list, wheel: Path) -> dict:
    "A fresh venv with a TensorFlow, then dermlab installed into it as a student would; what happened at each stage."
    _run(sys.executable, "-m", "venv", folder).check_returncode()
    python = folder / "bin" / "python"
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    base = _run(*pip, *tensorflow, *STUDENT_PACKAGES)
    if base.returncode: return {"failed": f"installing {tensorflow}: {base.stderr[-2000:]}"}
    before = _versions(python)
    install = _run(*pip, wheel)
    if install.returncode: return {"failed": f"installing dermlab: {install.stderr[-2000:]}"}
    check = _run(python, "-m", "pip", "check", "--disable-pip-version-check")
    imported = _run(python, "-c", "import tensorflow, keras_cv, dermlab; print(tensorflow.__version__, keras_cv.__version__)",
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"})  # hide TensorFlow's CPU-instruction notice only
    return {"before": before, "after": _versions(python), "check": check, "imported": imported}

@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    "Both environments, built side by side (the pip cache keeps this to a few minutes after the first run)."
    if not RUN_IT: pytest.skip("installs TensorFlow into two fresh environments (minutes): runs in CI, or with DERMLAB_TEST_INSTALL=1")
    wheels = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", wheels, REPO).check_returncode()
    wheel = next(wheels.glob("dermlab-*.whl"))
    with ThreadPoolExecutor(len(ENVIRONMENTS)) as pool:
        futures = {name: pool.submit(_student_environment, tmp_path_factory.mktemp("venv"), packages, wheel)
                   for name, packages in ENVIRONMENTS.items()}
        return {name: future.result() for name, future in futures.items()}

@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_installing_dermlab_keeps_the_students_tensorflow(installed, name):
    result = installed[name]
    assert "failed" not in result, result.get("failed")
    changed = {p: (result["before"].get(p), result["after"].get(p)) for p in KEPT if result["before"].get(p) != result["after"].get(p)}
    assert not changed, f"{name}: dermlab's install replaced {changed}"
    assert result["check"].returncode == 0, f"{name}: pip check: {result['check'].stdout}{result['check'].stderr}"
    imported = result["imported"]
    said = [line for line in imported.stderr.lower().splitlines()  # TensorFlow's own start-up notices (oneDNN's speaks of "round-off errors") aside
            if not line.startswith(("i0000", "warning: all log messages before absl"))]
    assert imported.returncode == 0 and not any("error" in line or "traceback" in line for line in said), \
        f"{name}: importing tensorflow, keras_cv, dermlab printed:\n{imported.stderr[-3000:]}"
    print(f"{name}: tensorflow-cpu {result['after']['tensorflow-cpu']}, keras {result['after']['keras']}, "
          f"protobuf {result['before'].get('protobuf')} -> {result['after'].get('protobuf')}; import: {imported.stdout.strip()}")
