"""The example's dialog in Tk: load an image into shared memory, or display it from there.

Launch two: in the first press "Load Image From File...", in the second
"Display Image From Shared Memory".  The "Live" toggle goes beyond the
example and redraws on every new frame, from a lossy subscription.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EndOfStream, InvalidImageError, NotAttachedError, SharedMemoryError
from .render import BACKGROUND, RateMeter, describe, printable, to_ppm

TITLE = "SharedMemory Example"
LOAD_TEXT = "Load Image From File..."
DISPLAY_TEXT = "Display Image From Shared Memory"
LIVE_TEXT = "Live"
QT_TEXT = "Qt format"
INTRO_TEXT = (
    "Launch two of these dialogs.  In the first, press the top button and load an image "
    "from a file.  In the second, press the bottom button and display the loaded image "
    "from shared memory."
)
SELECT_TEXT = "Select an image file"
NOT_IMAGE_TEXT = "Selected file is not an image, please select another."
CREATE_FAILED_TEXT = "Unable to create shared memory segment."
ATTACH_FAILED_TEXT = "Unable to attach to shared memory segment.\nLoad an image first."

BOX = (400, 300)
BORDER = 8  # room around the image inside its box
LIVE_POLL_MS = 30  # where Tk cannot watch a pipe (Windows)
RESIZE_DELAY_MS = 80
Tracer = Callable[..., None]


# ---- the file dialog ------------------------------------------------------------------

def image_filetypes() -> list[tuple[str, str]]:
    """File dialog filters: every extension Pillow can open, then all files."""
    from PIL import Image

    Image.init()
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    patterns = " ".join(f"*{ext}" for ext in sorted(readable))
    return [("Images", patterns), ("All files", "*")]


# ---- where frames come from and go to ----------------------------------------------

class Store:
    """The shmimage side of the dialog: one SharedImage kept for publishing."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._publisher: Any = None

    def publish_file(self, path: str) -> tuple[np.ndarray, int | None]:
        """Publish a file as the example does (RGBA); its pixels and generation."""
        from .image import SharedImage

        if self._publisher is None:
            self._publisher = SharedImage(self.key)
        pixels: np.ndarray = self._publisher.load_from_file(path)
        return pixels, self._publisher.info().generation

    def read_once(self) -> tuple[np.ndarray, int | None]:
        """The example's second button; the generation is the one current just after."""
        from .image import SharedImage

        image = SharedImage(self.key)
        try:
            pixels = image.load_from_memory()
            try:
                generation: int | None = image.info().generation
            except (SharedMemoryError, OSError):
                generation = None
            return pixels, generation
        finally:
            image.detach()

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.detach()
            self._publisher = None


class QtStore(Store):
    """Speaks Qt's own segment format, so the real Qt example can be on the other side."""

    def publish_file(self, path: str) -> tuple[np.ndarray, int | None]:
        from .qt import QtSharedImage

        if self._publisher is None:
            self._publisher = QtSharedImage(self.key)
        pixels: np.ndarray = self._publisher.load_from_file(path)
        return pixels, None

    def read_once(self) -> tuple[np.ndarray, int | None]:
        from .qt import QtSharedImage

        with QtSharedImage(self.key) as source:
            return source.read(), None


