#!/usr/bin/env bash
# The test command of the README, and all that CI runs: stops at the first failure.
#   1. nbdev_clean, nbdev_export and the README generation must not change any file
#   2. nbdev_test: the test cells of the notebooks outside the course (index, the runner)
#   3. pytest: the package tests, including the README's main command: a papermill run of every course notebook,
#      every cell (their test cells included), in quick mode on the phantom set
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

snapshot() { find nbs dermlab README.md -type f \( -name '*.ipynb' -o -name '*.py' -o -name '*.md' \) \
               -not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' | sort | xargs md5sum; }

echo "== 1/3 notebooks clean; dermlab/ and README.md in sync with nbs/"
before="$(snapshot)"
nbdev_clean
nbdev_export
jupyter nbconvert --to markdown --stdout nbs/index.ipynb 2>/dev/null > README.md
after="$(snapshot)"
if [ "$before" != "$after" ]; then
  echo "FAILED: these files changed; run 'nbdev_clean && nbdev_export', regenerate README.md"
  echo "        (jupyter nbconvert --to markdown --stdout nbs/index.ipynb > README.md) and commit:"
  diff <(echo "$before") <(echo "$after") | grep '^>' | awk '{print "  " $3}'
  exit 1
fi

echo "== 2/3 notebook tests: nbdev_test (the course notebooks run once, in step 3, through papermill)"
nbdev_test --n_workers 2 --timing --skip_file_re '^[0-9][0-9]_(?!pipeline)'

echo "== 3/3 package tests: pytest"
# -n 2: two workers (pytest-xdist), since much of a course run waits on one core; worksteal: an idle worker takes queued tests,
# so that the two course runs end up side by side. -rs: the reason for every skip; exits 5 (a failure) if no test ran
python -m pytest tests -q -rs --durations=8 -p no:cacheprovider -n 2 --dist worksteal
