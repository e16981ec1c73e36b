"""The frame clock and the sliding windows of the live recognizer: pure logic, no process or socket.

Numbering (streaming.md "Frame clock and windows", model.md section 1). With ``Δp`` = pose_every,
``S`` = stride, ``G`` = pose samples per RGB frame (4), ``T_p`` = 32, ``T_r`` = 8, offset 2:

- pose sample ``k`` is captured frame ``seq = k * Δp`` (the clock is the capture's frame number, so
  a restarted worker lands on the same grid);
- pose sample ``k`` is also an RGB sample when ``k % G == offset``; its group is ``g = k // G``;
- window ``w`` covers pose samples ``w*S .. w*S + T_p - 1`` and closes when the last one exists;
  ``S`` is a multiple of ``G``, so every window starts on a group boundary and its RGB frame ``t``
  is sample ``w*S + G*t + offset`` (the same sample in every window that contains it).

Each RGB sample is encoded once, when it is first seen, with its crop box fixed then; the encoding
and the box live in an ``T_r``-slot ring, the pose samples (source pixels) in a ``T_p``-slot ring.
A window maps each group's pose samples with that group's box and runs the head on cached tokens;
a group's keypoints are therefore the same in every window, and so is its share of the pose branch,
which is computed once too where the engine allows (``model/pose_cache.py``).
A worker that falls behind jumps to the newest closed window and counts the ones it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from clipmg.model.config import ClipConfig, ModelConfig
from clipmg.model.crop import Box, PersonCropTracker, center_box
from clipmg.model.pose_cache import PoseBranchCache
from clipmg.model.preprocess import prepare_frame, prepare_keypoints, prepare_window
from clipmg.model.sampling import clip_samples


class FrameEncoderHead(Protocol):
    """The part of ``clipmg.engines.Engine`` that this module calls."""

    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]: ...

    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------------------ schedule
@dataclass(frozen=True)
class Schedule:
    """Which frames are pose samples, which are RGB samples, and which samples form window ``w``."""

    stride: int = 8  # S
    pose_every: int = 1  # Δp
    pose_frames: int = 32  # T_p
    rgb_frames: int = 8  # T_r
    rgb_offset: int = 2  # RGB sample inside each group of G pose samples

    def __post_init__(self) -> None:
        g = self.group
        if self.pose_frames % self.rgb_frames:
            raise ValueError(f"pose_frames {self.pose_frames} is not a multiple of rgb_frames {self.rgb_frames}")
        if self.stride < g or self.stride % g:
            raise ValueError(f"stride {self.stride} must be a positive multiple of {g} (pose samples per RGB frame)")
        if self.pose_every < 1:
            raise ValueError(f"pose_every must be at least 1, got {self.pose_every}")
        if not 0 <= self.rgb_offset < g:
            raise ValueError(f"rgb_offset {self.rgb_offset} must lie in [0, {g})")

    @classmethod
    def from_config(cls, clip: ClipConfig, stride: int, pose_every: int) -> "Schedule":
        return cls(stride, pose_every, clip.pose_frames, clip.rgb_frames, clip.rgb_offset)

    @property
    def group(self) -> int:  # G
        return self.pose_frames // self.rgb_frames

    # sample <-> frame
    def sample_seq(self, k: int) -> int:
        """Frame number of pose sample ``k``."""
        return k * self.pose_every

    def newest_sample(self, latest_seq: int) -> int:
        """The newest pose sample whose frame exists when frame ``latest_seq`` is the newest (-1: none)."""
        return latest_seq // self.pose_every if latest_seq >= 0 else -1

    def is_rgb(self, k: int) -> bool:
        return k % self.group == self.rgb_offset

    def rgb_sample_of(self, k: int) -> int:
        """The RGB sample of pose sample ``k``'s group (its crop box maps ``k``'s keypoints)."""
        return (k // self.group) * self.group + self.rgb_offset

    # windows
    def window_start(self, w: int) -> int:
        return w * self.stride

    def window_end(self, w: int) -> int:
        """Last pose sample of window ``w``; the window closes when this sample's frame exists."""
        return w * self.stride + self.pose_frames - 1

    def window_samples(self, w: int) -> np.ndarray:
        """Pose samples of window ``w``, ``(T_p,)``."""
        return self.window_start(w) + np.arange(self.pose_frames)

    def window_rgb_samples(self, w: int) -> np.ndarray:
        """RGB samples of window ``w``, ``(T_r,)``: positions ``G*t + offset``."""
        return self.window_start(w) + np.arange(self.rgb_frames) * self.group + self.rgb_offset

    def window_frames(self, w: int) -> Tuple[np.ndarray, np.ndarray]:
        """Frame numbers of window ``w``'s pose samples ``(T_p,)`` and RGB samples ``(T_r,)``."""
        return self.window_samples(w) * self.pose_every, self.window_rgb_samples(w) * self.pose_every

    def last_closed_window(self, k_now: int) -> int:
        """The newest window whose last sample is ``<= k_now`` (-1 when none has closed yet)."""
        if k_now < self.pose_frames - 1:
            return -1
        return (k_now - (self.pose_frames - 1)) // self.stride

    def first_window_from(self, k: int) -> int:
        """The first window that starts at or after sample ``k`` (where a fresh worker begins)."""
        return -(-max(k, 0) // self.stride)

    def plan(self, k_now: int, next_window: int) -> Tuple[Optional[int], int]:
        """Lateness policy: the window to run now and how many windows to skip.

        Returns ``(None, 0)`` while ``next_window`` has not closed; otherwise the newest closed
        window and the count of closed windows before it that will never run (stale).
        """
        newest = self.last_closed_window(k_now)
        if newest < next_window:
            return None, 0
        return newest, newest - next_window


# ------------------------------------------------------------------------------------ rings
@dataclass(frozen=True)
class WindowInputs:
    """What the head needs for one window, plus the bookkeeping a message reports."""

    window: int
    tokens: np.ndarray  # (T_r, 1+N_p, D) cached frame-encoder tokens
    frame_emb: np.ndarray  # (T_r, E) cached frame embeddings
    keypoints: np.ndarray  # (T_p, J, 3) model-input pixels (each group mapped with its RGB box)
    boxes: Tuple[Box, ...]  # (T_r,) crop boxes, source pixels
    pose_seqs: np.ndarray  # (T_p,) frame numbers of the pose samples
    rgb_seqs: np.ndarray  # (T_r,) frame numbers of the RGB samples
    t_mono: np.ndarray  # (T_p,) capture monotonic time of each pose sample
    t_wall: np.ndarray  # (T_p,) capture wall-clock time of each pose sample
    person: np.ndarray  # (T_p,) bool, a person was found in the pose sample


class SampleRings:
    """The 32-sample pose ring and the 8-sample RGB ring, slots tagged by sample number.

    A slot is valid only while its tag equals the sample asked for, so a slot overwritten by a
    later sample (or never filled because windows were skipped) can never be read by mistake.
    """

    def __init__(self, schedule: Schedule, num_joints: int) -> None:
        s = schedule
        self.schedule = s
        self.pose_tag = np.full(s.pose_frames, -1, np.int64)
        self.keypoints = np.zeros((s.pose_frames, num_joints, 3), np.float32)  # source pixels
        self.seq = np.zeros(s.pose_frames, np.int64)
        self.t_mono = np.zeros(s.pose_frames, np.float64)
        self.t_wall = np.zeros(s.pose_frames, np.float64)
        self.person = np.zeros(s.pose_frames, bool)
        self.rgb_tag = np.full(s.rgb_frames, -1, np.int64)
        self.boxes: List[Box] = [(0.0, 0.0, 1.0)] * s.rgb_frames
        self.tokens: Optional[np.ndarray] = None  # (T_r, 1+N_p, D), allocated on the first encoding
        self.frame_emb: Optional[np.ndarray] = None  # (T_r, E)

    def _pslot(self, k: int) -> int:
        return k % self.schedule.pose_frames

    def _rslot(self, k: int) -> int:
        return (k // self.schedule.group) % self.schedule.rgb_frames

    def has_pose(self, k: int) -> bool:
        return bool(self.pose_tag[self._pslot(k)] == k)

    def has_rgb(self, k: int) -> bool:
        return bool(self.rgb_tag[self._rslot(k)] == k)

    def put_pose(self, k: int, keypoints: np.ndarray, seq: int, t_mono: float, t_wall: float, person: bool) -> None:
        """Store pose sample ``k``: keypoints ``(J, 3)`` in source pixels of its frame."""
        i = self._pslot(k)
        self.keypoints[i] = keypoints
        self.seq[i], self.t_mono[i], self.t_wall[i], self.person[i] = seq, t_mono, t_wall, person
        self.pose_tag[i] = k

    def put_rgb(self, k: int, box: Box, tokens: np.ndarray, frame_emb: np.ndarray) -> None:
        """Store RGB sample ``k``'s crop box and encoding: tokens ``(1+N_p, D)``, embedding ``(E,)``."""
        if not self.schedule.is_rgb(k):
            raise ValueError(
                f"sample {k} is not an RGB sample (k % {self.schedule.group} != {self.schedule.rgb_offset})"
            )
        if self.tokens is None:
            self.tokens = np.zeros((self.schedule.rgb_frames, *tokens.shape), np.float32)
            self.frame_emb = np.zeros((self.schedule.rgb_frames, *frame_emb.shape), np.float32)
        i = self._rslot(k)
        self.tokens[i], self.frame_emb[i] = tokens, frame_emb  # type: ignore[index]
        self.boxes[i] = box
        self.rgb_tag[i] = k

    def missing(self, w: int) -> Tuple[List[int], List[int]]:
        """Pose samples and RGB samples of window ``w`` not held yet (oldest first)."""
        s = self.schedule
        return (
            [int(k) for k in s.window_samples(w) if not self.has_pose(int(k))],
            [int(k) for k in s.window_rgb_samples(w) if not self.has_rgb(int(k))],
        )

    def assemble(self, w: int, cfg: ModelConfig) -> WindowInputs:
        """Window ``w``'s head inputs from the rings (every sample must be present)."""
        s = self.schedule
        pose_k, rgb_k = self.missing(w)
        if pose_k or rgb_k:
            raise KeyError(f"window {w} is incomplete: pose samples {pose_k[:4]} and RGB samples {rgb_k[:4]} missing")
        pi = s.window_samples(w) % s.pose_frames  # (T_p,) slots in window order
        ri = (s.window_rgb_samples(w) // s.group) % s.rgb_frames  # (T_r,)
        boxes = tuple(self.boxes[int(i)] for i in ri)
        kp = prepare_keypoints(self.keypoints[pi], boxes, cfg)
        assert self.tokens is not None and self.frame_emb is not None
        return WindowInputs(
            w,
            self.tokens[ri],
            self.frame_emb[ri],
            kp,
            boxes,
            self.seq[pi].copy(),
            self.seq[pi][s.group * np.arange(s.rgb_frames) + s.rgb_offset].copy(),
            self.t_mono[pi].copy(),
            self.t_wall[pi].copy(),
            self.person[pi].copy(),
        )


# ------------------------------------------------------------------------------------ crop boxes
class BoxPolicy:
    """The crop box of each RGB sample, fixed when the sample is first encoded (model.md section 2).

    ``center``: the CLIP centre square of the frame. ``person``: a causally smoothed square around
    the confident keypoints, updated once per RGB sample in stream order.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.tracker: Optional[PersonCropTracker] = None

    def box(self, keypoints: np.ndarray, width: int, height: int) -> Box:
        """Box for one RGB sample from its keypoints ``(J, 3)`` (source pixels) and frame size."""
        pre = self.cfg.preprocess
        if pre.crop == "center":
            return center_box(width, height)
        t = self.tracker
        if t is None or (t.width, t.height) != (width, height):  # a new source resolution restarts tracking
            t = self.tracker = PersonCropTracker(width, height, pre.person_scale, pre.person_smoothing)
        return t.update(keypoints)


# ------------------------------------------------------------------------------------ compute
def window_logits(engine: FrameEncoderHead, inputs: WindowInputs) -> np.ndarray:
    """The head on one window's cached inputs -> logits ``(C,)``."""
    return engine.head(inputs.tokens[None], inputs.frame_emb[None], inputs.keypoints[None])[0]


def offline_logits(
    engine: Any, frames: np.ndarray, keypoints: np.ndarray, cfg: ModelConfig, boxes: Optional[Sequence[Box]] = None
) -> np.ndarray:
    """Logits ``(C,)`` of one window computed from scratch, without any cache.

    ``frames``: the 8 RGB samples ``(T_r, H, W, 3)`` uint8; ``keypoints``: the 32 pose samples
    ``(T_p, J, 3)`` in source pixels (model layout). ``boxes``: the crop boxes the stream used (needed
    for the ``person`` policy, whose boxes depend on earlier frames); by default the boxes are
    computed as training computes them. All eight frames are encoded in one batch.
    """
    if boxes is None:
        images, kp, _ = prepare_window(frames, keypoints, cfg)
    else:
        images = np.stack([prepare_frame(f, b, cfg) for f, b in zip(frames, boxes)])
        kp = prepare_keypoints(keypoints, list(boxes), cfg)
    x, c = engine.encode_frames(images)  # (T_r, N, D), (T_r, E)
    return engine.head(x[None], c[None], kp[None])[0]


def clip_window(
    engine: Any, cfg: ModelConfig, seqs: Sequence[int], pose_of: Any, frame_of: Any, decision: Decision, window: int = 0
) -> "WindowResult":
    """One window over a whole clip (or a labelled segment) with the evaluation sampling of
    ``clip_samples``: any number of frames -> ``T_p`` pose samples and ``T_r`` RGB samples, the
    crop boxes computed as evaluation computes them, all eight frames encoded in one call.

    ``seqs``: the clip's frame numbers in order (at least one). ``frame_of(seq)`` returns that
    frame (an object with ``image``, ``t_mono``, ``t_wall``); ``pose_of(frame)`` its keypoints
    ``(J, 3)`` in source pixels and whether a person was found (called once per distinct frame).
    This is what ``clipmg-predict`` runs per clip or segment and what the live recognizer publishes
    for a file shorter than one window.
    """
    c = cfg.clip
    seqs = list(seqs)
    if not seqs:
        raise ValueError("a clip window needs at least one frame")
    pos, rgb_pos = clip_samples(0, len(seqs) - 1, c.pose_frames, c.rgb_frames, c.rgb_offset)
    cache: Dict[int, Tuple[Any, np.ndarray, bool]] = {}
    for i in sorted(set(pos.tolist())):
        f = frame_of(seqs[i])
        kp, person = pose_of(f)
        cache[i] = (f, np.asarray(kp, np.float32), bool(person))
    frames = np.stack([cache[int(i)][0].image for i in rgb_pos])
    keypoints = np.stack([cache[int(i)][1] for i in pos])
    images, kp, boxes = prepare_window(frames, keypoints, cfg)
    person_mask = np.array([cache[int(i)][2] for i in pos])
    answered = decision.answers(has_person(person_mask))
    x, emb = engine.encode_frames(images)
    logits = engine.head(x[None], emb[None], kp[None])[0] if answered else None
    seq_arr = np.array([seqs[int(i)] for i in pos], np.int64)
    inputs = WindowInputs(
        window,
        x,
        emb,
        kp,
        tuple(boxes),
        seq_arr,
        np.array([seqs[int(i)] for i in rgb_pos], np.int64),
        np.array([cache[int(i)][0].t_mono for i in pos], np.float64),
        np.array([cache[int(i)][0].t_wall for i in pos], np.float64),
        person_mask,
    )
    return WindowResult(inputs, answered, Answer.of(logits, decision))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> List[Tuple[int, str, float]]:
    """The ``k`` most probable classes as ``(index, name, probability)``, best first."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(int(i), str(names[i]), float(probs[i])) for i in order]


def decide(
    probs: np.ndarray, names: Sequence[str], threshold: float, background: Sequence[str] = ()
) -> Tuple[Optional[str], Optional[float]]:
    """The decided label: the most probable class when it reaches ``threshold`` and is not background."""
    i = int(np.argmax(probs))
    p = float(probs[i])
    if p < threshold or names[i] in set(background):
        return None, p
    return str(names[i]), p


# ------------------------------------------------------------------------------------ decisions
@dataclass(frozen=True)
class Decision:
    """How a window's logits become the answer a message carries (``StreamConfig``'s decision settings)."""

    names: Tuple[str, ...]
    top_k: int = 3
    threshold: float = 0.0
    background: Tuple[str, ...] = ()
    no_person: str = "answer"  # 'answer': the model answers windows without a person too; 'none': it does not

    def answers(self, person: bool) -> bool:
        return person or self.no_person == "answer"


@dataclass(frozen=True)
class Answer:
    """What one window's logits say: top-k, the decided label and the probabilities by name."""

    logits: Optional[np.ndarray]  # (C,), None when the window was not answered
    top: List[Tuple[int, str, float]]
    label: Optional[str]
    p: Optional[float]
    probs: Optional[Dict[str, float]]  # every class's probability (the event debouncer's input)

    @classmethod
    def of(cls, logits: Optional[np.ndarray], decision: Decision) -> "Answer":
        if logits is None:
            return cls(None, [], None, None, None)
        probs = softmax(logits)
        label, p = decide(probs, decision.names, decision.threshold, decision.background)
        return cls(
            logits,
            top_k(probs, decision.names, decision.top_k),
            label,
            p,
            {n: float(q) for n, q in zip(decision.names, probs)},
        )


def has_person(person: np.ndarray) -> bool:
    """A window has a person when at least half of its pose samples found one (``person``: ``(T_p,)`` bool)."""
    return bool(np.mean(person) >= 0.5)


@dataclass(frozen=True)
class WindowResult:
    """One computed window: its inputs, whether the model answered, and the answer."""

    inputs: "WindowInputs"
    answered: bool
    answer: Answer

    @property
    def person_fraction(self) -> float:
        return float(self.inputs.person.mean())

    @property
    def person(self) -> bool:
        """A person in at least half of the pose samples."""
        return has_person(self.inputs.person)

    @property
    def logits(self) -> Optional[np.ndarray]:
        return self.answer.logits


# ------------------------------------------------------------------------------------ streaming
@dataclass(frozen=True)
class Sample:
    """One pose sample as the worker hands it over: keypoints ``(J, 3)`` in source pixels of ``image``."""

    k: int
    image: Optional[np.ndarray]  # (H, W, 3) uint8 RGB; needed for RGB samples only
    keypoints: np.ndarray
    seq: int
    t_mono: float
    t_wall: float
    person: bool


class StreamingWindows:
    """The one window implementation of the live recognizer, without any I/O: samples in, windows out.

    ``add_samples`` stores pose samples and, for RGB samples, fixes the crop box now (causal) and
    encodes the frame once: at once, or (``defer_rgb=True``) kept until ``encode_pending`` or the
    next window that needs it, so that a worker keeping up can encode a window's new frames in one
    call. ``run(w, decision)`` assembles window ``w`` from the rings, runs the head with every cache
    the engine has (the frame cache always; with ``pose_cache`` and an engine that offers it, each
    group's share of the skeleton encoder once, ``model/pose_cache.py``) and decides. The live
    worker, the tests and the benchmarks all call these methods.
    """

    def __init__(self, engine: FrameEncoderHead, cfg: ModelConfig, schedule: Schedule, pose_cache: bool = True) -> None:
        if (schedule.pose_frames, schedule.rgb_frames, schedule.rgb_offset) != (
            cfg.clip.pose_frames,
            cfg.clip.rgb_frames,
            cfg.clip.rgb_offset,
        ):
            raise ValueError("the schedule's sampling differs from the model's (pose_frames, rgb_frames, rgb_offset)")
        self.engine, self.cfg, self.schedule = engine, cfg, schedule
        self.rings = SampleRings(schedule, cfg.pose.num_joints)
        self.boxes = BoxPolicy(cfg)
        self.encoded = 0  # frame encodings run so far
        self.encode_calls = 0  # frame-encoder calls (an encoding call may take several frames)
        self.heads = 0  # head runs so far
        self.pending: List[Tuple[int, Box, np.ndarray]] = []  # RGB samples waiting to be encoded
        # The pose branch one group at a time, when asked and the engine can (model/pose_cache.py).
        self.pose_cache: Optional[PoseBranchCache] = None
        if pose_cache and getattr(engine, "pose_cache", False):
            self.pose_cache = PoseBranchCache.for_config(engine.pose_partials, cfg)  # type: ignore[attr-defined]

    def add_sample(
        self,
        k: int,
        image: Optional[np.ndarray],
        keypoints: np.ndarray,
        seq: int,
        t_mono: float,
        t_wall: float,
        person: bool,
    ) -> bool:
        """Store pose sample ``k``: keypoints ``(J, 3)`` in source pixels of ``image`` ``(H, W, 3)``.

        For an RGB sample the frame is encoded now (``image`` is required then); returns True when
        an encoding ran. ``image`` may be ``None`` for pose-only samples.
        """
        return self.add_samples([Sample(k, image, keypoints, seq, t_mono, t_wall, person)]) > 0

    def add_samples(self, samples: Sequence["Sample"], defer_rgb: bool = False) -> int:
        """Store several samples (oldest first); their RGB frames are encoded in one call together
        with any pending ones, or kept pending with ``defer_rgb``. Returns the encodings run."""
        for smp in samples:
            kp = np.asarray(smp.keypoints, np.float32)
            self.rings.put_pose(smp.k, kp, smp.seq, smp.t_mono, smp.t_wall, smp.person)
            if self.schedule.is_rgb(smp.k):
                if smp.image is None:
                    raise ValueError(f"sample {smp.k} is an RGB sample: its image is needed")
                h, w = smp.image.shape[:2]
                box = self.boxes.box(kp, w, h)  # fixed now, in stream order (causal person crop)
                self.pending.append((smp.k, box, prepare_frame(smp.image, box, self.cfg)))
        return 0 if defer_rgb else self.encode_pending()

    def encode_pending(self) -> int:
        """Encode every pending RGB sample in one frame-encoder call; returns how many."""
        rgb, self.pending = self.pending, []
        if not rgb:
            return 0
        x, c = self.engine.encode_frames(np.stack([img for _, _, img in rgb]))  # (n, N, D), (n, E)
        for i, (k, box, _) in enumerate(rgb):
            self.rings.put_rgb(k, box, x[i], c[i])
        self.encoded += len(rgb)
        self.encode_calls += 1
        return len(rgb)

    def drop_pending(self, before: int) -> int:
        """Forget pending RGB samples below sample ``before`` (their windows were skipped: encoding them
        would only make the worker later). Returns how many were dropped."""
        keep = [p for p in self.pending if p[0] >= before]
        dropped, self.pending = len(self.pending) - len(keep), keep
        return dropped

    def missing(self, w: int) -> Tuple[List[int], List[int]]:
        """Samples of window ``w`` not added yet (a pending RGB sample counts as added)."""
        pose_k, rgb_k = self.rings.missing(w)
        waiting = {k for k, _, _ in self.pending}
        return pose_k, [k for k in rgb_k if k not in waiting]

    def run(self, w: int, decision: Optional[Decision] = None) -> WindowResult:
        """Window ``w`` (all its samples added): assemble, head with every cache, decide.

        Without ``decision`` the window is always answered and only ``logits`` is filled in.
        """
        self.encode_pending()  # frames kept for one call (they belong to this window): now
        inputs = self.rings.assemble(w, self.cfg)
        answered = decision is None or decision.answers(has_person(inputs.person))
        logits = self._logits(w, inputs) if answered else None
        answer = Answer(logits, [], None, None, None) if decision is None else Answer.of(logits, decision)
        return WindowResult(inputs, answered, answer)

    def _logits(self, w: int, inputs: WindowInputs) -> np.ndarray:
        self.heads += 1
        if self.pose_cache is None:
            return window_logits(self.engine, inputs)
        s = self.schedule
        pre = self.pose_cache.window(s.window_start(w) // s.group, inputs.keypoints)
        return self.engine.head_cached(  # type: ignore[attr-defined]
            inputs.tokens[None],
            inputs.frame_emb[None],
            inputs.keypoints[None],
            pre[None],
        )[0]
