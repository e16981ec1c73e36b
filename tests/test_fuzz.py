"""Fuzzing the parsers that read what others wrote: keypoint files, label files, ZeroMQ payloads.

Hypothesis throws arbitrary bytes and structured near-misses at each reader. Only the documented
error type may come out (``DataError`` for data files, ``MessageError`` for payloads); anything
else (a ``KeyError``, a ``TypeError``, a ``RecursionError``...) is a crash and fails the test, and
so does an example slower than its deadline (a hang). Examples are bounded so the module stays
fast; the database of failing examples makes a found bug come back first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipmg.stream.listen import GapCounter
from clipmg.stream.messages import (
    KINDS,
    MessageError,
    WindowMessage,
    decode,
    decode_plain,
    encode,
    event_message,
    status_message,
    summary,
    to_dict,
    window_message,
)
from clipmg.train.readers import (
    DataError,
    Issues,
    parse_openpose,
    read_label_csv,
    read_light_hand_csv,
    read_openpose_json,
)

SETTINGS = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30), st.just(0.5), st.just(-1)
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=40,
)


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------ OpenPose JSON
def person_part(n: int) -> st.SearchStrategy:
    """A keypoint list of the right length (3n), a wrong length, or not a list at all."""
    return st.one_of(
        st.lists(numbers, min_size=3 * n, max_size=3 * n), st.lists(numbers, max_size=12), st.just([]), json_values
    )


openpose_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "version": st.just(1.3),
            "people": st.lists(
                st.one_of(
                    st.fixed_dictionaries(
                        {
                            "pose_keypoints_2d": person_part(25),
                            "face_keypoints_2d": person_part(70),
                            "hand_left_keypoints_2d": person_part(21),
                            "hand_right_keypoints_2d": person_part(21),
                        }
                    ),
                    json_values,
                ),
                max_size=3,
            ),
        }
    ),
)


@SETTINGS
@given(data=st.binary(max_size=600))
def test_openpose_json_reader_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    p = _write(tmp_path, "v_000000000000_keypoints.json", data)
    try:
        out = read_openpose_json(p)
    except DataError:
        return
    assert out.shape == (137, 3) and out.dtype == np.float32 and np.isfinite(out).all()


@SETTINGS
@given(doc=openpose_docs)
def test_openpose_parser_on_near_miss_documents(tmp_path: Path, doc: Any) -> None:
    try:
        out = parse_openpose(doc)
    except DataError:
        return
    assert out.shape == (137, 3) and np.isfinite(out).all()
    # what was parsed survives a write/read round trip through the file reader
    text = json.dumps(doc, allow_nan=True)
    again = read_openpose_json(_write(tmp_path, "v_000000000001_keypoints.json", text.encode()))
    np.testing.assert_array_equal(again, out)


# ------------------------------------------------------------------------------------ MiGA light_hand CSV
cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-999, 999).map(str),
    st.text(alphabet='0123456789.-eE xn,"', max_size=6),
    st.just(""),
)
csv_rows = st.lists(st.lists(cells, min_size=0, max_size=110).map(",".join), max_size=6)
well_formed_rows = st.lists(
    st.lists(st.floats(-50, 2000, allow_nan=False), min_size=106, max_size=106).map(
        lambda r: ",".join(repr(x) for x in r)
    ),
    min_size=1,
    max_size=4,
)


@SETTINGS
@given(rows=st.one_of(csv_rows, well_formed_rows), header=st.booleans(), strict=st.booleans())
def test_light_hand_csv_reader_on_arbitrary_tables(tmp_path: Path, rows: list, header: bool, strict: bool) -> None:
    text = ("frame," + ",".join(f"c{i}" for i in range(105)) + "\n" if header else "") + "\n".join(rows)
    p = _write(tmp_path, "x_light_hand.csv", text.encode())
    try:
        out = read_light_hand_csv(p, issues=None if strict else Issues(log_first=0))
    except DataError:
        return
    assert out.ndim == 3 and out.shape[1:] == (137, 3) and np.isfinite(out).all()
    # the reader's contract: confidences are never negative, a missing point (confidence 0) is (0, 0, 0),
    # and the file has no face (iBUG points 25-94) nor hand points other than the fingertips
    assert (out[..., 2] >= 0).all()
    assert not out[out[..., 2] == 0].any()
    assert not out[:, 25:95].any()
    fingertips = [95 + i for i in (4, 8, 12, 16, 20)] + [116 + i for i in (4, 8, 12, 16, 20)]
    assert not np.delete(out[:, 95:], [f - 95 for f in fingertips], axis=1).any()


@SETTINGS
@given(data=st.binary(max_size=400))
def test_light_hand_csv_reader_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    try:
        read_light_hand_csv(_write(tmp_path, "y_light_hand.csv", data), issues=Issues(log_first=0))
    except DataError:
        pass


# ------------------------------------------------------------------------------------ label CSV
label_rows = st.lists(
    st.one_of(
        st.tuples(st.integers(-5, 120), st.integers(-10, 10**6), st.integers(-10, 10**6)).map(
            lambda t: ",".join(map(str, t))
        ),
        st.lists(cells, max_size=5).map(",".join),
    ),
    max_size=8,
)


@SETTINGS
@given(rows=label_rows, num_classes=st.one_of(st.none(), st.integers(1, 40)), strict=st.booleans())
def test_label_csv_reader_on_arbitrary_rows(tmp_path: Path, rows: list, num_classes: Any, strict: bool) -> None:
    p = _write(tmp_path, "x_label.csv", "\n".join(rows).encode())
    issues = None if strict else Issues(log_first=0)
    try:
        out = read_label_csv(p, num_classes=num_classes, issues=issues)
    except DataError:
        assert strict, "with an Issues collector bad rows are skipped, not raised"
        return
    for r in out:  # every row that came back is valid
        assert 0 <= r.start <= r.end and r.label >= 0 and (num_classes is None or r.label < num_classes)
    if issues is not None:
        assert len(out) + issues.total == len([row for row in rows if row.strip()])


@SETTINGS
@given(data=st.binary(max_size=300))
def test_label_csv_reader_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    try:
        read_label_csv(_write(tmp_path, "z_label.csv", data), num_classes=32, issues=Issues(log_first=0))
    except DataError:
        pass


# ------------------------------------------------------------------------------------ ZeroMQ payloads
@SETTINGS
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),  # deep JSON
        st.integers(1, 3000).map(lambda n: b"\x81\xa1a" * n + b"\xc0"),
    )
)  # deep msgpack
def test_decode_only_raises_message_error(payload: bytes) -> None:
    try:
        msg = decode(payload)
    except MessageError:
        return
    assert isinstance(msg, KINDS)


message_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
    | st.binary(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=25,
)


@SETTINGS
@given(
    fields=st.dictionaries(st.text(max_size=8), message_values, max_size=6), fmt=st.sampled_from(["json", "msgpack"])
)
def test_encode_refuses_with_message_error_and_round_trips(fields: dict, fmt: str) -> None:
    """Any map: encoded, or refused with ``MessageError`` (always for NaN or infinity in JSON); what is
    encoded reads back with the same fields, and the validating decoder refuses it in one sentence."""
    msg = {**fields, "schema": "clipmg.window/1"}
    try:
        payload = encode(msg, fmt)
    except MessageError:
        return
    assert fmt == "msgpack" or not _non_finite(msg)
    back = decode_plain(payload)
    assert set(back) == set(msg) and back["schema"] == "clipmg.window/1"
    try:
        decode(payload)
    except MessageError as e:
        assert "\n" not in str(e)


def _non_finite(v: Any) -> bool:
    if isinstance(v, float):
        return not np.isfinite(v)
    if isinstance(v, dict):
        return any(_non_finite(x) for x in v.values())
    if isinstance(v, list):
        return any(_non_finite(x) for x in v)
    return False


def _valid(kind: str) -> dict:
    """A valid message of ``kind`` as a plain map (the base the fuzzer overwrites fields of)."""
    if kind == "event":
        msg: Any = event_message(
            stream="cam0", kind="start", label="nod", window=3, window_start=2, t=1.0, t_start=0.5, confidence=0.9,
            t_publish=2.0,
        )  # fmt: skip
    elif kind == "status":
        msg = status_message(stream="cam0", state="running", t_publish=1.0, source={"state": "streaming"})
    else:
        msg = window_message(
            stream="cam0", window=7, pose_seqs=[1, 2], rgb_seqs=[2], t_wall=[0.0, 0.1], stride=8, pose_every=1,
            t_publish=1.0, latency_ms=dict(pose=0, encode=0, head=0, publish=0, capture_to_publish=3.0),
            computed=dict(pose_samples=2, rgb_encoded=1), person=True, person_fraction=1.0, topk=[(0, "nod", 0.9)],
            label="nod", p=0.9, model=dict(checkpoint_sha256="ab", backend="onnxruntime", precision="fp32"), skipped=0,
        )  # fmt: skip
    return to_dict(msg)


@SETTINGS
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "window",
                "skipped",
                "stream",
                "frames",
                "topk",
                "latency_ms",
                "person",
                "label",
                "state",
                "source",
                "message",
                "fps_in",
                "event",
                "confidence",
                "duration_s",
            ]
        ),
        json_values,
        max_size=8,
    ),
    kind=st.sampled_from(["window", "event", "status", "other"]),
)
def test_listener_survives_any_decodable_message(fields: dict, kind: str) -> None:
    """What ``clipmg-listen`` does with each message it receives: decode (validating), then the
    summary line and gap count. A valid message of each kind with fields overwritten by arbitrary
    values is refused with ``MessageError`` or shown; the listener never crashes."""
    base = _valid(kind)
    payload = json.dumps({**base, **fields, "schema": f"clipmg.{kind}/1"}).encode()  # NaN and Infinity included
    try:
        msg = decode(payload)
    except MessageError as e:
        assert "\n" not in str(e)
        return
    assert kind != "other"
    assert isinstance(summary(f"mg.{kind}.cam0", msg), str)
    if isinstance(msg, WindowMessage):
        GapCounter().update(msg)


def test_clipmg_listen_keeps_running_through_malformed_messages() -> None:
    """A real ``clipmg-listen`` subprocess fed, by a real PUB socket, every kind of bad message:
    an undecodable payload, a three-frame message, a decodable window whose fields have the wrong
    types, a msgpack map carrying bytes. It says what each was and prints the good window after
    them; nothing escapes as a traceback."""
    import subprocess
    import sys
    import time

    import msgspec
    import zmq
    from live_harness import endpoint

    ep = endpoint()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(ep)
    good = _valid("window")
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipmg.stream.listen", "--endpoint", ep, "-n", "4", "--timeout", "60", "--raw"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # until the listener has had them all
            pub.send_multipart([b"mg.window.cam0", b"\xff\x00 not a payload"])
            pub.send_multipart([b"mg.window.cam0", b"{}", b"third frame"])
            pub.send_multipart([b"mg.window.cam0", json.dumps({**good, "window": "seven", "topk": 3}).encode()])
            pub.send_multipart([b"mg.window.cam0", msgspec.msgpack.encode({**good, "blob": b"\x00\x01"})])
            pub.send_multipart([b"mg.window.cam0", json.dumps(good).encode()])
            time.sleep(0.1)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.close()
        ctx.term()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    assert "<undecodable payload" in out and "ignored a message of 3 frames" in err
    assert '"blob":"0001"' in out and '"window":7' in out
