#!/usr/bin/env python3
"""The Python package's overhead against the C++ API on the same work: encrypt 8 rows, run
them, decrypt (tree_breast_cancer, keys made beforehand). One iteration through Concrete
ML's deployment classes (veil.deployment) alternates with one iteration of the same calls made
by C++ alone (veil._veil._time_cpp_round_trip: veil::Client / veil::Server, no Python between
them), so that both see the same machine; the overhead is the median of the pairs' ratios.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [PAIRS]
"""

import os
import statistics
import sys
import tempfile
import time

import numpy as np

import veil
from veil import _veil
from veil.deployment import FHEModelClient, FHEModelServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def features(file, rows):
    a = np.loadtxt(os.path.join(FIXTURES, "data", file), delimiter=",", skiprows=1, ndmin=2)
    return a[:rows, :30]


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory() as d:
        model = veil.compile(os.path.join(FIXTURES, "models", "tree_breast_cancer.json"),
                             features("breast_cancer_calib.csv", 1000))
        model.save(d, overwrite=True)
        client = FHEModelClient(d, show_progress=False)
        keys = client.get_serialized_evaluation_keys()
        server = FHEModelServer(d)
        x = features("breast_cancer_test.csv", 8)

        def python_ms():
            t0 = time.perf_counter()
            client.deserialize_decrypt_dequantize(server.run(client.quantize_encrypt_serialize(x), keys))
            return (time.perf_counter() - t0) * 1000

        python_ms()  # warm-up, and the server's key cache
        cpp_args = (client._client, server._server, server._keys(keys), x)
        cpp, py = [], []
        for i in range(pairs):
            if i % 2 == 0:  # alternate which goes first
                cpp.append(_veil._time_cpp_round_trip(*cpp_args))
                py.append(python_ms())
            else:
                py.append(python_ms())
                cpp.append(_veil._time_cpp_round_trip(*cpp_args))
        ratios = sorted(b / a for a, b in zip(cpp, py))
        print("pairs %d: C++ API median %.1f ms [%.1f-%.1f], Python median %.1f ms [%.1f-%.1f]"
              % (pairs, statistics.median(cpp), min(cpp), max(cpp), statistics.median(py), min(py), max(py)))
        q = len(ratios) // 4
        print("overhead %+.2f %% (median of the pairs' ratios; middle half %+.2f to %+.2f %%)"
              % ((statistics.median(ratios) - 1) * 100, (ratios[q] - 1) * 100, (ratios[-q - 1] - 1) * 100))


if __name__ == "__main__":
    main()
