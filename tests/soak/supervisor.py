"""The soak's supervisor: starts the roster, injects faults, watches, sums up."""
from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import pickle
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from shmimage import NotFoundError, SharedMemory
from shmimage.memory import collect_garbage

from . import participants
from .participants import CTL, Plan
from .probes import Sample, growth

# (kind, steady): steady members are stopped and continued but never killed,
# so that some survivors live the whole run and their growth can be measured.
DEFAULT_ROSTER: list[tuple[str, bool]] = [
    ("Writer", True), ("Writer", False),
    ("Loaner", True), ("Loaner", False),
    ("ViewReader", True), ("ViewReader", False),
    ("CopyReader", True), ("CopyReader", False),
    ("Churner", True), ("Churner", False),
    ("CliUser", False),
    ("LosslessReader", True), ("LosslessReader", False), ("LossyReader", False),
]
# The network bridge: a server of the image key, a relay into a second key, a
# reader of that key; left out where pyzmq (the `net` extra) is missing.
NET_ROSTER: list[tuple[str, bool]] = [
    ("NetServer", False), ("NetRelay", False), ("RelayReader", True),
]
if importlib.util.find_spec("zmq") is not None:
    DEFAULT_ROSTER += NET_ROSTER
STOP_GRACE = 90.0  # seconds members get to finish their step and leave at the end
FD_SLACK, MAPS_SLACK, RSS_BOUND_MIB = 8, 32, 64.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Member:
    kind: str
    steady: bool
    proc: Any = None
    conn: Connection | None = None
    started: float = 0.0
    last_heard: float = 0.0
    cpu_heard: float = 0.0  # its CPU seconds when it was last heard from
    cont_at: float | None = None  # when stopped: when it gets SIGCONT
    killed: bool = False
    restart_at: float | None = 0.0
    message: dict[str, Any] = field(default_factory=dict)  # its latest report

    @property
    def patience(self) -> float:
        return participants.ROSTER[self.kind].patience


