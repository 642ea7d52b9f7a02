"""Turns the suite's runs into the report's figures: medians, ratios, intervals."""
from __future__ import annotations

from . import across_hosts as net
from .bootstrap import ratio_interval
from .figures import Figure
from .measure import (
    COPY_PEERS,
    CPU,
    FAN_OUT,
    IOX_KEPT,
    IOX_LOAN,
    IOX_READ,
    IOX_VIEW,
    KEPT_PEERS,
    MEMCPY,
    PING_1X1,
    ROUND_TRIPS,
    STREAMS,
    WAKE,
    ZMQ_READ,
    ZMQ_VIEW,
)
from .optional import READ_OUT
from .suite import Results

MIB = 1024 * 1024
QT = "Qt example (QSharedMemory)"
MEMCPY_NAME = "numpy.copyto"
#: shmimage's method and iceoryx2's for each kind of round trip, and what it needs.
OWN = {"read": "shmimage read()", "read-out": "shmimage read(out=)",
       "view": "shmimage view()", "loan": "shmimage loan()+view()"}
IOX = {"read": IOX_READ, "read-out": IOX_KEPT, "view": IOX_VIEW, "loan": IOX_LOAN}
IOX_NEEDS = {"read": ("iceoryx2",), "read-out": ("iceoryx2", READ_OUT),
             "view": ("iceoryx2",), "loan": ("iceoryx2",)}
