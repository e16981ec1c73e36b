"""Fleets: many recognizers, many consumers (docs/fleet.md). Real processes and sockets on loopback.

Two ``run_live.py`` recognizers (the synthetic camera and the demo model, a fixed number of windows
each, different ``--stream-id``s) publish; one subscriber receives every window of both, in order
per stream, through ``clipmg-proxy`` (an XSUB/XPUB ``zmq.proxy``), and one ``clipmg-listen``
connected to both endpoints does the same without it. CURVE through the proxy: only a subscriber
with the proxy's key (and on its allow-list) receives anything.

ZeroMQ's slow joiner is taken out of the picture, not slept away: before a recognizer starts, the
subscriber has received a message from a "beacon" publisher of the test through the same path (the
proxy, or the listener's own socket), so its subscription is in place; the proxy's XSUB replays it
to each recognizer as it connects, seconds before that recognizer's first window (its model loads
first). Each test also checks that every stream's first message received came before its first
window, and that the windows received are all the windows the recognizer counted itself.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import pytest
from live_harness import PY, Command, Live, Subscriber, endpoint, wait_for, window_gaps_are_reported

from clipmg.stream.messages import encode, status_message, topic

WINDOWS = 6  # each recognizer's --max-windows: about 2 s of the synthetic camera
STREAMS = ("cam-a", "cam-b")
Msgs = List[Tuple[str, Dict[str, Any]]]


# ------------------------------------------------------------------------------------ helpers
def recognizer(stream: str, ep: str, *extra: str) -> Live:
    """``run_live.py`` with the demo model on the synthetic camera, stopping after ``WINDOWS`` windows."""
    return Live(
        [
            "--max-windows",
            str(WINDOWS),
            "--no-listen",
            "--no-record",
            "-q",
            "--stream-id",
            stream,
            "--endpoint",
            ep,
            "--heartbeat",
            "0.2",
            "--threads",
            "1",
            *extra,
        ],
        env={"OMP_NUM_THREADS": "1"},
    )


def proxy(*args: str) -> Command:
    """``clipmg-proxy ARGS`` (``python -m``: the console script needs an install), once it is forwarding."""
    p = Command([PY, "-m", "clipmg.stream.proxy", "--stats", "1", *args])
    wait_for(lambda: "forwarding from" in p.stderr or p.proc.poll() is not None, 60, "clipmg-proxy's ready line")
    assert p.proc.poll() is None, p.stderr
    return p


class Beacon:
    """A publisher of the test: status messages of stream ``beacon`` until a subscriber has one, and a
    final ``stopped`` status for a ``clipmg-listen --until-stopped`` that counts its publishers."""

    def __init__(self, ep: str) -> None:
        from clipmg.stream.publisher import Publisher

        self.pub = Publisher(ep)

    def send(self, state: str = "running") -> None:
        msg = status_message(stream="beacon", state=state, t_publish=time.time(), source={"state": "streaming"})
        self.pub.send(topic("status", "beacon"), encode(msg))

    def until(self, received: Any, what: str) -> None:
        def sent_and_received() -> Any:
            self.send()
            return received()

        wait_for(sent_and_received, 60, what, every=0.1)

    def close(self) -> None:
        self.pub.close()


def check_every_window(msgs: Msgs, streams: Sequence[str] = STREAMS) -> None:
    """Every window of each stream was received, in order: numbers (and frame ranges) strictly
    increasing, every gap one the recognizer reported as skipped, the first window preceded by a
    status of its stream and as many windows as the recognizer's final status counted."""
    for s in streams:
        mine = [(t, m) for t, m in msgs if m.get("stream") == s]
        wins = [m for t, m in mine if t == f"mg.window.{s}"]
        final = [m for t, m in mine if t == f"mg.status.{s}" and m["state"] in ("stopped", "failed")]
        where = f"{s}: windows {[w['window'] for w in wins]}, final {final[-1:] and final[-1]['state']}"
        assert final and final[-1]["state"] == "stopped", where
        assert mine[0][0] == f"mg.status.{s}", f"{where}: the first message was not a status ({mine[0][0]})"
        assert len(wins) == final[-1]["windows"] == WINDOWS, where
        assert wins[0]["window"] == wins[0]["skipped"], f"{where}: windows before the first were missed"
        assert not window_gaps_are_reported(wins), where
        firsts = [w["frames"]["first_seq"] for w in wins]
        assert firsts == sorted(set(firsts)), f"{where}: frame ranges {firsts} not strictly increasing"


def run_both(eps: Sequence[str], *extra: Sequence[str]) -> List[Live]:
    """The two recognizers, started together; each ``extra`` (one per stream) adds its flags."""
    return [recognizer(s, ep, *(extra[i] if extra else ())) for i, (s, ep) in enumerate(zip(STREAMS, eps))]


