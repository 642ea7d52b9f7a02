"""The ``shmimage`` command: put, get, info, watch, ls, rm, gc, viewer, demo, serve, relay,
bench.

Every command that takes a key takes it as a positional KEY or as ``--key``.
Failures print one line on stderr and exit 1; usage errors exit 2 with that
command's usage; a closed stdout ends the command quietly.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import EndOfStream, NoFrameError, NotFoundError, SharedMemoryError
from .interrupts import interrupted_by_signals
from .render import RateMeter, describe, printable

DEFAULT_KEY = "QSharedMemoryExample"
PROG = "shmimage"
POLL_SECONDS = 0.02  # how often `get --wait` and `watch` look for a key to appear
WATCH_TICK = 0.5


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def quoted(key: str) -> str:
    return f"'{printable(key, 80)}'"


# ---- frames <-> files ----------------------------------------------------------------

def read_input(path: str) -> Any:
    """What ``put`` publishes: stdin's bytes, a .npy array, or an image path."""
    if path == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise CliError("nothing on standard input: pipe in an encoded image (PNG, JPEG, ...)")
        return data
    source = Path(path)
    if not source.is_file():
        raise CliError(f"{printable(path, 200)}: no such file")
    if source.suffix.lower() != ".npy":
        return source
    from .imageio import load_npy

    return load_npy(str(source))


def exact_image(frame: Any) -> Any:
    """A PIL image holding the frame exactly, or None when Pillow has no such mode."""
    from .errors import InvalidImageError
    from .imageio import array_to_pil

    try:
        return array_to_pil(frame)
    except InvalidImageError:
        return None


def eight_bit_image(frame: Any, alpha: bool = True) -> Any:
    """The frame as the viewer shows it: 8-bit RGBA (or RGB), normalised."""
    from PIL import Image

    from .render import to_rgba8

    rgba = to_rgba8(frame)
    if not alpha or bool((rgba[..., 3] == 255).all()):
        rgba = rgba[..., :3]
    return Image.fromarray(rgba)


def write_frame(frame: Any, out: str) -> None:
    """Save a frame: ``.npy`` keeps shape and dtype, ``-`` is PNG on stdout, and an
    image format keeps the frame exactly when it can hold it."""
    import numpy as np

    if out.lower().endswith(".npy"):
        np.save(out, frame, allow_pickle=False)
        return
    target: Any = sys.stdout.buffer if out == "-" else out
    fmt = "PNG" if out == "-" else None
    image = exact_image(frame)
    for attempt in ([image] if image is not None else []) + ["rgba", "rgb"]:
        if isinstance(attempt, str):
            attempt = eight_bit_image(frame, alpha=attempt == "rgba")
        try:
            attempt.save(target, format=fmt)
        except OSError as exc:
            if exc.errno is not None:  # the file system's word, not the format's
                raise
            continue
        except (ValueError, KeyError) as exc:
            raise CliError(f"{printable(out, 200)}: unknown image format "
                           "(use .png, .jpg, .bmp, .tif or .npy)") from exc
        if attempt is not image:
            print(f"{PROG}: note: {describe(frame.shape, frame.dtype)} does not fit this "
                  f"format as it is; wrote it as 8-bit {attempt.mode} (.npy or .tif keep it "
                  "exact)", file=sys.stderr)
        return
    raise CliError(f"{printable(out, 200)}: this format cannot hold the frame")


def default_output(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key[:100]).strip(".")
    return f"{safe or 'frame'}.png"


# ---- segments ----------------------------------------------------------------------

def segment_facts(key: str) -> dict[str, Any] | None:
    from .memory import native_key_for, segment_info

    native = native_key_for(key)
    seg = segment_info(native)
    if seg is None:
        return None
    return {"key": key, "native_key": native, "size": seg.size,
            "attachments": seg.attachments, "persistent": bool(seg.persistent)}


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


def frame_facts(info: Any) -> dict[str, Any]:
    return {"shape": list(info.shape), "width": info.width, "height": info.height,
            "channels": info.channels, "dtype": str(info.dtype),
            "generation": info.generation, "timestamp_ns": info.timestamp_ns,
            "writer_pid": info.writer_pid}


