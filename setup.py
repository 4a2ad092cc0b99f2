"""Builds the veil Python package with CMake (the extension veil._veil and the pure modules,
assembled by python/CMakeLists.txt) and installs what that build assembled.

    /usr/bin/python3 -m venv --system-site-packages VENV
    VENV/bin/pip install --no-build-isolation --no-index .

VEIL_CMAKE_ARGS adds arguments to the CMake configure step (e.g. -DVEIL_NATIVE=ON).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    with open(os.path.join(HERE, "CMakeLists.txt")) as f:
        return re.search(r"project\(veil VERSION ([0-9.]+)", f.read()).group(1)


class CMakeBuild(build_ext):
    """Configures and builds the `veil_python` target, then copies build/python/veil/."""

    def build_extension(self, ext):
        build_dir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        os.makedirs(build_dir, exist_ok=True)
        configure = ["cmake", "-S", HERE, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", "-DVEIL_BUILD_TESTS=OFF",
                     "-DVEIL_BUILD_BENCH=OFF", "-DPython3_EXECUTABLE=" + sys.executable]
        configure += shlex.split(os.environ.get("VEIL_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "veil_python", "-j", jobs])
        package = os.path.join(build_dir, "python", "veil")
        target = os.path.join(os.path.abspath(self.build_lib), "veil")
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(package):
            shutil.copy2(os.path.join(package, name), os.path.join(target, name))


setup(
    version=version(),
    packages=[],
    ext_modules=[Extension("veil._veil", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
