"""The repository's performance check (benchmarks/acceptance.py), over bench JSON documents.

The check lives outside the package; it is imported by path, and skipped with
the reason where the tests run from a copy without the repository beside them.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from shmimage.bench.build import build_figures
from shmimage.bench.measure import CPU, MEMCPY, ROUND_TRIPS, STREAMS, WAKE, WAKE_TRIPS
from shmimage.bench.suite import Results

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if not (BENCHMARKS / "acceptance.py").is_file():
    pytest.skip(f"no {BENCHMARKS}: the tests run outside the repository",
                allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))
acceptance = importlib.import_module("acceptance")
targets = importlib.import_module("targets")

FOUR_K = targets.FOUR_K
VERDICT_HEADER = "| figure | size | shmimage | baseline | ratio | 95% interval | target | verdict |"


def _figure(fid: str, size: str | None, ratio: float | None, interval: Any = None,
            value: float | None = None, skipped: str | None = None,
            runs: int = 35) -> dict[str, Any]:
    return {"id": fid, "figure": fid, "size": size, "value": value, "ratio": ratio,
            "interval": interval, "skipped": skipped, "runs": runs}


@pytest.mark.parametrize(
    ("op", "limit", "ratio", "interval", "verdict"),
    [
        ("<=", 2.2, 2.0, [1.9, 2.1], targets.MET),
        ("<=", 2.2, 2.2, [2.0, 2.4], targets.MET),
        ("<=", 2.2, 2.3, [2.15, 2.5], targets.MET_WITHIN_NOISE),
        ("<=", 2.2, 2.3, [2.2, 2.5], targets.MET_WITHIN_NOISE),  # the bound counts
        ("<=", 2.2, 2.3, [2.25, 2.5], targets.SHORT),
        ("<=", 2.2, 2.3, None, targets.SHORT),  # no interval: the median alone
        (">=", 0.9, 0.95, [0.8, 1.0], targets.MET),
        (">=", 0.9, 0.85, [0.7, 0.91], targets.MET_WITHIN_NOISE),
        (">=", 0.9, 0.85, [0.7, 0.89], targets.SHORT),
    ],
)
def test_verdict_by_median_then_interval(op: str, limit: float, ratio: float,
                                         interval: Any, verdict: str) -> None:
    target = targets.Target("x", "x", op, limit)
    assert target.verdict(_figure("x", FOUR_K, ratio, interval)) == verdict


def test_value_target_and_skipped_figure() -> None:
    rss = targets.Target("rss/view", "rss", "<", 1.0, at="none", unit=" MiB")
    assert rss.verdict(_figure("rss/view", None, 0.0, value=0.2)) == targets.MET
    assert rss.verdict(_figure("rss/view", None, 0.1, value=1.2)) == targets.SHORT
    skipped = _figure("rss/view", None, None, skipped="procfs unavailable")
    assert rss.verdict(skipped) == targets.SKIPPED


@pytest.mark.parametrize(("op", "limit", "at"), [("==", 1.0, "every"), ("<=", 0.0, "every"),
                                                 ("<=", 1.0, "sometimes")])
def test_target_rejects_nonsense(op: str, limit: float, at: str) -> None:
    with pytest.raises(ValueError):
        targets.Target("x", "x", op, limit, at=at)


def test_size_rules() -> None:
    at_4k = targets.Target("x", "x", "<=", 1.0, at="4K")
    every = targets.Target("x", "x", "<=", 1.0)
    once = targets.Target("x", "x", "<=", 1.0, at="none")
    assert at_4k.applies_to(FOUR_K) and not at_4k.applies_to("640x480")
    assert every.applies_to("640x480") and not every.applies_to(None)
    assert once.applies_to(None) and not once.applies_to(FOUR_K)


def _document(sizes: list[str], stalls: int = 0) -> dict[str, Any]:
    """What the bench writes, from synthetic runs of every method at ``sizes`` (and
    ``stalls`` stream runs dropped because iceoryx2's publisher stalled)."""
    results = Results(stalls={f"{STREAMS}iceoryx2": stalls, f"{STREAMS}shmimage": 0})
    s = results.samples
    for size in sizes:
        for name in ROUND_TRIPS:
            s[f"rt/{name}/{size}"], s[f"{MEMCPY}rt/{name}/{size}"] = [4.0] * 30, [2.0] * 30
        s[f"rt/shmimage read()/{size}"] = [1.0] * 30
        for name in WAKE_TRIPS:  # own wake-ups: shmimage 1.0, iceoryx2 (and others) 2.0
            wall = 1.0 if name.startswith("shmimage") else 2.0
            s[f"{WAKE}{name}/{size}"], s[f"{CPU}{WAKE}{name}/{size}"] = [wall] * 30, [wall] * 30
        s[f"publish/{size}"], s[f"{MEMCPY}publish/{size}"] = [2.0] * 30, [2.0] * 30
        s[f"fanout/{size}"], s[f"fanout1/{size}"] = [1.0] * 30, [1.0] * 30
        s[f"first/shmimage/{size}"], s[f"first/mp/{size}"] = [1.0] * 30, [2.0] * 30
    for key in ("lock/shmimage", "lock/multiprocessing.Lock", "wake/shmimage",
                "wake/posix_ipc", "wake/Pipe", "wake/pyshmem"):
        s[key] = [1.0] * 30
    s[f"{STREAMS}shmimage"], s[f"{CPU}{STREAMS}shmimage"] = [0.9] * 30, [1.0] * 30
    s[f"{STREAMS}iceoryx2"], s[f"{CPU}{STREAMS}iceoryx2"] = [1.0] * 30, [2.0] * 30
    results.memory = {"rss_before": 0, "rss_in_view": 4096, "rss_with_copy": 33 << 20}
    figures = build_figures(results, sizes)
    return {"format": acceptance.FORMAT, "machine": {"cpu": "test", "cores": 2},
            "settings": {"sizes": sizes}, "stalls": results.stalls,
            "figures": [f.to_json() for f in figures]}


def _run(tmp_path: Path, doc: Any, *args: str) -> int:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    return int(acceptance.main([str(path), *args]))


def test_a_bench_document_is_judged_target_by_target(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, _document([FOUR_K, "640x480"])) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("publish + read() round"))
    assert "3840x2160" in row and "0.5x" in row and row.rstrip().endswith("met")
    read_rows = [line for line in out.splitlines() if "publish + read() round" in line]
    assert len(read_rows) == 1, "an 'at 4K' target is judged at 3840x2160 only"
    peer_rows = [line for line in out.splitlines() if "fastest peer's copy" in line]
    assert len(peer_rows) == 2, "an 'every size' target is judged at every size"
    wake = next(line for line in out.splitlines() if "posix_ipc semaphores" in line)
    assert wake.rstrip().endswith("short")  # 1.0x posix_ipc, over its 0.5x
    iox = [line for line in out.splitlines() if "iceoryx2 receive + view, own wake-ups" in line]
    assert len(iox) == 2 and all("0.5x" in row and row.rstrip().endswith("met") for row in iox)
    assert "not measured: streams" not in out and "not measured: iceoryx2" not in out
    stream = next(line for line in out.splitlines() if line.startswith("streams:"))
    assert "1.11x" in stream and stream.rstrip().endswith("met")  # 1/0.9 the fps
    assert "streams/iceoryx2 per frame, all 5 processes: shmimage 1000000.0 us" in out
    assert "CPU time per round trip" in out and "view/iceoryx2 at 640x480: shmimage 1000000.0 us" in out
    assert "note:" not in out  # 30 runs per figure: verdicts count


