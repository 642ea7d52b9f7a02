"""Turns the suite's runs into the report's figures: medians, ratios, intervals."""
from __future__ import annotations

from .bootstrap import ratio_interval
from .figures import Figure
from .measure import COPY_PEERS, FAN_OUT, MEMCPY, ROUND_TRIPS
from .suite import Results

MIB = 1024 * 1024
QT = "Qt example (QSharedMemory)"
MEMCPY_NAME = "numpy.copyto"
QT_NAME = "Qt QSharedMemory+QDataStream"


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

    def add(self, figure_id: str, name: str, size: str | None, key: str, baseline_name: str,
            baseline_key: str, inverse: bool = False, needs: str | None = None) -> None:
        reason = self.why_missing(key) or self.why_missing(baseline_key)
        if needs in self.results.skipped:
            reason = f"{needs} {self.results.skipped[needs]}"
        runs = self.results.samples.get(key, [])
        base_runs = self.results.samples.get(baseline_key, [])
        interval = None
        if reason is None:
            pair = (base_runs, runs) if inverse else (runs, base_runs)
            interval = ratio_interval(*pair)
        self.figures.append(Figure(
            id=figure_id, name=name, size=size, value=self.seconds.get(key),
            baseline_name=baseline_name, baseline=self.seconds.get(baseline_key),
            inverse=inverse, interval=interval, runs=min(len(runs), len(base_runs)),
            skipped=reason,
        ))


def build_figures(results: Results, sizes: list[str]) -> list[Figure]:
    """Every figure of the report, for each of ``sizes`` and then the size-free ones."""
    builder = _Builder(results)
    for size in sizes:
        _size_figures(builder, size)
    _global_figures(builder)
    return builder.figures


def _size_figures(b: _Builder, size: str) -> None:
    def rt(name: str) -> str:
        return f"rt/{name}/{size}"

    read, view, loan = rt("shmimage read()"), rt("shmimage view()"), rt("shmimage loan()+view()")
    b.add("publish/memcpy", "steady publish (bandwidth vs memcpy)", size, f"publish/{size}",
          MEMCPY_NAME, f"{MEMCPY}publish/{size}", inverse=True)
    b.add("read/memcpy", "publish + read() round trip", size, read, MEMCPY_NAME, MEMCPY + read)
    _fastest_peer(b, size, read)
    b.add("view/memcpy", "publish + view() round trip", size, view, MEMCPY_NAME, MEMCPY + view)
    b.add("loan/memcpy", "loan() + view() round trip", size, loan, MEMCPY_NAME, MEMCPY + loan)
    b.add("fanout/one-reader", f"fan-out to {FAN_OUT} view() readers", size, f"fanout/{size}",
          "one view() reader", f"fanout1/{size}")
    b.add("first-publish/mp", "first publish into a new segment", size,
          f"first/shmimage/{size}", "new mp.shared_memory + copy", f"first/mp/{size}")
    b.add("read/qt", "vs Qt example, read() (x faster)", size, read, QT_NAME, rt(QT),
          inverse=True, needs="PySide6")
    b.add("view/qt", "vs Qt example, view() (x faster)", size, view, QT_NAME, rt(QT),
          inverse=True, needs="PySide6")
    for name, (_, needs) in ROUND_TRIPS.items():
        if not name.startswith("shmimage"):
            b.add(f"peer/{name}/memcpy", f"baseline round trip: {name}", size, rt(name),
                  MEMCPY_NAME, MEMCPY + rt(name), needs=needs)


def _fastest_peer(b: _Builder, size: str, read: str) -> None:
    measured = {p: b.seconds[f"rt/{p}/{size}"] for p in COPY_PEERS
                if f"rt/{p}/{size}" in b.seconds}
    name, key = "fastest peer", "rt/(no peer measured)"
    if measured:
        name = min(measured, key=measured.__getitem__)
        key = f"rt/{name}/{size}"
    b.add("read/fastest-peer", "publish + read() vs fastest peer", size, read,
          f"{name} round trip", key)


def _global_figures(b: _Builder) -> None:
    b.add("lock/mp-lock", "lock()+unlock() uncontended", None, "lock/shmimage",
          "multiprocessing.Lock", "lock/multiprocessing.Lock")
    b.add("wake/posix_ipc", "wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "posix_ipc semaphores", "wake/posix_ipc", needs="posix_ipc")
    b.add("wake/pipe", "wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "multiprocessing.Pipe", "wake/Pipe")
    b.add("wake/pyshmem", "wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "pyshmem futex notification", "wake/pyshmem", needs="pyshmem")
    b.figures.append(_rss_figure(b.results))


def _rss_figure(results: Results) -> Figure:
    mem = results.memory
    figure = Figure(id="rss/view", name="reader RssAnon added by holding a view()", size=None,
                    value=None, baseline_name="a read() copy", baseline=None, unit="MiB")
    if "procfs" in results.skipped:
        figure.skipped = f"procfs {results.skipped['procfs']}"
    elif "rss" in results.failures:
        figure.skipped = f"failed: {results.failures['rss']}"
    elif "rss_before" not in mem:
        figure.skipped = "not measured"
    else:
        figure.value = (mem["rss_in_view"] - mem["rss_before"]) / MIB
        figure.baseline = (mem["rss_with_copy"] - mem["rss_before"]) / MIB
        figure.runs = 1
    return figure
