"""Build the evaluator's C extensions: ``python setup.py build_ext --inplace`` in this folder."""
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# No fused multiply-add contraction, so the IoU arithmetic rounds exactly like NumPy's.
STRICT_FLOATS = [] if sys.platform == "win32" else ["-ffp-contract=off"]

extensions = [
    Extension(
        name,
        [f"{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=STRICT_FLOATS,
    )
    for name in ("box_overlaps", "parse_boxes")
]

setup(name="widerface_evaluate", ext_modules=cythonize(extensions, language_level=3))
