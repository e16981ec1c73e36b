"""The TensorRT backend: engines from ``clipmg-build`` run with ``execute_async_v3`` on one GPU.

Device buffers are PyTorch CUDA tensors (no pycuda / cuda-python needed); each engine has one
execution context, one CUDA stream and buffers sized for the last input shapes. With
``cuda_graphs=True`` the enqueue for the current shapes is captured once into a CUDA graph and
replayed while the shapes stay the same (the streaming case: one frame, one window at a time);
a new shape re-captures. A graph fixes shapes, tensor addresses and the context, so buffers are
kept alive and re-captured whenever they change.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from .artifacts import TRT_EXPORT, read_manifest, verify_files
from .base import Engine, EngineError
from .metadata import check_expectations, decode
from .trt_format import check_compatible, current_runtime, read_engine_file

log = logging.getLogger(__name__)


def torch_dtype(trt_dtype: Any) -> Any:
    """TensorRT ``DataType`` -> ``torch.dtype``."""
    import tensorrt as trt
    import torch

    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT8: torch.int8,
        trt.DataType.BOOL: torch.bool,
    }
    for name, dt in (("BF16", torch.bfloat16), ("INT64", torch.int64), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = dt
    if trt_dtype not in table:
        raise EngineError(
            f"TensorRT tensor type {trt_dtype} is not supported by clipmg's runtime; rebuild with "
            f"clipmg-build --precision fp16 or fp32"
        )
    return table[trt_dtype]


def cuda_index(device: int | str) -> int:
    """``0``, ``"cuda"``, ``"cuda:1"`` -> the CUDA device index."""
    if isinstance(device, int):
        return device
    d = str(device).strip().lower()
    if d in ("cuda", "gpu"):
        return 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return int(d[5:])
    if d.isdigit():
        return int(d)
    raise EngineError(f"TensorRT engines run on a CUDA device; got device {device!r} (use 0, 'cuda' or 'cuda:N')")


class TrtRunner:
    """One deserialized engine: context, stream, device buffers, optional CUDA graph.

    ``roles`` maps clipmg's tensor names (``images``, ``tokens``, ...) to the engine's tensor names
    (identical for ONNX-built engines; torch-tensorrt names outputs ``output0``, ...).
    """

    def __init__(
        self, engine: Any, roles: Dict[str, Dict[str, str]], device: int, cuda_graphs: bool, name: str
    ) -> None:
        import tensorrt as trt
        import torch

        self.name, self.engine = name, engine
        self.device = torch.device("cuda", device)
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError(
                f"TensorRT could not create an execution context for {name} (GPU memory exhausted?); "
                f"free GPU memory or rebuild with a smaller --max-batch"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = {role: t for role, t in roles["inputs"].items()}
        self.outputs = {role: t for role, t in roles["outputs"].items()}
        missing = [t for t in (*self.inputs.values(), *self.outputs.values()) if t not in names]
        if missing or sum(is_input.values()) != len(self.inputs):
            raise EngineError(
                f"the {name} engine's tensors {names} do not match its header ({roles}); rebuild it with clipmg-build"
            )
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in names}
        self.max_batch = min(int(engine.get_tensor_profile_shape(t, 0)[2][0]) for t in self.inputs.values())
        self.stream = torch.cuda.Stream(device=self.device)
        self.cuda_graphs = cuda_graphs
        self._key: Tuple[Any, ...] | None = None
        self._buffers: Dict[str, Any] = {}
        self._graph: Any = None

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError(f"TensorRT failed to run the {self.name} engine (see the TensorRT log above)")

    def _prepare(self, shapes: Dict[str, Tuple[int, ...]]) -> None:
        import torch

        self._graph, self._key = None, None
        for t, shape in shapes.items():
            if not self.context.set_input_shape(t, shape):
                lo, _, hi = self.engine.get_tensor_profile_shape(t, 0)
                raise ValueError(
                    f"{self.name}: input {t} of shape {shape} is outside the engine's profile "
                    f"{tuple(lo)}..{tuple(hi)}; rebuild with a larger --max-batch"
                )
        bufs = {t: torch.empty(shape, dtype=self.dtypes[t], device=self.device) for t, shape in shapes.items()}
        for t in self.outputs.values():
            bufs[t] = torch.empty(tuple(self.context.get_tensor_shape(t)), dtype=self.dtypes[t], device=self.device)
        for t, b in bufs.items():
            self.context.set_tensor_address(t, b.data_ptr())
        self._buffers, self._key = bufs, tuple(shapes.items())
        if self.cuda_graphs:
            self._capture()

    def _capture(self) -> None:
        """Capture the enqueue into a CUDA graph (after one plain run, as TensorRT requires after a
        shape change); on failure fall back to plain enqueues for this runner."""
        import torch

        with torch.cuda.stream(self.stream):
            self._enqueue()
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue()
            self._graph = graph
        except Exception as e:  # noqa: BLE001 - some engines cannot be captured; plain enqueue still works
            log.warning("CUDA graph capture failed for %s (%s); running without CUDA graphs", self.name, e)
            self.cuda_graphs, self._graph = False, None
            self._prepare({t: s for t, s in (self._key or ())})

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Feeds keyed by role (float32 NumPy) -> outputs keyed by role (float32 NumPy)."""
        import torch

        shapes = {t: tuple(feeds[role].shape) for role, t in self.inputs.items()}
        with torch.cuda.device(self.device):
            if tuple(shapes.items()) != self._key:
                self._prepare(shapes)
            return self._execute(feeds)

    def _execute(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        with torch.cuda.stream(self.stream):
            for role, t in self.inputs.items():
                self._buffers[t].copy_(torch.from_numpy(feeds[role]))
            if self._graph is not None:
                self._graph.replay()
            else:
                self._enqueue()
            return {role: self._buffers[t].float().cpu().numpy() for role, t in self.outputs.items()}


class TensorRTEngine(Engine):
    """Frame encoder and window head as two TensorRT engines."""

    backend = "tensorrt"

    def __init__(
        self,
        metadata: Dict[str, Any],
        encoder: TrtRunner,
        head: TrtRunner,
        precision: str,
        headers: Dict[str, Dict[str, Any]],
    ) -> None:
        super().__init__(metadata)
        self.precision = precision
        self.headers = headers
        self._encoder, self._head = encoder, head
        self._runtime: Any = None  # the trt.Runtime must outlive its engines

    @classmethod
    def load(
        cls, directory: str | Path, device: int | str = 0, cuda_graphs: bool = True, verify: bool = True, **expect: Any
    ) -> "TensorRTEngine":
        """Load an engine directory written by ``clipmg-build``.

        Checks, in order, each refusing with one sentence: the manifest; the metadata against
        ``expect``; every file's size and sha256 (``verify=False``: sizes only) and header; that
        TensorRT and a GPU are present; that the engines were built for this GPU and this TensorRT
        version. ``device``: 0, ``"cuda"`` or ``"cuda:N"``.
        """
        import torch

        directory = Path(directory)
        device = cuda_index(device)
        manifest = read_manifest(directory, TRT_EXPORT)
        meta = decode(json.dumps(manifest["metadata"]), directory / "manifest.json")
        check_expectations(meta, directory, **expect)
        verify_files(directory, manifest, check_hash=verify)
        headers, plans = {}, {}
        for graph in ("frame_encoder", "window_head"):
            path = directory / manifest["files"][graph]["file"]
            headers[graph], plans[graph] = read_engine_file(path, check_hash=False)  # hashed above when verify
            if headers[graph].get("metadata") != meta:
                raise EngineError(
                    f"{path} belongs to another build than {directory / 'manifest.json'}; rebuild the "
                    f"directory with clipmg-build"
                )
        here = current_runtime(device)
        for graph, header in headers.items():
            check_compatible(header, here, directory / manifest["files"][graph]["file"])
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        runners = {}
        with torch.cuda.device(device):  # TensorRT deserializes onto the current device
            for graph, plan in plans.items():
                engine = runtime.deserialize_cuda_engine(plan)
                if engine is None:
                    raise EngineError(
                        f"TensorRT could not deserialize {directory / manifest['files'][graph]['file']}"
                        f" (see the TensorRT log above); rebuild it here with clipmg-build"
                    )
                runners[graph] = TrtRunner(engine, headers[graph]["io"], device, cuda_graphs, graph)
        engine = cls(
            meta, runners["frame_encoder"], runners["window_head"], headers["frame_encoder"]["precision"], headers
        )
        engine._runtime = runtime  # keep the runtime alive as long as its engines
        return engine

    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        images = self.check_frames(images)
        step = self._encoder.max_batch
        parts: List[Dict[str, np.ndarray]] = [
            self._encoder.run({"images": images[i : i + step]}) for i in range(0, len(images), step)
        ]
        return (np.concatenate([p["tokens"] for p in parts]), np.concatenate([p["frame_emb"] for p in parts]))

    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        feeds = self.check_head_inputs(tokens, frame_emb, keypoints)
        step, b = self._head.max_batch, len(feeds["tokens"])
        used = self._head.inputs
        return np.concatenate(
            [self._head.run({k: feeds[k][i : i + step] for k in used})["logits"] for i in range(0, b, step)]
        )
