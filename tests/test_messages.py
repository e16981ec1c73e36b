"""Payloads, the schema, the debouncer, and the publisher's socket rules (real sockets on loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import numpy as np
import pytest
from live_harness import free_port

from clipmg.stream.config import ConfigError, StreamConfig, check_endpoint
from clipmg.stream.events import Debouncer
from clipmg.stream.messages import (
    MessageError,
    WindowMessage,
    decode,
    encode,
    event_message,
    json_schema,
    status_message,
    summary,
    to_dict,
    topic,
    validate,
    window_message,
)

REPO = Path(__file__).resolve().parents[1]


def sample_window(**over: Any) -> WindowMessage:
    seqs = list(range(100, 132))
    kw: Dict[str, Any] = dict(
        stream="cam0",
        window=12,
        pose_seqs=seqs,
        rgb_seqs=seqs[2::4],
        t_wall=[1.7e9 + i / 30 for i in range(32)],
        stride=8,
        pose_every=1,
        t_publish=1.7e9 + 1.2,
        latency_ms={"pose": 1.5, "encode": 20.25, "head": 30.0, "publish": 0.2, "capture_to_publish": 55.5},
        computed={"pose_samples": 8, "rgb_encoded": 2},
        person=True,
        person_fraction=1.0,
        topk=[(3, "fold arm", 0.7), (1, "touch forehead", 0.2), (0, "touch chin", 0.05)],
        label="fold arm",
        p=0.7,
        model={
            "checkpoint_sha256": "ab" * 32,
            "backend": "onnxruntime",
            "precision": "fp32",
            "preset": "clipmg-tiny",
            "variant": "full",
        },
        skipped=0,
        logits=[0.1, -2.0, 3.5],
    )
    kw.update(over)
    return window_message(**kw)


def all_kinds() -> List[Any]:
    return [
        sample_window(),
        sample_window(label=None, person=False, person_fraction=0.0, answered=False, topk=[], logits=None),
        event_message(
            stream="cam0",
            kind="start",
            label="fold arm",
            window=12,
            window_start=10,
            t=1.7e9 + 1.0,
            t_start=1.7e9 + 0.5,
            confidence=0.8,
            t_publish=1.7e9 + 1.1,
        ),
        event_message(
            stream="cam0",
            kind="end",
            label="fold arm",
            window=20,
            window_start=10,
            t=1.7e9 + 3.0,
            t_start=1.7e9 + 0.5,
            confidence=0.9,
            t_publish=1.7e9 + 3.1,
            reason="released",
        ),
        status_message(
            stream="cam0",
            state="running",
            t_publish=1.7e9,
            source={"state": "streaming", "spec": "synthetic:0"},
            fps_in=30.0,
            fps_pose=30.0,
            fps_out=3.75,
            windows=10,
            skipped=1,
            restarts=0,
            worker={"pid": 123, "alive": True},
            last_window={"window": 9, "label": None},
            restart_gap=2,
        ),
    ]


# ------------------------------------------------------------------------------------ payloads
def test_docs_schema_file_is_the_code_schema() -> None:
    on_disk = json.loads((REPO / "docs" / "zmq-schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), (
        "regenerate: python -m clipmg.stream.messages > docs/zmq-schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(on_disk)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_round_trip_and_schema(fmt: str) -> None:
    schema = json.loads((REPO / "docs" / "zmq-schema.json").read_text())
    for msg in all_kinds():
        payload = encode(msg, fmt)
        assert payload[:1] == b"{" if fmt == "json" else payload[:1] != b"{"
        back = decode(payload)  # format recognised from the bytes, validated
        assert back == msg and type(back) is type(msg)
        assert decode(payload, fmt) == back
        plain = json.loads(encode(msg, "json"))
        assert to_dict(back) == plain and validate(plain) == msg
        jsonschema.validate(plain, schema)
        assert summary("mg.x.cam0", back)


def test_payloads_are_what_the_dict_builders_wrote() -> None:
    """The wire format of the messages declared as structs is the one the earlier dict builders
    wrote: field names, order and values (optional fields absent unless set)."""
    msg = sample_window(logits=None, sampling="whole_clip")
    text = encode(msg).decode()
    assert text.startswith('{"schema":"clipmg.window/1","stream":"cam0","window":12,"frames":{"first_seq":100,')
    d = json.loads(text)
    assert list(d) == [
        "schema", "stream", "window", "frames", "t_publish", "latency_ms", "computed", "person",
        "person_fraction", "answered", "topk", "label", "p", "model", "skipped",
    ]  # fmt: skip
    assert d["frames"]["sampling"] == "whole_clip" and d["frames"]["max_gap_s"] == 0.0333
    assert "sampling" not in json.loads(encode(sample_window()))["frames"]
    assert d["topk"][0] == {"index": 3, "label": "fold arm", "p": 0.7}
    ev, st = json.loads(encode(all_kinds()[2])), json.loads(encode(all_kinds()[4]))
    assert ev["reason"] == "" and ev["duration_s"] == 0.5
    assert list(st)[-3:] == ["latency_ms", "message", "restart_gap"] and st["source"]["spec"] == "synthetic:0"
    assert "restart_gap" not in json.loads(
        encode(status_message(stream="c", state="running", t_publish=0, source={"state": "ended"}))
    )


def test_decode_ignores_unknown_fields_and_json_refuses_nan() -> None:
    d = {**to_dict(sample_window()), "new_field": [1, {"x": 2}]}
    d["frames"]["new_too"] = "x"
    assert decode(encode(d)) == sample_window() == decode(encode(d, "msgpack"))
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(MessageError, match="NaN or infinity"):
            encode(sample_window(logits=[0.5, bad]))
        with pytest.raises(MessageError, match="NaN or infinity"):
            encode({**d, "deep": [{"v": [1.0, bad]}]})
        assert len(decode(encode(sample_window(logits=[bad]), "msgpack")).logits) == 1  # msgpack holds them
    assert np.isfinite(json.loads(encode(sample_window(t_publish=float("nan"))))["t_publish"])  # builders: -1


def test_logits_keep_full_precision_and_json_is_utf8() -> None:
    x = np.float32(0.1234567)
    msg = sample_window(logits=[x], topk=[(0, "touché", 1.0)])
    back = decode(encode(msg))
    assert isinstance(back, WindowMessage) and np.float32(back.logits[0]) == x
    assert "touché".encode() in encode(msg)


def test_schema_and_decode_reject_malformed_messages() -> None:
    """The schema file and the decoder refuse the same malformed messages, each with one sentence."""
    msg = to_dict(sample_window())
    schema = json_schema()
    for broken, words in (
        ({**msg, "schema": "clipmg.window/2"}, "clipmg.window/2"),
        ({**msg, "schema": "clipmg.other/1"}, "clipmg.other/1"),
        ({k: v for k, v in msg.items() if k != "frames"}, "frames"),
        ({k: v for k, v in msg.items() if k != "schema"}, "schema"),
        ({**msg, "stream": "cam 0"}, "stream"),
        ({**msg, "window": -1}, "window"),
        ({**msg, "window": "seven"}, "window"),
        ({**msg, "topk": [{"index": 0, "label": "x", "p": 1.5}]}, "topk"),
        ({**msg, "topk": 3}, "topk"),
        ({**msg, "frames": {**msg["frames"], "pose_seqs": []}}, "pose_seqs"),
        ({**msg, "frames": {**msg["frames"], "stride": 0}}, "stride"),
        ({**msg, "frames": {**msg["frames"], "sampling": "random"}}, "sampling"),
        ({**msg, "latency_ms": {"pose": 1.0}}, "latency_ms"),
        ({**msg, "latency_ms": {**msg["latency_ms"], "extra": "x"}}, None),  # extra keys: numbers only (schema)
        ({**msg, "model": {"backend": "x", "precision": "fp32"}}, "checkpoint_sha256"),
        ({**msg, "person_fraction": 2.0}, "person_fraction"),
        ({**msg, "label": 3}, "label"),
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
        if words is not None:
            for fmt in ("json", "msgpack"):
                with pytest.raises(MessageError, match=words) as e:
                    decode(encode(broken, fmt))
                assert "\n" not in str(e.value)
            with pytest.raises(MessageError):
                validate(broken)
    status = to_dict(all_kinds()[4])
    for broken in ({**status, "state": "dancing"}, {**status, "source": {"state": "lost"}}, {**status, "fps_in": -1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
        with pytest.raises(MessageError):
            decode(encode(broken))
    for bad in (b"", b"{not json", b"\xc1", encode({"no": "schema"}), b"[1, 2]", b"{" * 5000):
        with pytest.raises(MessageError):
            decode(bad)
    with pytest.raises(ValueError):
        encode(msg, "xml")
    assert topic("window", "cam0") == b"mg.window.cam0"


# ------------------------------------------------------------------------------------ debouncer
def feed(d: Debouncer, seq: List[Dict[str, float] | None], dt: float = 0.25) -> List[tuple]:
    out = []
    for i, p in enumerate(seq):
        out += [(e.kind, e.label, e.window, e.window_start, e.reason) for e in d.update(i * dt, i, p)]
    return out


def test_debouncer_needs_minimum_duration_and_uses_hysteresis() -> None:
    d = Debouncer(threshold=0.6, hysteresis=0.2, min_duration_s=0.5)
    a = lambda p: {"fold arm": p, "touch chin": 1 - p}  # noqa: E731
    # one window above threshold is a blip; three in a row (0.5 s) start the gesture, dated from the first
    ev = feed(d, [a(0.7), a(0.3), a(0.7), a(0.8), a(0.7), a(0.5), a(0.45), a(0.39), a(0.2)])
    assert ev == [("start", "fold arm", 4, 2, ""), ("end", "fold arm", 7, 2, "released")]  # 0.5, 0.45 hold (>= 0.4)


def test_debouncer_switch_background_no_answer_and_flush() -> None:
    d = Debouncer(threshold=0.5, hysteresis=0.1, min_duration_s=0.0, background=["no gesture"])
    ev = feed(
        d, [{"no gesture": 0.9}, {"rub eyes": 0.8}, {"rub eyes": 0.45, "fold arm": 0.55}, None, {"fold arm": 0.9}]
    )
    assert ev == [
        ("start", "rub eyes", 1, 1, ""),
        ("end", "rub eyes", 2, 1, "replaced"),
        ("start", "fold arm", 2, 2, ""),
        ("end", "fold arm", 3, 2, "released"),
        ("start", "fold arm", 4, 4, ""),
    ]
    end = d.flush(10.0, 40)
    assert [(e.kind, e.reason, e.duration_s) for e in end] == [("end", "stopped", 9.0)]
    assert d.flush(11.0, 41) == []


def test_debouncer_release_time() -> None:
    d = Debouncer(threshold=0.5, hysteresis=0.0, min_duration_s=0.0, release_s=0.5)
    ev = feed(d, [{"x": 0.9}, {"x": 0.1}, {"x": 0.9}, {"x": 0.1}, {"x": 0.1}, {"x": 0.1}])
    assert ev == [("start", "x", 0, 0, ""), ("end", "x", 5, 0, "released")]
    with pytest.raises(ValueError):
        Debouncer(threshold=0.5, hysteresis=0.6)


# ------------------------------------------------------------------------------------ config and sockets
def test_config_fails_fast_with_one_sentence() -> None:
    StreamConfig().validate()
    for bad, words in (
        (dict(stride=6), "multiple of 4"),
        (dict(pose_every=0), "pose-every"),
        (dict(endpoint="tcp://0.0.0.0:5556"), "--allow-remote"),
        (dict(fmt="xml"), "json or msgpack"),
        (dict(stream_id="a.b"), "stream id"),
        (dict(endpoint="udp://x"), "tcp://HOST:PORT"),
    ):
        with pytest.raises(ConfigError, match=words) as e:
            StreamConfig(**bad).validate()
        assert "\n" not in str(e.value)
    assert check_endpoint("tcp://0.0.0.0:5556", allow_remote=True) is True
    assert check_endpoint("tcp://localhost:5556", allow_remote=False) is False
    assert StreamConfig(source="0").pose_backend == "mediapipe" and StreamConfig().pose_backend == "synthetic"


def test_port_in_use_is_one_clear_error() -> None:
    from clipmg.stream.publisher import Publisher, PublisherError

    ep = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(ep):
        with pytest.raises(PublisherError, match="already in use") as e:
            Publisher(ep)
        assert "\n" not in str(e.value)


def _receive(sock: Any, seconds: float, pub: Any) -> int:
    import zmq

    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        pub.publish("window", "cam0", sample_window())
        if sock.poll(20, zmq.POLLIN):
            sock.recv_multipart()
            got += 1
    return got


def test_curve_client_without_the_server_key_receives_nothing(tmp_path: Path) -> None:
    import zmq
    import zmq.auth

    from clipmg.stream.publisher import Publisher, load_public_key

    server_pub, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, client_secret = zmq.auth.create_certificates(tmp_path, "client")
    (allowed / "client.key").write_bytes((tmp_path / "client.key").read_bytes())
    _, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    ep = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(ep, curve_secret_key=str(server_secret), curve_allow_dir=str(allowed)) as pub, zmq.Context() as ctx:
        socks = {}
        for name, cert in (("plain", None), ("allowed", client_secret), ("stranger", stranger_secret)):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SUBSCRIBE, b"mg")
            if cert is not None:
                s.curve_serverkey = load_public_key(str(server_pub))
                s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(cert)
            s.connect(ep)
            socks[name] = s
        try:
            assert _receive(socks["allowed"], 1.5, pub) > 0
            assert _receive(socks["plain"], 0.5, pub) == 0  # no server key: no handshake, nothing
            assert _receive(socks["stranger"], 0.5, pub) == 0  # knows the key but not on the allow-list
        finally:
            for s in socks.values():
                s.close()


def test_listener_counts_only_unreported_gaps() -> None:
    from clipmg.stream.listen import GapCounter

    g = GapCounter()
    seen = [
        g.update(sample_window(window=w, skipped=s)) for w, s in [(10, 0), (11, 0), (14, 2), (16, 2), (30, 0), (31, 0)]
    ]  # 12, 13: skipped; 15: lost; 30: restarted
    assert seen == [0, 0, 0, 1, 0, 0] and g.missing == 1


def test_command_line_demo_defaults_and_explicit_runs() -> None:
    from clipmg.stream.config import build_parser, config_from_args

    demo = config_from_args(build_parser().parse_args([]))
    assert (demo.demo, demo.duration_s, demo.listen, demo.record, demo.source, demo.pose_backend) == (
        True,
        20.0,
        True,
        "clipmg-demo.mp4",
        "synthetic",
        "synthetic",
    )
    run = config_from_args(
        build_parser().parse_args(
            [
                "--engine",
                "m.safetensors",
                "--source",
                "0",
                "--stride",
                "16",
                "--pose-every",
                "2",
                "--format",
                "msgpack",
                "--pose-option",
                "model_complexity=2",
                "--max-size",
                "640x480",
            ]
        )
    )
    assert (run.demo, run.duration_s, run.listen, run.record, run.pose_backend) == (
        False,
        None,
        False,
        None,
        "mediapipe",
    )
    assert (run.stride, run.pose_every, run.fmt, run.pose_options, run.max_width, run.max_height) == (
        16,
        2,
        "msgpack",
        (("model_complexity", 2),),
        640,
        480,
    )
    assert config_from_args(build_parser().parse_args(["--duration", "0"])).duration_s is None
