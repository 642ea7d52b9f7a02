"""The performance targets of shmimage and the rule that judges a figure against one.

Each target names the id of a figure that ``shmimage bench --json`` writes.
A target is met when the figure's median ratio is within it, and "met within
noise" when the 95% bootstrap interval of that ratio includes it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

#: The frame size of the rows that say "at 4K".
FOUR_K = "3840x2160"
#: Fewest runs per figure for a verdict to count (a --quick run takes fewer).
MIN_RUNS = 30

MET = "met"
MET_WITHIN_NOISE = "met within noise"
SHORT = "short"
SKIPPED = "skipped"
NOT_MEASURED = "not measured"


@dataclasses.dataclass(frozen=True)
class Target:
    """``ratio <= limit``, ``ratio >= limit``, or ``value < limit`` (``op == "<"``).

    ``at`` is ``"4K"`` (3840x2160 only), ``"every"`` (every frame size the run
    measured) or ``"none"`` (a figure without a frame size). ``missing`` says
    why the suite has no figure for it yet; such a target is reported, not judged.
    """

    figure_id: str
    text: str
    op: str
    limit: float
    at: str = "every"
    unit: str = "x"
    missing: str | None = None

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">=", "<"):
            raise ValueError(f"unknown target operator {self.op!r}")
        if not self.limit > 0:
            raise ValueError(f"target limit must be positive, got {self.limit!r}")
        if self.at not in ("4K", "every", "none"):
            raise ValueError(f"unknown size rule {self.at!r}")

    def label(self) -> str:
        return f"{self.op} {self.limit:g}{self.unit}"

    def applies_to(self, size: str | None) -> bool:
        if self.at == "none":
            return size is None
        return size is not None and (self.at == "every" or size == FOUR_K)

    def verdict(self, figure: dict[str, Any]) -> str:
        """MET, MET_WITHIN_NOISE or SHORT for one figure of the bench's JSON."""
        if figure.get("skipped"):
            return SKIPPED
        if self.op == "<":
            value = figure.get("value")
            return MET if value is not None and value < self.limit else SHORT
        ratio, interval = figure.get("ratio"), figure.get("interval")
        if ratio is None:
            return SHORT
        low, high = interval if interval else (ratio, ratio)
        if self.op == "<=":
            return MET if ratio <= self.limit else MET_WITHIN_NOISE if low <= self.limit else SHORT
        return MET if ratio >= self.limit else MET_WITHIN_NOISE if high >= self.limit else SHORT


#: Targets against iceoryx2 and shmimage's own wake-up compare round trips by each
#: system's own wake-ups (shmimage publish -> wait with an ack frame back;
#: iceoryx2 its events); the "fastest peer" ones compare Pipe-signalled round trips.
TARGETS = (
    Target("publish/memcpy", "steady publish: memcpy bandwidth", ">=", 0.9),
    Target("read/memcpy", "publish + read() round trip vs one memcpy", "<=", 2.2, at="4K"),
    # The suite's peers copy into an array they keep: stricter than the
    # allocating copy the target names (iceoryx2's receive + copy allocates).
    Target("read/fastest-peer", "publish + read() vs the fastest peer's copy", "<=", 1.1),
    Target("read/iceoryx2", "publish + read() vs iceoryx2 receive + copy, own wake-ups",
           "<=", 1.1),
    Target("read-out/fastest-kept-peer", "read(out=) vs the fastest peer's kept-array copy",
           "<=", 1.0),
    Target("read-out/iceoryx2", "read(out=) vs iceoryx2 copying into a kept array, own "
           "wake-ups", "<=", 1.0),
    Target("view/memcpy", "publish + view() round trip vs one memcpy", "<=", 1.2, at="4K"),
    Target("view/iceoryx2", "publish + view() vs iceoryx2 receive + view, own wake-ups", "<=",
           1.0),
    Target("loan/memcpy", "loan() + view() round trip vs one memcpy", "<=", 0.05, at="4K"),
    Target("loan/iceoryx2", "loan() + view() vs iceoryx2 loan + receive, own wake-ups", "<=",
           1.0),
    Target("loan/wake", "loan() + view() vs shmimage's 1x1 publish -> wait", "<=", 4.0),
    Target("fanout/one-reader", "fan-out to 4 view() readers vs one", "<=", 1.5, at="4K"),
    Target("first-publish/mp", "first publish vs new mp.shared_memory + copy", "<=", 0.7,
           at="4K"),
    Target("lock/mp-lock", "lock()+unlock() vs multiprocessing.Lock", "<=", 1.0, at="none"),
    Target("wake/posix_ipc", "publish -> wait() ping-pong vs posix_ipc semaphores", "<=", 0.5,
           at="none"),
    # 1920x1080, history 8, loan -> view; the ratio is frames per second, shmimage's over
    # iceoryx2's (blocking publisher, buffers of 8, its events); 0 dropped is checked by
    # the run itself (a gap fails the figure).
    Target("streams/iceoryx2", "streams: 4 lossless subscribers vs iceoryx2 (fps)", ">=", 1.0,
           at="none"),
    # Frames per second at 1920x1080 over loopback TCP, producer loan() -> relay-side
    # view(); raw pyzmq streams with the same 2 frames in flight.
    Target("net/lossless/pyzmq", "across hosts, lossless: fps vs raw pyzmq", ">=", 0.8,
           at="none"),
    Target("net/lossy/pyzmq", "across hosts, lossy: fps vs raw pyzmq", ">=", 0.8, at="none"),
    Target("net/lossless/imagezmq", "across hosts, lossless: fps vs imagezmq", ">=", 1.3,
           at="none"),
    Target("net/lossy/imagezmq", "across hosts, lossy: fps vs imagezmq", ">=", 1.3,
           at="none"),
    Target("read/qt", "read() vs the Qt example's method (x faster)", ">=", 50),
    Target("view/qt", "view() vs the Qt example's method (x faster)", ">=", 100),
    Target("rss/view", "reader RssAnon added by holding a view()", "<", 1.0, at="none",
           unit=" MiB"),
)