class Supervisor:
    def __init__(self, seconds: float, seed: int, roster: list[tuple[str, bool]],
                 log: bool = True) -> None:
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.seed = seed
        self.log_on = log
        run = uuid.uuid4().hex[:10]
        self.workdir = tempfile.mkdtemp(prefix=f"shmimage-soak-{run}-")
        self.plan = Plan(
            run=run, image_key=f"soak-{run}-image", cli_key=f"soak-{run}-cli",
            ctl_key=f"soak-{run}-ctl", churn_prefix=f"soak-{run}-churn-", churn_keys=16,
            workdir=self.workdir, warmup=min(5.0, seconds / 3),
            relay_key=f"soak-{run}-relay", net_port=free_port(),
        )
        self.members = [Member(kind, steady) for kind, steady in roster]
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload([participants.__name__])
        self.kills: dict[int, int] = {}  # victim pid -> monotonic ns of its SIGKILL
        self.totals: dict[str, int] = {}
        self.errors: list[str] = []
        self.recovery_ms: list[float] = []
        self.recovery_publish_ms: list[float] = []
        self.growths: list[Sample] = []
        self.figures = {"processes": 0, "kills": 0, "holder_kills": 0, "stops": 0,
                        "blocked": 0, "unexpected_exits": 0, "unmatched_recoveries": 0}
        self.max_stall = 0.0
        self.ctl = SharedMemory(self.plan.ctl_key)

    def log(self, text: str) -> None:
        if self.log_on:
            print(f"soak: {text}", file=sys.stderr, flush=True)

    # -- members --

    def start(self, member: Member, now: float) -> None:
        parent, child = self.ctx.Pipe()
        seed = self.rng.randrange(1 << 32)
        proc = self.ctx.Process(target=participants.run_participant,
                                args=(member.kind, self.plan, child, seed), daemon=True)
        proc.start()
        child.close()
        self.kills.pop(proc.pid or 0, None)  # a reused pid: the old kill was another process's
        member.proc, member.conn = proc, parent
        member.started = member.last_heard = now
        member.cpu_heard = 0.0
        member.cont_at, member.killed, member.restart_at = None, False, None
        member.message = {}
        self.figures["processes"] += 1

    def alive(self) -> list[Member]:
        return [m for m in self.members if m.proc is not None and m.proc.is_alive()]

    def receive(self, member: Member) -> None:
        assert member.conn is not None
        try:
            while member.conn.poll():
                self.handle(member, member.conn.recv())
        except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError):
            member.conn.close()  # killed mid-send: its last whole report stands
            member.conn = None

    def handle(self, member: Member, message: dict[str, Any]) -> None:
        member.last_heard = time.monotonic()
        member.cpu_heard = cpu_state(member.proc.pid)[0]
        if message["kind"] == "event":
            self.recovered(message)
        else:
            member.message = message
            self.max_stall = max(self.max_stall, message["max_stall"])

    def recovered(self, event: dict[str, Any]) -> None:
        killed_ns = self.kills.get(event["dead"])
        if killed_ns is None or killed_ns > event["locked_ns"]:
            self.figures["unmatched_recoveries"] += 1
            return
        self.recovery_ms.append((event["locked_ns"] - killed_ns) / 1e6)
        self.recovery_publish_ms.append((event["done_ns"] - killed_ns) / 1e6)

    def reap(self, member: Member, now: float, restart: bool) -> None:
        """Account for an incarnation that has ended."""
        if member.conn is not None:
            self.receive(member)
        if member.conn is not None:
            member.conn.close()
            member.conn = None
        code = member.proc.exitcode
        if not member.killed and code != 0:
            self.figures["unexpected_exits"] += 1
            self.errors.append(f"exit: {member.kind} pid {member.proc.pid} exited with {code}")
        self.merge(member, survivor=not member.killed and code == 0)
        member.proc = None
        member.restart_at = now + self.rng.uniform(0.05, 0.3) if restart else None

    def merge(self, member: Member, survivor: bool) -> None:
        message = member.message
        for name, n in message.get("counts", {}).items():
            self.totals[name] = self.totals.get(name, 0) + n
        self.errors.extend(message.get("errors", []))
        if survivor and message.get("kind") == "final" and message.get("baseline"):
            self.growths.append(growth(message["baseline"], message["latest"]))

    # -- faults --

    def holder(self) -> int:
        if not self.ctl.is_attached:
            return 0
        data = self.ctl.data
        pid: int = CTL.unpack_from(data)[1]
        del data
        return pid

    def kill(self, member: Member, why: str = "") -> None:
        pid = member.proc.pid
        held = self.holder() == pid
        self.kills[pid] = time.monotonic_ns()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        member.killed, member.cont_at = True, None
        self.figures["kills"] += 1
        self.figures["holder_kills"] += held

    def kill_holder(self, live: list[Member]) -> None:
        """Wait a moment for a mortal member to hold the stamp lock; kill it there."""
        mortal = {m.proc.pid: m for m in live if not m.steady and m.cont_at is None}
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            member = mortal.get(self.holder())
            if member is not None:
                self.kill(member)
                return
            time.sleep(0.001)

    def fault(self, now: float) -> None:
        live = [m for m in self.alive() if not m.killed]
        running = [m for m in live if m.cont_at is None]
        roll = self.rng.random()
        if roll < 0.25:
            self.kill_holder(live)
        elif roll < 0.6:
            mortal = [m for m in live if not m.steady]
            if mortal:
                self.kill(self.rng.choice(mortal))
        elif running:
            member = self.rng.choice(running)
            pause = self.rng.uniform(1.0, 3.0) if self.rng.random() < 0.1 else \
                self.rng.uniform(0.05, 0.5)
            os.kill(member.proc.pid, signal.SIGSTOP)
            member.cont_at = now + pause
            self.figures["stops"] += 1

    def resume(self, member: Member, now: float) -> None:
        os.kill(member.proc.pid, signal.SIGCONT)
        member.cont_at = None
        member.last_heard = max(member.last_heard, now)  # its silence was ours

    def watchdog(self, member: Member, now: float) -> None:
        silent = now - member.last_heard
        if member.cont_at is not None or member.killed or silent <= member.patience:
            return
        cpu, state = cpu_state(member.proc.pid)
        if state == "R" and cpu - member.cpu_heard < silent / 2:
            return  # runnable but starved by a busy machine: slow, not blocked
        self.figures["blocked"] += 1
        self.errors.append(f"blocked: watchdog: {member.kind} pid {member.proc.pid} silent {silent:.1f} s")
        with contextlib.suppress(ProcessLookupError):
            os.kill(member.proc.pid, signal.SIGUSR1)  # faulthandler: its stack on stderr
        time.sleep(0.5)
        self.kill(member)

    # -- the run --

    def tick(self, now: float, faults: bool) -> None:
        for member in self.members:
            if member.proc is None:
                if faults and member.restart_at is not None and now >= member.restart_at:
                    self.start(member, now)
                continue
            if member.cont_at is not None and now >= member.cont_at:
                self.resume(member, now)
            if not member.proc.is_alive():
                self.reap(member, now, restart=faults)
            else:
                self.watchdog(member, now)

    def loop(self) -> float:
        started = time.monotonic()
        deadline = started + self.seconds
        next_fault = started + 2.0  # let everyone start first
        while (now := time.monotonic()) < deadline:
            conns = {m.conn: m for m in self.members if m.conn is not None}
            for conn in wait(list(conns), timeout=0.02):
                self.receive(conns[conn])  # type: ignore[index]
            self.tick(now, faults=True)
            if now >= next_fault:
                self.fault(now)
                next_fault = now + self.rng.uniform(0.2, 0.6)
        return time.monotonic() - started

    def shutdown(self) -> None:
        now = time.monotonic()
        for member in self.alive():
            if member.cont_at is not None:
                self.resume(member, now)
            if member.conn is not None and not member.killed:
                with contextlib.suppress(OSError):
                    member.conn.send(None)
        deadline = now + STOP_GRACE
        while self.alive() and time.monotonic() < deadline:
            conns = {m.conn: m for m in self.members if m.conn is not None}
            for conn in wait(list(conns), timeout=0.05):
                self.receive(conns[conn])  # type: ignore[index]
            self.tick(time.monotonic(), faults=False)
        for member in self.alive():
            self.figures["blocked"] += 1
            self.errors.append(f"blocked: {member.kind} pid {member.proc.pid} did not stop")
            self.kill(member)
        for member in self.members:
            if member.proc is not None:
                member.proc.join(10)
                self.reap(member, time.monotonic(), restart=False)

    def leftovers(self) -> tuple[list[str], int]:
        """The run's names still in /dev/shm once everyone is gone and gc ran."""
        reclaimed = len(collect_garbage())
        left = []
        for key in self.plan.all_keys():
            path = f"/dev/shm{SharedMemory(key).native_key}"
            if os.path.lexists(path):
                left.append(key)
                with contextlib.suppress(NotFoundError):
                    SharedMemory.remove(key)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return left, reclaimed

    def run(self) -> dict[str, Any]:
        self.ctl.create(CTL.size)
        self.log(f"{len(self.members)} participants for {self.seconds:.0f} s, seed {self.seed}")
        try:
            duration = self.loop()
            self.log("stopping")
            self.shutdown()
        finally:
            for member in self.members:  # whatever happened, no child outlives the run
                if member.proc is not None and member.proc.is_alive():
                    os.kill(member.proc.pid, signal.SIGKILL)
            for member in self.members:  # dead before gc judges what they held stale
                if member.proc is not None:
                    member.proc.join(30)
            self.ctl.detach()
            shutil.rmtree(self.workdir, ignore_errors=True)
        left, reclaimed = self.leftovers()
        return self.summary(duration, left, reclaimed)

    def summary(self, duration: float, left: list[str], reclaimed: int) -> dict[str, Any]:
        t = self.totals
        worst = Sample(*(max(g[i] for g in self.growths) if self.growths else 0
                         for i in range(3)))
        result: dict[str, Any] = {
            "duration_s": round(duration, 1),
            "seed": self.seed,
            "participants": len(self.members),
            "roster": sorted({m.kind for m in self.members}),
            **self.figures,
            "operations": t.get("ops", 0) + t.get("cli_runs", 0),
            "frames_published": t.get("published", 0),
            "frames_checked": t.get("checked", 0),
            "torn": t.get("torn", 0),
            "backwards": t.get("backwards", 0),
            "cancelled_seen": t.get("cancelled_seen", 0),
            "views_changed": t.get("views_changed", 0),
            "kept_views_changed": t.get("kept_views_changed", 0),
            "loans_left_writable": t.get("loans_left_writable", 0),
            "leaked": len(left),
            "leaked_keys": left,
            "reclaimed_by_final_gc": reclaimed,
            "errors": t.get("errors", 0) + self.figures["unexpected_exits"],
            "error_samples": _samples(self.errors),
            "recoveries": len(self.recovery_ms),
            "max_recovery_ms": round(max(self.recovery_ms, default=0.0), 2),
            "median_recovery_ms": round(_median(self.recovery_ms), 2),
            "max_recovery_publish_ms": round(max(self.recovery_publish_ms, default=0.0), 2),
            "max_reader_stall_ms": round(self.max_stall * 1000, 1),
            "survivors_measured": len(self.growths),
            "max_fd_growth": worst.fds,
            "max_maps_growth": worst.maps,
            "max_rss_growth_mib": round(worst.rss / 2**20, 1),
            "lock_timeouts": t.get("lock_timeouts", 0),
            "timeouts": t.get("timeouts", 0) + t.get("wait_timeouts", 0),
            "not_ready": t.get("not_ready", 0),
            "torn_refused": t.get("torn_refused", 0),
            "cancelled_loans": t.get("cancelled", 0),
            "cli_runs": t.get("cli_runs", 0),
            "lossless_frames": t.get("lossless_frames", 0),
            "lossless_gaps": t.get("stream_gaps", 0),
            "lossless_missed": t.get("lossless_missed", 0),
            "lossy_frames": t.get("lossy_frames", 0),
            "lossy_dropped": t.get("lossy_dropped", 0),
            "dropped_miscounted": t.get("dropped_miscounted", 0),
            "stream_timeouts": t.get("stream_timeouts", 0),
            "frames_served": t.get("served_frames", 0),
            "frames_relayed": t.get("relay_frames", 0),
            "relayed_frames_checked": t.get("relayed_frames", 0),
            "net_rejected": t.get("served_rejected", 0) + t.get("relay_rejected", 0),
        }
        result["blocked"] += t.get("blocked", 0)
        result["violations"] = violations(result)
        return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now, for the network bridge's server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cpu_state(pid: int) -> tuple[float, str]:
    """A process's CPU seconds so far and its scheduler state (R, S, D, ...)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, "?"
    return (int(fields[11]) + int(fields[12])) / TICKS, fields[0]


def _samples(lines: list[str], per_kind: int = 3) -> list[str]:
    """The first few descriptions of each kind of failure."""
    kept: list[str] = []
    for line in lines:
        kind = line.split(":", 1)[0]
        if sum(k.split(":", 1)[0] == kind for k in kept) < per_kind:
            kept.append(line)
    return kept


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def violations(s: dict[str, Any]) -> list[str]:
    """The invariants the soak promises; empty when it passed."""
    found = [f"{name} = {s[name]}" for name in
             ("torn", "backwards", "cancelled_seen", "views_changed", "kept_views_changed",
              "loans_left_writable", "leaked", "blocked", "errors", "unexpected_exits",
              "lossless_gaps", "dropped_miscounted", "net_rejected")
             if s[name]]
    if s["kills"] == 0:
        found.append("no participant was killed")
    if s["survivors_measured"] == 0:
        found.append("no survivor lived long enough to measure its growth")
    if s["max_fd_growth"] > FD_SLACK:
        found.append(f"descriptors grew by {s['max_fd_growth']} in a survivor")
    if s["max_maps_growth"] > MAPS_SLACK:
        found.append(f"mappings grew by {s['max_maps_growth']} in a survivor")
    if s["max_rss_growth_mib"] > RSS_BOUND_MIB:
        found.append(f"RSS grew by {s['max_rss_growth_mib']} MiB in a survivor")
    return found