def test_strict_fails_when_short_and_markdown(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    doc = _document([FOUR_K])
    assert _run(tmp_path, doc, "--strict") == 1  # the wake-up target is short here
    capsys.readouterr()
    assert _run(tmp_path, doc, "--markdown") == 0
    assert VERDICT_HEADER in capsys.readouterr().out


def test_quick_runs_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _document([FOUR_K])
    for figure in doc["figures"]:
        figure["runs"] = 15
    assert _run(tmp_path, doc) == 0
    assert "note: figures of as few as 15 runs" in capsys.readouterr().out


def test_a_target_without_its_figure_fails(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc = _document([FOUR_K])
    doc["figures"] = [f for f in doc["figures"] if f["id"] != "fanout/one-reader"]
    assert _run(tmp_path, doc) == 2
    assert "no figure for fanout/one-reader at 3840x2160" in capsys.readouterr().err


@pytest.mark.parametrize("doc", [[], {"figures": []}, {"format": 1, "figures": []}])
def test_not_a_bench_document(tmp_path: Path, doc: Any,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, doc) == 2
    assert "not a shmimage bench --json document" in capsys.readouterr().err


def test_the_readme_section_is_generated_from_the_json(tmp_path: Path) -> None:
    readme_results = importlib.import_module("readme_results")
    doc = _document([FOUR_K])
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{readme_results.BEGIN}\nold, by hand\n{readme_results.END}\nafter\n")
    assert readme_results.main([str(path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old, by hand" not in text and text.endswith(f"{readme_results.END}\nafter\n")
    assert "| figure | size | shmimage | baseline | ratio | 95% interval |" in text
    assert VERDICT_HEADER in text
    assert "Machine: cpu test, cores 2." in text  # an older machine record: as it is
    assert "This run unknown from commit unknown, on test with 2 cores" in text
    assert readme_results.main([str(path), "--readme", str(readme)]) == 0
    assert readme.read_text() == text, "regenerating from the same run changes nothing"
    readme.write_text("no markers\n")
    assert readme_results.main([str(path), "--readme", str(readme)]) == 2


def test_stalls_of_the_stream_peer_are_noted_where_the_figure_is_judged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _document([FOUR_K], stalls=2)
    stream = next(f for f in doc["figures"] if f["id"] == "streams/iceoryx2")
    assert "stalled in 2 run(s)" in stream["note"] and "(30 run(s) counted)" in stream["note"]
    assert _run(tmp_path, doc) == 0
    out = capsys.readouterr().out
    assert "note: streams: 4 lossless subscribers vs iceoryx2 (fps): iceoryx2's blocking " \
           "publisher stalled in 2 run(s)" in out
    readme_results = importlib.import_module("readme_results")
    body = readme_results.section(doc, None)
    assert "Note: streams: 4 lossless subscribers vs iceoryx2 (fps): iceoryx2's" in body
    assert "note: streams, 4 lossless subscribers" in body  # under the bench's own table
    quiet = _document([FOUR_K])
    assert not any(f.get("note") for f in quiet["figures"]), "no stall, no note"
    assert "stalled" not in readme_results.section(quiet, None)


def test_the_run_facts_head_the_readme_section() -> None:
    readme_results = importlib.import_module("readme_results")
    doc = _document([FOUR_K])
    doc["machine"] |= {"date": "2026-01-02T03:04:05+00:00", "commit": "abc123+dirty",
                       "load_average_1min": 0.5, "load_average_1min_end": 0.75}
    body = readme_results.section(doc, None)
    assert ("This run 2026-01-02T03:04:05+00:00 from commit abc123+dirty, on test with 2 "
            "cores, load average 0.5 at start and 0.75 at the end.") in body


#: Seconds a --quick run may take on a loaded two-core machine before the test fails.
QUICK_TIMEOUT = 600


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JSON of a real ``shmimage bench --quick`` run (3840x2160: every target applies)."""
    out = tmp_path_factory.mktemp("quick") / "bench.json"
    done = subprocess.run([sys.executable, "-m", "shmimage.bench", "--quick", "--json",
                           str(out)], capture_output=True, text=True, timeout=QUICK_TIMEOUT,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _verdict_rows(text: str) -> list[list[str]]:
    table = text[text.index(VERDICT_HEADER):].split("\n\n")[0].splitlines()[2:]
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in table]


def test_the_readme_section_from_a_quick_run_judges_every_target(
        quick_json: Path, tmp_path: Path) -> None:
    readme_results = importlib.import_module("readme_results")
    doc = json.loads(quick_json.read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{readme_results.BEGIN}\n{readme_results.END}\n")
    assert readme_results.main([str(quick_json), "--readme", str(readme)]) == 0
    text = readme.read_text()
    rows = _verdict_rows(text)
    assert all(len(row) == len(acceptance.COLUMNS) for row in rows), rows
    judged = {(row[0], row[1]): row for row in rows}
    sizes: list[str | None] = [*doc["settings"]["sizes"], None]
    for target in targets.TARGETS:
        for size in filter(target.applies_to, sizes):
            row = judged.get((target.text, size or ""))
            assert row is not None, f"no verdict row for {target.figure_id} at {size}"
            assert row[6] == target.label(), row
            kind = row[7].split(":")[0]
            assert kind in (targets.MET, targets.MET_WITHIN_NOISE, targets.SHORT,
                            targets.SKIPPED), row
            if kind != targets.SKIPPED and target.op != "<":
                assert row[4].endswith("x") and row[5].endswith("x"), row  # ratio, interval
                assert row[2] != "-" and row[3] != "-", row  # the figure and its baseline
    assert any(text.startswith("streams:") for text, _ in judged)
    assert sum(text.startswith("across hosts") for text, _ in judged) == 4
    machine = doc["machine"]
    assert f"This run {machine['date']} from commit {machine['commit'] or 'unknown'}" in text
    assert f"with {machine['cores']} cores, load average {machine['load_average_1min']} " \
           f"at start and {machine['load_average_1min_end']} at the end" in text
    assert doc["settings"]["wake_trips_per_run"][FOUR_K]["shmimage loan()+view()"] >= 20
    if "iceoryx2" not in doc["skipped"]:
        stalls = doc["stalls"]["streams/iceoryx2"]
        assert ("stalled in" in text) == (stalls > 0), stalls
    assert readme_results.main([str(quick_json), "--readme", str(readme)]) == 0
    assert readme.read_text() == text, "regenerating from the same run changes nothing"
