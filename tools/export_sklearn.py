#!/usr/bin/env python3
"""Exports a pickled, fitted scikit-learn estimator for `veil compile` (Python users call
veil.compile on the estimator instead): Veil's scikit-learn JSON format, or ONNX for an
MLPClassifier / MLPRegressor (OUT must then end in .onnx).

    tools/export_sklearn.py MODEL.pkl OUT.json
    tools/export_sklearn.py MLP.pkl OUT.onnx

The exporters are python/veil/sklearn_export.py and sklearn_mlp.py, loaded here by path so
that this tool runs without Veil's compiled extension.
"""

import importlib.util
import os
import pickle
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = os.path.join(_HERE, "..", "python", "veil")


def _load(name):
    # As submodules of a stand-in package, so that sklearn_mlp's relative import resolves.
    spec = importlib.util.spec_from_file_location("veil_tools." + name, os.path.join(_PACKAGE, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_stand_in = importlib.util.module_from_spec(importlib.util.spec_from_loader("veil_tools", loader=None))
_stand_in.__path__ = [_PACKAGE]
sys.modules["veil_tools"] = _stand_in
sklearn_export = _load("sklearn_export")
sklearn_mlp = _load("sklearn_mlp")

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
        if sklearn_mlp.is_mlp(estimator):
            if not argv[2].endswith(".onnx"):
                raise ExportError("an MLP exports to ONNX: name the output file *.onnx")
            with open(argv[2], "wb") as f:
                f.write(sklearn_mlp.to_onnx_bytes(estimator))
        else:
            export(estimator, argv[2])
    except ExportError as e:
        print("export_sklearn.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
