#!/usr/bin/env bash
# Reliability and security checks of the compiled core, after the test suite:
#   1. C unit tests of the platform layer and of the frame protocol under
#      ASan+UBSan, then under TSan
#   2. libFuzzer on header validation and attach, and on the frame-store
#      layout, each for a bounded time
#   3. valgrind memcheck of a multi-process scenario through Python
#   4. the crash, stress and full-/dev/shm tests again, reporting their numbers
# Runs from the repository root, as root, in the activated test venv.
# SHMIMAGE_SOAK=N scales counts and durations (default 1: a few minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."

soak=${SHMIMAGE_SOAK:-1}
fuzz_seconds=$(python3 -c "print(max(1, int(60 * float('$soak'))))")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '\n== %s\n' "$*"; }

install_tools() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends \
        clang gcc libc6-dev valgrind strace util-linux >/dev/null
    # libFuzzer and the sanitizer runtimes live in a versioned package on Debian.
    if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
        clang -x c -fsanitize=fuzzer - -o "$work/probe" 2>/dev/null; then
        major=$(clang -dumpversion | cut -d. -f1)
        apt-get install -y -qq --no-install-recommends "libclang-rt-$major-dev" >/dev/null
    fi
}

c_tests() {
    local src=(tests/c/test_platform.c src/shmcore/shm_posix.c)
    src+=(src/shmcore/admission.c)
    local flags=(-std=gnu11 -g -O1 -Wall -Wextra -Isrc/shmcore -fno-omit-frame-pointer)
    say "C platform tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    clang "${flags[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
        "${src[@]}" -o "$work/test_platform_asan" -lpthread
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$work/test_platform_asan"
    say "C platform tests under ThreadSanitizer (threads of one process: what it can see)"
    clang "${flags[@]}" -fsanitize=thread "${src[@]}" -o "$work/test_platform_tsan" -lpthread
    # Without ASLR: TSan's fixed shadow layout clashes with high mmap entropy.
    TSAN_OPTIONS=halt_on_error=1 setarch "$(uname -m)" -R "$work/test_platform_tsan" threads
    local frames=(tests/c/test_frames.c src/shmcore/frames.c src/shmcore/shm_posix.c src/shmcore/admission.c)
    say "C frame protocol tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    clang "${flags[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
        "${frames[@]}" -o "$work/test_frames_asan" -lpthread
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$work/test_frames_asan"
    say "C frame protocol tests under ThreadSanitizer (writer and readers as threads, one mapping)"
    clang "${flags[@]}" -fsanitize=thread "${frames[@]}" -o "$work/test_frames_tsan" -lpthread
    TSAN_OPTIONS=halt_on_error=1 setarch "$(uname -m)" -R "$work/test_frames_tsan" threads
    # macOS's paths: pins and registry entries are record locks of the process
    # there, kept apart per handle by the layer. Once with Linux's futex
    # standing in for __ulock_wait, once with no kernel wait on a word.
    for variant in "-DSHMP_FORCE_PORTABLE" "-U__linux__ -U__gnu_linux__ -Ulinux"; do
        say "C frame protocol tests, portable build ($variant), under ASan+UBSan, then TSan"
        # shellcheck disable=SC2086 # the variant is several flags
        clang "${flags[@]}" $variant -fsanitize=address,undefined -fno-sanitize-recover=all \
            "${frames[@]}" -o "$work/test_frames_portable_asan" -lpthread
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
            "$work/test_frames_portable_asan"
        # shellcheck disable=SC2086
        clang "${flags[@]}" $variant -fsanitize=thread "${frames[@]}" \
            -o "$work/test_frames_portable_tsan" -lpthread
        TSAN_OPTIONS=halt_on_error=1 setarch "$(uname -m)" -R "$work/test_frames_portable_tsan" threads
    done
    say "C key watch tests (inotify) under AddressSanitizer + UndefinedBehaviorSanitizer"
    clang "${flags[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
        tests/c/test_keywatch.c src/shmcore/keywatch.c "${frames[@]:1}" \
        -o "$work/test_keywatch_asan" -lpthread
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$work/test_keywatch_asan"
    say "C memory admission tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    clang "${flags[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
        tests/c/test_admission.c src/shmcore/shm_posix.c src/shmcore/admission.c \
        -o "$work/test_admission_asan" -lpthread
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$work/test_admission_asan"
}

fuzz() {
    say "libFuzzer: segment header validation and attach, ${fuzz_seconds} s"
    clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/shmcore \
        tests/fuzz/fuzz_header.c src/shmcore/admission.c -o "$work/fuzz_header" -lpthread
    mkdir -p "$work/corpus"
    "$work/fuzz_header" -max_total_time="$fuzz_seconds" -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus" tests/fuzz/corpus 2>"$work/fuzz.log" || {
        tail -n 60 "$work/fuzz.log"
        return 1
    }
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' "$work/fuzz.log"
    say "libFuzzer: frame-store layout (head, registry, slot table, slots), ${fuzz_seconds} s"
    clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/shmcore tests/fuzz/fuzz_frames.c \
        src/shmcore/frames.c src/shmcore/shm_posix.c src/shmcore/admission.c -o "$work/fuzz_frames" -lpthread
    mkdir -p "$work/corpus_frames"
    "$work/fuzz_frames" -max_total_time="$fuzz_seconds" -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus_frames" tests/fuzz/corpus_frames \
        2>"$work/fuzz_frames.log" || {
        tail -n 60 "$work/fuzz_frames.log"
        return 1
    }
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' \
        "$work/fuzz_frames.log"
}

memcheck() {
    say "valgrind memcheck: writer, forked reader, a locker killed holding the lock"
    local log="$work/valgrind.log"
    PYTHONMALLOC=malloc valgrind -q --tool=memcheck --trace-children=yes --error-exitcode=99 \
        --suppressions=tests/valgrind/python.supp --leak-check=full \
        --show-leak-kinds=definite --errors-for-leak-kinds=none --num-callers=40 \
        --log-file="$log" python tests/valgrind/scenario.py || {
        cat "$log"
        return 1
    }
    # Leaks of the interpreter and numpy are theirs; a leak through our code is ours.
    if grep -A40 'definitely lost' "$log" | grep -qE '_shmcore|shm_posix|_frames'; then
        grep -B2 -A40 'definitely lost' "$log"
        return 1
    fi
    echo "memcheck clean: $(grep -c 'definitely lost' "$log" || true) interpreter leak record(s)"
}

numbers() {
    say "crash, stress and full /dev/shm tests (soak x$soak), with their numbers"
    local report="$work/report.jsonl"
    SHMIMAGE_SOAK=$soak SHMIMAGE_RELIABILITY_REPORT="$report" python -m pytest -q -p no:cacheprovider \
        tests/test_reliability_crash.py tests/test_reliability_setup.py \
        tests/test_reliability_stress.py tests/test_reliability_full_shm.py
    cat "$report"
}

soak() {
    local seconds
    seconds=$(python3 -c "print(max(10, int(120 * float('$soak'))))")
    say "soak: mixed workload under SIGKILL and SIGSTOP for ${seconds} s"
    nice python -m tests.soak --seconds "$seconds" --json "$work/soak.json"
}

install_tools
c_tests
fuzz
memcheck
numbers
soak
say "reliability checks passed"
