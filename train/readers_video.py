"""Frame-accurate RGB reading of mp4 files with PyAV (FFmpeg).

Why PyAV and not ``cv2.VideoCapture``: every decoded frame carries its presentation timestamp, so
the frame number of what we hand back is known exactly (``round((pts - start) * time_base * fps)``),
after a seek too; OpenCV's ``CAP_PROP_POS_FRAMES`` seeking estimates positions and is known to land
off by a few frames on some files. Colour conversion goes through one reused ``VideoReformatter``
(``frame.to_ndarray(format=...)`` builds a new scaler every call and is ~7x slower). Frame numbers
assume a constant frame rate, which is also how OpenPose numbers its per-frame JSON files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Sequence

import numpy as np

from .readers import DataError

# A seek costs a keyframe-to-target decode; forward decoding is cheaper below this gap (frames).
_SEEK_GAP = 48


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about a video."""

    path: Path
    num_frames: int
    width: int
    height: int
    fps: float


def _open(path: Path):  # -> av.container.InputContainer
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot open video {path}: {e} (missing, truncated or not a video?)") from e
    if not container.streams.video:
        container.close()
        raise DataError(f"{path} has no video stream")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, size and frame rate from the header (no decoding); ``DataError`` if unreadable."""
    path = Path(path)
    with _open(path) as c:
        st = c.streams.video[0]
        fps = float(st.average_rate or st.guessed_rate or 0) or 25.0
        n = int(st.frames or 0)
        if n <= 0 and st.duration is not None and st.time_base is not None:
            n = int(round(float(st.duration * st.time_base) * fps))
        if n <= 0 and c.duration:
            n = int(round(c.duration / 1e6 * fps))
        w, h = st.codec_context.width, st.codec_context.height
    if n <= 0 or w <= 0 or h <= 0:
        raise DataError(f"{path}: cannot tell the frame count or size of this video")
    return VideoInfo(path, n, w, h, fps)


class VideoReader:
    """Frame-accurate random access to one video file.

    ``read(indices)`` returns ``(N, H, W, 3)`` uint8 RGB in the order asked (repeats allowed);
    ``read_all(keep)`` decodes the file once from the start and returns the frames in ``keep``.
    The container is opened per call, so one reader can be used from DataLoader workers.
    """

    def __init__(self, path: str | Path, info: VideoInfo | None = None) -> None:
        self.info = info if info is not None else probe_video(path)
        self.path = Path(path)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = [int(i) for i in indices]
        frames = self._decode(sorted(set(idx)), allow_seek=True)
        return np.stack([frames[i] for i in idx])

    def read_all(self, keep: Iterable[int] | None = None) -> Dict[int, np.ndarray]:
        """Decode sequentially from frame 0; return ``{index: (H, W, 3)}`` for ``keep`` (None: every frame)."""
        want = sorted(set(int(i) for i in keep)) if keep is not None else list(range(self.info.num_frames))
        return self._decode(want, allow_seek=False)

    def _decode(self, want: Sequence[int], allow_seek: bool) -> Dict[int, np.ndarray]:
        """Frames ``want`` (sorted, unique). Runs of wanted frames further apart than ``_SEEK_GAP``
        are reached by seeking to the keyframe before them; a seek that lands past its target
        (a broken index) falls back to decoding from the start."""
        import av
        from av.video.reformatter import VideoReformatter

        n = self.info.num_frames
        bad = [i for i in want if not 0 <= i < n]
        if bad:
            raise DataError(f"{self.path}: frames {bad[:5]} are outside the video's {n} frames (0..{n - 1})")
        out: Dict[int, np.ndarray] = {}
        fmt = VideoReformatter()
        k = 0
        try:
            with _open(self.path) as c:
                st = c.streams.video[0]
                tb, fps, start = st.time_base, self.info.fps, st.start_time or 0

                def decode_from(frame_index: int) -> Iterator[Any]:
                    """Frames from the keyframe at or before ``frame_index`` (0: the file's start)."""
                    c.seek(start + int(frame_index / fps / tb), stream=st, backward=True, any_frame=False)
                    return iter(c.decode(st))

                pos: int | None = None  # index of the last decoded frame
                frames = decode_from(want[0]) if allow_seek and want else iter(c.decode(st))
                fresh = True  # no frame decoded since the last seek
                while k < len(want):
                    target = want[k]
                    if allow_seek and pos is not None and target - pos > _SEEK_GAP:
                        frames, fresh = decode_from(target), True
                    frame = next(frames, None)
                    if frame is None:
                        raise DataError(
                            f"{self.path}: the video ends before frame {target} (header says {n} "
                            f"frames; truncated file?)"
                        )
                    t = frame.pts if frame.pts is not None else frame.dts
                    if t is not None:
                        i = int(round(float((t - start) * tb) * fps))
                    else:  # no timestamps at all: count frames
                        i = pos + 1 if pos is not None else 0
                    if fresh and i > target and allow_seek:
                        allow_seek, pos = False, None
                        frames = decode_from(0)
                        continue
                    fresh, pos = False, i
                    if i < target:
                        continue
                    img = fmt.reformat(frame, format="rgb24").to_ndarray()
                    while k < len(want) and want[k] <= i:  # a frame missing from the file (variable
                        out[want[k]] = img  # frame rate) takes the next decoded one
                        k += 1
        except av.FFmpegError as e:
            raise DataError(f"cannot decode {self.path}: {e} (corrupt or truncated video?)") from e
        return out