QT_NAME = "Qt QSharedMemory+QDataStream"
#: The own-wake-up figures: (id, shmimage's method, the peer's, what the peer needs).
WAKE_PAIRS: tuple[tuple[str, str, str, str | tuple[str, ...] | None], ...] = (
    *((f"{mode}/iceoryx2", OWN[mode], IOX[mode], IOX_NEEDS[mode]) for mode in OWN),
    ("loan/wake", OWN["loan"], PING_1X1, None),
    ("read/pyzmq", OWN["read"], ZMQ_READ, "pyzmq"),
    ("view/pyzmq", OWN["view"], ZMQ_VIEW, "pyzmq"),
    ("view/imagezmq", OWN["view"], "imagezmq REQ-REP", "imagezmq"),
)


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
            baseline_key: str, inverse: bool = False,
            needs: str | tuple[str, ...] | None = None, unit: str = "s") -> None:
        reason = self.why_missing(key) or self.why_missing(baseline_key)
        for need in (needs,) if isinstance(needs, str) else needs or ():
            if need in self.results.skipped:
                reason = f"{need} {self.results.skipped[need]}"
        runs = self.results.samples.get(key, [])
        base_runs = self.results.samples.get(baseline_key, [])
        interval = None
        if reason is None:
            pair = (base_runs, runs) if inverse else (runs, base_runs)
            interval = ratio_interval(*pair)
        self.figures.append(Figure(
            id=figure_id, name=name, size=size, value=self.seconds.get(key),
            baseline_name=baseline_name, baseline=self.seconds.get(baseline_key),
            inverse=inverse, unit=unit, interval=interval,
            runs=min(len(runs), len(base_runs)), skipped=reason,
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
    _kept_peer(b, size)
    _pipe_peer_figures(b, size)
    _wake_figures(b, size)
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


def _kept_peer(b: _Builder, size: str) -> None:
    measured = {p: b.seconds[f"rt/{p}/{size}"] for p in KEPT_PEERS
                if f"rt/{p}/{size}" in b.seconds}
    name, key = "fastest peer", "rt/(no peer measured)"
    if measured:
        name = min(measured, key=measured.__getitem__)
        key = f"rt/{name}/{size}"
    b.add("read-out/fastest-kept-peer", "publish + read(out=) vs fastest kept-array peer", size,
          f"rt/{OWN['read-out']}/{size}", f"{name} round trip", key, needs=READ_OUT)


def _pipe_peer_figures(b: _Builder, size: str) -> None:
    """shmimage beside iceoryx2 and pyzmq, every one signalled and acked over the Pipe."""
    def rt(name: str) -> str:
        return f"rt/{name}/{size}"

    for mode in ("read", "read-out", "view", "loan"):
        b.add(f"{mode}/iceoryx2-pipe", f"{OWN[mode]} vs iceoryx2, Pipe-signalled", size,
              rt(OWN[mode]), IOX[mode], rt(IOX[mode]), needs=IOX_NEEDS[mode])
    b.add("read/pyzmq-pipe", "shmimage read() vs pyzmq, Pipe-signalled", size,
          rt(OWN["read"]), ZMQ_READ, rt(ZMQ_READ), needs="pyzmq")
    b.add("view/pyzmq-pipe", "shmimage view() vs pyzmq, Pipe-signalled", size,
          rt(OWN["view"]), ZMQ_VIEW, rt(ZMQ_VIEW), needs="pyzmq")
    b.add("view/imagezmq-pipe", "shmimage view() vs imagezmq, Pipe-signalled", size,
          rt(OWN["view"]), "imagezmq PUB-SUB", rt("imagezmq PUB-SUB"), needs="imagezmq")


def _wake_figures(b: _Builder, size: str) -> None:
    """Round trips by each system's own wake-ups: wall time, then CPU time per trip."""
    def wake(name: str) -> str:
        return f"{WAKE}{name}/{size}"

    for fid, own, peer, needs in WAKE_PAIRS:
        b.add(fid, f"{own} vs {peer}, own wake-ups", size, wake(own), peer, wake(peer),
              needs=needs)
    for fid, own, peer, needs in WAKE_PAIRS:
        b.add(f"cpu/{fid}", f"CPU per trip: {own} vs {peer}, own wake-ups", size,
              CPU + wake(own), f"{peer} CPU", CPU + wake(peer), needs=needs)


def _global_figures(b: _Builder) -> None:
    b.add("lock/mp-lock", "lock()+unlock() uncontended", None, "lock/shmimage",
          "multiprocessing.Lock", "lock/multiprocessing.Lock")
    b.add("wake/posix_ipc", "wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "posix_ipc semaphores", "wake/posix_ipc", needs="posix_ipc")
    b.add("wake/pipe", "wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "multiprocessing.Pipe", "wake/Pipe")
    b.add("wake/pyshmem", "wake-up ping-pong (publish/wait)", None, "wake/shmimage",
          "pyshmem futex notification", "wake/pyshmem", needs="pyshmem")
    _stream_figures(b)
    _net_figures(b)
    b.figures.append(_rss_figure(b.results))


def _stream_figures(b: _Builder) -> None:
    """Every frame to FAN_OUT lossless subscribers: time per frame (the ratio is in
    frames per second, shmimage's over iceoryx2's), then CPU per frame."""
    own, peer = STREAMS + "shmimage", STREAMS + "iceoryx2"
    what = f"streams, {FAN_OUT} lossless subscribers, 1920x1080: time per frame"
    b.add("streams/iceoryx2", f"{what} (ratio: fps vs iceoryx2)", None, own,
          "iceoryx2 publish-subscribe", peer, inverse=True, needs="iceoryx2")
    b.figures[-1].note = _stall_note(b.results, peer, "iceoryx2")
    b.add("cpu/streams/iceoryx2", "CPU per frame: streams, all processes", None, CPU + own,
          "iceoryx2 CPU", CPU + peer, needs="iceoryx2")


def _stall_note(results: Results, key: str, system: str) -> str | None:
    """How often the system's stream writer stalled: those runs were dropped."""
    stalls = results.stalls.get(key, 0)
    if not stalls:
        return None
    counted = len(results.samples.get(key, []))
    return (f"{system}'s blocking publisher stalled in {stalls} run(s): each time its writer "
            f"was killed and the run dropped ({counted} run(s) counted)")


def _net_figures(b: _Builder) -> None:
    """Across hosts: frames per second (a ratio above 1 is faster than the baseline)."""
    def fps(own: str, peer: str, fid: str, needs: tuple[str, ...]) -> None:
        b.add(fid, f"across hosts {net.SIZE}: {own} fps", None, net.KEY + own, peer,
              net.KEY + peer, needs=needs, unit="fps")

    for mode, own in (("lossless", net.LOSSLESS), ("lossy", net.LOSSY)):
        fps(own, net.RAW, f"net/{mode}/pyzmq", ("pyzmq",))
        fps(own, net.IMAGEZMQ, f"net/{mode}/imagezmq", ("pyzmq", "imagezmq"))
    prefix = net.KEY + net.compressed("")
    codecs = {k[len(prefix):] for k in (*b.results.samples, *b.results.failures)
              if k.startswith(prefix)}
    for codec in sorted(codecs):
        fps(net.compressed(codec), net.RAW, f"net/lossy-{codec}/pyzmq", ("pyzmq",))


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