def finish(recs: List[Live], timeout: float = 180) -> None:
    for r in recs:
        assert r.wait(timeout) == 0, r.stderr[-2000:]


# ------------------------------------------------------------------------------------ through the proxy
@pytest.mark.slow
def test_one_subscriber_gets_every_window_of_two_recognizers_through_the_proxy() -> None:
    eps, beacon_ep, out = [endpoint(), endpoint()], endpoint(), endpoint()
    beacon = Beacon(beacon_ep)
    p = proxy("--upstream", ",".join([beacon_ep, *eps]), "--endpoint", out)
    recs: List[Live] = []
    try:
        with Subscriber(out) as sub:
            beacon.until(lambda: sub.of("status.beacon"), "the beacon through the proxy")
            recs = run_both(eps)
            finish(recs)
            sub.wait(
                lambda m: all(any(t == f"mg.status.{s}" and x["state"] == "stopped" for t, x, _ in m) for s in STREAMS),
                30,
                "both final statuses",
            )
            check_every_window([(t, m) for t, m, _ in sub.snapshot()])
            assert not sub.bad
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.stderr
    finally:
        for r in recs:
            r.__exit__()
        p.__exit__()
        beacon.close()
    # the proxy's own account: every window of both streams forwarded, none missed on its way in
    last = p.stderr.strip().splitlines()[-1]
    assert "stopped (received SIGTERM)" in last, p.stderr
    for s in STREAMS:
        assert f"{s}: " in last and f"{WINDOWS} windows (0 missed)" in last.split(f"{s}: ")[1].split(";")[0], last


# ------------------------------------------------------------------------------------ without the proxy
@pytest.mark.slow
def test_clipmg_listen_connected_to_both_recognizers_gets_every_window() -> None:
    eps, beacon_ep = [endpoint(), endpoint()], endpoint()
    beacon = Beacon(beacon_ep)
    listen = Command(
        [PY, "-m", "clipmg.stream.listen", "--endpoint", beacon_ep, "--endpoint", ",".join(eps)]
        + ["--raw", "--until-stopped", "--timeout", "120"]
    )
    recs: List[Live] = []
    try:
        beacon.until(lambda: "mg.status.beacon " in listen.stdout, "clipmg-listen to print the beacon")
        recs = run_both(eps)
        finish(recs)
        # --until-stopped with three endpoints: it ends once the beacon has stopped too
        wait_for(lambda: listen.stdout.count('"state":"stopped"') >= 2, 30, "both final statuses")
        beacon.send("stopped")
        assert listen.wait(30) == 0, listen.stderr
    finally:
        for r in recs:
            r.__exit__()
        listen.__exit__()
        beacon.close()
    msgs = [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in listen.stdout.splitlines()]
    check_every_window(msgs)
    report = f"windows received per stream: {STREAMS[0]} {WINDOWS} (0 missed), {STREAMS[1]} {WINDOWS} (0 missed)"
    assert report in listen.stderr, listen.stderr


# ------------------------------------------------------------------------------------ CURVE
@pytest.mark.slow
def test_curve_through_the_proxy_only_the_allowed_subscriber_receives(tmp_path: Path) -> None:
    """Recognizer ``cam-a`` requires CURVE (its own key), ``cam-b`` does not (``--server-key KEY,none``);
    the proxy serves consumers with CURVE and an allow-list. The allowed subscriber gets every window
    of both; one without the proxy's key, one with another server's key and one not on the list get
    nothing at all."""
    import zmq.auth

    def keys(name: str, folder: Path = tmp_path) -> Tuple[Path, Path]:
        public, secret = zmq.auth.create_certificates(folder, name)
        return Path(public), Path(secret)

    cam_pub, cam_secret = keys("cam-a")
    proxy_pub, proxy_secret = keys("proxy")
    other_pub, _ = keys("other")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, client_secret = keys("client", allowed)
    (allowed / "client.key_secret").rename(tmp_path / "client.key_secret")
    _, stranger_secret = keys("stranger")
    eps, beacon_ep, out = [endpoint(), endpoint()], endpoint(), endpoint()
    beacon = Beacon(beacon_ep)
    p = proxy(
        *("--upstream", ",".join([beacon_ep, *eps]), "--server-key", f"none,{cam_pub},none"),
        *("--endpoint", out, "--curve-secret", str(proxy_secret), "--curve-allow", str(allowed)),
    )
    proxy_key = zmq.auth.load_certificate(proxy_pub)[0]
    load = zmq.auth.load_certificate
    subs = {
        "allowed": Subscriber(out, server_key=proxy_key, client_keys=load(tmp_path / "client.key_secret")),
        "no key": Subscriber(out),
        "other server's key": Subscriber(out, server_key=load(other_pub)[0]),
        "not on the list": Subscriber(out, server_key=proxy_key, client_keys=load(stranger_secret)),
    }
    recs: List[Live] = []
    try:
        beacon.until(lambda: subs["allowed"].of("status.beacon"), "the beacon through the CURVE proxy")
        recs = run_both(eps, ("--curve-secret", str(cam_secret)), ())
        finish(recs)
        subs["allowed"].wait(
            lambda m: all(any(t == f"mg.status.{s}" and x["state"] == "stopped" for t, x, _ in m) for s in STREAMS),
            30,
            "both final statuses",
        )
        check_every_window([(t, m) for t, m, _ in subs["allowed"].snapshot()])
        for name in ("no key", "other server's key", "not on the list"):
            assert subs[name].snapshot() == [], f"the subscriber with {name} received messages"
    finally:
        for s in subs.values():
            s.close()
        for r in recs:
            r.__exit__()
        p.signal(signal.SIGTERM)
        p.wait(30)
        beacon.close()


