"""A real RTSP server on loopback for the reliability tests: GStreamer's ``gst-rtsp-server``.

Two halves in one file:

- run as a script (``python3 rtsp_server.py --port P --file clip.avi``) with a Python that has
  PyGObject and GStreamer's RTSP server typelib (Debian: ``python3-gi``,
  ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-good``; the project's virtual environment
  usually has no ``gi``, so the tests start it with the system ``/usr/bin/python3``), it serves an
  MJPEG AVI file as RTP/JPEG at ``rtsp://127.0.0.1:P/live`` (paced at the file's frame rate by the
  pipeline clock), optionally behind HTTP-style basic authentication, and prints ``ready`` once it
  listens;
- imported by the tests, :class:`RtspServer` starts, stops (SIGKILL: a camera that vanishes
  without a goodbye) and restarts that process on the same port, and :func:`find_gi_python`
  tells whether this machine can run it (the tests skip with the install line when it cannot).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve()
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends python3-gi gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-base"
)
_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "assert all(Gst.ElementFactory.find(e) for e in ('filesrc', 'avidemux', 'rtpjpegpay'))"
)


def find_gi_python() -> Optional[str]:
    """A Python interpreter that can run the server (``None``: install :data:`INSTALL_HINT`)."""
    for cand in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if not cand or not Path(cand).exists():
            continue
        try:
            r = subprocess.run([cand, "-c", _CHECK], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0:
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """The server script in a subprocess; ``start``/``kill``/``start`` again on the same port."""

    def __init__(
        self,
        python: str,
        media: Path,
        port: Optional[int] = None,
        user: str = "",
        password: str = "",
        log: Optional[Path] = None,
    ) -> None:
        self.python, self.media = python, Path(media)
        self.port = port or free_port()
        self.user, self.password = user, password
        self.log = log
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    def url(self, query: str = "") -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/live" + (f"?{query}" if query else "")

    def start(self, timeout: float = 30.0) -> None:
        args: List[str] = [self.python, str(HERE), "--port", str(self.port), "--file", str(self.media)]
        if self.user:
            args += ["--user", self.user, "--password", self.password]
        out = open(self.log, "a") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=out, text=True)
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        line = ""
        while time.monotonic() < end and self.proc.poll() is None:  # "ready" once it listens
            if not select.select([self.proc.stdout], [], [], 0.2)[0]:
                continue
            line = self.proc.stdout.readline().strip()
            if line == "ready":
                break
        if line != "ready":
            self.kill()
            raise RuntimeError(f"the RTSP server did not start on port {self.port} (last line {line!r})")
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-stream, as a camera that loses power does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "RtspServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# ------------------------------------------------------------------------------------ the server
def serve(port: int, media: str, user: str = "", password: str = "") -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    # A new pipeline per client, paced by the pipeline clock at the file's own timestamps. The JPEGs are
    # re-encoded by GStreamer: RTP/JPEG (RFC 2435) carries only standard tables and 4:2:0/4:2:2 frames.
    factory.set_launch(
        f'( filesrc location="{media}" ! avidemux ! jpegdec ! videoconvert ! jpegenc quality=90 '
        "! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(False)
    if user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
    print("ready", flush=True)
    loop.run()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Serve an MJPEG AVI file over RTSP on 127.0.0.1 (tests only).")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True, help="an MJPEG .avi file (cv2.VideoWriter with fourcc MJPG)")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    args = ap.parse_args(argv)
    if not os.path.isfile(args.file):
        print(f"no such file {args.file}", file=sys.stderr)
        return 2
    serve(args.port, args.file, args.user, args.password)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
