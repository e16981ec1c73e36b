"""One engine, many streams: the live worker's engine calls gathered into batches (``EngineBatcher``).

A worker serving several streams runs each stream's windows in a thread of its own (``worker.py``);
every engine call of those threads goes through a ``BatchedEngine`` (the ``Engine`` methods the
windows use: ``encode_frames``, ``head``, ``head_cached``, ``pose_partials``). A call joins a queue;
the first waiting caller of a kind (the same method, and for ``pose_partials`` the same stage) that
finds no batch of that kind running leads: it takes the waiting calls of that kind, stacks their
inputs along the batch axis, runs the engine once in its own thread and hands each caller its rows,
then passes the kind on to the oldest call of it still waiting (flat combining: no batcher thread,
no hand-over for a call that runs alone). Calls of different kinds run side by side, so one stream's
window head never waits behind another stream's frame encoding (every engine allows it: ONNX Runtime
sessions are thread-safe and each graph has its own, the TensorRT backend keeps a context per graph,
the CUDA engine serialises its replays itself). A leader waits for more callers only while some
stream that could still call is not waiting yet, and never longer than the latency budget after the
oldest call of its kind arrived. Each caller has at most one call in flight (its thread waits for
the answer), so "every stream is waiting" is exact, not a guess; calls that arrive while a batch of
their kind runs wait, and so form the next batch by themselves (NVIDIA Triton's dynamic batcher,
``max_queue_delay_microseconds``, works the same way).

Pure threading and NumPy: no PyTorch, no process, no socket.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np


@dataclass
class _Call:
    """One stream's engine call, waiting for its batch."""

    key: Tuple[Any, ...]  # (method,) or ("pose_partials", stage): calls with the same key share a batch
    arrays: Tuple[np.ndarray, ...]  # inputs, each with the batch on axis 0
    t_arrival: float
    done: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # done, or this call leads now
    result: Any = None
    error: Optional[BaseException] = None

    @property
    def rows(self) -> int:
        return int(self.arrays[0].shape[0])


class BatcherClosed(RuntimeError):
    """The batcher was closed while a call waited (the worker is stopping)."""


