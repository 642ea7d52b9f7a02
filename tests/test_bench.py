"""The benchmark suite's own logic: figures, intervals, processes, and a real --quick run.

No timing is asserted anywhere: only that every figure is measured (or skipped
with its reason) and reported in the shape the specification asks for.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from shmimage.bench import main, methods_peers, methods_streams, placement, report
from shmimage.bench.bootstrap import ratio_interval
from shmimage.bench.build import build_figures
from shmimage.bench.figures import Figure
from shmimage.bench.frames import make_frame, parse_size
from shmimage.bench.measure import (
    COPY_PEERS,
    CPU,
    FAN_OUT,
    MEMCPY,
    ROUND_TRIPS,
    STREAMS,
    WAKE,
    WAKE_TRIPS,
)
from shmimage.bench.methods_wakeup import PipePingPong, ping_pong
from shmimage.bench.optional import OPTIONAL
from shmimage.bench.pool import ReaderError, ReaderFailed, ReaderPool
from shmimage.bench.roundtrip import Writer, round_trip
from shmimage.bench.suite import Results, Settings, Suite
from shmimage.bench.timing import MIN_RUNS, Repeats, timed_alternating, timed_bracketed

RUN_TIMEOUT = 600
JOIN_TIMEOUT = 30
SHM_DIR = "/dev/shm"
SIZE = "3840x2160"
#: The figures every run reports (by id), at each size or once.
SIZED_IDS = {"publish/memcpy", "read/memcpy", "read/fastest-peer", "view/memcpy",
             "loan/memcpy", "fanout/one-reader", "first-publish/mp", "read/qt", "view/qt",
             "read-out/fastest-kept-peer", "read/iceoryx2", "read-out/iceoryx2", "view/iceoryx2",
             "loan/iceoryx2", "loan/wake", "read/pyzmq", "view/pyzmq", "view/imagezmq",
             "cpu/read/iceoryx2", "cpu/view/iceoryx2", "cpu/loan/iceoryx2", "cpu/loan/wake",
             "read/iceoryx2-pipe", "view/iceoryx2-pipe", "loan/iceoryx2-pipe",
             "view/pyzmq-pipe", "view/imagezmq-pipe"}
GLOBAL_IDS = {"lock/mp-lock", "wake/posix_ipc", "wake/pipe", "wake/pyshmem", "rss/view",
              "streams/iceoryx2", "cpu/streams/iceoryx2"}


# -- ratios and their intervals ----------------------------------------------------
def test_figure_ratio_direction() -> None:
    slower = Figure("f", "f", "s", value=4.0, baseline_name="b", baseline=2.0)
    assert slower.ratio == 2.0
    faster = Figure("f", "f", "s", value=4.0, baseline_name="b", baseline=200.0, inverse=True)
    assert faster.ratio == 50.0


def test_figure_skipped_has_no_ratio() -> None:
    skipped = Figure("f", "f", "s", value=None, baseline_name="b", baseline=1.0,
                     skipped="pyshmem not installed")
    assert skipped.ratio is None
    assert skipped.to_json()["skipped"] == "pyshmem not installed"
    assert "met" not in skipped.to_json() and "target" not in skipped.to_json()


def test_interval_of_constant_runs_is_the_ratio() -> None:
    assert ratio_interval([3.0] * 30, [1.5] * 30) == (2.0, 2.0)


def test_interval_brackets_the_median_ratio_and_narrows_with_runs() -> None:
    rng = np.random.default_rng(1)
    few = ratio_interval(rng.normal(2.0, 0.2, 30), rng.normal(1.0, 0.1, 30))
    many = ratio_interval(rng.normal(2.0, 0.2, 3000), rng.normal(1.0, 0.1, 3000))
    assert few is not None and many is not None
    assert few[0] < 2.0 < few[1] and many[0] < 2.0 < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 3


def test_interval_keeps_pairs_together() -> None:
    """A slow spell that hits a run and its baseline alike does not widen the interval."""
    spell = np.repeat([1.0, 5.0], 20)
    assert ratio_interval(2 * spell, spell) == (2.0, 2.0)  # paired: the ratio is always 2
    unpaired = ratio_interval(2 * spell, spell[:-1])
    assert unpaired is not None and unpaired[1] - unpaired[0] > 1


def test_interval_without_runs_is_none() -> None:
    assert ratio_interval([], [1.0]) is None
    assert ratio_interval([1.0], [0.0, 0.0]) is None


# -- settings -------------------------------------------------------------------------
def test_repeats_need_the_spec_minimum() -> None:
    with pytest.raises(ValueError):
        Repeats(warmup=1, runs=MIN_RUNS - 1)
    with pytest.raises(ValueError):
        Repeats(warmup=0, runs=MIN_RUNS)
    assert Repeats(warmup=1, runs=15, rounds=4).per_round == 4


@pytest.mark.parametrize("text", ["", "640", "0x480", "640x-1", "axb", "640x480x4"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_size_and_frame() -> None:
    assert parse_size("640x480") == (480, 640)
    frame = make_frame(*parse_size("64x48"))
    assert frame.shape == (48, 64, 4) and frame.dtype == np.uint8
    assert (frame[..., 3] == 255).all()


@pytest.mark.parametrize("argv", [["--runs", "3"], ["--size", "big"], ["--bogus"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    usage = capsys.readouterr().out
    assert all(option in usage for option in ("--quick", "--json", "--plot"))


def test_unwritable_outputs_are_refused_before_running(tmp_path: Path) -> None:
    assert main(["--quick", "--json", str(tmp_path / "missing" / "out.json")]) == 1
    assert main(["--quick", "--json", str(tmp_path)]) == 1


def test_timed_alternating_interleaves() -> None:
    order: list[str] = []
    got = timed_alternating({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                            warmup=1, runs=3, after={"a": lambda: order.append("-")})
    assert order == ["a", "-", "b"] * 4
    assert [len(v) for v in got.values()] == [3, 3]


def test_timed_bracketed_runs_the_figure_back_to_back_between_baselines() -> None:
    order: list[str] = []
    figure, baseline = timed_bracketed(lambda: order.append("f"), lambda: order.append("b"),
                                       warmup=1, runs=3)
    assert order == ["b"] * 3 + ["f"] * 4 + ["b"]  # one baseline warm-up, one figure warm-up
    assert len(figure) == 3 and len(baseline) == 3


# -- figures from results -------------------------------------------------------------
def _synthetic_results(size: str, skipped: dict[str, str]) -> Results:
    results = Results(skipped=skipped)
    s = results.samples
    for name in ROUND_TRIPS:
        s[f"rt/{name}/{size}"] = [4.0]
        s[f"{MEMCPY}rt/{name}/{size}"] = [2.0]
    s[f"rt/posix_ipc/{size}"] = [3.0]  # the fastest peer
    s[f"rt/shmimage read()/{size}"] = [4.5]  # 2.25x memcpy
    for name in WAKE_TRIPS:  # own wake-ups: shmimage 3 s (CPU 1 s) per trip, the peers 2 s
        mine = name.startswith("shmimage")
        s[f"{WAKE}{name}/{size}"] = [3.0 if mine else 2.0]
        s[f"{CPU}{WAKE}{name}/{size}"] = [1.0 if mine else 2.0]
    s[f"publish/{size}"], s[f"{MEMCPY}publish/{size}"] = [2.0], [2.0]
    s[f"fanout/{size}"], s[f"fanout1/{size}"] = [1.0], [1.0]
    s[f"first/shmimage/{size}"], s[f"first/mp/{size}"] = [1.0], [2.0]
    for key in ("lock/shmimage", "lock/multiprocessing.Lock", "wake/shmimage",
                "wake/posix_ipc", "wake/Pipe"):
        s[key] = [1.0]
    # Streams: shmimage 1 ms per frame (CPU 2 ms), iceoryx2 2 ms (CPU 1 ms).
    s[f"{STREAMS}shmimage"], s[f"{CPU}{STREAMS}shmimage"] = [1e-3], [2e-3]
    s[f"{STREAMS}iceoryx2"], s[f"{CPU}{STREAMS}iceoryx2"] = [2e-3], [1e-3]
    results.memory = {"rss_before": 0, "rss_in_view": 4096, "rss_with_copy": 33 << 20}
    return results


def test_build_figures_has_every_figure_with_its_interval() -> None:
    figures = build_figures(_synthetic_results(SIZE, {}), [SIZE])
    ids = {(f.id, f.size) for f in figures}
    assert {(i, SIZE) for i in SIZED_IDS} | {(i, None) for i in GLOBAL_IDS} <= ids
    assert len(ids) == len(figures), "an id names one figure per size"
    names = {f.name for f in figures}
    for peer in COPY_PEERS + ("pickle over Pipe", "Qt example (QSharedMemory)"):
        assert f"baseline round trip: {peer}" in names
    by_id = {f.id: f for f in figures}
    fastest = by_id["read/fastest-peer"]
    assert fastest.baseline_name == "posix_ipc round trip" and fastest.ratio == 1.5
    assert fastest.interval == (1.5, 1.5)
    assert by_id["publish/memcpy"].interval == (1.0, 1.0)
    assert by_id["read/qt"].ratio == 4.0 / 4.5  # inverse: the Qt time over read()'s
    assert by_id["rss/view"].value == 4096 / 2**20
    view = by_id["view/iceoryx2"]
    assert view.ratio == 1.5 and view.baseline_name == "iceoryx2 receive+view"
    assert by_id["cpu/view/iceoryx2"].ratio == 0.5 and by_id["cpu/view/iceoryx2"].value == 1.0
    assert by_id["loan/wake"].ratio == 1.0  # both are shmimage's
    stream = by_id["streams/iceoryx2"]  # frames per second: twice iceoryx2's
    assert stream.ratio == 2.0 and stream.size is None and stream.inverse
    assert by_id["cpu/streams/iceoryx2"].ratio == 2.0  # CPU per frame: twice iceoryx2's
    table = report.table(figures, {})
    assert "95% interval" in table and "1.5-1.5x" in table and "posix_ipc round trip" in table
    assert "met" not in table and "target" not in table


def test_missing_peer_is_reported_skipped_not_dropped() -> None:
    reason = "not installed (ImportError); pip install 'shmimage[bench]'"
    results = _synthetic_results(SIZE, {"pyshmem": reason})
    del results.samples[f"rt/pyshmem/{SIZE}"]
    figures = build_figures(results, [SIZE])
    row = next(f for f in figures if f.name == "baseline round trip: pyshmem")
    assert row.ratio is None and row.interval is None and "not installed" in (row.skipped or "")
    assert "skipped: pyshmem" in report.table(figures, results.skipped)


def test_missing_iceoryx2_and_read_out_skip_their_figures_only() -> None:
    results = _synthetic_results(SIZE, {"iceoryx2": "not installed (ImportError)",
                                        "read(out=)": "not in this version"})
    for key in [k for k in results.samples if "iceoryx2" in k or "read(out=)" in k]:
        del results.samples[key]
    by_id = {f.id: f for f in build_figures(results, [SIZE])}
    for fid in ("view/iceoryx2", "cpu/loan/iceoryx2", "view/iceoryx2-pipe"):
        assert "iceoryx2 not installed" in (by_id[fid].skipped or ""), fid
    assert "not in this version" in (by_id["read-out/fastest-kept-peer"].skipped or "")
    assert by_id["view/pyzmq"].ratio == 1.5 and by_id["loan/wake"].skipped is None


def test_rss_without_procfs_is_skipped_with_the_reason() -> None:
    results = _synthetic_results(SIZE, {"procfs": "unavailable: no /proc"})
    results.memory = {}
    figures = build_figures(results, [SIZE])
    row = next(f for f in figures if f.id == "rss/view")
    assert row.value is None and "no /proc" in (row.skipped or "")


def test_stream_stalls_of_the_peer_are_noted_and_written() -> None:
    results = _synthetic_results(SIZE, {})
    results.stalls = {f"{STREAMS}iceoryx2": 3, f"{STREAMS}shmimage": 0}
    figures = build_figures(results, [SIZE])
    stream = next(f for f in figures if f.id == "streams/iceoryx2")
    counted = len(results.samples[f"{STREAMS}iceoryx2"])
    assert stream.note is not None and "stalled in 3 run(s)" in stream.note
    assert f"({counted} run(s) counted)" in stream.note
    assert stream.to_json()["note"] == stream.note
    assert f"note: {stream.name}: {stream.note}" in report.table(figures, {})
    assert f"note: {stream.name}" in report.markdown_table(figures)
    doc = report.document(figures, results, {}, {})
    assert doc["stalls"] == {f"{STREAMS}iceoryx2": 3, f"{STREAMS}shmimage": 0}
    results.stalls = {f"{STREAMS}iceoryx2": 0}
    figures = build_figures(results, [SIZE])
    assert not any(f.note for f in figures) and "note:" not in report.table(figures, {})


def test_the_suite_adds_up_the_stalls_of_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def stalled_once(spawn: object, readers: object, systems: list[str], warmup: int,
                     runs: int) -> methods_streams.StreamRuns:
        got = methods_streams.StreamRuns({n: [1.0] * runs for n in systems},
                                         {n: [1.0] * runs for n in systems})
        got.stalls = {"iceoryx2": 1} if "iceoryx2" in systems else {}
        return got

    monkeypatch.setattr(methods_streams, "stream_runs", stalled_once)
    suite = Suite(Settings.make(quick=True), {})
    pool = types.SimpleNamespace(readers=[None] * FAN_OUT, lock=None)
    monkeypatch.setattr(suite.measure, "pool", lambda: pool)
    for _ in range(2):
        suite.measure.streams()
    assert suite.results.stalls == {f"{STREAMS}{name}": 2 if name == "iceoryx2" else 0
                                    for name in methods_streams.SYSTEMS}


def test_failed_measurement_is_reported() -> None:
    results = _synthetic_results(SIZE, {})
    del results.samples[f"fanout/{SIZE}"]
    results.failures[f"fanout/{SIZE}"] = "ReaderError: boom"
    figures = build_figures(results, [SIZE])
    row = next(f for f in figures if f.id == "fanout/one-reader")
    assert row.skipped == "failed: ReaderError: boom"


# -- real processes -------------------------------------------------------------------
class _GoToPickleReader(Writer):
    """Sends a bare GO to a reader that expects a pickle: its step must fail."""

    reader_role = f"{methods_peers.__name__}:PickleReader"

    def publish(self) -> None:
        pass


def test_round_trips_and_ping_pong_in_real_processes() -> None:
    frame = make_frame(24, 32)
    with ReaderPool(1) as pool:
        with methods_peers.MpSharedMemoryWriter(frame) as writer:
            got = round_trip(writer, pool.readers, warmup=1, runs=3)
        assert len(got["rt"]) == 3 and all(t > 0 for t in got["rt"])
        reader = pool.readers[0]
        pinger = PipePingPong(reader.conn)
        samples = ping_pong(reader, pinger.role, {}, pinger.exchange, warmup=1, runs=2)
        assert len(samples) == 20


def test_reader_failures_surface_and_the_pool_recovers() -> None:
    frame = make_frame(24, 32)
    with ReaderPool(1) as pool:
        with pytest.raises(ReaderFailed, match="UnpicklingError|pickle"):
            round_trip(_GoToPickleReader(), pool.readers, warmup=1, runs=1)
        with pytest.raises(ReaderFailed, match="FileNotFoundError"):
            pool.readers[0].setup(methods_peers.MpSharedMemoryWriter.reader_role,
                                  {"name": "shb-no-such-segment", "shape": (1, 1, 4)})
        with methods_peers.PickleWriter(frame) as writer:  # the same reader still works
            assert len(round_trip(writer, pool.readers, warmup=1, runs=1)["rt"]) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_reader_is_an_error_not_a_hang() -> None:
    frame = make_frame(24, 32)
    with ReaderPool(1) as pool:
        reader = pool.readers[0]
        os.kill(reader.process.pid, signal.SIGKILL)
        reader.process.join(JOIN_TIMEOUT)
        with methods_peers.PickleWriter(frame) as writer, pytest.raises(ReaderError):
            round_trip(writer, pool.readers, warmup=1, runs=1)


def _allowed(pid: int) -> set[int]:
    return set(os.sched_getaffinity(pid))


@pytest.mark.skipif(placement.pair() is None, reason="needs two CPUs and sched_setaffinity")
def test_round_trips_run_on_two_cpus_and_the_placement_is_undone() -> None:
    cpus = placement.pair()
    assert cpus is not None and cpus[0] != cpus[1]
    mine = _allowed(0)
    with ReaderPool(2) as pool:
        first, second = (reader.process.pid for reader in pool.readers)
        before = _allowed(first), _allowed(second)
        with placement.pinned(cpus, pool.readers[0]):
            assert _allowed(0) == {cpus[0]} and _allowed(first) == {cpus[1]}
            assert _allowed(second) == before[1], "only the first reader is placed"
            with methods_peers.MpSharedMemoryWriter(make_frame(24, 32)) as writer:
                assert len(round_trip(writer, pool.readers[:1], warmup=1, runs=2)["rt"]) == 2
        assert (_allowed(0), _allowed(first), _allowed(second)) == (mine, *before)
        with pytest.raises(RuntimeError, match="boom"), placement.pinned(cpus, pool.readers[0]):
            raise RuntimeError("boom")
        assert _allowed(0) == mine, "the writer's CPUs come back after a failure too"


@pytest.mark.skipif(placement.pair("one-cpu") is None, reason="needs sched_setaffinity")
def test_one_cpu_placement_puts_both_on_the_same_cpu() -> None:
    cpu, same = placement.pair("one-cpu") or (None, None)
    assert cpu == same and cpu in _allowed(0)
    assert placement.pair("scheduler") is None
    with pytest.raises(ValueError, match="placement must be one of"):
        placement.pair("anywhere")
    with ReaderPool(1) as pool, placement.pinned((cpu, cpu), pool.readers[0]):
        assert _allowed(0) == _allowed(pool.readers[0].process.pid) == {cpu}


def test_only_round_trips_are_placed() -> None:
    """Processes started while the writer is pinned would inherit its one CPU, and a
    copy in one process may use both CPUs."""
    suite = Suite(Settings.make(quick=True), {})
    placed = {step.key for step in suite.measure.plan([SIZE]) if step.placed}
    assert placed == ({f"rt/{name}/{SIZE}" for name in ROUND_TRIPS}
                      | {f"{WAKE}{SIZE}", f"fanout/{SIZE}", "wake/shmimage", "wake/posix_ipc",
                         "wake/Pipe", "wake/pyshmem"})


# -- the real suite ---------------------------------------------------------------------
def _shm_entries() -> set[str]:
    return set(os.listdir(SHM_DIR)) if os.path.isdir(SHM_DIR) else set()


def _left_by(pid: int, before: set[str]) -> list[str]:
    """New entries named by the suite run in process ``pid``: every name it gives
    (shmimage keys, multiprocessing, posix_ipc and SharedArray names) holds
    "shb", a letter and the pid, so other test runs on the machine do not count."""
    mine = re.compile(rf"shb[a-z]{pid % 10000:04d}")
    return sorted(e for e in _shm_entries() - before if mine.search(e))


def _pyshmem_lock_files() -> set[str]:
    uid = os.getuid() if hasattr(os, "getuid") else 0  # as pyshmem names the folder
    folder = Path(tempfile.gettempdir(), f"pyshmem-locks-{uid}")
    return set(os.listdir(folder)) if folder.is_dir() else set()


def _run_folders(pid: int) -> set[str]:
    """The temporary folders of the bench run in process ``pid`` (iceoryx2's root, ipc://
    sockets, pyshmem's locks): other runs on the machine do not count."""
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"shmimage-bench-{pid}-*")}


