"""Security: where the recognizer listens, who may subscribe, what is never unpickled, what is never shown.

- The PUB socket binds loopback by default; any other interface must be asked for and is logged.
- CURVE end to end through ``clipmg-live`` and ``clipmg-listen``: a client without the server's
  key, with a wrong key, or with a key that is not on the allow-list receives nothing.
- Every place that can load a pickle refuses one that would run code, and the code never runs.
- Credentials in a stream URL are masked in every output (the RTSP outage test in
  test_faults.py checks logs, status, --listen, overlay text and video against a real server with
  basic auth; here: an unreachable camera, and a property test of the redactor).
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_harness import PY, EvilPickle, Live, Subscriber, endpoint, free_port

SECRET = "Sup3r-Secr3t"
TOKEN = "tkn-0a1b2c3d"


# ------------------------------------------------------------------------------------ where it listens
def test_loopback_by_default_and_other_interfaces_only_when_asked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    from clipmg.stream.config import DEFAULT_ENDPOINT, ConfigError, StreamConfig, build_parser, config_from_args
    from clipmg.stream.publisher import Publisher, PublisherError

    assert DEFAULT_ENDPOINT.startswith("tcp://127.0.0.1:")
    assert config_from_args(build_parser().parse_args([])).endpoint == DEFAULT_ENDPOINT
    port = free_port()
    for host in ("0.0.0.0", "*", "[::]"):
        with pytest.raises(ConfigError, match="--allow-remote"):
            StreamConfig(endpoint=f"tcp://{host}:{port}").validate()
    with pytest.raises(PublisherError, match="--allow-remote"):
        Publisher(f"tcp://0.0.0.0:{port}")
    caplog.set_level(logging.WARNING)
    with Publisher(f"tcp://127.0.0.1:{port}") as pub:  # loopback: nothing to warn about
        assert pub.endpoint == f"tcp://127.0.0.1:{port}"
    assert not caplog.records
    with Publisher(f"tcp://0.0.0.0:{port}", allow_remote=True) as pub:  # asked for: bound, and said so
        assert pub.endpoint.startswith("tcp://0.0.0.0:")
    assert any("reachable from other machines without encryption" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------ CURVE end to end
def _listen(ep: str, *extra: str, seconds: float = 6.0) -> subprocess.Popen:
    return subprocess.Popen(
        [
            PY,
            "-m",
            "clipmg.stream.listen",
            "--endpoint",
            ep,
            "--topic",
            "mg.window",
            "-n",
            "3",
            "--timeout",
            str(seconds),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_curve_through_clipmg_live_only_the_allowed_client_receives(checkpoint: Path, tmp_path: Path) -> None:
    """``clipmg-live --curve-secret --curve-allow`` with real ``clipmg-listen`` clients: the allowed
    client (server key + its certificate on the list) receives windows; a client without the
    server key, one with another server's key, and one whose certificate is not on the list
    receive nothing. The supervisor's own ``--listen`` is admitted too."""
    keys = tmp_path / "keys"
    run = [PY, "-m", "clipmg.stream.publisher", "keys"]
    for args in ([str(keys)], [str(keys), "alice"], [str(keys), "mallory"], [str(tmp_path / "other")]):
        subprocess.run([*run, *args], check=True, capture_output=True, timeout=60)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "alice.key").write_bytes((keys / "alice.key").read_bytes())
    ep = endpoint()
    args = [
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--curve-secret",
        str(keys / "server.key_secret"),
        "--curve-allow",
        str(allowed),
        "--threads",
        "1",
        "--listen",
        "-q",
    ]
    with Live(args) as live:
        alice = _listen(
            ep, "--server-key", str(keys / "server.key"), "--client-cert", str(keys / "alice.key_secret"), seconds=120
        )
        try:
            out, err = alice.communicate(timeout=180)
        finally:
            if alice.poll() is None:
                alice.kill()
        assert alice.returncode == 0 and out.count("mg.window.cam0") == 3, err
        strangers = [
            _listen(ep),
            _listen(ep, "--server-key", str(tmp_path / "other" / "server.key")),
            _listen(ep, "--server-key", str(keys / "server.key"), "--client-cert", str(keys / "mallory.key_secret")),
        ]
        results = [p.communicate(timeout=60) for p in strangers]
        assert live.stop() == 0, live.stderr[-2000:]
    for p, (out, err) in zip(strangers, results):
        assert p.returncode == 1 and "mg.window" not in out and "nothing received" in err, (out, err)
    assert "mg.window.cam0" in live.stdout, "the supervisor's own --listen was refused by the allow-list"


