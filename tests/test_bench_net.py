"""The across-hosts figure of ``shmimage bench``: its figures, its verdicts, a real run."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("zmq", reason="the across-hosts figure needs pyzmq (the net extra)")

from shmimage.bench import across_hosts as net
from shmimage.bench.build import build_figures
from shmimage.bench.suite import Results

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not BENCHMARKS.is_dir():
    pytest.skip("the repository's benchmarks/ folder is not here (an installed wheel)",
                allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))
acceptance = importlib.import_module("acceptance")
targets = importlib.import_module("targets")

NET_IDS = {"net/lossless/pyzmq", "net/lossy/pyzmq", "net/lossless/imagezmq",
           "net/lossy/imagezmq"}


def _results(fps: dict[str, float], runs: int = 30) -> Results:
    results = Results()
    for method, rate in fps.items():
        results.samples[net.KEY + method] = [rate] * runs
    return results


def test_figures_are_frame_rates_against_each_baseline() -> None:
    results = _results({net.RAW: 500.0, net.LOSSLESS: 450.0, net.LOSSY: 400.0,
                        net.IMAGEZMQ: 300.0, net.compressed("lz4"): 100.0})
    by_id = {f.id: f for f in build_figures(results, ["640x480"]) if f.id.startswith("net/")}
    assert set(by_id) == NET_IDS | {"net/lossy-lz4/pyzmq"}
    assert by_id["net/lossless/pyzmq"].ratio == pytest.approx(0.9)  # higher is faster
    assert by_id["net/lossy/imagezmq"].ratio == pytest.approx(400 / 300)
    assert by_id["net/lossy-lz4/pyzmq"].ratio == pytest.approx(0.2)
    assert all(f.unit == "fps" and f.size is None for f in by_id.values())


def test_without_imagezmq_its_figures_say_why() -> None:
    results = _results({net.RAW: 500.0, net.LOSSLESS: 450.0, net.LOSSY: 400.0})
    results.skipped["imagezmq"] = "not installed"
    by_id = {f.id: f for f in build_figures(results, ["640x480"])}
    assert by_id["net/lossless/pyzmq"].ratio == pytest.approx(0.9)
    assert by_id["net/lossless/imagezmq"].skipped == "imagezmq not installed"


@pytest.mark.parametrize(("lossless", "verdict"), [(420.0, "met"), (300.0, "short")])
def test_acceptance_judges_the_across_hosts_rows(lossless: float, verdict: str) -> None:
    results = _results({net.RAW: 500.0, net.LOSSLESS: lossless, net.LOSSY: 450.0,
                        net.IMAGEZMQ: 200.0})
    doc = {"settings": {"sizes": ["640x480"]},
           "figures": [f.to_json() for f in build_figures(results, ["640x480"])]}
    rows, _ = acceptance.judge(doc)
    by_id = {row.target.figure_id: row for row in rows if row.target.figure_id in NET_IDS}
    assert set(by_id) == NET_IDS
    assert by_id["net/lossless/pyzmq"].verdict == verdict
    assert by_id["net/lossy/pyzmq"].verdict == "met"
    assert by_id["net/lossless/imagezmq"].verdict == "met"  # >= 1.3x imagezmq either way


def test_a_short_real_run_measures_every_method_and_leaves_nothing() -> None:
    plan = net.Plan(seconds=0.3, warmup=0.2, turns=1, codecs=("lz4",) if _has("lz4") else (),
                    slice=0.1)
    skipped = {} if _has("imagezmq") else {"imagezmq": "not installed"}
    failed: dict[str, str] = {}
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    samples = net.measure(plan, skipped, failed.__setitem__)
    assert failed == {}
    expected = {k for k in net.keys(plan) if not (k.endswith(net.IMAGEZMQ) and skipped)}
    assert set(samples) == expected
    for key, rates in samples.items():
        assert len(rates) == 3 and min(rates) >= 0 and max(rates) > 0, (key, rates)
    if os.path.isdir("/dev/shm"):
        mine = tuple(f"shmi_shb{tag}{os.getpid() % 10000:04d}" for tag in "nr")
        left = {name for name in set(os.listdir("/dev/shm")) - before if name.startswith(mine)}
        assert not left, left


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
