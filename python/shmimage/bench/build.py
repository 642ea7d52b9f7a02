"""Turns the suite's medians into the table's figures, per SPEC section 5."""
from __future__ import annotations

from .figures import Figure, Target
from .frames import TARGET_SIZE
from .measure import COPY_PEERS, FAN_OUT, MEMCPY, ROUND_TRIPS
from .suite import Results

MIB = 1024 * 1024
QT = "Qt example (QSharedMemory)"


class _Builder:
    def __init__(self, results: Results) -> None:
        self.results = results
        self.seconds = results.seconds
        self.figures: list[Figure] = []

    def why_missing(self, key: str) -> str | None:
        if key in self.results.failures:
            return f"failed: {self.results.failures[key]}"
        if key not in self.seconds:
            return "not measured"
        return None

    def add(self, name: str, size: str | None, key: str, baseline_name: str,
            baseline_key: str, target: Target | None = None, inverse: bool = False,
            needs: str | None = None) -> None:
        reason = self.why_missing(key) or self.why_missing(baseline_key)
        if needs in self.results.skipped:
            reason = f"{needs} {self.results.skipped[needs]}"
        self.figures.append(Figure(
            name=name, size=size, value=self.seconds.get(key), baseline_name=baseline_name,
            baseline=self.seconds.get(baseline_key), target=target, inverse=inverse,
            skipped=reason,
        ))


def build_figures(results: Results, sizes: list[str]) -> list[Figure]:
    builder = _Builder(results)
    for size in sizes:
        _size_figures(builder, size)
    _global_figures(builder)
    return builder.figures


def _target(size: str, op: str, limit: float) -> Target | None:
    return Target(op, limit) if size == TARGET_SIZE else None


def _size_figures(b: _Builder, size: str) -> None:
    def rt(name: str) -> str:
        return f"rt/{name}/{size}"

    read, view, loan = rt("shmimage read()"), rt("shmimage view()"), rt("shmimage loan()+view()")
    memcpy = "numpy.copyto"
    b.add("steady publish (bandwidth vs memcpy)", size, f"publish/{size}", memcpy,
          f"{MEMCPY}publish/{size}", _target(size, ">=", 0.9), inverse=True)
    b.add("publish + read() round trip", size, read, memcpy, MEMCPY + read,
          _target(size, "<=", 2.2))
    _fastest_peer(b, size, read)
    b.add("publish + view() round trip", size, view, memcpy, MEMCPY + view,
          _target(size, "<=", 1.2))
    b.add("loan() + view() round trip", size, loan, memcpy, MEMCPY + loan,
          _target(size, "<=", 0.05))
    b.add(f"fan-out to {FAN_OUT} view() readers", size, f"fanout/{size}",
          "one view() reader", f"fanout1/{size}", _target(size, "<=", 1.5))
    b.add("first publish into a new segment", size, f"first/shmimage/{size}",
          "new mp.shared_memory + copy", f"first/mp/{size}", _target(size, "<=", 0.7))
    b.add("vs Qt example, read() (x faster)", size, read, "Qt QSharedMemory+QDataStream",
          rt(QT), _target(size, ">=", 50), inverse=True, needs="PySide6")
    b.add("vs Qt example, view() (x faster)", size, view, "Qt QSharedMemory+QDataStream",
          rt(QT), _target(size, ">=", 100), inverse=True, needs="PySide6")
    for name, (_, needs) in ROUND_TRIPS.items():
        if not name.startswith("shmimage"):
            b.add(f"baseline round trip: {name}", size, rt(name), memcpy, MEMCPY + rt(name),
                  needs=needs)


def _fastest_peer(b: _Builder, size: str, read: str) -> None:
    measured = {p: b.seconds[f"rt/{p}/{size}"] for p in COPY_PEERS
                if f"rt/{p}/{size}" in b.seconds}
    name, key = "fastest peer", "rt/(no peer measured)"
    if measured:
        name = min(measured, key=measured.__getitem__)
        key = f"rt/{name}/{size}"
    b.add("publish + read() vs fastest peer", size, read, f"{name} round trip", key,
          _target(size, "<=", 1.0))


def _global_figures(b: _Builder) -> None:
    b.add("lock()+unlock() uncontended", None, "lock/shmimage",
          "multiprocessing.Lock", "lock/multiprocessing.Lock", Target("<=", 1.0))
    b.add("wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "posix_ipc semaphores", "wake/posix_ipc", Target("<=", 1.0), needs="posix_ipc")
    b.add("wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "multiprocessing.Pipe", "wake/Pipe", Target("<=", 1.0))
    b.add("wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "pyshmem futex notification", "wake/pyshmem", needs="pyshmem")
    b.figures.append(_rss_figure(b.results))


def _rss_figure(results: Results) -> Figure:
    mem = results.memory
    figure = Figure(name="reader RssAnon added by holding a view()", size=None, value=None,
                    baseline_name="a read() copy", baseline=None, target=Target("<", 1.0),
                    unit="MiB")
    if "procfs" in results.skipped:
        figure.skipped = f"procfs {results.skipped['procfs']}"
    elif "rss" in results.failures:
        figure.skipped = f"failed: {results.failures['rss']}"
    elif "rss_before" not in mem:
        figure.skipped = "not measured"
    else:
        figure.value = (mem["rss_in_view"] - mem["rss_before"]) / MIB
        figure.baseline = (mem["rss_with_copy"] - mem["rss_before"]) / MIB
    return figure
