#!/usr/bin/env python3
"""Exports a pickled, fitted scikit-learn estimator to Veil's scikit-learn JSON format, for
`veil compile` (Python users call veil.compile on the estimator instead).

    tools/export_sklearn.py MODEL.pkl OUT.json

The exporter is python/veil/sklearn_export.py, loaded here by path so that this tool runs
without Veil's compiled extension.
"""

import importlib.util
import os
import pickle
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "veil_sklearn_export", os.path.join(_HERE, "..", "python", "veil", "sklearn_export.py"))
sklearn_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sklearn_export)

ExportError = sklearn_export.ExportError
export = sklearn_export.export
to_dict = sklearn_export.to_dict


def main(argv):
    if len(argv) != 3:
        print("usage: export_sklearn.py MODEL.pkl OUT.json", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        estimator = pickle.load(f)
    try:
        export(estimator, argv[2])
    except ExportError as e:
        print("export_sklearn.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
