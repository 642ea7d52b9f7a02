"""Build the compiled core: Cython is run here, its C output is never committed."""
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

libraries = []
define_macros = []
if sys.platform.startswith("linux"):
    libraries = ["rt", "pthread"]
elif sys.platform == "win32":
    define_macros = [("WIN32_LEAN_AND_MEAN", None), ("UNICODE", None), ("_UNICODE", None)]

extra_compile_args = [] if sys.platform == "win32" else ["-O2", "-std=gnu11"]

extensions = [
    Extension(
        "shmimage._shmcore",
        sources=[
            "src/shmcore/_shmcore.pyx",
            "src/shmcore/frames.c",
            "src/shmcore/keywatch.c",
            "src/shmcore/shm_posix.c",
            "src/shmcore/shm_win32.c",
            "src/shmcore/admission.c",
        ],
        include_dirs=["src/shmcore"],
        libraries=libraries,
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
    ),
    Extension(
        "shmimage._qtipc",
        sources=["src/shmcore/_qtipc.pyx", "src/shmcore/qt_ipc.c"],
        include_dirs=["src/shmcore"],
        libraries=libraries,
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    ),
)
