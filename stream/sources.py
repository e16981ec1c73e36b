"""Frame sources: one small interface over webcams, network streams, files, folders, synthetic.

A :class:`Source` hands out one RGB frame per :meth:`Source.read`; it runs in the caller's thread
and owns no process (the capture process, :mod:`clipmg.stream.capture`, adds numbering,
timestamps, pacing, reconnection and the ring). ``open_source(spec)`` picks the class:

==============================  ======================================================
spec                            source
==============================  ======================================================
``synthetic`` / ``synthetic:7``  the synthetic micro-gesture generator (seed 7), with keypoints
``0``, ``1``, ``/dev/video0``    a webcam (OpenCV's default backend, V4L2 on Linux)
``rtsp://``, ``http(s)://`` ...  a network stream through FFmpeg (RTSP over TCP by default)
a directory                      the images in it, in name order
any other path                   a video file through FFmpeg
==============================  ======================================================

Every source reports why a ``read`` gave nothing through :attr:`Source.state`: ``"open"``
(no frame right now), ``"ended"`` (a finite source ran out), ``"dropped"`` (a live stream failed
or timed out: reopen it) or ``"failed"`` (cannot go on); :attr:`Source.detail` says more.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from clipmg.model import synthetic as synth
from clipmg.model.errors import ClipmgError

from .config import MAX_FPS
from .redact import redact_text, redact_url

__all__ = [
    "Source",
    "SourceOpenError",
    "open_source",
    "to_rgb",
    "ffmpeg_capture_options",
    "CvSource",
    "ImageFolderSource",
    "SyntheticSource",
    "IMAGE_EXTENSIONS",
    "spec_is_live",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
Read = Tuple[Optional[np.ndarray], Optional[np.ndarray]]
# The user's own FFmpeg capture options, read before this module ever overwrites the variable.
_USER_FFMPEG_OPTIONS = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS") or None


class SourceOpenError(ClipmgError, RuntimeError):
    """A source could not be opened; the message (credentials redacted) says what was tried."""


# --------------------------------------------------------------------------- pure helpers
def to_rgb(img: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Any decoded image -> ``(H, W, 3)`` uint8 RGB (contiguous).

    Accepts ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)``, ``(H, W, 4)``; uint8, uint16 (high byte
    kept), float (``[0, 1]`` scaled to 255) or bool. ``bgr``: the channels are in OpenCV order.
    Raises ``ValueError`` for anything else (the caller reports it, it never crashes a stream).
    """
    a = np.asarray(img)
    if a.size == 0 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"cannot turn an image of shape {a.shape} into RGB: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    c = a.shape[2]
    if c == 1:
        return np.ascontiguousarray(np.repeat(a, 3, axis=2))
    a = a[:, :, :3]  # drop alpha
    return np.ascontiguousarray(a[:, :, ::-1] if bgr else a)


def ffmpeg_capture_options(extra: str | None = None, env: str | None = None) -> str:
    """The ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` value to open a stream with (``key;value|key;value``).

    Setting that variable replaces OpenCV's own default (RTSP over TCP), so ``rtsp_transport;tcp``
    is added unless the user's environment (``env``) or ``extra`` choose a transport themselves.
    Later entries win.
    """
    entries: Dict[str, str] = {"rtsp_transport": "tcp"}
    for chunk in (env, extra):
        for item in (chunk or "").split("|"):
            if not item.strip():
                continue
            key, _, value = item.partition(";")
            entries[key.strip()] = value.strip()
    return "|".join(f"{k};{v}" for k, v in entries.items())