def _run_bench(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmimage.bench", *args], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, check=False)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def test_quick_run_writes_every_figure_as_json(tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["--quick", "--json", str(out)]
    if _installed("matplotlib"):
        args += ["--plot", str(png)]
    before, locks_before = _shm_entries(), _pyshmem_lock_files()
    done = _run_bench(args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round 1/" in done.stderr  # progress while it runs
    assert "95% interval" in done.stdout and "numpy.copyto" in done.stdout
    assert not re.search(r"\bmet\b|target|short", done.stdout), "it judges nothing"
    doc = json.loads(out.read_text())
    # The one failure tolerated: iceoryx2's blocking publisher stalling in the stream
    # figure (seen on loaded machines), which the suite reports instead of hanging.
    assert all(key.endswith("streams/iceoryx2") and "was killed" in reason
               for key, reason in doc["failures"].items()), doc["failures"]
    figures = doc["figures"]
    assert {(i, SIZE) for i in SIZED_IDS} | {(i, None) for i in GLOBAL_IDS} <= {
        (f["id"], f["size"]) for f in figures}
    for figure in figures:
        assert figure["ratio"] is not None or figure["skipped"], figure
        if figure["ratio"] is not None and figure["id"] != "rss/view":
            low, high = figure["interval"]
            assert low <= figure["ratio"] <= high, figure
    for name, (module, _) in OPTIONAL.items():
        assert (name in doc["skipped"]) != _installed(module.split(".")[0]), name
    if _installed("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(n >= MIN_RUNS for n in doc["runs"].values()), doc["runs"]
    assert doc["pid"], "the JSON names the process that ran the suite"
    cpus = placement.pair()
    assert doc["settings"]["cpus"] == (list(cpus) if cpus else None)
    assert doc["machine"]["date"] and "load_average_1min_end" in doc["machine"]
    assert set(doc["stalls"]) == {f"{STREAMS}{name}" for name in methods_streams.SYSTEMS
                                  if name not in doc["skipped"]}, doc["stalls"]
    assert not _left_by(doc["pid"], before), f"the suite left segments in {SHM_DIR}"
    assert _pyshmem_lock_files() <= locks_before, "pyshmem lock files left behind"
    assert not _run_folders(doc["pid"]), "the peers' temporary folder was left behind"


@pytest.mark.skipif(sys.platform == "win32", reason="Windows ends a process, not signals it")
@pytest.mark.parametrize("during", ["round trip: multiprocessing.shared_memory",
                                    "round trip: iceoryx2 receive+view",
                                    "own wake-ups",
                                    "first publish into a new segment",
                                    "across hosts"])
def test_sigterm_mid_run_leaves_nothing_behind(during: str) -> None:
    before = _shm_entries()
    proc = subprocess.Popen([sys.executable, "-m", "shmimage.bench", "--quick"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # a few methods in: segments and readers are live
            if during in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(JOIN_TIMEOUT)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err
    assert not _left_by(proc.pid, before), f"the suite left segments in {SHM_DIR}"
    assert not _run_folders(proc.pid), "the peers' temporary folder was left behind"


def test_tiny_sizes_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    done = _run_bench(["--quick", "--size", "32x24", "--size", "64x48", "--json", str(out),
                       "--markdown", "--placement", "scheduler"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the scheduler placed the writer and its reader" in done.stdout
    assert json.loads(out.read_text())["settings"]["cpus"] is None
    assert done.stdout.startswith("## Benchmark results")
    assert "| figure | size | shmimage | baseline | ratio | 95% interval |" in done.stdout
    doc = json.loads(out.read_text())
    sized = [f for f in doc["figures"] if f["size"] is not None]
    assert {f["size"] for f in sized} == {"32x24", "64x48"}
