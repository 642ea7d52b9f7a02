"""A copy of the package whose _shmcore is built for macOS's portable paths
(SHMP_FORCE_PORTABLE: segments in the core's own directory, pins and
registry entries as the process's record locks), as far as they run on
Linux. Used by tests/test_memory_portable.py, and by CI to run the pin and
stream tests on that core:

    PYTHONPATH=$(python tests/portable_core.py OUT) python -m pytest tests/...
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAIT = 300

BUILD = """
import sys
from Cython.Build import cythonize
from setuptools import Extension, setup
out = sys.argv[1]
ext = Extension("shmimage._shmcore",
                sources=["src/shmcore/_shmcore.pyx", "src/shmcore/shm_posix.c",
                         "src/shmcore/admission.c", "src/shmcore/frames.c",
                         "src/shmcore/keywatch.c"],
                include_dirs=["src/shmcore"], libraries=["pthread"],
                define_macros=[("SHMP_FORCE_PORTABLE", None)],
                extra_compile_args=["-O1", "-std=gnu11"])
setup(name="portable-core", ext_modules=cythonize([ext], build_dir=out + "/c", quiet=True),
      script_args=["build_ext", "--build-lib", out, "--build-temp", out + "/tmp"])
"""


def build_portable_package(out: Path) -> Path:
    """Build the portable core under `out`; the directory to put on sys.path
    (it holds a `shmimage` package with that core). RuntimeError when the
    build fails, with the compiler's last words."""
    built = subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=ROOT, check=False,
                           capture_output=True, text=True, timeout=WAIT)
    if built.returncode != 0:
        raise RuntimeError(built.stderr[-3000:])
    package = out / "pkg" / "shmimage"
    shutil.copytree(ROOT / "python" / "shmimage", package,
                    ignore=shutil.ignore_patterns("_shmcore.*.so", "_shmcore.*.pyd",
                                                  "__pycache__"))
    (so,) = (out / "shmimage").glob("_shmcore*")
    shutil.copy(so, package / so.name)
    return package.parent


if __name__ == "__main__":
    print(build_portable_package(Path(sys.argv[1]).resolve()))