class LiveFeed:
    """Follows a key with a lossy subscription and hands the newest frame to Tk.

    A worker thread sleeps in the subscription's ``next()`` (in the kernel, no
    polling, no timeout: ``stop()`` closes the subscription and detaches the
    image, which wakes it); when frames arrive it takes them all, keeps a private copy of the
    newest and writes a byte to a pipe that Tk watches (``createfilehandler``),
    then waits until Tk has taken it. Frames published meanwhile stay in the
    subscription: what it skips counts as dropped, and so do frames taken but
    superseded before they were shown. The copy is what Tk keeps, so this
    window never holds a pin on the writer's slots.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.skipped = 0  # taken from the subscription but never shown
        self._stop = threading.Event()
        self._taken = threading.Event()
        self._taken.set()
        self._mu = threading.Lock()
        self._item: tuple[str, Any] | None = None
        self._sub: Any = None
        self._image: Any = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name="shmimage-live", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """Readable when there is something for Tk to take."""
        return self._wake_r

    def take(self) -> tuple[str, Any] | None:
        """The newest frame or error, once; lets the worker go on."""
        try:
            os.read(self._wake_r, 64)
        except BlockingIOError:
            pass
        with self._mu:
            item, self._item = self._item, None
        self._taken.set()
        return item

    def stop(self) -> None:
        self._stop.set()
        self._taken.set()
        with self._mu:
            sub, image = self._sub, self._image
        if sub is not None:
            sub.close()  # a next() blocked in the worker returns at once
        if image is not None:
            image.detach()  # and so does a wait for the key or for a new stream
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():  # else it may still write: leave it its pipe
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _post(self, kind: str, payload: Any) -> None:
        """Hand one item to Tk and wait until it took it (or the feed stops)."""
        self._taken.clear()
        with self._mu:
            self._item = (kind, payload)
        os.write(self._wake_w, b"x")
        while not self._taken.wait(0.5):
            if self._stop.is_set():
                return

    def _subscribe(self, image: Any) -> Any:
        """A lossy subscription from the current frame; says so once when there is none yet."""
        try:
            image.info()
        except (SharedMemoryError, OSError) as exc:
            self._post("error", exc)
        sub = image.subscribe(lossless=False, start="latest")
        with self._mu:
            self._sub = sub
        if self._stop.is_set():
            sub.close()
        return sub

    def _newest(self, sub: Any, frame: Any) -> Any:
        """Everything the subscription has now, of which the newest frame."""
        while True:
            try:
                newer = sub.next(timeout=0)
            except TimeoutError:
                return frame
            self.skipped += 1
            frame = newer

    def _run(self) -> None:
        from .image import SharedImage

        image = SharedImage(self.key)
        with self._mu:
            self._image = image
        if self._stop.is_set():
            image.detach()
        sub: Any = None
        try:
            while not self._stop.is_set():
                try:
                    if sub is None:
                        sub = self._subscribe(image)
                    frame = self._newest(sub, sub.next())
                    pixels, info = frame.pixels.copy(), frame.info
                    del frame  # the slot's pin goes with it
                    self._post("frame", (pixels, info.generation, sub.dropped + self.skipped))
                except EndOfStream:
                    # Until the writer starts a new stream: sleep until its next publish.
                    self._sleep_until_a_new_frame(image)
                except NotAttachedError:
                    if self._stop.is_set():
                        break
                    self._restart(sub, None)
                    sub = None
                except (SharedMemoryError, OSError) as exc:
                    self._restart(sub, exc)
                    sub = None
        finally:
            if sub is not None:
                sub.close()
            image.detach()

    def _sleep_until_a_new_frame(self, image: Any) -> None:
        try:
            image.wait()
        except (SharedMemoryError, OSError):
            pass

    def _restart(self, sub: Any, exc: BaseException | None) -> None:
        """Say what went wrong, then let the loop subscribe afresh after a moment."""
        if sub is not None:
            sub.close()
        with self._mu:
            self._sub = None
        if exc is not None:
            self._post("error", exc)
        self._stop.wait(0.5)


# ---- the dialog ----------------------------------------------------------------------

class Viewer:
    """The dialog: two buttons around a label that shows text or the image."""

    def __init__(self, root: Any, key: str, *, qt: bool = False,
                 trace: Tracer | None = None) -> None:
        self.root = root
        self.store: Store = QtStore(key) if qt else Store(key)
        self.trace = trace or (lambda **_: None)
        self._feed: LiveFeed | None = None
        self._poll_job: str | None = None
        self._watched: int | None = None  # the feed's pipe, while Tk watches it
        self._dropped = 0  # frames the live window never showed
        self._photo: Any = None
        self._shown: tuple[np.ndarray, str, int | None] | None = None
        self._box = BOX
        self._resize_job: str | None = None
        self._rate = RateMeter()
        self._closed = False
        self._build(qt)
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.report_callback_exception = self._unexpected

    def _unexpected(self, kind: type, error: BaseException, _tb: Any) -> None:
        """A bug must not end in a traceback dump: one line on stderr and in the label."""
        line = f"{kind.__name__}: {error}"
        print(f"shmimage viewer: error: {line}", file=sys.stderr, flush=True)
        self.set_text(line)

    def _build(self, qt: bool) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.root.title(TITLE)
        self.root.configure(background="#{:02x}{:02x}{:02x}".format(*BACKGROUND))
        outer = ttk.Frame(self.root, padding=8)
        outer.pack(fill="both", expand=True)
        self.load_button = ttk.Button(outer, text=LOAD_TEXT, command=self.load_from_file)
        self.load_button.pack(fill="x")
        # The box asks for a fixed size, whatever the frame's: frames are
        # scaled to fit it, and it follows the window when the window is resized.
        box = ttk.Frame(outer, width=BOX[0] + BORDER, height=BOX[1] + BORDER)
        box.pack_propagate(False)
        box.pack(pady=6, fill="both", expand=True)
        box.bind("<Configure>", self._box_resized, add="+")
        self.label = ttk.Label(box, text=INTRO_TEXT, anchor="center", justify="center",
                               wraplength=BOX[0] - 20)
        self.label.pack(fill="both", expand=True)
        self.display_button = ttk.Button(outer, text=DISPLAY_TEXT, command=self.load_from_memory)
        self.display_button.pack(fill="x")
        options = ttk.Frame(outer)
        options.pack(fill="x", pady=(6, 0))
        self.live = tk.BooleanVar(value=False)
        self.live_check = ttk.Checkbutton(options, text=LIVE_TEXT, variable=self.live,
                                          command=self._toggle_live)
        self.live_check.pack(side="left")
        self.qt = tk.BooleanVar(value=qt)
        self.qt_check = ttk.Checkbutton(options, text=QT_TEXT, variable=self.qt,
                                        command=self._toggle_qt)
        self.qt_check.pack(side="left", padx=(16, 0))
        # Two lines, there from the start so nothing moves when they fill; width=1:
        # a long status never widens the window, it is cut instead.
        self.status = ttk.Label(outer, text="\n", anchor="w", justify="left", width=1)
        self.status.pack(fill="x", pady=(4, 0))
        if qt:
            self.live_check.state(["disabled"])
        for widget in (self.load_button, self.display_button, self.live_check, self.qt_check):
            widget.bind("<FocusIn>", self._traced_focus, add="+")
            widget.bind("<Return>", lambda event: event.widget.invoke(), add="+")
        self.load_button.focus_set()

    def _traced_focus(self, event: Any) -> None:
        self.trace(event="focus", widget=event.widget.cget("text"))

    def announce(self) -> None:
        """Tell a script (or a test) what the window is once it is on screen."""
        self.root.update_idletasks()
        self.trace(event="ready", title=self.root.title(), geometry=self.root.winfo_geometry(),
                   buttons=[self.load_button.cget("text"), self.display_button.cget("text")],
                   label=self.label.cget("text"),
                   options=[self.live_check.cget("text"), self.qt_check.cget("text")])

    # -- the two buttons --

    def load_from_file(self) -> None:
        from tkinter import filedialog

        self.set_text(SELECT_TEXT)
        path = filedialog.askopenfilename(parent=self.root, title=SELECT_TEXT,
                                          filetypes=image_filetypes())
        if path:
            self.load_path(path)

    def load_path(self, path: str) -> None:
        try:
            pixels, generation = self.store.publish_file(str(path))
        except InvalidImageError:
            self.set_text(NOT_IMAGE_TEXT)
        except (SharedMemoryError, ImportError):
            self.set_text(CREATE_FAILED_TEXT)
        except OSError:
            self.set_text(NOT_IMAGE_TEXT)
        else:
            self.show(pixels, source="file", generation=generation)

    def load_from_memory(self) -> None:
        try:
            pixels, generation = self.store.read_once()
        except (SharedMemoryError, OSError, ImportError, ValueError):
            self.set_text(ATTACH_FAILED_TEXT)
        else:
            self.show(pixels, source="memory", generation=generation)

    # -- showing things --

    def set_text(self, text: str) -> None:
        self._photo = None
        self._shown = None
        self.label.configure(image="", text=text)
        self.status.configure(text="\n")
        self.trace(event="status", text=text)

    def show(self, frame: np.ndarray, *, source: str, generation: int | None = None) -> None:
        """Draw a frame of any dtype and shape, scaled to fit the box."""
        import tkinter as tk

        try:
            data, shown = to_ppm(frame, self._box)
        except InvalidImageError:
            self.set_text(NOT_IMAGE_TEXT)
            return
        self._photo = tk.PhotoImage(master=self.root, data=data, format="ppm")
        self.label.configure(image=self._photo, text="")
        self._shown = (frame, source, generation)
        height, width = frame.shape[-3:-1] if frame.ndim == 4 else frame.shape[:2]
        self.trace(event="image", source=source, width=int(width), height=int(height),
                   shown=list(shown), generation=generation, dtype=str(frame.dtype))
        self._describe(frame, source, generation)

    def _describe(self, frame: np.ndarray, source: str, generation: int | None) -> None:
        """The status line: key, generation, size, dtype and (live) frames per second."""
        fps = None
        if source == "live" and generation is not None:
            fps = self._rate.add(generation, time.monotonic())
        shown = generation if generation is not None else "-"
        facts = f"generation {shown}  \u00b7  {describe(frame.shape, frame.dtype)}"
        if fps is not None:
            facts += f"  \u00b7  {fps:.1f} fps  \u00b7  {self._dropped} dropped"
        text = f"key {printable(self.store.key, 56)}\n{facts}"
        self.status.configure(text=text)
        self.trace(event="info", text=text)

    def _box_resized(self, event: Any) -> None:
        box = (max(1, event.width - BORDER), max(1, event.height - BORDER))
        if box == self._box:
            return
        self._box = box
        self.label.configure(wraplength=max(40, box[0] - 20))
        if self._resize_job is not None:
            self.root.after_cancel(self._resize_job)
        self._resize_job = self.root.after(RESIZE_DELAY_MS, self._redraw)

    def _redraw(self) -> None:
        self._resize_job = None
        if self._shown is not None:
            frame, source, generation = self._shown
            self.show(frame, source=source, generation=generation)

    # -- live mode --

    def _toggle_live(self) -> None:
        self.set_live(self.live.get())

    def set_live(self, on: bool) -> None:
        """Redraw on every new frame (on), or only when a button says so (off)."""
        self.live.set(on)
        if on and self._feed is None:
            self._feed = LiveFeed(self.store.key)
            self._rate = RateMeter()
            self._watch_feed(self._feed)
        elif not on:
            self._stop_live()
        self.trace(event="live", on=on)

    def _watch_feed(self, feed: LiveFeed) -> None:
        """Tk wakes when the feed's pipe is readable; where it cannot watch one, a timer."""
        import tkinter as tk

        try:
            self.root.tk.createfilehandler(feed.fileno(), tk.READABLE,
                                           lambda *_: self._take_live())
        except (AttributeError, tk.TclError):
            self._poll_job = self.root.after(LIVE_POLL_MS, self._poll_live)
        else:
            self._watched = feed.fileno()

    def _poll_live(self) -> None:
        if self._feed is None:
            return
        self._take_live()
        self._poll_job = self.root.after(LIVE_POLL_MS, self._poll_live)

    def _take_live(self) -> None:
        item = self._feed.take() if self._feed is not None else None
        if item is not None:
            self._show_live(*item)

    def _show_live(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            frame, generation, self._dropped = payload
            self.show(frame, source="live", generation=generation)
        elif self.label.cget("text") != ATTACH_FAILED_TEXT:
            self.set_text(ATTACH_FAILED_TEXT)

    # -- Qt's format: talk to the real Qt example --

    def _toggle_qt(self) -> None:
        """Switch between shmimage's segments and Qt's; what this window published goes."""
        key = self.store.key
        if self.live.get():
            self.set_live(False)
        self.store.close()
        qt = self.qt.get()
        self.store = QtStore(key) if qt else Store(key)
        self.live_check.state(["disabled"] if qt else ["!disabled"])
        self.trace(event="mode", qt=qt)

    def _stop_live(self) -> None:
        job, self._poll_job = self._poll_job, None
        if job is not None and not self._closed:
            self.root.after_cancel(job)
        watched, self._watched = self._watched, None
        if watched is not None and not self._closed:
            self.root.tk.deletefilehandler(watched)
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()

    def close(self) -> None:
        self._stop_live()
        self.store.close()
        if not self._closed:
            self._closed = True
            self.root.destroy()


def json_tracer(stream: Any = None) -> Tracer:
    def trace(**fields: Any) -> None:
        out = stream or sys.stdout
        out.write(json.dumps(fields) + "\n")
        out.flush()
    return trace


def keep_signals_flowing(root: Any, interval_ms: int = 200) -> None:
    """Python runs signal handlers only between Tk events; a timer makes sure there are some."""
    def tick() -> None:
        root.after(interval_ms, tick)

    root.after(interval_ms, tick)


def run_viewer(key: str, *, load: Path | None = None, geometry: str | None = None,
               live: bool = False, qt: bool = False, trace: bool = False) -> int:
    """Open one dialog and run it until its window closes, Ctrl+C or SIGTERM."""
    import tkinter as tk

    root = tk.Tk(className="shmimage")
    if geometry:
        root.geometry(geometry)
    viewer = Viewer(root, key, qt=qt, trace=json_tracer() if trace else None)
    previous = signal.signal(signal.SIGTERM, lambda *_: root.after_idle(viewer.close))
    keep_signals_flowing(root)
    try:
        viewer.announce()
        if load is not None:
            viewer.load_path(str(load))
        if live:
            viewer.set_live(True)
        root.mainloop()
    except KeyboardInterrupt:
        viewer.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
        viewer._stop_live()
        viewer.store.close()
    return 0
