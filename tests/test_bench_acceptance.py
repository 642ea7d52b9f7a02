"""The repository's performance check (benchmarks/acceptance.py), over bench JSON documents.

The check lives outside the package; it is imported by path, and skipped with
the reason where the tests run from a copy without the repository beside them.
"""
from __future__ import annotations

import importlib
import json
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


def _document(sizes: list[str]) -> dict[str, Any]:
    """What the bench writes, from synthetic runs of every method at ``sizes``."""
    results = Results()
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
            "settings": {"sizes": sizes}, "figures": [f.to_json() for f in figures]}


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
