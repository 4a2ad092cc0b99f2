#!/usr/bin/env bash
# `pip install --no-build-isolation --no-index .` into a fresh virtual environment that sees
# Debian's packages (PEP 668 forbids installing into the system Python), then the installed
# package compiles a fixture model and predicts encrypted, from outside the source tree.
# Usage: check_pip_install.sh SOURCE_DIR
set -euo pipefail
src=$1
work=$(mktemp -d)
trap 'rm -rf "$work" "$src/veil.egg-info"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-build-isolation --no-index "$src" >"$work/pip.log" 2>&1 ||
  { cat "$work/pip.log" >&2; echo "FAIL: pip install" >&2; exit 1; }
cd "$work"
"$work/venv/bin/python" - "$src" <<'PY'
import os, sys
import numpy as np
import veil
src = sys.argv[1]
assert veil.__file__.startswith(os.path.dirname(os.path.dirname(sys.executable))), veil.__file__
X = np.loadtxt(os.path.join(src, "tests/fixtures/data/breast_cancer_calib.csv"), delimiter=",", skiprows=1)[:, :30]
model = veil.compile(os.path.join(src, "tests/fixtures/models/logreg_breast_cancer.json"), X)
assert (model.predict(X[:5], fhe="execute") == model.predict(X[:5])).all()
print("pip install: veil %s from %s" % (veil.__version__, veil.__file__))
PY