def _clean_fps(fps: float, default: float) -> float:
    """Containers and cameras report 0, NaN or absurd rates; fall back to ``default``."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return default
    return fps if np.isfinite(fps) and 0.5 <= fps <= 1000.0 else default


# --------------------------------------------------------------------------- interface
class Source:
    """A frame source. Subclasses implement :meth:`_read` and :meth:`close`.

    Attributes: ``fps`` (nominal frames per second; pacing uses it), ``size`` ``(width, height)``
    of the latest frame (or the announced size before the first one), ``live`` (a camera or
    network stream: reconnect on failure; ``False``: a finite file/folder/generator), ``name``
    (the spec with credentials redacted: the only form that may be logged), ``state`` and
    ``detail`` (see the module docstring), ``frames_read``.
    """

    fps: float = 30.0
    size: Tuple[int, int] = (0, 0)
    live: bool = False

    def __init__(self, name: str) -> None:
        self.name = redact_url(name)
        self.state = "open"
        self.detail = ""
        self.frames_read = 0
        self.input_format: Optional[Tuple[Tuple[int, ...], str]] = None  # raw (shape, dtype) last decoded

    def read(self) -> Read:
        """Next frame: ``(RGB (H, W, 3) uint8, keypoints (137, 3) float32 or None)``.

        ``(None, None)`` when no frame is available now; :attr:`state` says whether that is
        temporary (``"open"``) or final for this opening (``"ended"``, ``"dropped"``, ``"failed"``).
        Never raises for a bad frame or a broken stream.
        """
        if self.state != "open":
            return None, None
        try:
            frame, kp = self._read()
        except Exception as e:  # a decoder or driver error must not kill the capture loop
            self._set("dropped" if self.live else "failed", f"read error: {redact_text(str(e))}")
            return None, None
        if frame is not None:
            self.frames_read += 1
            self.size = (int(frame.shape[1]), int(frame.shape[0]))
        return frame, kp

    def _read(self) -> Read:
        raise NotImplementedError

    def _convert(self, img: np.ndarray, bgr: bool) -> np.ndarray:
        """Note the decoded format (the capture reports changes) and convert to RGB uint8."""
        self.input_format = (tuple(int(d) for d in img.shape), str(img.dtype))
        return to_rgb(img, bgr=bgr)

    def _set(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail

    def close(self) -> None:
        self.state = "closed"

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.size[0]}x{self.size[1]} @ {self.fps:g} fps, {self.state})"


# --------------------------------------------------------------------------- OpenCV sources
class CvSource(Source):
    """Webcam, network stream or video file through ``cv2.VideoCapture``.

    ``target``: webcam index (int) or URL/path (str). Opening applies
    ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC`` (FFmpeg's own default is 30 s)
    and, for URLs, ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` with ``rtsp_transport;tcp``. Webcams get
    ``CAP_PROP_BUFFERSIZE`` 1 (honoured by V4L2 only) and optional ``width``/``height``/``fps``
    requests. Files may ``loop``.
    """

    def __init__(
        self,
        target: int | str,
        *,
        live: bool,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        loop: bool = False,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        ffmpeg_options: str | None = None,
        api: int | None = None,
    ) -> None:
        super().__init__(str(target))
        self.target = target
        self.live = live
        self.loop = loop
        self._open_timeout_ms = max(1, int(open_timeout_s * 1000))
        self._read_timeout_ms = max(1, int(read_timeout_s * 1000))
        self._fps_override = fps
        self._request = (width, height)
        self._ffmpeg_options = ffmpeg_options
        self._api = api
        self._cap: Any = None
        self.frame_count = 0  # frames the container announces (files), 0 if unknown
        self._open()

    def _open(self) -> None:
        t0 = time.monotonic()
        if isinstance(self.target, int) or str(self.target).startswith("/dev/video"):
            api = cv2.CAP_ANY if self._api is None else self._api
            cap = cv2.VideoCapture(self.target, api)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer stale frames (V4L2 only)
                w, h = self._request
                if w and h:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
                if self._fps_override:
                    cap.set(cv2.CAP_PROP_FPS, self._fps_override)
        else:
            if "://" in str(self.target):
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = ffmpeg_capture_options(
                    self._ffmpeg_options, _USER_FFMPEG_OPTIONS
                )
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self._open_timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self._read_timeout_ms,
            ]
            api = cv2.CAP_FFMPEG if self._api is None else self._api
            cap = cv2.VideoCapture(str(self.target), api, params)
        if not cap.isOpened():
            cap.release()
            what = (
                "camera" if self.live and "://" not in str(self.target) else ("stream" if self.live else "video file")
            )
            # the open timeout is named only when it is what ended the attempt (a missing or
            # undecodable file fails at once: "within 5 s" would send the user looking at the network)
            waited = time.monotonic() - t0 >= 0.9 * self._open_timeout_ms / 1000
            raise SourceOpenError(
                f"could not open {what} {self.name}"
                + (f" (no answer within {self._open_timeout_ms / 1000:g} s)" if waited else "")
            )
        self._cap = cap
        self.fps = _clean_fps(self._fps_override or cap.get(cv2.CAP_PROP_FPS), 30.0)
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if np.isfinite(n) and n > 0 else 0
        self._opened_frames = 0

    def _read(self) -> Read:
        ok, img = self._cap.read()
        if ok and img is not None:
            self._opened_frames += 1
            return self._convert(img, bgr=True), None
        if self.live:
            self._set(
                "dropped",
                f"no frame from {self.name} (read failed or timed out after {self._read_timeout_ms / 1000:g} s)",
            )
            return None, None
        got, want = self._opened_frames, self.frame_count
        short = want and got < want - 1  # the last frame count is often off by one
        if self.loop and got > 0:
            self._cap.release()
            try:
                self._open()
            except SourceOpenError as e:
                self._set("failed", f"could not reopen for looping: {e}")
                return None, None
            return self._read_once_after_reopen()
        note = (
            f"ended after {got} of {want} frames the container announces (file truncated or unreadable)"
            if short
            else f"end of file after {got} frames"
        )
        self._set("ended", note if not (self.loop and got == 0) else "no frame could be decoded")
        return None, None

    def _read_once_after_reopen(self) -> Read:
        ok, img = self._cap.read()
        if ok and img is not None:
            self._opened_frames += 1
            return self._convert(img, bgr=True), None
        self._set("failed", "file gives no frame after reopening for looping")
        return None, None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


# --------------------------------------------------------------------------- image folder
class ImageFolderSource(Source):
    """The images of a folder in name order (``IMAGE_EXTENSIONS``), at ``fps`` (default 30).

    Images of any size and channel count are delivered as RGB; an unreadable file is skipped
    (counted in ``skipped``, logged once) rather than ending the stream.
    """

    def __init__(self, folder: str | os.PathLike, *, fps: float = 30.0, loop: bool = False, **_: Any) -> None:
        super().__init__(str(folder))
        self.folder = Path(folder)
        self.files: List[Path] = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise SourceOpenError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {self.name}")
        self.fps = _clean_fps(fps, 30.0)
        self.loop = loop
        self.skipped = 0
        self._i = 0

    def _read(self) -> Read:
        while True:
            if self._i >= len(self.files):
                if self.loop and self.frames_read > 0:
                    self._i = 0
                else:
                    self._set("ended", f"end of folder after {self.frames_read} images")
                    return None, None
            path = self.files[self._i]
            self._i += 1
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            try:
                if img is None:
                    raise ValueError("not a readable image")
                return self._convert(img, bgr=True), None
            except ValueError as e:
                if self.skipped == 0:
                    log.warning("skipping unreadable image %s in %s: %s", path.name, self.name, e)
                self.skipped += 1


# --------------------------------------------------------------------------- synthetic
class SyntheticSource(Source):
    """Frames and OpenPose-137 keypoints from the synthetic generator
    (:func:`clipmg.model.synthetic.synthetic_stream`): an endless, deterministic take per ``seed``.

    ``keypoints``: ``"exact"`` (the drawing's own keypoints, default) or ``"observed"`` (with the
    generator's OpenPose-like noise and dropout, as written to its JSON files). ``width``,
    ``height``, ``fps`` and other ``SynthConfig`` fields may be given as options. ``frames``: any
    iterable of ``(image, keypoints)`` pairs or ``SynthFrame`` objects instead of the generator
    (tests); a finite one ends (``state == "ended"``).
    """

    live = False

    def __init__(self, seed: int = 0, *, keypoints: str = "exact", frames: Any = None, **opts: Any) -> None:
        super().__init__(f"synthetic:{seed}")
        if keypoints not in ("exact", "observed"):
            raise SourceOpenError(f"synthetic keypoints must be 'exact' or 'observed', got {keypoints!r}")
        self.seed = seed
        self._which = keypoints
        if frames is None:
            fields = set(synth.SynthConfig.__dataclass_fields__)
            cfg_opts = {k: v for k, v in opts.items() if k in fields}
            try:
                cfg = synth.SynthConfig(**cfg_opts)
            except (TypeError, ValueError) as e:
                raise SourceOpenError(f"bad synthetic source options {cfg_opts}: {e}") from e
            self.fps = float(cfg.fps)
            self.size = (cfg.width, cfg.height)
            frames = synth.synthetic_stream(seed, cfg)
        else:
            self.fps = _clean_fps(opts.get("fps", 25.0), 25.0)
        self._it = iter(frames)

    def _read(self) -> Read:
        try:
            item = next(self._it)
        except StopIteration:
            self._set("ended", f"synthetic stream ended after {self.frames_read} frames")
            return None, None
        if hasattr(item, "image"):  # a SynthFrame
            image = item.image
            kp = item.observed if self._which == "observed" else item.keypoints
        else:
            image, kp = item
        kp = None if kp is None else np.asarray(kp, np.float32)
        return self._convert(image, bgr=False), kp


# --------------------------------------------------------------------------- dispatch
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def spec_is_live(spec: str) -> bool:
    """True for cameras and network streams (reconnect forever), False for files, folders and the
    synthetic generator (a failure to open them is final)."""
    spec = str(spec).strip()
    return (
        spec.isdigit() or spec.startswith("/dev/video") or (bool(_URL.match(spec)) and not spec.startswith("file://"))
    )


def open_source(spec: str, **opts: Any) -> Source:
    """Open the source named by ``spec`` (see the module docstring for the forms).

    Common options: ``open_timeout_s``, ``read_timeout_s`` (OpenCV sources), ``loop`` (files,
    folders), ``fps`` (folders and synthetic: the nominal rate; webcams: a request),
    ``width``/``height`` (webcam requests), ``ffmpeg_options`` (``key;value|...``). Unknown options
    are ignored by the sources that do not use them (``clipmg-live`` refuses them first:
    ``stream/config.py`` ``normalize_source_options``); an ``fps`` outside (0, ``MAX_FPS``] is refused.
    Raises :class:`SourceOpenError` (message redacted) when the source cannot be opened.
    """
    spec = str(spec).strip()
    fps = opts.get("fps")
    if fps is not None and not (
        isinstance(fps, (int, float)) and not isinstance(fps, bool) and np.isfinite(fps) and 0 < fps <= MAX_FPS
    ):
        raise SourceOpenError(f"fps={fps!r} is not allowed: give frames per second in (0, {MAX_FPS:g}]")
    cv_keys = ("open_timeout_s", "read_timeout_s", "loop", "fps", "width", "height", "ffmpeg_options", "api")
    cv_opts = {k: v for k, v in opts.items() if k in cv_keys}
    if spec == "synthetic" or spec.startswith("synthetic:"):
        seed_text = spec.partition(":")[2] or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise SourceOpenError(f"synthetic source seed must be an integer, got {seed_text!r}") from None
        return SyntheticSource(seed, **{k: v for k, v in opts.items() if k not in ("open_timeout_s", "read_timeout_s")})
    if spec.isdigit():
        cv_opts.pop("loop", None)
        return CvSource(int(spec), live=True, **cv_opts)
    if spec.startswith("/dev/video"):
        cv_opts.pop("loop", None)
        return CvSource(spec, live=True, **cv_opts)
    if _URL.match(spec):
        if spec.startswith("file://"):
            spec = spec[len("file://") :]
        else:
            cv_opts.pop("loop", None)
            return CvSource(spec, live=True, **cv_opts)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps=opts.get("fps") or 30.0, loop=bool(opts.get("loop", False)))
    if not path.is_file():
        raise SourceOpenError(f"no such video file, folder, camera or URL: {redact_url(spec)}")
    return CvSource(str(path), live=False, **cv_opts)
