"""The clipmg TensorRT engine file: a length-prefixed JSON header, then the serialized plan.

Layout (little endian)::

    b"CLIPMGTRT1"            10 bytes, magic and format version
    uint64 n                 header length in bytes
    header                   n bytes of UTF-8 JSON
    plan                     the bytes ``IBuilder.build_serialized_network`` returned

The header holds the model metadata (``engines/metadata.py``), which graph this is, the TensorRT
version and the GPU (name, compute capability) it was built on, the precision, the optimisation
profile, the tensors' names/dtypes/shapes, and the plan's size and sha256. A plan only runs on the
TensorRT version and GPU it was built for; the header lets the loader say so in one sentence
instead of failing inside ``deserialize_cuda_engine``. Pure Python: nothing here needs TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Tuple

from clipmg.model.files import atomic_write

from .base import EngineError

MAGIC = b"CLIPMGTRT1"
HEADER_FORMAT = "clipmg-trt-engine/1"
_LEN = struct.Struct("<Q")
_MAX_HEADER = 64 << 20


def write_engine_file(path: str | Path, plan: bytes, header: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``header`` + ``plan`` atomically; returns the header as written (with plan size/sha)."""
    plan = bytes(plan)
    header = {
        **header,
        "format": HEADER_FORMAT,
        "plan_bytes": len(plan),
        "plan_sha256": hashlib.sha256(plan).hexdigest(),
    }
    raw = json.dumps(header, sort_keys=True).encode()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(_LEN.pack(len(raw)))
            f.write(raw)
            f.write(plan)

    atomic_write(path, write)
    return header


def read_engine_file(
    path: str | Path, load_plan: bool = True, check_hash: bool = True
) -> Tuple[Dict[str, Any], bytes | None]:
    """``(header, plan)``; refuses a foreign, truncated or corrupt file with one sentence."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"TensorRT engine {path} does not exist; build it with clipmg-build")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + _LEN.size)
        if len(head) < len(MAGIC) + _LEN.size or head[: len(MAGIC)] != MAGIC:
            raise EngineError(
                f"{path} is not a clipmg TensorRT engine (no clipmg header: a bare TensorRT plan, "
                f"a truncated file or another file); build it with clipmg-build"
            )
        (n,) = _LEN.unpack(head[len(MAGIC) :])
        if n > _MAX_HEADER or len(MAGIC) + _LEN.size + n > size:
            raise EngineError(
                f"{path} is truncated or corrupt (its header claims {n} bytes); copy it again or "
                f"rebuild it with clipmg-build"
            )
        raw = f.read(n)
        try:
            header = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise EngineError(f"{path} has a corrupt header ({e}); rebuild it with clipmg-build") from e
        if not isinstance(header, dict) or header.get("format") != HEADER_FORMAT:
            raise EngineError(
                f"{path} has engine format {header.get('format') if isinstance(header, dict) else None!r}"
                f"; this version reads {HEADER_FORMAT}: rebuild it with clipmg-build"
            )
        plan_bytes = size - len(MAGIC) - _LEN.size - n
        if plan_bytes != header.get("plan_bytes"):
            raise EngineError(
                f"{path} holds {plan_bytes} plan bytes but was written with {header.get('plan_bytes')}:"
                f" the file is truncated or corrupt; copy it again or rebuild it with clipmg-build"
            )
        if not load_plan:
            return header, None
        plan = f.read()
    if check_hash and hashlib.sha256(plan).hexdigest() != header.get("plan_sha256"):
        raise EngineError(
            f"{path} does not match the sha256 in its header: the file is corrupt; copy it again "
            f"or rebuild it with clipmg-build"
        )
    return header, plan


@dataclass(frozen=True)
class RuntimeInfo:
    """What a TensorRT plan is tied to: the TensorRT version and the GPU."""

    tensorrt: str
    gpu_name: str
    compute_capability: Tuple[int, int]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "tensorrt": self.tensorrt,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
        }

    @classmethod
    def from_header(cls, header: Dict[str, Any]) -> "RuntimeInfo":
        b = header.get("built_for") or {}
        return cls(str(b.get("tensorrt", "?")), str(b.get("gpu_name", "?")), tuple(b.get("compute_capability", (0, 0))))  # type: ignore[arg-type]

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability))
        return f"{self.gpu_name} (compute capability {cc}) with TensorRT {self.tensorrt}"


def check_compatible(header: Dict[str, Any], here: RuntimeInfo, path: Path | str) -> None:
    """Refuse a plan built for another GPU or another TensorRT version than ``here``.

    TensorRT plans are not portable across TensorRT versions nor across GPU models (tactics are
    chosen per device); the GPU name is compared as well as the compute capability.
    """
    built = RuntimeInfo.from_header(header)
    if (built.tensorrt, built.gpu_name, tuple(built.compute_capability)) != (
        here.tensorrt,
        here.gpu_name,
        tuple(here.compute_capability),
    ):
        raise EngineError(
            f"{path} was built for {built.describe()} but this machine has {here.describe()}; "
            f"rebuild it here with clipmg-build (from the ONNX export or the checkpoint)"
        )


def current_runtime(device: int = 0) -> RuntimeInfo:
    """The TensorRT version and GPU of this process; ``EngineError`` when either is missing."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EngineError(
            "TensorRT is not installed (pip install 'clipmg[gpu]' on a machine with an NVIDIA GPU); "
            "on this machine run the ONNX export with onnxruntime instead"
        ) from e
    import torch

    if not torch.cuda.is_available():
        raise EngineError(
            "no CUDA GPU is visible to PyTorch, and TensorRT engines run only on an NVIDIA GPU; "
            "run the ONNX export with onnxruntime instead"
        )
    if device >= torch.cuda.device_count():
        raise EngineError(f"GPU {device} does not exist (this machine has {torch.cuda.device_count()})")
    major, minor = torch.cuda.get_device_capability(device)
    return RuntimeInfo(trt.__version__, torch.cuda.get_device_name(device), (int(major), int(minor)))