def stamp(timestamp_ns: int) -> str:
    seconds = timestamp_ns / 1e9
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{text}.{int(timestamp_ns % 1_000_000_000) // 1_000_000:03d} UTC"


# ---- put -----------------------------------------------------------------------------

def cmd_put(args: argparse.Namespace) -> int:
    source = read_input(args.path)
    what = "standard input" if args.path == "-" else printable(args.path, 200)
    if args.qt:
        return put_qt(args, source, what)
    from .image import SharedImage

    image = SharedImage(args.key, persistent=args.persist)
    try:
        generation = image.publish(source, mode=args.mode)
        info = image.info()
        print(f"published {what} as {describe(info.shape, info.dtype)} under key "
              f"{quoted(args.key)}, generation {generation}", flush=True)
        if args.persist:
            print(f"persistent: stays until `{PROG} rm KEY`", flush=True)
            return 0
        hold()
        return 0
    finally:
        image.detach()


def hold() -> None:
    """Stay attached until Ctrl+C or SIGTERM, like the example's first dialog."""
    with interrupted_by_signals():
        try:
            print("holding the segment; press Ctrl+C to release it", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("released", flush=True)


def qt_image(args: argparse.Namespace) -> Any:
    try:
        from .qt import QtSharedImage
    except ImportError as exc:
        raise CliError(f"Qt mode is not available: {exc}") from exc
    return QtSharedImage(args.key, backend=args.backend)


def put_qt(args: argparse.Namespace, source: Any, what: str) -> int:
    import numpy as np

    from .imageio import as_frame_array

    if args.persist:
        raise CliError("--persist does not apply to Qt segments")
    if isinstance(source, np.ndarray):
        pixels = as_frame_array(source, args.mode) if args.mode else source
    else:  # a QImage is 8-bit: files and bytes decode as the Qt example does
        pixels = as_frame_array(source, args.mode or "RGBA")
    with qt_image(args) as target:
        target.publish(pixels)
        print(f"published {what} as {describe(pixels.shape, pixels.dtype)} in Qt's "
              f"format under key {quoted(args.key)}", flush=True)
        hold()
    return 0


# ---- get -----------------------------------------------------------------------------

def cmd_get(args: argparse.Namespace) -> int:
    out = args.output or default_output(args.key)
    if args.qt:
        with qt_image(args) as source:
            frame = source.read()
    else:
        frame = read_frame(args.key, args.wait)
    write_frame(frame, out)
    if out != "-":
        print(f"wrote {printable(out, 200)} ({describe(frame.shape, frame.dtype)})")
    return 0


def read_frame(key: str, wait: float | None = None) -> Any:
    """The key's current frame; with ``wait``, waits up to that long for the key
    to appear and for its first frame."""
    from .image import SharedImage

    deadline = time.monotonic() + (wait or 0.0)
    waited = f" within {wait:g} s" if wait else ""
    with SharedImage(key) as source:
        while True:
            left = deadline - time.monotonic()
            try:
                return source.read()
            except NotFoundError as exc:
                if left <= 0:
                    raise CliError(f"no shared image under key {quoted(key)}{waited}") from exc
                time.sleep(min(POLL_SECONDS, left))
            except NoFrameError as exc:
                if left <= 0:
                    raise CliError(f"nothing published under key {quoted(key)}{waited}") from exc
                wait_quietly(source, left)


def wait_quietly(image: Any, timeout: float) -> None:
    """Wait up to ``timeout`` for a first frame; the caller looks again either way."""
    try:
        image.wait(timeout=timeout, after=0)
    except TimeoutError:
        pass


# ---- info, watch ---------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    from .image import SharedImage

    segment = segment_facts(args.key)
    if segment is None:
        raise CliError(f"no shared image under key {quoted(args.key)}")
    facts: dict[str, Any] = dict(segment)
    with SharedImage(args.key) as image:
        try:
            facts["frame"] = frame_facts(image.info())
        except NoFrameError:
            facts["frame"] = None
        status = image.status()
        facts["store"] = {k: v for k, v in status.items() if k not in ("key", "native_key")}
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print_info(facts)
    return 0


def print_info(facts: dict[str, Any]) -> None:
    rows = [["key", printable(facts["key"], 200)], ["native name", facts["native_key"]],
            ["segment size", human_size(facts["size"])],
            ["attachments", str(facts["attachments"])],
            ["persistent", "yes" if facts["persistent"] else "no"]]
    frame = facts["frame"]
    if frame is None:
        rows.append(["frame", "none published yet"])
    else:
        rows += [["frame", describe(frame["shape"], frame["dtype"])],
                 ["generation", str(frame["generation"])],
                 ["published", f"{stamp(frame['timestamp_ns'])} by pid {frame['writer_pid']}"]]
    rows += store_rows(facts.get("store"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def store_rows(store: dict[str, Any] | None) -> list[list[str]]:
    """The store's status: slots in use, pins per process, subscribers."""
    if store is None:
        return []
    o = store["options"]
    pins = ", ".join(f"pid {p['pid']}: {p['pins']}" for p in store["pins"]) or "none"
    subs = ", ".join(f"pid {s['pid']} ({s['mode']}, lag {s['lag']})" for s in store["subscribers"]) or "none"
    slots = (f"{store['slots_in_use']} of {store['table_slots']} in use "
             f"(slots {o['slots']}, max_slots {o['max_slots']}, history {o['history']})")
    return [["slots", slots],
            ["slot size", human_size(o["slot_capacity"])],
            ["pins", pins], ["subscribers", subs]]


def cmd_watch(args: argparse.Namespace) -> int:
    from .image import SharedImage

    with interrupted_by_signals(), SharedImage(args.key) as image:
        try:
            if args.lossless:
                watch_lossless(image, args.json)
            else:
                watch(image, args.json)
        except KeyboardInterrupt:
            pass
    return 0


def watch_lossless(image: Any, as_json: bool) -> None:
    """One line per frame of a lossless subscription (the writer waits for
    it), with its dropped count, until interrupted or the stream ends."""
    rate = RateMeter()
    with image.subscribe(lossless=True, start="latest") as sub:
        while True:
            try:
                info = sub.next(WATCH_TICK).info
            except TimeoutError:
                continue
            except EndOfStream:
                return
            latency_ms = max(0.0, (time.time_ns() - info.timestamp_ns) / 1e6)
            fps = rate.add(info.generation, info.timestamp_ns / 1e9)
            print(watch_line(info, fps, latency_ms, as_json, sub.dropped), flush=True)


def current_generation(image: Any) -> int:
    """The generation to watch from: waits for the key to appear; 0 before a frame."""
    while True:
        try:
            return int(image.info().generation)
        except NoFrameError:
            return 0
        except NotFoundError:
            time.sleep(POLL_SECONDS)


def watch(image: Any, as_json: bool) -> None:
    """The current frame's line (when there is one), then one line per new frame,
    until interrupted."""
    after = current_generation(image)
    rate = RateMeter()
    if after:
        report(image, rate, as_json)
    while True:
        try:
            image.wait(timeout=WATCH_TICK, after=after)
        except TimeoutError:
            continue
        after = report(image, rate, as_json)


def report(image: Any, rate: RateMeter, as_json: bool) -> int:
    """Print the latest frame's line; its generation."""
    info = image.info()
    latency_ms = max(0.0, (time.time_ns() - info.timestamp_ns) / 1e6)
    fps = rate.add(info.generation, info.timestamp_ns / 1e9)
    print(watch_line(info, fps, latency_ms, as_json), flush=True)
    return int(info.generation)


def watch_line(info: Any, fps: float | None, latency_ms: float, as_json: bool,
               dropped: int | None = None) -> str:
    if as_json:
        facts = frame_facts(info)
        facts.update(fps=None if fps is None else round(fps, 3),
                     latency_ms=round(latency_ms, 3))
        if dropped is not None:
            facts.update(dropped=dropped)
        return json.dumps(facts)
    shown_fps = "-" if fps is None or not math.isfinite(fps) else f"{fps:.1f}"
    line = (f"generation {info.generation}  {describe(info.shape, info.dtype)}  "
            f"{shown_fps} fps  latency {latency_ms:.2f} ms")
    return line if dropped is None else f"{line}  dropped {dropped}"


# ---- ls, rm, gc ----------------------------------------------------------------------

def cmd_ls(args: argparse.Namespace) -> int:
    from .memory import collect_garbage, list_segments

    reclaimed = collect_garbage()  # what ls would otherwise reclaim without a word
    segments = list_segments()
    if args.json:
        rows = [{"key": s.key, "native_key": s.native_key, "size": s.size,
                 "attachments": s.attachments, "persistent": bool(s.persistent),
                 "reclaimed": False} for s in segments]
        rows += [{"key": None, "native_key": name, "size": None, "attachments": 0,
                  "persistent": False, "reclaimed": True} for name in reclaimed]
        print(json.dumps(rows, indent=2))
        return 0
    if segments:
        print_table(["KEY", "NATIVE NAME", "SIZE", "ATTACHED", "PERSISTENT"],
                    [[printable(s.key) if s.key is not None else "-", s.native_key,
                      human_size(s.size), str(s.attachments),
                      "yes" if s.persistent else "no"] for s in segments])
    elif not reclaimed:
        print("no shmimage segments")
    for name in reclaimed:
        print(f"reclaimed stale {printable(name)} (no process was using it)")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from .memory import SharedMemory

    try:
        SharedMemory.remove(args.key)
    except NotFoundError as exc:
        raise CliError(f"no segment under key {quoted(args.key)}") from exc
    print(f"removed {quoted(args.key)}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from .memory import collect_garbage

    removed = collect_garbage()
    for name in removed:
        print(f"removed stale {printable(name)}")
    if not removed:
        print("no stale segments")
    return 0


# ---- viewer, demo, bench -------------------------------------------------------------

def cmd_viewer(args: argparse.Namespace) -> int:
    require_display()
    from tkinter import TclError

    from .viewer import run_viewer

    if args.qt:
        qt_image(args)
        if args.live:
            raise CliError("--live needs shmimage's segments: Qt's have no change notification")
    try:
        return run_viewer(args.key, load=args.load, geometry=args.geometry, live=args.live,
                          qt=args.qt, trace=args.trace)
    except TclError as exc:
        raise CliError(f"Tk: {exc}") from exc


def require_display() -> None:
    needs_x = os.name == "posix" and sys.platform != "darwin"
    if needs_x and not os.environ.get("DISPLAY"):
        raise CliError("no display (DISPLAY is not set); `shmimage demo` runs headless")
    try:
        import tkinter  # noqa: F401
    except ImportError as exc:
        raise CliError("Tk is not available (install Python's tkinter)") from exc


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(key=args.key, headless=args.headless, output=args.output, trace=args.trace)


def cmd_bench(argv: list[str]) -> int:
    try:
        from .bench import main as bench_main
    except ImportError as exc:
        raise CliError(f"the benchmark suite is not available: {exc}") from exc
    return int(bench_main(argv) or 0)


# ---- serve, relay ----------------------------------------------------------------------

def net_module() -> Any:
    """shmimage.net, imported only by the commands that need pyzmq."""
    try:
        from . import net
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    return net


def progress_printer(enabled: bool) -> Callable[[str], None] | None:
    return (lambda line: print(line, flush=True)) if enabled else None


def run_net(runner: Any, what: str) -> int:
    """Run a Server or Relay until Ctrl+C/SIGTERM; a ZeroMQ failure is one line."""
    import zmq

    from .net.stats import stop_on_signals

    try:
        with stop_on_signals(runner.stop):
            runner.run()
    except zmq.ZMQError as exc:
        raise CliError(f"{what}: {exc}") from exc
    stats = runner.stats
    print(f"stopped: {stats.frames} frames, {human_size(stats.bytes)}, dropped {stats.dropped}, "
          f"rejected {stats.rejected}", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    net = net_module()
    server = net.Server(args.key, args.bind, lossless=args.lossless, compress=args.compress,
                        curve=args.curve_dir, insecure=args.insecure,
                        on_progress=progress_printer(args.progress))
    mode = "lossless" if args.lossless else "lossy"
    print(f"serving {quoted(args.key)} on {printable(args.bind, 200)} ({mode}, "
          f"{'CURVE' if args.curve_dir else 'no encryption'}); Ctrl+C stops", flush=True)
    return run_net(server, f"cannot serve on {printable(args.bind, 200)}")


def cmd_relay(args: argparse.Namespace) -> int:
    net = net_module()
    relay = net.Relay(args.address, args.key, lossless=args.lossless, curve=args.curve_dir,
                      on_progress=progress_printer(args.progress),
                      on_notice=lambda text: print(f"{PROG}: note: {text}", file=sys.stderr,
                                                   flush=True))
    into = quoted(args.key) if args.key is not None else "the served key"
    print(f"relaying {printable(args.address, 200)} into {into}; Ctrl+C stops", flush=True)
    return run_net(relay, f"cannot connect to {printable(args.address, 200)}")


# ---- parsing ---------------------------------------------------------------------------

def add_key(parser: argparse.ArgumentParser, default: str | None = DEFAULT_KEY,
            required: bool = False) -> None:
    """KEY as an optional positional and as ``--key``, resolved by resolve_key()."""
    shown = "required" if required else f"default: {default or 'see below'}"
    parser.add_argument("key", metavar="KEY", nargs="?",
                        help=f"shared memory key ({shown}); --key is the same")
    parser.add_argument("--key", "-k", dest="key_option", metavar="KEY", help="the same as KEY")
    parser.set_defaults(key_default=default, key_required=required)


def resolve_key(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    positional, option = args.key, args.key_option
    if positional is not None and option is not None and positional != option:
        parser.error("KEY and --key name different keys; give one")
    key = positional if positional is not None else option
    if key is None:
        if args.key_required:
            parser.error("the following arguments are required: KEY")
        key = args.key_default
    args.key = key


def add_qt(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--qt", action="store_true",
                        help=f"{what} Qt's own QSharedMemory format, to talk to Qt programs")
    parser.add_argument("--backend", default="auto", choices=["auto", "posix", "sysv", "windows"],
                        help="Qt segment flavour with --qt (default: auto)")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


def add_put(commands: Any) -> None:
    put = commands.add_parser("put", help="publish an image (held until Ctrl+C unless --persist)")
    put.add_argument("path", metavar="PATH",
                     help="an image file Pillow reads, a .npy array, or - for encoded image "
                          "bytes on stdin")
    add_key(put)
    put.add_argument("--mode", metavar="M",
                     help="convert to this Pillow mode first (L, RGB, RGBA, I;16, F, ...); "
                          "without it the image keeps its own mode")
    put.add_argument("--persist", action="store_true",
                     help="exit at once and keep the segment until `shmimage rm`")
    add_qt(put, "write")
    put.set_defaults(run=cmd_put)


def add_get(commands: Any) -> None:
    get = commands.add_parser("get", help="write the current frame to an image file")
    add_key(get)
    get.add_argument("-o", "--output", metavar="OUT",
                     help="output file: an image format by extension, .npy, or - for PNG on "
                          "stdout (default: KEY.png)")
    get.add_argument("--wait", metavar="SECONDS", type=seconds,
                     help="wait up to SECONDS for the key to appear and hold a first frame")
    add_qt(get, "read")
    get.set_defaults(run=cmd_get)


def add_facts(commands: Any) -> None:
    info = commands.add_parser("info", help="frame and segment facts")
    add_key(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)

    watch_cmd = commands.add_parser(
        "watch", help="one line per new frame (generation, shape, dtype, fps, latency)")
    add_key(watch_cmd)
    watch_cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    watch_cmd.add_argument(
        "--lossless", action="store_true",
        help="every frame, in order, through a lossless subscription (the writer waits for "
             "it); shows the dropped count; ends with the stream")
    watch_cmd.set_defaults(run=cmd_watch)

    ls = commands.add_parser("ls", help="list shmimage segments on this machine")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=cmd_ls)

    rm = commands.add_parser("rm", help="remove one segment's name")
    add_key(rm, default=None, required=True)
    rm.set_defaults(run=cmd_rm)

    gc = commands.add_parser("gc", help="remove every stale segment")
    gc.set_defaults(run=cmd_gc)


def add_windows(commands: Any) -> None:
    viewer = commands.add_parser("viewer", help="the example's dialog (Tk)")
    add_key(viewer)
    viewer.add_argument("--load", metavar="PATH", help="publish this image at start")
    viewer.add_argument("--live", action="store_true", help="start in live mode")
    viewer.add_argument("--geometry", metavar="GEOM", help="Tk geometry, e.g. +40+40")
    viewer.add_argument("--trace", action="store_true",
                        help="print what the window shows as JSON lines (for scripts)")
    add_qt(viewer, "use")
    viewer.set_defaults(run=cmd_viewer)

    demo = commands.add_parser("demo", help="the main job: the sample image crosses processes")
    add_key(demo, default=None)
    demo.add_argument("--headless", action="store_true",
                      help="the two-process check even when a display is available")
    demo.add_argument("-o", "--output", metavar="OUT", help="where the headless run writes "
                      "the image it read back (default: in the temp directory)")
    demo.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(run=cmd_demo)
    demo.epilog = (f"KEY defaults to {DEFAULT_KEY} for the windows and a fresh key for "
                   "the headless run.")


def add_net(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve a key to other hosts over ZeroMQ "
                                "(needs shmimage[net])")
    add_key(serve)
    serve.add_argument("--bind", metavar="ADDR", default="tcp://127.0.0.1:5560",
                       help="ZeroMQ endpoint to listen on (default: tcp://127.0.0.1:5560); "
                            "another host's address needs --curve-dir or --insecure")
    serve.add_argument("--compress", metavar="C", default="none",
                       help="none (default), lz4, zstd, png or jpeg[:Q]")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-local --bind without CURVE: anyone there sees the frames")
    add_net_common(serve, "server.key_secret, and accept every other *.key in it")
    serve.set_defaults(run=cmd_serve)

    relay = commands.add_parser("relay", help="republish a served key on this host "
                                "(needs shmimage[net])")
    relay.add_argument("address", metavar="ADDR", help="the server, e.g. tcp://camhost:5560")
    relay.add_argument("--key", "-k", metavar="K",
                       help="local key to publish into (default: the served key)")
    add_net_common(relay, "client.key_secret and trust server.key")
    relay.set_defaults(run=cmd_relay)


def add_net_common(parser: argparse.ArgumentParser, curve_use: str) -> None:
    parser.add_argument("--lossless", action="store_true",
                        help="every frame in order, resuming after a reconnect "
                             "(default: the newest frame wins)")
    parser.add_argument("--curve-dir", metavar="DIR",
                        help=f"CURVE encryption and authentication: use {curve_use} "
                             "(zmq.auth.create_certificates layout)")
    parser.add_argument("--progress", action="store_true",
                        help="print one status line a second (fps, MB/s, dropped)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's own parser."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Share images between processes through named shared memory.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_put(commands)
    add_get(commands)
    add_facts(commands)
    add_windows(commands)
    add_net(commands)
    commands.add_parser("bench", add_help=False,
                        help="the benchmark suite: bench [--quick] [--json OUT] [--plot OUT.png]")
    return parser, dict(commands.choices)


def parse(argv: list[str]) -> argparse.Namespace | int:
    """The parsed command line, or the exit status argparse chose (help, usage errors).

    A command's own parser parses its arguments, so its usage is what an error shows,
    and positionals may come before or after options.
    """
    parser, subparsers = build_parser()
    try:
        if argv and argv[0] in subparsers:
            sub = subparsers[argv[0]]
            args = sub.parse_intermixed_args(argv[1:])
            if hasattr(args, "key_option"):
                resolve_key(sub, args)
            return args
        parser.parse_args(argv)
        return 2  # not reached: with no command argparse has already exited
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


# ---- the entry point -------------------------------------------------------------------

def fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def silence_stdout() -> None:
    """After a reader closed our stdout: nothing more to say, and nothing at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run_guarded(action: Callable[[], int]) -> int:
    """Turn every failure into one line on stderr and exit status 1; never a traceback."""
    try:
        code = action()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        silence_stdout()
        return 0
    except CliError as exc:
        return fail(str(exc))
    except (SharedMemoryError, OSError, ValueError) as exc:
        return fail(printable(str(exc), 500) or type(exc).__name__)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, saying what it was
        return fail(f"unexpected {type(exc).__name__}: {printable(str(exc), 500)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return run_guarded(lambda: cmd_bench(argv[1:]))
    args = parse(argv)
    if isinstance(args, int):
        return args
    return run_guarded(lambda: int(args.run(args)))
