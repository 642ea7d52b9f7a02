"""The ``shmimage`` command: put, get, info, ls, rm, gc, viewer, demo, bench."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from .errors import NoFrameError, NotFoundError, SharedMemoryError

DEFAULT_KEY = "QSharedMemoryExample"
PROG = "shmimage"


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


# ---- frames <-> files ----------------------------------------------------------------

def read_input(path: str) -> Any:
    """What ``put`` publishes: a .npy array as is, anything else as an image path."""
    source = Path(path)
    if not source.is_file():
        raise CliError(f"{path}: no such file")
    if source.suffix.lower() != ".npy":
        return source
    import numpy as np

    try:
        return np.load(source, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CliError(f"{path}: not a numpy array file ({exc})") from exc


def frame_to_image(frame: Any) -> Any:
    """A PIL image of the frame: 16-bit gray stays 16-bit, other non-uint8 frames become 8-bit."""
    from PIL import Image

    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.dtype != "uint8" and not (frame.dtype == "uint16" and frame.ndim == 2):
        from .viewer import to_rgba8

        frame = to_rgba8(frame)
    return Image.fromarray(frame)


def write_frame(frame: Any, out: str) -> None:
    """Save a frame: ``.npy`` keeps shape and dtype, ``-`` is PNG on stdout."""
    import numpy as np

    if out.lower().endswith(".npy"):
        np.save(out, frame, allow_pickle=False)
        return
    image = frame_to_image(frame)
    target: Any = sys.stdout.buffer if out == "-" else out
    fmt = "PNG" if out == "-" else None
    try:
        image.save(target, format=fmt)
    except OSError:
        if image.mode != "RGBA":
            raise
        image.convert("RGB").save(target, format=fmt)
    except (ValueError, KeyError) as exc:
        raise CliError(f"{out}: unknown image format (use .png, .jpg, .bmp, .tif or .npy)") from exc


def default_output(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key).strip(".")
    return f"{safe or 'frame'}.png"


def describe(shape: Any, dtype: Any) -> str:
    return "x".join(str(n) for n in (shape[1], shape[0], *shape[2:])) + f" {dtype}"


# ---- segments ----------------------------------------------------------------------

def segment_facts(key: str) -> dict[str, Any] | None:
    from .memory import SharedMemory, list_segments

    native = SharedMemory(key).native_key
    for seg in list_segments():
        if seg.native_key == native:
            return {"key": key, "native_key": native, "size": seg.size,
                    "attachments": seg.attachments, "persistent": bool(seg.persistent)}
    return None


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


# ---- commands ----------------------------------------------------------------------

def cmd_put(args: argparse.Namespace) -> int:
    source = read_input(args.path)
    if args.qt:
        return put_qt(args, source)
    from .image import SharedImage

    image = SharedImage(args.key, persistent=args.persist)
    try:
        generation = image.publish(source)
        info = image.info()
        print(f"published {args.path} as {describe(info.shape, info.dtype)} under key "
              f"'{args.key}', generation {generation}", flush=True)
        if args.persist:
            print(f"persistent: stays until `{PROG} rm {args.key}`", flush=True)
            return 0
        hold()
        return 0
    finally:
        image.detach()


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT both raise KeyboardInterrupt inside the block.

    SIGINT is set explicitly because a shell starts background jobs with it ignored.
    """
    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def put_qt(args: argparse.Namespace, source: Any) -> int:
    if args.persist:
        raise CliError("--persist does not apply to Qt segments")
    with qt_image(args) as target:
        if isinstance(source, Path):
            pixels = target.load_from_file(source)
        else:
            target.publish(source)
            pixels = source
        print(f"published {args.path} as {describe(pixels.shape, pixels.dtype)} in Qt's "
              f"format under key '{args.key}'", flush=True)
        hold()
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    out = args.output or default_output(args.key)
    if args.qt:
        with qt_image(args) as source:
            frame = source.read()
    else:
        frame = read_frame(args.key)
    write_frame(frame, out)
    if out != "-":
        print(f"wrote {out} ({describe(frame.shape, frame.dtype)})")
    return 0


def read_frame(key: str) -> Any:
    from .image import SharedImage

    try:
        with SharedImage(key) as source:
            return source.read()
    except NotFoundError as exc:
        raise CliError(f"no shared image under key '{key}'") from exc
    except NoFrameError as exc:
        raise CliError(f"nothing published under key '{key}' yet") from exc