class EngineBatcher:
    """Runs ``engine`` for many streams: one batched call at a time of each kind, kinds side by side.

    There is no batcher thread: the first waiting caller of a kind that finds no batch of it running
    leads (flat combining): it gathers the calls of its kind, waits for more while the budget allows,
    runs the engine in its own thread and hands every caller its rows; the others sleep until their
    answer is there or their kind is handed to them. A lone stream's call thus runs in its own thread
    at once, with no thread hand-over at all.

    ``budget_s``: the longest a call waits for other streams' calls to join it. ``max_rows``: the most
    rows (frames, windows or pose groups) one engine call takes; a call bigger than that runs alone.
    ``client()`` gives each stream its ``BatchedEngine``; a client that stops calling (its stream
    ended or is restarting) is ``release``d so that nobody waits for it.
    """

    def __init__(self, engine: Any, budget_s: float = 0.0, max_rows: int = 32) -> None:
        if budget_s < 0 or max_rows < 1:
            raise ValueError(f"budget_s must be >= 0 and max_rows >= 1, got {budget_s}, {max_rows}")
        self.engine, self.budget_s, self.max_rows = engine, budget_s, max_rows
        self._cv = threading.Condition()
        self._queue: List[_Call] = []
        self._active = 0  # clients that may still call
        self._leading: Set[Tuple[Any, ...]] = set()  # kinds of call a caller is gathering or running a batch of
        self._closed = False
        self.engine_calls: Counter = Counter()  # method -> engine calls run
        self.requests: Counter = Counter()  # method -> stream calls served
        self.batch_rows: Counter = Counter()  # rows in one engine call -> how many such calls

    # ---------------------------------------------------------------- clients
    def client(self) -> "BatchedEngine":
        """A stream's view of the engine (counted as a possible caller until ``release``d)."""
        with self._cv:
            self._active += 1
            self._cv.notify_all()
        return BatchedEngine(self)

    def release(self, client: "BatchedEngine") -> None:
        with self._cv:
            if not client.released:
                client.released = True
                self._active -= 1
                self._cv.notify_all()

    def call(self, key: Tuple[Any, ...], *arrays: np.ndarray) -> Any:
        """Queue one call and return its rows of the batched result (leading batches while it waits)."""
        c = _Call(key, tuple(np.ascontiguousarray(a, np.float32) for a in arrays), time.monotonic())
        with self._cv:
            if self._closed:
                raise BatcherClosed("the engine batcher is closed")
            self._queue.append(c)
            lead = key not in self._leading  # no batch of this kind is on: this call leads one
            self._leading.add(key)
            self._cv.notify_all()  # a leader waiting for more calls
        while True:
            if not lead:
                c.wake.wait()  # its answer is there, or the leader handed the engine over
                if c.done.is_set():
                    break
            with self._cv:
                batch = self._gather(key)
            self._run(batch)
            with self._cv:
                if c.done.is_set():  # hand this kind to its oldest waiting call, or free it
                    nxt = next((q for q in self._queue if q.key == key), None)
                    if nxt is not None:
                        nxt.wake.set()
                    else:
                        self._leading.discard(key)
                    break
                lead = True
        if c.error is not None:
            raise c.error
        return c.result

    def close(self) -> None:
        with self._cv:
            self._closed = True
            waiting, self._queue = self._queue, []
            self._cv.notify_all()
        for c in waiting:
            c.error = BatcherClosed("the engine batcher is closed")
            c.done.set()
            c.wake.set()

    def stats(self) -> Dict[str, Any]:
        """Engine calls and stream calls by method, and how many rows the engine calls had."""
        with self._cv:
            return {
                "engine_calls": dict(self.engine_calls),
                "requests": dict(self.requests),
                "batch_rows": {str(k): v for k, v in sorted(self.batch_rows.items())},
            }

    # ---------------------------------------------------------------- the leader's work
    def _gather(self, key: Tuple[Any, ...]) -> List[_Call]:
        """The next batch of ``key``'s kind (called with the lock held, by its leader): the waiting calls
        of that kind, oldest first, after waiting as the budget allows for the streams not waiting yet."""
        first = next((q for q in self._queue if q.key == key), None)
        if first is None:  # closed meanwhile: every call was answered with the error
            return []
        deadline = first.t_arrival + self.budget_s
        while not self._closed and len(self._queue) < self._active:
            left = deadline - time.monotonic()
            if left <= 0 or self._rows_of(key) >= self.max_rows:
                break
            self._cv.wait(left)
        batch: List[_Call] = []
        rows = 0
        for c in list(self._queue):
            if c.key != key:
                continue
            if batch and rows + c.rows > self.max_rows:
                break
            batch.append(c)
            rows += c.rows
            self._queue.remove(c)
        return batch

    def _rows_of(self, key: Tuple[Any, ...]) -> int:
        return sum(c.rows for c in self._queue if c.key == key)

    def _run(self, batch: List[_Call]) -> None:
        """Run one batch (without the lock) and hand out the rows, or the engine's error to every caller."""
        if not batch:
            return
        try:
            results = self._compute(batch)
            for c, r in zip(batch, results):
                c.result = r
        except Exception as e:  # noqa: BLE001 - every caller of the batch gets the engine's error
            for c in batch:
                c.error = e
        for c in batch:
            c.done.set()
            c.wake.set()

    def _compute(self, batch: Sequence[_Call]) -> List[Any]:
        key = batch[0].key
        method = key[0]
        stacked = [np.concatenate(parts) if len(batch) > 1 else parts[0] for parts in zip(*(c.arrays for c in batch))]
        fn = getattr(self.engine, method)
        out = fn(key[1], *stacked) if method == "pose_partials" else fn(*stacked)
        with self._cv:
            self.engine_calls[method] += 1
            self.requests[method] += len(batch)
            self.batch_rows[sum(c.rows for c in batch)] += 1
        bounds = np.cumsum([c.rows for c in batch])[:-1]
        if isinstance(out, tuple):  # encode_frames: (tokens, embeddings)
            return list(zip(*(np.split(o, bounds) for o in out)))
        return list(np.split(out, bounds))


class BatchedEngine:
    """What one stream's windows see of the shared engine: the same attributes, every call batched."""

    def __init__(self, batcher: EngineBatcher) -> None:
        self.batcher = batcher
        engine = batcher.engine
        self.inner = engine
        self.config, self.class_names = engine.config, engine.class_names
        self.released = False

    def __getattr__(self, name: str) -> Any:  # identity, metadata, backend, precision, pose_cache, ...
        return getattr(self.inner, name)

    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        tokens, emb = self.batcher.call(("encode_frames",), images)
        return tokens, emb

    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        return self.batcher.call(("head",), tokens, frame_emb, keypoints)  # type: ignore[no-any-return]

    def head_cached(
        self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray, pose_pre: np.ndarray
    ) -> np.ndarray:
        return self.batcher.call(("head_cached",), tokens, frame_emb, keypoints, pose_pre)  # type: ignore[no-any-return]

    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        return self.batcher.call(("pose_partials", int(stage)), x)  # type: ignore[no-any-return]

    def release(self) -> None:
        """This stream will not call again (it ended, failed or is restarting)."""
        self.batcher.release(self)
