/* The floor under every wake-up ping-pong that sleeps in the kernel: two
 * processes, one shared word each way, FUTEX_WAKE and FUTEX_WAIT, no Python.
 * Linux only.
 *
 *     cc -O2 -o futex_floor benchmarks/futex_floor.c
 *     ./futex_floor [trips] [writer-cpu reader-cpu]    # e.g. 200000 0 1, or 0 0
 *
 * Prints the mean microseconds of a round trip (ping, then pong). A posix_ipc
 * semaphore ping-pong is this plus two Python calls a side; shmimage's
 * publish -> wait() is this plus what a publish and a wait do besides. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Sleeps until *word differs from `seen`; returns the new value. */
static unsigned await_change(_Atomic unsigned *word, unsigned seen) {
    unsigned now;
    while ((now = atomic_load(word)) == seen)
        syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
    return now;
}

static void bump(_Atomic unsigned *word) {
    atomic_fetch_add(word, 1);
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int main(int argc, char **argv) {
    long trips = argc > 1 ? atol(argv[1]) : 200000;
    int wcpu = argc > 3 ? atoi(argv[2]) : -1, rcpu = argc > 3 ? atoi(argv[3]) : -1;
    _Atomic unsigned *words = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (words == MAP_FAILED) return 1;
    _Atomic unsigned *ping = &words[0], *pong = &words[16];
    pid_t child = fork();
    if (child == 0) {
        pin(rcpu);
        unsigned seen = 0;
        for (long i = 0; i < trips; i++) {
            seen = await_change(ping, seen);
            bump(pong);
        }
        _exit(0);
    }
    pin(wcpu);
    struct timespec a, b;
    unsigned seen = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < trips; i++) {
        bump(ping);
        seen = await_change(pong, seen);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    waitpid(child, NULL, 0);
    double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / (double)trips;
    printf("futex ping-pong: %.2f us per round trip over %ld trips\n", us, trips);
    return 0;
}