# ------------------------------------------------------------------------------------ pickles
def test_every_loader_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    """Each place that could unpickle a file: CLIP weights (``torch.load`` with weights_only),
    pyskl annotations (an allow-list unpickler), replay keypoints (``.npy``, allow_pickle off),
    int8 validation samples (``.npz``); the training state is covered in test_train.py and, through
    ``clipmg-train --resume``, in test_bad_input.py. Checkpoints and engines are safetensors, ONNX
    and a JSON-headed TensorRT file: no pickle at all."""
    import torch

    from clipmg.engines import EngineError
    from clipmg.engines.quantize import load_samples
    from clipmg.model import create_model, load_config
    from clipmg.stream.pose import PoseBackendError, create_pose_backend
    from clipmg.train.readers import DataError
    from clipmg.train.readers_pyskl import read_pyskl

    marker = tmp_path / "PWNED"
    evil = EvilPickle(marker)
    torch.save({"visual.conv1.weight": evil}, tmp_path / "clip.pt")
    with pytest.raises(ValueError, match="cannot read CLIP weights"):
        create_model("clipmg-tiny", num_classes=3, pretrained=str(tmp_path / "clip.pt"))
    (tmp_path / "ann.pkl").write_bytes(pickle.dumps({"split": {}, "annotations": [evil]}))
    with pytest.raises(DataError, match="refusing to unpickle"):
        read_pyskl(tmp_path / "ann.pkl")
    np.save(tmp_path / "kp.npy", np.array([evil], dtype=object), allow_pickle=True)
    with pytest.raises(PoseBackendError, match="cannot read"):
        create_pose_backend("replay", path=str(tmp_path / "kp.npy"))
    np.savez(tmp_path / "val.npz", images=np.array([evil], dtype=object), keypoints=np.zeros(1))
    with pytest.raises(EngineError, match="not a validation-sample file"):
        load_samples(tmp_path / "val.npz", load_config("clipmg-tiny"))
    assert not marker.exists(), "a pickle ran code"


# ------------------------------------------------------------------------------------ credentials
userinfo_chars = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters="-._~!$&'()*+,;=:@/%"),
    min_size=3,
    max_size=24,
)


@settings(max_examples=300, deadline=None)
@given(
    password=userinfo_chars,
    token=st.text(alphabet="abcdefXYZ0123456789-_.~%", min_size=3, max_size=16),
    scheme=st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp"]),
    tail=st.sampled_from(["/live", "/cam/1", ":554/s", "/x;user=u1;password=p1"]),
)
def test_redaction_masks_any_password_and_token(password: str, token: str, scheme: str, tail: str) -> None:
    """Passwords may contain ``@``, ``/`` and ``:`` (as cameras allow); ``?`` and ``#`` must be
    percent-encoded in any URL, so they are not generated."""
    from clipmg.stream.redact import MASK, redact_text, redact_url, url_secrets

    pw, tok = f"PW{password}", f"TK{token}"
    url = f"{scheme}://admin:{pw}@cam.example{tail}?res=hd&token={tok}&Signature={tok}"
    red = redact_url(url)
    assert pw not in red and tok not in red and "admin" not in red
    assert red.startswith(f"{scheme}://{MASK}@cam.example")
    text = f"ffmpeg: could not open {url} (password {pw}, token {tok})"
    red_text = redact_text(text, url_secrets(url))
    assert pw not in red_text and tok not in red_text


@pytest.mark.slow
def test_unreachable_camera_with_credentials_is_masked_everywhere(checkpoint: Path, tmp_path: Path) -> None:
    """A camera URL carrying ``user:secret@`` and ``?token=`` that nothing answers: the recognizer
    reports ``reconnecting`` (it never gives up on a live source), and neither the secret nor the
    token appears in its output, its log lines, the ``--listen`` output or any status message."""
    url = f"rtsp://operator:{SECRET}@127.0.0.1:{free_port()}/live?token={TOKEN}&channel=1"
    np.save(tmp_path / "kp.npy", np.zeros((4, 137, 3), np.float32))
    ep = endpoint()
    sub = Subscriber(ep)
    args = [
        "--source",
        url,
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--pose",
        "replay",
        "--pose-option",
        f"path={tmp_path / 'kp.npy'}",
        "--source-option",
        "open_timeout_s=1",
        "--source-option",
        "max_backoff_s=0.5",
        "--heartbeat",
        "0.3",
        "--listen",
        "--threads",
        "1",
    ]
    try:
        with Live(args) as live:
            sub.wait(
                lambda m: (
                    len(
                        [
                            1
                            for t, s, _ in m
                            if t.startswith("mg.status")
                            and s["source"]["state"] == "reconnecting"
                            and s["state"] == "running"
                        ]
                    )
                    >= 3
                ),
                120,
                "reconnecting statuses from a running recognizer",
            )
            assert live.stop() == 0, live.stderr[-2000:]
    finally:
        sub.close()
    everything = live.stdout + live.stderr + json.dumps([m for _, m, _ in sub.snapshot()])
    for secret in (SECRET, TOKEN, "operator"):
        assert secret not in everything
    assert "rtsp://***@127.0.0.1" in live.stderr and "token=***&channel=1" in live.stderr
    assert any(s["source"]["spec"].startswith("rtsp://***@127.0.0.1") for s in sub.statuses())
    assert "mg.status.cam0" in live.stdout  # the --listen output was there to check


