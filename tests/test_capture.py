"""Capture: real video files, folders and network streams read by ``capture_main`` in real
processes into the shared-memory ring; numbering, pacing, end/failure states, reconnection with
back-off, and credentials that never leak."""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest
from live_harness import index_image, wait_for

from clipmg.stream.capture import capture_main, fit_frame
from clipmg.stream.redact import redact_text, redact_url, url_secrets
from clipmg.stream.ringbuffer import FrameRing
from clipmg.stream.sources import SourceOpenError, ffmpeg_capture_options, open_source, spec_is_live, to_rgb

CTX = mp.get_context("spawn")


# ----------------------------------------------------------------------------- helpers
def write_video(
    path: Path, n: int, fps: float = 25.0, size: Tuple[int, int] = (160, 120), fourcc: str = "mp4v"
) -> Path:
    """A real video whose frame i shows i in binary as 8 black/white bars (survives coding)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for i in range(n):
        writer.write(index_image(i, w, h))
    writer.release()
    return path


def frame_index(image: np.ndarray) -> int:
    bar = image.shape[1] // 8
    return sum(1 << b for b in range(8) if image[:, b * bar + bar // 4 : (b + 1) * bar - bar // 4].mean() > 127)


def drain(q, timeout: float = 0.0) -> List[Dict]:
    out = []
    end = time.monotonic() + timeout
    while True:
        try:
            out.append(q.get(timeout=max(0.01, end - time.monotonic())))
        except queue.Empty:
            return out


def states(events: List[Dict]) -> List[str]:
    return [e["state"] for e in events if e.get("event") == "source_state"]


def run_capture_process(spec: str, ring: FrameRing, timeout: float = 60, **kwargs):
    """Run capture_main in a spawned process until it returns by itself; returns its events."""
    q, stop = CTX.Queue(), CTX.Event()
    p = CTX.Process(target=capture_main, args=(spec, ring.name, q, stop), kwargs=kwargs)
    t0 = time.monotonic()
    p.start()
    p.join(timeout)
    took = time.monotonic() - t0
    if p.is_alive():
        stop.set()
        p.join(10)
        pytest.fail(f"capture of {spec} did not finish within {timeout} s")
    assert p.exitcode == 0, f"capture process crashed (exit code {p.exitcode})"
    return drain(q, 0.5), took


def ring_frames(ring: FrameRing):
    last = ring.latest_seq()
    return [f for f in (ring.read(s) for s in range(max(0, last - ring.slots + 1), last + 1)) if f]


class MjpegServer:
    """A real HTTP MJPEG (multipart/x-mixed-replace) camera on 127.0.0.1, for live-stream tests.

    Frame i is uniformly grey at level ``(7 * i) % 256``; ``size`` may change while serving;
    ``close()`` drops every client (a camera going away); a new server may reuse the port.
    """

    def __init__(self, port: int = 0, fps: float = 25.0, size: Tuple[int, int] = (160, 120)) -> None:
        self.fps, self.size, self.n = fps, size, 0
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not server._stop.is_set():
                        w, h = server.size
                        ok, jpg = cv2.imencode(".jpg", np.full((h, w, 3), (7 * server.n) % 256, np.uint8))
                        server.n += 1
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpg)).encode()
                            + b"\r\n\r\n"
                            + jpg.tobytes()
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/stream.mjpg"

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- pure parts
def test_redact_url_and_text():
    assert redact_url("rtsp://user:secret@127.0.0.1:9/x") == "rtsp://***@127.0.0.1:9/x"
    assert (
        redact_url("rtsp://u:p@ss/w@cam:554/s?a=1&password=zz&token=t#f")
        == "rtsp://***@cam:554/s?a=1&password=***&token=***#f"
    )
    assert redact_url("http://cam/x.mjpg?user=admin&pwd=1234&fps=5") == "http://cam/x.mjpg?user=***&pwd=***&fps=5"
    assert redact_url("rtsp://cam/s;user=a;password=b") == "rtsp://cam/s;user=***;password=***"
    for plain in ("0", "/tmp/a b/video.mp4", "synthetic:3", "rtsp://cam:554/live"):
        assert redact_url(plain) == plain
    text = "could not open rtsp://admin:hunter2@10.0.0.5/live (secret hunter2)"
    assert (
        redact_text(text, url_secrets("rtsp://admin:hunter2@10.0.0.5/live"))
        == "could not open rtsp://***@10.0.0.5/live (secret ***)"
    )


def test_to_rgb_converts_every_channel_layout():
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert (to_rgb(bgr)[..., 2] == 255).all() and (to_rgb(bgr)[..., 0] == 0).all()
    assert to_rgb(np.full((2, 3), 9, np.uint8)).shape == (2, 3, 3)
    assert to_rgb(np.full((2, 3, 1), 9, np.uint8)).shape == (2, 3, 3)
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 2] = 200
    assert (to_rgb(bgra)[..., 0] == 200).all()
    assert to_rgb(np.full((2, 2), 65535, np.uint16)).max() == 255
    assert to_rgb(np.full((2, 2, 3), 1.0, np.float32)).min() == 255
    with pytest.raises(ValueError, match="RGB"):
        to_rgb(np.zeros((2, 2, 2), np.uint8))


def test_fit_frame_keeps_aspect_and_scales_keypoints():
    kp = np.zeros((137, 3), np.float32)
    kp[0] = (100, 50, 0.9)
    out, kp2, resized = fit_frame(np.zeros((200, 400, 3), np.uint8), kp, 100, 100)
    assert resized and out.shape == (50, 100, 3)
    assert np.allclose(kp2[0], (25, 12.5, 0.9)) and (kp2[1] == 0).all()
    same, kp3, resized = fit_frame(np.zeros((50, 60, 3), np.uint8), kp, 100, 100)
    assert not resized and same.shape == (50, 60, 3) and kp3 is kp


def test_ffmpeg_options_keep_rtsp_over_tcp():
    assert ffmpeg_capture_options() == "rtsp_transport;tcp"
    assert ffmpeg_capture_options("fflags;nobuffer") == "rtsp_transport;tcp|fflags;nobuffer"
    assert ffmpeg_capture_options(env="rtsp_transport;udp") == "rtsp_transport;udp"
    assert spec_is_live("0") and spec_is_live("rtsp://h/x") and not spec_is_live("/tmp/v.mp4")
    assert not spec_is_live("synthetic:2")


def test_open_source_errors_are_clear(tmp_path):
    with pytest.raises(SourceOpenError, match="no such video file"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceOpenError, match="seed must be an integer"):
        open_source("synthetic:x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceOpenError, match="no images"):
        open_source(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------- files
def test_video_file_paced_and_unpaced_in_a_real_process(tmp_path):
    video = write_video(tmp_path / "clip.mp4", n=30, fps=30.0)
    with FrameRing.create(slots=64, max_height=120, max_width=160) as ring:
        events, took_fast = run_capture_process(str(video), ring, pace=False)
        assert states(events) == ["opening", "streaming", "ended"]
        assert events[-1]["seq"] == 29 and "30 frames" in events[-1]["detail"]
        streaming = next(e for e in events if e.get("state") == "streaming")
        assert streaming["fps"] == pytest.approx(30.0) and streaming["size"] == [160, 120]
        frames = ring_frames(ring)
        assert [f.seq for f in frames] == list(range(30))
        assert [frame_index(f.image) for f in frames] == list(range(30))  # in order, none skipped
        t = np.array([f.t_mono for f in frames])
        assert (np.diff(t) > 0).all()
        fast_span = t[-1] - t[0]
        assert abs(frames[0].t_wall - time.time()) < 60

        # Paced: the same file again continues the ring's numbering and takes ~1 s of real time.
        events, took_paced = run_capture_process(str(video), ring, pace=True)
        assert states(events)[-1] == "ended" and events[-1]["seq"] == 59
        frames = [ring.read(s) for s in range(30, 60)]
        assert all(f is not None for f in frames)
        t = np.array([f.t_mono for f in frames])
        paced_span = t[-1] - t[0]
        assert 0.7 < paced_span < 2.5, f"29 frame intervals at 30 fps took {paced_span:.2f} s"
        assert np.median(np.diff(t)) == pytest.approx(1 / 30, abs=0.015)
        assert fast_span < paced_span / 2


def test_truncated_files_end_or_fail_clearly(tmp_path):
    avi = write_video(tmp_path / "cut.avi", n=60, fourcc="MJPG")
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])  # index and half the frames gone
    mp4 = write_video(tmp_path / "cut.mp4", n=30)
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])  # moov atom gone: unopenable
    with FrameRing.create(64, 120, 160) as ring:
        events, _ = run_capture_process(str(avi), ring, pace=False)
        assert states(events) == ["opening", "streaming", "ended"]
        last = events[-1]
        assert 0 < last["seq"] < 59 and "of 60 frames" in last["detail"] and "truncated" in last["detail"]
        assert [frame_index(f.image) for f in ring_frames(ring)] == list(range(last["seq"] + 1))
        events, _ = run_capture_process(str(mp4), ring, pace=False)
        assert states(events) == ["opening", "failed"]
        assert "could not open video file" in events[-1]["detail"]
        assert events[-1]["seq"] == last["seq"]  # numbering untouched


def test_file_that_vanishes_while_looping_fails_clearly(tmp_path):
    video = write_video(tmp_path / "gone.mp4", n=10, fps=20.0)
    q, stop = CTX.Queue(), CTX.Event()
    with FrameRing.create(64, 120, 160) as ring:
        p = CTX.Process(target=capture_main, args=(str(video), ring.name, q, stop), kwargs={"pace": True, "loop": True})
        p.start()
        try:
            wait_for(lambda: ring.latest_seq() >= 2, 60, "the first frames")
            video.unlink()  # the open file still reads to its end; the loop's reopen cannot
            p.join(30)
        finally:
            stop.set()
            p.join(10)
        assert p.exitcode == 0
        events = drain(q, 0.5)
        assert states(events) == ["opening", "streaming", "failed"]
        assert "reopen" in events[-1]["detail"] and events[-1]["seq"] == 9
        assert ring.latest_seq() == 9


def test_image_folder_with_size_and_channel_changes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), np.full((60, 80, 3), 10, np.uint8))
    cv2.imwrite(str(folder / "001.png"), np.full((60, 80), 20, np.uint8))  # grey
    cv2.imwrite(str(folder / "002.png"), np.full((240, 320, 4), 30, np.uint8))  # BGRA, too big
    (folder / "003.png").write_bytes(b"not an image")
    cv2.imwrite(str(folder / "004.jpg"), np.full((30, 40, 3), 40, np.uint8))
    with FrameRing.create(16, 120, 160) as ring:
        events, _ = run_capture_process(str(folder), ring, pace=False)
        assert states(events) == ["opening", "streaming", "ended"]
        frames = ring_frames(ring)
        assert [f.image.shape for f in frames] == [(60, 80, 3), (60, 80, 3), (120, 160, 3), (30, 40, 3)]
        assert [int(np.median(f.image)) for f in frames] == [10, 20, 30, 40]
        fmt = [e for e in events if e.get("event") == "source_format"]
        assert [e["shape"] for e in fmt] == [[60, 80, 3], [60, 80], [240, 320, 4], [30, 40, 3]]
        assert [e["changed"] for e in fmt] == [False, True, True, True]
        assert "resized" in fmt[2]["action"]


def test_synthetic_source_carries_keypoints_scaled_with_the_frame():
    pytest.importorskip("clipmg.train.synth")
    from clipmg.train.synth import synthetic_stream

    first = next(iter(synthetic_stream(5)))
    q = queue.Queue()
    with FrameRing.create(8, 60, 80) as ring:  # half of the generator's 160x120
        capture_main("synthetic:5", ring.name, q, None, pace=False, max_frames=3)
        f = ring.read(0)
        assert f.image.shape == (60, 80, 3) and ring.latest_seq() == 2
        assert np.allclose(f.keypoints[:, :2], first.keypoints[:, :2] * 0.5, atol=1e-4)
        assert np.array_equal(f.keypoints[:, 2], first.keypoints[:, 2])
    assert states(drain(q))[-1] == "stopped"


# ----------------------------------------------------------------------------- live streams
SECRET = "s3cr3t-Pa55"


def test_unreachable_rtsp_backs_off_and_never_leaks_the_secret(capfd, caplog):
    url = f"rtsp://user:{SECRET}@127.0.0.1:9/x?token=tok-{SECRET}"
    q, stop = CTX.Queue(), CTX.Event()
    with FrameRing.create(4, 16, 16) as ring:
        p = CTX.Process(
            target=capture_main,
            args=(url, ring.name, q, stop),
            kwargs={"open_timeout_s": 1.0, "initial_backoff_s": 0.1, "max_backoff_s": 0.4},
        )
        p.start()
        events = []
        end = time.monotonic() + 60
        while time.monotonic() < end and states(events).count("reconnecting") < 5:
            events += drain(q, 0.2)
        stop.set()
        t_stop = time.monotonic()
        p.join(10)
        assert p.exitcode == 0 and time.monotonic() - t_stop < 5, "capture did not stop promptly"
        events += drain(q, 0.3)
        # The same URL in this process, for the log records (caplog sees this process only).
        caplog.set_level(logging.DEBUG)
        stop2 = threading.Event()
        threading.Timer(0.5, stop2.set).start()
        capture_main(url, ring.name, None, stop2, open_timeout_s=1.0, initial_backoff_s=0.1)
        assert ring.latest_seq() == -1
    seen = states(events)
    assert seen[:2] == ["opening", "reconnecting"] and seen[-1] == "stopped"
    backoffs = [e["backoff_s"] for e in events if e.get("state") == "reconnecting"]
    assert backoffs[:4] == [0.1, 0.2, 0.4, 0.4]  # exponential, capped
    assert all(e["source"] == "rtsp://***@127.0.0.1:9/x?token=***" for e in events)
    out, err = capfd.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "reconnecting" in logs
    for text in (repr(events), out, err, logs):
        assert SECRET not in text and "user:" not in text


def test_live_stream_drop_reconnect_keeps_numbering_honest(capfd):
    """A real HTTP MJPEG camera goes away and comes back on the same port: capture reports
    stalled/reconnecting, never exits, and continues the numbering (no reuse, no reset)."""
    server = MjpegServer(fps=25.0)
    port = server.port
    url = server.url(f"viewer:{SECRET}")
    q, stop = CTX.Queue(), CTX.Event()
    events: List[Dict] = []
    with FrameRing.create(256, 120, 160) as ring:
        p = CTX.Process(
            target=capture_main,
            args=(url, ring.name, q, stop),
            kwargs={"open_timeout_s": 2.0, "read_timeout_s": 1.0, "initial_backoff_s": 0.1, "max_backoff_s": 0.4},
        )
        p.start()
        try:
            wait_for(lambda: ring.latest_seq() >= 10, 60, "frames from the MJPEG camera")
            server.close()  # the camera drops
            wait_for(
                lambda: events.extend(drain(q)) or "reconnecting" in states(events), 30, "reconnecting after the drop"
            )
            before = ring.latest_seq()
            time.sleep(0.5)
            server = MjpegServer(port=port, fps=25.0)  # back on the same address
            wait_for(lambda: ring.latest_seq() >= before + 10, 30, "frames after reconnecting")
        finally:
            stop.set()
            p.join(10)
            server.close()
        assert p.exitcode == 0
        events += drain(q, 0.3)
        seen = states(events)
        i = seen.index("stalled")
        assert seen[:2] == ["opening", "streaming"] and seen[i + 1] == "reconnecting"
        assert "streaming" in seen[i:] and seen[-1] == "stopped"
        back = [e for e in events if e.get("state") == "streaming"][-1]
        assert back["seq"] == before and back["outage_s"] >= 0.4
        first_after = ring.read(before + 1)
        last_before = ring.read(before)
        assert first_after.t_mono - last_before.t_mono >= 0.4  # the gap is in the timestamps
        out, err = capfd.readouterr()
        for text in (repr(events), out, err):
            assert SECRET not in text and "viewer:" not in text


def test_live_stream_resolution_change_is_picked_up_by_reopening():
    """OpenCV 4.10 keeps returning the last good picture when an MJPEG stream changes size;
    ``frozen_timeout_s`` notices the frozen picture and reopens, which gets the new size."""
    server = MjpegServer(fps=25.0, size=(160, 120))
    q, stop = CTX.Queue(), CTX.Event()
    with FrameRing.create(256, 240, 320) as ring:
        p = CTX.Process(
            target=capture_main,
            args=(server.url(), ring.name, q, stop),
            kwargs={"open_timeout_s": 2.0, "read_timeout_s": 1.0, "initial_backoff_s": 0.1, "frozen_timeout_s": 0.4},
        )
        p.start()
        try:
            wait_for(lambda: ring.latest_seq() >= 5, 60, "frames at 160x120")
            server.size = (320, 240)
            wait_for(
                lambda: (ring.read_latest() or ring.read(0)).image.shape == (240, 320, 3), 30, "frames at the new size"
            )
        finally:
            stop.set()
            p.join(10)
            server.close()
        assert p.exitcode == 0
        events = drain(q, 0.3)
        stalled = [e for e in events if e.get("state") == "stalled"]
        assert stalled and "frozen" in stalled[0]["detail"]


def test_backoff_doubles_to_its_cap_and_starts_over() -> None:
    from clipmg.stream.backoff import Backoff

    b = Backoff(0.25, 1.0)
    assert [b.take() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    b.reset()
    assert b.take() == 0.25
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