def cmd_info(args: argparse.Namespace) -> int:
    from .image import SharedImage

    segment = segment_facts(args.key)
    if segment is None:
        raise CliError(f"no shared image under key '{args.key}'")
    facts: dict[str, Any] = dict(segment)
    with SharedImage(args.key) as image:
        try:
            facts["frame"] = frame_facts(image.info())
        except NoFrameError:
            facts["frame"] = None
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print_info(facts)
    return 0


def print_info(facts: dict[str, Any]) -> None:
    rows = [["key", facts["key"]], ["native name", facts["native_key"]],
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
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def cmd_ls(args: argparse.Namespace) -> int:
    from .memory import list_segments

    segments = list_segments()
    if args.json:
        rows = [{"key": s.key, "native_key": s.native_key, "size": s.size,
                 "attachments": s.attachments, "persistent": bool(s.persistent)}
                for s in segments]
        print(json.dumps(rows, indent=2))
    elif not segments:
        print("no shmimage segments")
    else:
        print_table(["KEY", "NATIVE NAME", "SIZE", "ATTACHED", "PERSISTENT"],
                    [[s.key if s.key is not None else "-", s.native_key,
                      human_size(s.size), str(s.attachments),
                      "yes" if s.persistent else "no"] for s in segments])
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from .memory import SharedMemory

    try:
        SharedMemory.remove(args.key)
    except NotFoundError as exc:
        raise CliError(f"no segment under key '{args.key}'") from exc
    print(f"removed '{args.key}'")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from .memory import collect_garbage

    removed = collect_garbage()
    for name in removed:
        print(f"removed stale {name}")
    if not removed:
        print("no stale segments")
    return 0


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


# ---- parsing and the entry point --------------------------------------------------------

def add_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", "-k", default=DEFAULT_KEY,
                        help=f"shared memory key (default: {DEFAULT_KEY})")


def add_qt(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--qt", action="store_true",
                        help=f"{what} Qt's own QSharedMemory format, to talk to Qt programs")
    parser.add_argument("--backend", default="auto", choices=["auto", "posix", "sysv", "windows"],
                        help="Qt segment flavour with --qt (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Share images between processes through named shared memory.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    put = commands.add_parser("put", help="publish an image (held until Ctrl+C unless --persist)")
    put.add_argument("path", metavar="PATH", help="an image file Pillow reads, or a .npy array")
    add_key(put)
    put.add_argument("--persist", action="store_true",
                     help="exit at once and keep the segment until `shmimage rm`")
    add_qt(put, "write")
    put.set_defaults(run=cmd_put)

    get = commands.add_parser("get", help="write the current frame to an image file")
    add_key(get)
    get.add_argument("-o", "--output", metavar="OUT",
                     help="output file: an image format by extension, .npy, or - for stdout "
                          "(default: KEY.png)")
    add_qt(get, "read")
    get.set_defaults(run=cmd_get)

    info = commands.add_parser("info", help="frame and segment facts")
    add_key(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)

    ls = commands.add_parser("ls", help="list shmimage segments on this machine")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=cmd_ls)

    rm = commands.add_parser("rm", help="remove one segment's name")
    rm.add_argument("key", metavar="KEY")
    rm.set_defaults(run=cmd_rm)

    gc = commands.add_parser("gc", help="remove every stale segment")
    gc.set_defaults(run=cmd_gc)

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
    demo.add_argument("--headless", action="store_true",
                      help="the two-process check even when a display is available")
    demo.add_argument("--key", "-k", default=None,
                      help=f"key to use (default: {DEFAULT_KEY} for the windows, "
                           "a fresh one for the headless run)")
    demo.add_argument("-o", "--output", metavar="OUT", help="where the headless run writes "
                      "the image it read back (default: in the temp directory)")
    demo.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(run=cmd_demo)

    commands.add_parser("bench", add_help=False,
                        help="the benchmark suite: bench [--quick] [--json OUT] [--plot OUT.png]")
    return parser


def parse(argv: list[str]) -> argparse.Namespace | int:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


def fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def run_guarded(action: Callable[[], int]) -> int:
    """Turn every expected failure into one line on stderr and exit status 1."""
    try:
        return action()
    except CliError as exc:
        return fail(str(exc))
    except (SharedMemoryError, OSError, ValueError) as exc:
        return fail(str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return run_guarded(lambda: cmd_bench(argv[1:]))
    args = parse(argv)
    if isinstance(args, int):
        return args
    return run_guarded(lambda: args.run(args))