# ------------------------------------------------------------------------------------ pure parts, fast
def test_server_keys_pair_with_endpoints_once_for_all_or_one_each() -> None:
    from clipmg.stream.config import ConfigError
    from clipmg.stream.listen import pair_keys

    assert pair_keys(["a", "b"], []) == [("a", None), ("b", None)]
    assert pair_keys(["a", "b"], ["k"]) == [("a", "k"), ("b", "k")]
    assert pair_keys(["a", "b"], ["none", "k"]) == [("a", None), ("b", "k")]
    with pytest.raises(ConfigError, match="given 2 times for 3 --endpoint endpoints"):
        pair_keys(["a", "b", "c"], ["k", "j"])
    with pytest.raises(ConfigError, match="--upstream a is given twice"):
        pair_keys(["a", "a"], [], flag="--upstream")


def test_listen_and_proxy_flags_take_repeats_and_comma_lists() -> None:
    from clipmg.stream import listen, proxy

    lo = listen.options_from_args(listen.build_parser().parse_args(["--endpoint", "tcp://h:1,tcp://h:2"]))
    assert lo.endpoints == ("tcp://h:1", "tcp://h:2")
    assert listen.options_from_args(listen.build_parser().parse_args([])).endpoints == ("tcp://127.0.0.1:5556",)
    po = proxy.options_from_args(
        proxy.build_parser().parse_args(["--upstream", "tcp://h:1", "--upstream", "tcp://h:2,tcp://h:3"])
    )
    assert po.upstream == ("tcp://h:1", "tcp://h:2", "tcp://h:3") and po.endpoint == "tcp://127.0.0.1:5557"


def test_the_proxy_counts_per_stream_and_not_subscriptions() -> None:
    from test_messages import sample_window

    from clipmg.stream.proxy import Forwarded

    f = Forwarded()
    f.add([b"\x01mg"])  # a subscription on its way upstream
    for w in (0, 1, 3):  # 2 never arrived
        f.add([topic("window", "cam0"), encode(sample_window(window=w, skipped=0))])
    f.add(
        [
            topic("status", "cam1"),
            encode(status_message(stream="cam1", state="running", t_publish=1.0, source={"state": "ended"})),
        ]
    )
    f.add([b"mg.window.cam2", b"not a message"])  # forwarded, counted, not numbered
    assert f.total == 5
    assert f.line() == "cam0: 3 windows (1 missed); cam1: 1 status; cam2: 1 windows (0 missed)"


def test_a_proxy_in_process_forwards_and_stops_cleanly() -> None:
    """``Proxy`` itself (what ``clipmg-proxy`` runs): forwards a publisher's messages to a subscriber and
    stops through its control socket, leaving no thread behind."""
    from test_messages import sample_window

    from clipmg.stream.proxy import Proxy, ProxyOptions
    from clipmg.stream.publisher import Publisher

    up, out = endpoint(), endpoint()
    before = threading.active_count()
    with Publisher(up) as pub, Proxy(ProxyOptions(upstream=(up,), endpoint=out)) as px, Subscriber(out) as sub:

        def through() -> Any:
            pub.publish("window", "cam0", sample_window(window=len(sub.windows())))
            return len(sub.windows()) >= 3

        wait_for(through, 30, "windows through the proxy")
        px.stop()
        assert px.wait(0) and px.error is None
    wait_for(lambda: threading.active_count() <= before, 10, "the proxy's threads to end")


def test_the_proxy_and_the_listener_import_no_pytorch() -> None:
    """They run on machines with no PyTorch (the live path's rule, docs/architecture.md)."""
    import subprocess

    code = (
        "import sys, clipmg.stream.proxy, clipmg.stream.listen; "
        "print(sorted(m for m in sys.modules if m.startswith('torch')))"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
