"""Shared set-up of the Python package's tests: paths, fixture data, the veil binary."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

SOURCE = os.environ.get("VEIL_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("VEIL_BUILD_DIR", os.path.join(SOURCE, "build"))
FIXTURES = os.path.join(SOURCE, "tests", "fixtures")
VEIL = os.path.join(BUILD, "veil")
MANIFEST = json.load(open(os.path.join(FIXTURES, "manifest.json")))["models"]
N_FEATURES = {"breast_cancer": 30, "iris": 4, "wine": 13, "digits": 64, "diabetes": 10}


def dataset(name, split):
    """(features, target) of a fixture split; the CSV's last column is the target."""
    a = np.loadtxt(os.path.join(FIXTURES, "data", "%s_%s.csv" % (name, split)), delimiter=",", skiprows=1, ndmin=2)
    n = N_FEATURES[name]
    return a[:, :n], (a[:, n] if a.shape[1] > n else None)


def train_test(name):
    """scikit-learn's bundled dataset `name` (no download), split 75/25 with a fixed seed:
    X_train, X_test, y_train, y_test."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    X, y = getattr(datasets, "load_" + name)(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=7)


def veil_cli(*args):
    """Runs the veil binary; returns its stdout; fails the test with its stderr."""
    r = subprocess.run([VEIL] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("veil %s failed: %s" % (" ".join(map(str, args)), r.stderr))
    return r.stdout


def write_csv(path, rows):
    rows = np.asarray(rows).reshape(len(rows), -1)
    with open(path, "w") as f:
        f.write(",".join("f%d" % i for i in range(rows.shape[1])) + "\n")
        for r in rows:
            f.write(",".join(repr(float(v)) for v in r) + "\n")


def read_predictions(path):
    """veil simulate's CSV: prediction then scores."""
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


@pytest.fixture
def workdir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
