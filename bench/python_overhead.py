#!/usr/bin/env python3
"""The Python package's overhead against the C++ API on the same work: encrypt 8 rows, run
them, decrypt (tree_breast_cancer, keys made beforehand), through Concrete ML's deployment
classes (veil.deployment) against veil::Client / veil::Server. Alternates veil_bench's
deploy/api/tree_breast_cancer/round_trip/rows:8 with the same loop through `veil` in Python,
ROUNDS times, and prints the medians and the overhead.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [ROUNDS]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import veil
from veil.deployment import FHEModelClient, FHEModelServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(ROOT, "build", "bench", "veil_bench")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
NAME = "deploy/api/tree_breast_cancer/round_trip/rows:8"


def features(file, rows):
    a = np.loadtxt(os.path.join(FIXTURES, "data", file), delimiter=",", skiprows=1, ndmin=2)
    return a[:rows, :30]


def cpp_ms():
    out = subprocess.run([BENCH, "--benchmark_filter=^" + NAME + "/", "--benchmark_format=json",
                          "--benchmark_repetitions=5", "--benchmark_report_aggregates_only=true"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            return b["real_time"]
    raise RuntimeError("no median in veil_bench's output")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as d:
        model = veil.compile(os.path.join(FIXTURES, "models", "tree_breast_cancer.json"),
                             features("breast_cancer_calib.csv", 1000))
        model.save(d, overwrite=True)
        client = FHEModelClient(d, show_progress=False)
        keys = client.get_serialized_evaluation_keys()
        server = FHEModelServer(d)
        x = features("breast_cancer_test.csv", 8)

        def python_ms(repetitions=5):
            times = []
            for _ in range(repetitions):
                t0 = time.perf_counter()
                client.deserialize_decrypt_dequantize(server.run(client.quantize_encrypt_serialize(x), keys))
                times.append((time.perf_counter() - t0) * 1000)
            return statistics.median(times)

        python_ms(1)  # warm-up
        cpp, py = [], []
        for _ in range(rounds):
            cpp.append(cpp_ms())
            py.append(python_ms())
        c, p = statistics.median(cpp), statistics.median(py)
        print("C++ API  %.1f ms (round medians %s)" % (c, ", ".join("%.1f" % v for v in cpp)))
        print("Python   %.1f ms (round medians %s)" % (p, ", ".join("%.1f" % v for v in py)))
        print("overhead %+.2f %%" % ((p / c - 1) * 100))


if __name__ == "__main__":
    main()