def test_source_from_environment_or_file_resolves_and_refuses_clearly(tmp_path: Path, monkeypatch, caplog) -> None:
    """``--source-env`` / ``--source-file`` give the same source as ``--source``, and say what is wrong
    (unset variable, empty or missing file, both at once) in one sentence."""
    from clipmg.stream.config import ConfigError, build_parser, config_from_args

    url = f"rtsp://operator:{SECRET}@127.0.0.1:8554/live"
    ap = build_parser()
    monkeypatch.setenv("CAM_URL", url)
    assert config_from_args(ap.parse_args(["--source-env", "CAM_URL"])).source == url
    f = tmp_path / "cam.txt"
    f.write_text(f"\n  {url}  \nignored second line\n")
    f.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert config_from_args(ap.parse_args(["--source-file", str(f)])).source == url
    assert not caplog.records
    f.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        config_from_args(ap.parse_args(["--source-file", str(f)]))
    assert "chmod 600" in caplog.text and SECRET not in caplog.text
    monkeypatch.delenv("CAM_URL")
    for argv, says in (
        (["--source-env", "CAM_URL"], "unset or empty"),
        (["--source-file", str(tmp_path / "none.txt")], "cannot read it"),
        (["--source-env", "X", "--source-file", str(f)], "not both"),
    ):
        with pytest.raises(ConfigError, match=says):
            config_from_args(ap.parse_args(argv))
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ConfigError, match="empty"):
        config_from_args(ap.parse_args(["--source-file", str(tmp_path / "empty.txt")]))


@pytest.mark.slow
def test_source_from_environment_never_reaches_a_command_line(checkpoint: Path, tmp_path: Path) -> None:
    """With ``--source-env`` the credentials are in no process's command line (what ``ps`` shows
    other local users): not the supervisor's, not any child's; and still masked in every output."""
    import psutil

    url = f"rtsp://operator:{SECRET}@127.0.0.1:{free_port()}/live?token={TOKEN}"
    np.save(tmp_path / "kp.npy", np.zeros((4, 137, 3), np.float32))
    ep = endpoint()
    sub = Subscriber(ep)
    args = [
        "--source-env",
        "CLIPMG_TEST_CAMERA",
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--pose",
        "replay",
        "--pose-option",
        f"path={tmp_path / 'kp.npy'}",
        "--source-option",
        "open_timeout_s=1",
        "--source-option",
        "max_backoff_s=0.5",
        "--heartbeat",
        "0.3",
        "--threads",
        "1",
    ]
    try:
        with Live(args, env={"CLIPMG_TEST_CAMERA": url}) as live:
            sub.wait(
                lambda m: (
                    len([1 for t, s, _ in m if t.startswith("mg.status") and s["source"]["state"] == "reconnecting"])
                    >= 2
                ),
                120,
                "reconnecting statuses",
            )
            procs = [psutil.Process(live.pid), *live.children()]
            assert len(procs) >= 3  # supervisor, capture, worker (at least)
            cmdlines = " ".join(" ".join(p.cmdline()) for p in procs)
            assert live.stop() == 0, live.stderr[-2000:]
    finally:
        sub.close()
    assert "CLIPMG_TEST_CAMERA" in cmdlines
    for secret in (SECRET, TOKEN, "operator"):
        assert secret not in cmdlines
        assert secret not in live.stdout + live.stderr + json.dumps([m for _, m, _ in sub.snapshot()])
    assert any(s["source"]["spec"].startswith("rtsp://***@127.0.0.1") for s in sub.statuses())
