"""The soak's participants: one class per kind of process, one step per operation.

A participant runs `step()` in a loop in its own process, reports cumulative
counters to the supervisor over its own pipe (a SIGKILL mid-send breaks only
that pipe), and stops cleanly when the supervisor says so. Expected refusals
(a timeout while a stopped process holds the lock, no frame yet, a torn frame
refused) are counted; anything else is an error the summary reports.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import faulthandler
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import numpy as np
from shmimage import (
    AlreadyExistsError,
    NoFrameError,
    NotFoundError,
    SharedImage,
    SharedMemory,
    TornFrameError,
)
from shmimage.memory import collect_garbage, list_segments

from . import frames
from .probes import Sample, sample

CTL = struct.Struct("<QQ")  # the control segment: stamp counter, pid holding its lock
HEARTBEAT = 0.1
RECENT_SAMPLES = 10  # a second of heartbeats


@dataclass(frozen=True)
class Plan:
    """What every participant needs to know about the run."""

    run: str
    image_key: str
    cli_key: str
    ctl_key: str
    churn_prefix: str
    churn_keys: int
    workdir: str
    relay_key: str = ""  # where the network relay republishes the image key
    net_port: int = 0  # the server's port on 127.0.0.1
    timeout: float = 2.0  # bound of every blocking call a participant makes
    pace: float = 0.001  # pause between steps: the machine may be shared
    warmup: float = 5.0  # seconds before a participant's resource baseline is taken

    def churn_key(self, n: int) -> str:
        return f"{self.churn_prefix}{n}"

    def all_keys(self) -> list[str]:
        churn = [self.churn_key(n) for n in range(self.churn_keys)]
        relay = [self.relay_key] if self.relay_key else []
        return [self.image_key, self.cli_key, self.ctl_key, *relay, *churn]


class Counters(dict):  # type: ignore[type-arg]
    def add(self, name: str, n: int = 1) -> None:
        self[name] = self.get(name, 0) + n


class Participant:
    """Base class. A new kind of participant (a lossless subscriber, a network
    bridge) is one subclass with `setup`, `step` and `teardown`, added to the
    supervisor's roster."""

    patience: ClassVar[float] = 15.0  # silence after which the watchdog calls it blocked

    def __init__(self, plan: Plan, conn: Connection, seed: int) -> None:
        self.plan = plan
        self.conn = conn
        self.rng = np.random.default_rng(seed)
        self.pid = os.getpid()
        self.counts = Counters()
        self.errors: list[str] = []
        self.last_stamp = -1  # per reader: stamps never go back
        self.started = time.monotonic()
        self.baseline: Sample | None = None
        self.latest: Sample | None = None
        # The last second of samples: growth is judged on their minimum, so a
        # descriptor a step holds for a moment (a CLI child's pipes, a ZeroMQ
        # reconnect) is not taken for a leak, while a leak shows in every one.
        self.recent: collections.deque[Sample] = collections.deque(maxlen=RECENT_SAMPLES)
        self.max_stall = 0.0

    # -- for subclasses --

    def setup(self) -> None:
        """Attach whatever the steps use."""

    def step(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release everything before a clean exit."""

    # -- shared checks --

    def verify(self, frame: np.ndarray, ordered: bool = True) -> frames.Verdict:
        """Count one frame handed out: complete, never cancelled, never older."""
        verdict = frames.check(frame)
        self.counts.add("checked")
        if not verdict.ok:
            self.error(f"torn frame handed out: shape {frame.shape}, header {verdict}", "torn")
        elif verdict.magic == frames.CANCELLED:
            self.error(f"a cancelled loan was handed out: {verdict}", "cancelled_seen")
        elif ordered and verdict.stamp < self.last_stamp:
            self.error(f"stamp went back from {self.last_stamp} to {verdict.stamp}", "backwards")
        if verdict.ok and ordered:
            self.last_stamp = max(self.last_stamp, verdict.stamp)
        return verdict

    def timed(self, started: float) -> None:
        """Record how long a read-side call took (readers must never stall)."""
        self.max_stall = max(self.max_stall, time.monotonic() - started)

    def error(self, text: str, kind: str = "errors") -> None:
        """Count a failure of `kind` and keep the first few descriptions."""
        self.counts.add(kind)
        if sum(line.startswith(f"{kind}:") for line in self.errors) < 3:
            self.errors.append(f"{kind}: {type(self).__name__}[{self.pid}]: {text}")

    # -- reporting --

    def report(self, final: bool = False) -> None:
        now = time.monotonic()
        now_sample = sample()
        self.recent.append(now_sample)
        latest = Sample(*(min(values) for values in zip(*self.recent)))
        if self.baseline is None and now - self.started >= self.plan.warmup:
            self.baseline = now_sample
        self.latest = latest
        message = {
            "kind": "final" if final else "hb",
            "counts": dict(self.counts),
            "errors": list(self.errors),
            "baseline": self.baseline,
            "latest": latest,
            "max_stall": self.max_stall,
        }
        self.conn.send(message)

    def event(self, **fields: Any) -> None:
        self.conn.send({"kind": "event", **fields})


class Stamper(Participant):
    """A participant that publishes under the control segment's lock, stamping
    each frame with the next count: stamps then grow in publish order."""

    def setup(self) -> None:
        self.image = SharedImage(self.plan.image_key)
        self.ctl = SharedMemory(self.plan.ctl_key)
        self.ctl.attach()

    def teardown(self) -> None:
        self.image.detach()
        self.ctl.detach()

    @contextlib.contextmanager
    def stamped(self) -> Iterator[int | None]:
        """The next stamp, the lock held meanwhile; None when the lock timed out."""
        if not self.ctl.lock(timeout=self.plan.timeout):
            self.counts.add("lock_timeouts")
            yield None
            return
        locked_ns = time.monotonic_ns()
        data = self.ctl.data
        count, holder = CTL.unpack_from(data)
        recovering = self.ctl.owner_died
        CTL.pack_into(data, 0, count + 1, self.pid)
        del data
        try:
            yield count + 1
        finally:
            data = self.ctl.data
            CTL.pack_into(data, 0, count + 1, 0)
            del data
            self.ctl.unlock()
            if recovering:  # the previous holder died holding the lock
                self.counts.add("recoveries")
                self.event(what="recovered", dead=holder, locked_ns=locked_ns,
                           done_ns=time.monotonic_ns())


class Writer(Stamper):
    """publish() of stamped frames; generations must grow per writer."""

    def setup(self) -> None:
        super().setup()
        self.last_generation = 0

    def step(self) -> None:
        frame = frames.make(self.rng, self.pid)
        with self.stamped() as stamp:
            if stamp is None:
                return
            frames.seal(frame, stamp)
            generation = self.image.publish(frame, timeout=self.plan.timeout)
            self.counts.add("published")
            if generation <= self.last_generation:
                self.error(f"publish returned {generation} after {self.last_generation}", "backwards")
            self.last_generation = generation


class _Cancel(Exception):
    pass


class Loaner(Stamper):
    """loan() producers: fill in place; one loan in ten is cancelled and must
    never be seen; a published loan's array is read-only afterwards."""

    def step(self) -> None:
        shape = frames.pick_shape(self.rng)
        cancel = self.rng.random() < 0.1
        magic = frames.CANCELLED if cancel else frames.MAGIC
        with self.stamped() as stamp:
            if stamp is None:
                return
            try:
                with self.image.loan(shape, np.uint8, timeout=self.plan.timeout) as buf:
                    frames.fill(buf, self.rng, self.pid, magic)
                    frames.seal(buf, stamp)
                    if cancel:
                        raise _Cancel
            except _Cancel:
                self.counts.add("cancelled")
                return
            self.counts.add("published")
        # Asked, not tried: a write-back of the same byte races with whoever
        # reuses the slot and would tear their frame, not this one.
        if buf.flags.writeable:
            self.error("a published loan's array stayed writable", "loans_left_writable")


class ViewReader(Participant):
    """view(): the array must stay intact while pinned, inside the block and
    after it while referenced; also info() and wait() generations."""

    def setup(self) -> None:
        self.image = SharedImage(self.plan.image_key)
        self.kept: list[tuple[np.ndarray, frames.Verdict]] = []
        self.last_generation = 0

    def teardown(self) -> None:
        self.release(len(self.kept))
        self.image.detach()

    def release(self, n: int) -> None:
        for _ in range(min(n, len(self.kept))):
            array, verdict = self.kept.pop(0)
            if frames.check(array) != verdict:
                self.error(f"a kept view changed while referenced: {verdict}", "kept_views_changed")
            del array

    def step(self) -> None:
        started = time.monotonic()
        with self.image.view() as array:
            self.timed(started)
            verdict = self.verify(array)
            if self.rng.random() < 0.2:
                time.sleep(self.rng.uniform(0, 0.02))
            if frames.check(array) != verdict:
                self.error(f"a view changed inside its block: {verdict}", "views_changed")
            if verdict.ok and self.rng.random() < 0.1:
                self.kept.append((array, verdict))
        del array
        if len(self.kept) > 3 or self.rng.random() < 0.05:
            self.release(1)
        self.generations()

    def generations(self) -> None:
        generation = self.image.info().generation
        if generation < self.last_generation:
            self.error(f"info() generation went back: {self.last_generation} -> {generation}", "backwards")
        self.last_generation = max(self.last_generation, generation)
        if self.rng.random() < 0.3:
            try:
                newer = self.image.wait(timeout=0.5, after=generation)
            except TimeoutError:
                self.counts.add("wait_timeouts")
                return
            if newer <= generation:
                self.error(f"wait(after={generation}) returned {newer}", "backwards")
            self.last_generation = max(self.last_generation, newer)


class CopyReader(Participant):
    """read(): a private copy, never torn, never older."""

    def setup(self) -> None:
        self.image = SharedImage(self.plan.image_key)

    def teardown(self) -> None:
        self.image.detach()

    def step(self) -> None:
        started = time.monotonic()
        frame = self.image.read()
        self.timed(started)
        self.verify(frame)


class Churner(Participant):
    """ls/gc churn and short-lived SharedMemory segments: create, attach, lock,
    fill, check, remove; killed ones leave stale segments for gc to reclaim."""

    def setup(self) -> None:
        self.held: list[SharedMemory] = []

    def teardown(self) -> None:
        for memory in self.held:
            memory.detach()
        self.held.clear()

    def step(self) -> None:
        roll = self.rng.random()
        name = self.plan.churn_key(int(self.rng.integers(self.plan.churn_keys)))
        if roll < 0.1:
            self.counts.add("listed", len(list_segments()))
        elif roll < 0.2:
            self.counts.add("collected", len(collect_garbage()))
        elif roll < 0.85:
            self.use(name, create=roll < 0.5)
        else:
            with contextlib.suppress(NotFoundError):
                SharedMemory.remove(name)
                self.counts.add("removed")

    def use(self, name: str, create: bool) -> None:
        memory = SharedMemory(name)
        try:
            if create:
                memory.create(int(self.rng.integers(1, 1024)) * 4096)
            else:
                memory.attach()
        except (AlreadyExistsError, NotFoundError):
            return
        if not memory.lock(timeout=self.plan.timeout):
            self.counts.add("lock_timeouts")
            memory.detach()
            return
        try:
            self.fill_checked(memory)
        finally:
            memory.unlock()
        self.held.append(memory)
        if len(self.held) > 4:
            self.held.pop(0).detach()

    def fill_checked(self, memory: SharedMemory) -> None:
        data = np.frombuffer(memory.data, np.uint8)
        if not memory.owner_died:  # after a dead holder the bytes may be half written
            self.counts.add("checked")
            if not np.all(data == data[0]):
                self.error(f"segment {memory.key!r} mixed under the lock", "torn")
        data[:] = self.rng.integers(256)
        del data


def _die_with_parent() -> None:
    """A CLI child must not outlive a SIGKILLed participant."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class CliUser(Participant):
    """The command line: `put` a .npy frame and hold it, `get` it back from
    another process, `get` the main key's frame, now and then `ls` and `gc`."""

    patience: ClassVar[float] = 120.0
    CLI_TIMEOUT = 60.0

    def setup(self) -> None:
        self.dir = os.path.join(self.plan.workdir, str(self.pid))
        os.makedirs(self.dir, exist_ok=True)

    def cli(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "shmimage", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,  # noqa: PLW1509 - one thread
        )

    def finish(self, proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
        try:
            out, err = proc.communicate(timeout=self.CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            command = " ".join(map(str, proc.args[3:]))  # type: ignore[index]
            self.error(f"`shmimage {command}` hung", "blocked")
        self.counts.add("cli_runs")
        return proc.returncode, out, err

    def step(self) -> None:
        self.put_and_get()
        self.get_main()
        roll = self.rng.random()
        if roll < 0.3:
            code, out, err = self.finish(self.cli("ls", "--json"))
            if code != 0 or not isinstance(json.loads(out), list):
                self.error(f"ls --json failed: {err[-200:]!r}")
        elif roll < 0.5:
            code, _, err = self.finish(self.cli("gc"))
            if code != 0:
                self.error(f"gc failed: {err[-200:]!r}")

    def put_and_get(self) -> None:
        frame = frames.make(self.rng, self.pid)
        frames.seal(frame, frames.UNORDERED)
        src, dst = os.path.join(self.dir, "put.npy"), os.path.join(self.dir, "got.npy")
        np.save(src, frame)
        put = self.cli("put", src, "--key", self.plan.cli_key)
        try:
            assert put.stdout is not None
            line = put.stdout.readline()  # "published ..." once it is there
            if not line.startswith(b"published"):
                code, _, err = self.finish(put)
                self.error(f"put exited {code}: {err[-200:]!r}")
                return
            self.counts.add("published")
            code, _, err = self.finish(self.cli("get", "--key", self.plan.cli_key, "-o", dst))
            if code != 0:
                self.error(f"get of a held frame failed: {err[-200:]!r}")
                return
            got = np.load(dst)
            self.verify(got, ordered=False)
            if not np.array_equal(got, frame):
                self.error("get returned another frame than put", "torn")
        finally:
            put.send_signal(signal.SIGTERM)
            self.finish(put)

    def get_main(self) -> None:
        dst = os.path.join(self.dir, "main.npy")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        code, _, err = self.finish(self.cli("get", "--key", self.plan.image_key, "-o", dst))
        if code == 0:
            self.verify(np.load(dst))
        elif b"nothing published" in err or b"no shared image" in err:
            self.counts.add("not_ready")
        else:
            self.error(f"get of the main key failed: {err[-200:]!r}")


class StreamReader(Participant):
    """A subscription to the image key: every frame complete, stamps never
    back, generations strictly increasing. Lossless: no gap at all while it
    lives (the writers wait for it), `dropped` stays 0. Lossy: the gaps are
    what it reports as `dropped`."""

    lossless: ClassVar[bool] = False
    label: ClassVar[str] = "lossy"

    def key(self) -> str:
        return self.plan.image_key

    def setup(self) -> None:
        self.image = SharedImage(self.key())
        self.sub = self.image.subscribe(lossless=self.lossless, copy=bool(self.rng.random() < 0.3))
        self.last_generation = 0
        self.dropped = 0

    def teardown(self) -> None:
        self.sub.close()
        self.image.detach()

    def step(self) -> None:
        try:
            frame = self.sub.next(timeout=self.plan.timeout)
        except TimeoutError:
            self.counts.add("stream_timeouts")
            return
        self.verify(frame.pixels)
        self.counts.add(f"{self.label}_frames")
        self.follow(frame.info.generation)
        if self.lossless and self.rng.random() < 0.02:
            time.sleep(self.rng.uniform(0, 0.05))  # a slow consumer: writers must wait
        del frame

    def follow(self, generation: int) -> None:
        """Generations strictly increase; every skip is in `dropped`, and a
        lossless subscription skips none."""
        last, dropped = self.last_generation, self.sub.dropped
        if last and generation <= last:
            self.error(f"{self.label} subscription went from {last} to {generation}", "backwards")
        elif last:
            skipped = generation - last - 1
            if self.lossless and skipped:
                self.counts.add("lossless_missed", skipped)
                self.error(f"lossless subscription skipped {last} -> {generation}, dropped "
                           f"grew by {dropped - self.dropped}", "stream_gaps")
            elif skipped != dropped - self.dropped:
                self.error(f"{self.label} subscription skipped {skipped} frames, dropped grew "
                           f"by {dropped - self.dropped}", "dropped_miscounted")
        self.last_generation, self.dropped = max(last, generation), dropped
        self.counts[f"{self.label}_dropped"] = dropped


class LosslessReader(StreamReader):
    lossless = True
    label = "lossless"


class LossyReader(StreamReader):
    pass


class RelayReader(StreamReader):
    """A lossy subscription to the relay's key: frames that crossed
    127.0.0.1 through `shmimage.net` must still be complete."""

    label = "relayed"
    patience: ClassVar[float] = 30.0

    def key(self) -> str:
        return self.plan.relay_key


class Bridge(Participant):
    """One end of the network bridge, run in a thread of this process."""

    patience: ClassVar[float] = 30.0
    label: ClassVar[str]

    def make(self) -> Any:
        raise NotImplementedError

    def setup(self) -> None:
        self.endpoint = f"tcp://127.0.0.1:{self.plan.net_port}"
        self.bridge = self.make()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            self.bridge.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the next step
            self.failure = exc

    def step(self) -> None:
        time.sleep(0.05)
        stats = self.bridge.stats
        self.counts[f"{self.label}_frames"] = stats.frames
        self.counts[f"{self.label}_rejected"] = stats.rejected
        if self.failure is not None:
            failure, self.failure = self.failure, None
            self.error(f"{self.label} stopped: {failure!r}")
            self.thread.join()
            self.setup()

    def teardown(self) -> None:
        self.bridge.stop()
        self.thread.join(10)
        if self.thread.is_alive():
            self.error(f"{self.label} did not stop", "blocked")


class NetServer(Bridge):
    """`shmimage.net` serving the image key on 127.0.0.1."""

    label = "served"

    def make(self) -> Any:
        from shmimage.net import Server

        return Server(self.plan.image_key, self.endpoint)


class NetRelay(Bridge):
    """`shmimage.net` relaying the server into a second key."""

    label = "relay"

    def make(self) -> Any:
        from shmimage.net import Relay

        return Relay(self.endpoint, key=self.plan.relay_key)


class Sleeper(Participant):
    """Blocks in its first step: the soak's own check that its watchdog sees a hang."""

    patience: ClassVar[float] = 2.0

    def step(self) -> None:
        time.sleep(3600)


ROSTER: dict[str, type[Participant]] = {
    cls.__name__: cls
    for cls in (Writer, Loaner, ViewReader, CopyReader, Churner, CliUser, LosslessReader,
                LossyReader, NetServer, NetRelay, RelayReader, Sleeper)
}

# Refusals the contract promises under these faults: counted, not errors.
EXPECTED: dict[type[BaseException], str] = {
    TimeoutError: "timeouts",
    NotFoundError: "not_ready",
    NoFrameError: "not_ready",
    TornFrameError: "torn_refused",
}


def _count_failure(part: Participant, exc: BaseException) -> None:
    for kind, name in EXPECTED.items():
        if isinstance(exc, kind):
            part.counts.add(name)
            return
    part.error("".join(traceback.format_exception_only(type(exc), exc)).strip())


def run_participant(kind: str, plan: Plan, conn: Connection, seed: int) -> None:
    """A participant's process: steps until the supervisor says stop."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the watchdog asks for a stack
    part = ROSTER[kind](plan, conn, seed)
    part.setup()
    last = 0.0
    while not conn.poll():
        try:
            part.step()
            part.counts.add("ops")
        except Exception as exc:  # noqa: BLE001 - classified and reported
            _count_failure(part, exc)
        now = time.monotonic()
        if now - last >= HEARTBEAT:
            part.report()
            last = now
        time.sleep(plan.pace)
    part.report(final=True)
    part.teardown()
    conn.close()
