"""The example's dialog in Tk: load an image into shared memory, or display it from there.

Launch two: in the first press "Load Image From File...", in the second
"Display Image From Shared Memory".  The "Live" toggle goes beyond the
example and redraws on every new frame, waiting on a worker thread.
"""
from __future__ import annotations

import json
import queue
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InvalidImageError, SharedMemoryError

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
BACKGROUND = (217, 217, 217)
LIVE_POLL_MS = 30
Tracer = Callable[..., None]


# ---- pixels -> something Tk can show -------------------------------------------------

def to_rgba8(frame: np.ndarray) -> np.ndarray:
    """Any frame SharedImage holds (gray, RGB, RGBA; uint8, uint16, float32) as RGBA uint8."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype.kind == "f":
        frame = (np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise InvalidImageError(f"cannot display frames of dtype {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    channels = frame.shape[2]
    if channels == 1:
        frame = np.repeat(frame, 3, axis=2)
    if channels in (1, 3):
        alpha = np.full(frame.shape[:2] + (1,), 255, np.uint8)
        frame = np.concatenate([frame, alpha], axis=2)
    if frame.ndim != 3 or frame.shape[2] != 4:
        raise InvalidImageError(f"cannot display a frame of shape {frame.shape}")
    return np.ascontiguousarray(frame)


def fit_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with the image's aspect ratio that fits in ``box``."""
    scale = min(box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_ppm(frame: np.ndarray, box: tuple[int, int] = BOX) -> tuple[bytes, tuple[int, int]]:
    """The frame scaled to fit ``box``, over the window's grey, as binary PPM bytes."""
    from PIL import Image

    rgba = to_rgba8(frame)
    image = Image.fromarray(rgba)
    size = fit_size(image.width, image.height, box)
    if size != image.size:
        if size[0] < image.width:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        else:  # enlarging: keep pixels crisp
            image = image.resize(size, Image.Resampling.NEAREST)
    flat = Image.new("RGB", image.size, BACKGROUND)
    flat.paste(image, mask=image.getchannel("A"))
    header = f"P6 {flat.width} {flat.height} 255\n".encode("ascii")
    return header + flat.tobytes(), flat.size


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

    def publish_file(self, path: str) -> np.ndarray:
        from .image import SharedImage

        if self._publisher is None:
            self._publisher = SharedImage(self.key)
        pixels: np.ndarray = self._publisher.load_from_file(path)
        return pixels

    def read_once(self) -> np.ndarray:
        from .image import SharedImage

        return SharedImage(self.key).load_from_memory()

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.detach()
            self._publisher = None


class QtStore(Store):
    """Speaks Qt's own segment format, so the real Qt example can be on the other side."""

    def publish_file(self, path: str) -> np.ndarray:
        from .qt import QtSharedImage

        if self._publisher is None:
            self._publisher = QtSharedImage(self.key)
        pixels: np.ndarray = self._publisher.load_from_file(path)
        return pixels

    def read_once(self) -> np.ndarray:
        from .qt import QtSharedImage

        with QtSharedImage(self.key) as source:
            return source.read()


class LiveFeed:
    """Waits for new frames on a worker thread; the Tk side picks them up with ``poll()``."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._stop = threading.Event()
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="shmimage-live", daemon=True)
        self._thread.start()

    def poll(self) -> tuple[str, Any] | None:
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _post(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            self._drop_stale_frames()
        try:
            self._inbox.put(item=(kind, payload), timeout=0.5)
        except queue.Full:
            pass

    def _drop_stale_frames(self) -> None:
        try:
            while True:
                self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        from .image import SharedImage

        image = None
        after = None
        while not self._stop.is_set():
            try:
                if image is None:
                    image = SharedImage(self.key)
                    after = image.info().generation
                    self._post("frame", (image.read(), after))
                after = image.wait(timeout=0.25, after=after)
                self._post("frame", (image.read(), after))
            except TimeoutError:
                continue
            except (SharedMemoryError, OSError) as exc:
                self._post("error", exc)
                self._drop(image)
                image = None
                self._stop.wait(0.5)
        self._drop(image)

    @staticmethod
    def _drop(image: Any) -> None:
        if image is not None:
            try:
                image.detach()
            except (SharedMemoryError, OSError):
                pass


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
        self._photo: Any = None
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
        box = ttk.Frame(outer, width=BOX[0] + 8, height=BOX[1] + 8)  # room for borders
        box.pack_propagate(False)
        box.pack(pady=6)
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
            pixels = self.store.publish_file(str(path))
        except InvalidImageError:
            self.set_text(NOT_IMAGE_TEXT)
        except (SharedMemoryError, ImportError):
            self.set_text(CREATE_FAILED_TEXT)
        except OSError:
            self.set_text(NOT_IMAGE_TEXT)
        else:
            self.show(pixels, source="file")

    def load_from_memory(self) -> None:
        try:
            pixels = self.store.read_once()
        except (SharedMemoryError, OSError, ImportError, ValueError):
            self.set_text(ATTACH_FAILED_TEXT)
        else:
            self.show(pixels, source="memory")

    # -- showing things --

    def set_text(self, text: str) -> None:
        self._photo = None
        self.label.configure(image="", text=text)
        self.trace(event="status", text=text)

    def show(self, frame: np.ndarray, *, source: str, generation: int | None = None) -> None:
        import tkinter as tk

        try:
            data, shown = to_ppm(frame)
        except InvalidImageError:
            self.set_text(NOT_IMAGE_TEXT)
            return
        self._photo = tk.PhotoImage(master=self.root, data=data, format="ppm")
        self.label.configure(image=self._photo, text="")
        self.trace(event="image", source=source, width=int(frame.shape[1]),
                   height=int(frame.shape[0]), shown=list(shown), generation=generation)

    # -- live mode --

    def _toggle_live(self) -> None:
        self.set_live(self.live.get())

    def set_live(self, on: bool) -> None:
        """Redraw on every new frame (on), or only when a button says so (off)."""
        self.live.set(on)
        if on and self._feed is None:
            self._feed = LiveFeed(self.store.key)
            self._poll_job = self.root.after(LIVE_POLL_MS, self._poll_live)
        elif not on:
            self._stop_live()
        self.trace(event="live", on=on)

    def _poll_live(self) -> None:
        if self._feed is None:
            return
        item = self._feed.poll()
        if item is not None:
            self._show_live(*item)
        self._poll_job = self.root.after(LIVE_POLL_MS, self._poll_live)

    def _show_live(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            frame, generation = payload
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
