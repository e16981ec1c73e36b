"""The cuda backend: a clipmg checkpoint on an NVIDIA GPU with autocast, CUDA graphs and pinned buffers.

``CudaEngine`` runs the same PyTorch model as the torch backend (``TorchEngine``, whose loading it
shares) without TensorRT, wherever PyTorch sees a GPU. It adds what eager PyTorch leaves on the
table at the streaming batch sizes, where a ViT-B/32 frame is a few hundred kernel launches of a few
microseconds each:

- **autocast** (``precision``): the frame encoder runs in bf16 (the default where the GPU has native
  bf16, compute capability 8.0 on) or fp16; the matmul weights of its transformer blocks, all but
  the last (which the window head shares), are stored in that type once instead of being cast at
  every call. The head, ``head_cached`` and the pose stages run at ``head_precision``, float32 by
  default: a few per cent of a window's FLOPs, and half of bf16's error against float32 logits
  (measured on the CPU: docs/engines.md, "The CUDA engine"). Outputs are float32 NumPy.
- **CUDA graphs** (``cuda_graphs=True``, the default on a GPU): every fixed-shape call, the frame
  encoder at each of ``batch_sizes``, the head and ``head_cached`` at each of ``window_sizes``, each
  pose stage at each of ``batch_sizes``, is run a few times on the engine's own stream and then
  captured once (``torch.cuda.graph``) into a graph that replays it with one launch. A call with
  ``n`` rows runs on the smallest captured size that holds them, the rows past ``n`` zero; a larger
  ``n`` is split into chunks of the largest size (``bucket_plan``). Inputs are copied into the
  graph's static buffers (``copy_``), outputs copied out right after each replay.
- **pinned host buffers**: inputs go host -> device and outputs device -> host through page-locked
  buffers with ``non_blocking`` copies on the engine's stream, then one synchronize per chunk.

Memory: all graphs of an engine share one memory pool (``torch.cuda.graph_pool_handle``), so their
intermediate activations cost the largest one's, not the sum; what each graph keeps for itself is
its static inputs and outputs (per size ``b``: ``b`` frames ``3 S S`` in, ``b (1+N_p) D + b E`` out
for the encoder; ``b T_r (1+N_p) D`` tokens and the rest for each head), float32. Sharing is safe
because replays never overlap (one lock, one stream) and every replay's outputs are copied out
before the next one starts, whichever graph that is. ``CudaEngine.memory`` reports the bytes the
buffers and graphs hold.

``device="cpu"`` runs the same autocast path on the CPU without graphs or pinned memory: what the
CPU tests check. It is not a deployment option (eager float32 is faster on CPUs without bf16 units).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from clipmg.model.pose_cache import PoseBranchCache, stage_shapes

from .base import Engine, EngineError
from .export import example_inputs
from .graphs import rel_error
from .torch_backend import TorchEngine, load_model, torch_device

log = logging.getLogger(__name__)

PRECISIONS = ("bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BATCH_SIZES = (1, 2, 4, 8, 16, 32)  # frames per frame-encoder graph; time steps per pose-stage graph
WINDOW_SIZES = (1, 2, 4, 8)  # windows per head graph (the live recognizer runs one at a time)
MAX_SIZE = 1024
WARMUP_RUNS = 3  # eager runs on the capture stream before a capture (cuBLAS/cuDNN set-up, allocations)
GRAPHS_NEED_CUDA = "CUDA graphs need a CUDA device: give cuda_graphs=False to run the cuda engine on the cpu"
PARITY_TARGETS = {"top1_agreement": 0.99, "rel_error": 1e-2}  # against eager float32 (docs/engines.md)

Fn = Callable[..., Tuple[torch.Tensor, ...]]
Chunk = Tuple[int, int, int]


# ---------------------------------------------------------------------------------- pure helpers
def bucket_plan(n: int, sizes: Sequence[int], pad: bool = True) -> List[Chunk]:
    """How a call with ``n`` rows runs on graphs captured at ``sizes`` (ascending): chunks
    ``(start, stop, size)`` covering ``0..n`` in order; the largest size while more rows than it are
    left, then the smallest size that holds the rest (``pad=False``: the rest as it is, no padding)."""
    if n < 0:
        raise ValueError(f"a batch cannot have {n} rows")
    top, plan, start = sizes[-1], [], 0
    while n - start > top:
        plan.append((start, start + top, top))
        start += top
    if n > start:
        rest = n - start
        plan.append((start, n, next(s for s in sizes if s >= rest) if pad else rest))
    return plan


def check_sizes(sizes: Any, name: str) -> Tuple[int, ...]:
    """``sizes`` as a sorted tuple of distinct whole numbers in ``[1, MAX_SIZE]``; ``EngineError`` otherwise."""
    values = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIZE for s in values):
        raise EngineError(f"{name} must be one or more whole numbers from 1 to {MAX_SIZE}, got {sizes!r}")
    return tuple(sorted(set(values)))


def check_precision(precision: Any, name: str = "precision") -> str:
    if precision not in PRECISIONS:
        raise EngineError(f"{name} must be one of {', '.join(PRECISIONS)} for the cuda engine, got {precision!r}")
    return str(precision)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (a CPU: autocast's bf16 kernels; a GPU: compute
    capability 8.0 on, not PyTorch's emulation on older GPUs)."""
    if device.type != "cuda":
        return True
    with torch.cuda.device(device):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # PyTorch before 2.3 has no including_emulation and does not emulate
            return bool(torch.cuda.is_bf16_supported())


def resolve_options(
    device: Any,
    precision: Optional[str],
    head_precision: str,
    cuda_graphs: bool,
    batch_sizes: Any,
    window_sizes: Any,
) -> Dict[str, Any]:
    """The cuda engine's options checked, in the order a user fixes them (names, then the GPU), each
    refusal one ``EngineError`` sentence; ``precision=None`` picks bf16 where the device has it, else fp16."""
    if precision is not None:
        check_precision(precision)
    check_precision(head_precision, "head_precision")
    if not isinstance(cuda_graphs, bool):
        raise EngineError(f"cuda_graphs must be True or False, got {cuda_graphs!r}")
    sizes = check_sizes(batch_sizes, "batch_sizes"), check_sizes(window_sizes, "window_sizes")
    dev = torch_device(device, engine="cuda")
    if dev.type not in ("cuda", "cpu"):
        raise EngineError(f"the cuda engine runs on cuda or cuda:N (cpu: autocast only, for tests); got {device!r}")
    if cuda_graphs and dev.type != "cuda":
        raise EngineError(GRAPHS_NEED_CUDA)
    bf16 = native_bf16(dev)
    chosen = precision or ("bf16" if bf16 else "fp16")
    for name, p in (("precision", chosen), ("head_precision", head_precision)):
        if p == "bf16" and not bf16:
            raise EngineError(
                f"{name} bf16: {torch.cuda.get_device_name(dev)} has no native bf16 (compute capability "
                f"8.0 on has); give fp16 or fp32"
            )
    return {
        "device": dev,
        "precision": chosen,
        "head_precision": head_precision,
        "cuda_graphs": cuda_graphs,
        "batch_sizes": sizes[0],
        "window_sizes": sizes[1],
    }


def cast_encoder_weights(model: Any, precision: str) -> int:
    """Store the matmul weights (``nn.Linear``, ``nn.MultiheadAttention``'s packed projection, the patch
    embedding's ``nn.Conv2d``) of the frame encoder's blocks, all but the last, in ``precision``'s type;
    returns how many tensors were cast. Autocast would cast the same values at every call; layer norms
    and embeddings stay float32. The last block stays float32: the window head runs it too, at its own
    precision."""
    if precision == "fp32":
        return 0
    dtype, cast = DTYPES[precision], 0
    vis = model.visual
    for module in [vis.conv1, *vis.transformer.resblocks[:-1].modules()]:
        params: List[torch.Tensor] = []
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            params = [p for p in (module.weight, module.bias) if p is not None]
        elif isinstance(module, nn.MultiheadAttention):
            params = [p for p in (module.in_proj_weight, module.in_proj_bias) if p is not None]
        for p in params:
            p.data = p.data.to(dtype)
            cast += 1
    return cast


# ---------------------------------------------------------------------------------- the runner
class Bucketed:
    """One fixed-shape function run in chunks of given batch sizes (``bucket_plan``).

    ``fn(*inputs)`` takes float32 tensors ``(b, *item_shape)`` and returns float32 tensors whose first
    axis is ``b`` and whose rows depend on the same input rows only. With ``graphs`` (a CUDA device)
    each size is captured into a CUDA graph over static input buffers; with ``pad`` alone the same
    static buffers are used eagerly (the padding path without a GPU, for tests); otherwise each chunk
    runs as it is.
    """

    def __init__(
        self,
        name: str,
        fn: Fn,
        item_shapes: Sequence[Tuple[int, ...]],
        sizes: Sequence[int],
        device: torch.device,
        graphs: bool = False,
        pad: bool = False,
        pool: Any = None,
        stream: Any = None,
    ) -> None:
        self.name, self.fn, self.device = name, fn, device
        self.item_shapes = [tuple(s) for s in item_shapes]
        self.sizes = tuple(sizes)
        self.cuda = device.type == "cuda"
        self.pad = pad or graphs
        self.pool, self.stream = pool, stream
        top = self.sizes[-1]
        with self._context():
            probe = fn(*(torch.zeros((1, *s), device=device) for s in self.item_shapes))
        self.out_shapes = [tuple(o.shape[1:]) for o in probe]
        # staging buffers for the copies both ways: page-locked on a GPU, so copies can be asynchronous
        self.host_in = [torch.zeros((top, *s), pin_memory=self.cuda) for s in self.item_shapes]
        self.host_out = [torch.zeros((top, *s), pin_memory=self.cuda) for s in self.out_shapes]
        self.static: Dict[int, Tuple[Any, List[torch.Tensor], Tuple[torch.Tensor, ...]]] = {}
        self.failed: List[int] = []  # sizes whose capture failed (they run eagerly on the static buffers)
        if self.pad:
            for b in self.sizes:
                self.static[b] = self._static(b, graphs)

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """No autograd; on a GPU, its device and the engine's stream current."""
        with torch.no_grad():
            if not self.cuda:
                yield
                return
            with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
                yield

    def _static(self, b: int, graphs: bool) -> Tuple[Any, List[torch.Tensor], Tuple[torch.Tensor, ...]]:
        """Size ``b``'s static inputs and, with ``graphs``, its captured graph and static outputs."""
        with self._context():
            inputs = [torch.zeros((b, *s), device=self.device) for s in self.item_shapes]
        if not graphs:
            return None, inputs, ()
        with torch.no_grad(), torch.cuda.device(self.device):
            # PyTorch's recipe: warm up on a side stream (lazy cuBLAS/cuDNN set-up, workspaces), then capture
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                for _ in range(WARMUP_RUNS):
                    self.fn(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                    outputs = tuple(self.fn(*inputs))
            except RuntimeError as e:  # an operation that cannot be captured: this call runs eagerly instead
                log.warning(
                    "CUDA graph capture of %s at batch %d failed (%s); it runs without a graph", self.name, b, e
                )
                self.failed.append(b)
                return None, inputs, ()
        return graph, inputs, outputs

    def __call__(self, arrays: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Contiguous float32 arrays ``(n, *item_shape)`` -> the outputs ``(n, *out_shape)``, float32."""
        n = len(arrays[0])
        outs = [np.empty((n, *s), np.float32) for s in self.out_shapes]
        for start, stop, size in bucket_plan(n, self.sizes, pad=self.pad):
            for o, r in zip(outs, self._chunk([a[start:stop] for a in arrays], size)):
                o[start:stop] = r
        return outs

    def _chunk(self, parts: List[np.ndarray], size: int) -> List[np.ndarray]:
        """One chunk of ``m <= size`` rows through the size-``size`` graph (or eagerly)."""
        m = len(parts[0])
        with self._context():
            if not self.cuda and not self.pad:
                return [r.numpy() for r in self.fn(*(torch.from_numpy(p) for p in parts))]
            for h, p in zip(self.host_in, parts):
                h[:m].numpy()[...] = p  # into the (pinned) staging buffer
            if self.pad:
                graph, inputs, outputs = self.static[size]
                for x, h in zip(inputs, self.host_in):
                    x[:m].copy_(h[:m], non_blocking=True)
                    if m < size:
                        x[m:].zero_()  # padding rows: zeros, whatever the previous call left there
                if graph is not None:
                    graph.replay()
                else:
                    outputs = tuple(self.fn(*inputs))
            else:
                outputs = tuple(self.fn(*(h[:m].to(self.device, non_blocking=True) for h in self.host_in)))
            for h, y in zip(self.host_out, outputs):
                h[:m].copy_(y[:m], non_blocking=True)
            if self.cuda:
                self.stream.synchronize()  # the copies out are done; the staging buffers may be reused
            return [h[:m].numpy() for h in self.host_out]  # views: the caller copies them before the next chunk


# ---------------------------------------------------------------------------------- the engine
class CudaEngine(TorchEngine):
    """A checkpoint on one GPU with autocast, CUDA graphs and pinned host buffers (module docstring)."""

    backend = "cuda"

    def __init__(
        self,
        model: Any,
        metadata: Dict[str, Any],
        device: str | torch.device = "cuda",
        precision: str = "bf16",
        head_precision: str = "fp32",
        cuda_graphs: bool = True,
        batch_sizes: Sequence[int] = BATCH_SIZES,
        window_sizes: Sequence[int] = WINDOW_SIZES,
        pad: bool = False,
    ) -> None:
        """``model``: a ``CLIPMG`` (float32; its encoder weights are cast in place). Options as in ``load``,
        already checked; ``pad`` runs the padded static buffers without graphs (tests on the cpu)."""
        dev = torch_device(device, engine="cuda")  # "cuda" -> cuda:N, the current GPU
        cuda = dev.type == "cuda"
        if cuda_graphs and not cuda:
            raise EngineError(GRAPHS_NEED_CUDA)
        super().__init__(model, metadata, dev)
        self.precision, self.head_precision, self.cuda_graphs = precision, head_precision, cuda_graphs
        self.batch_sizes, self.window_sizes = tuple(batch_sizes), tuple(window_sizes)
        self.cast_weights = cast_encoder_weights(self.model, precision)
        self._lock = threading.Lock()  # a graph and its buffers serve one call at a time
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        self._pool = torch.cuda.graph_pool_handle() if cuda_graphs else None
        if cuda:
            torch.cuda.synchronize(self.device)  # the weights' copies and casts ran on the default stream
        before = (torch.cuda.memory_allocated(self.device), torch.cuda.memory_reserved(self.device)) if cuda else (0, 0)
        t0 = time.perf_counter()
        self._runners: Dict[str, Bucketed] = {}
        for name, fn, shapes, sizes in self._functions():
            self._runners[name] = Bucketed(
                name, fn, shapes, sizes, self.device, cuda_graphs, pad, self._pool, self._stream
            )
        self.setup_s = time.perf_counter() - t0
        # what the runners hold: their static buffers (allocated) and, with the graphs' shared pool, the
        # memory PyTorch keeps reserved for them (the pool's intermediates are free blocks of it)
        self.memory = {
            "allocated_bytes": (torch.cuda.memory_allocated(self.device) - before[0]) if cuda else 0,
            "reserved_bytes": (torch.cuda.memory_reserved(self.device) - before[1]) if cuda else 0,
        }
        log.debug(
            "cuda engine on %s: %s encoder, %s head, graphs %s, set up in %.2f s",
            self.device,
            precision,
            head_precision,
            {k: r.sizes for k, r in self._runners.items()} if cuda_graphs else "off",
            self.setup_s,
        )

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path,
        device: str = "cuda",
        precision: Optional[str] = None,
        head_precision: str = "fp32",
        cuda_graphs: Optional[bool] = None,
        batch_sizes: Any = BATCH_SIZES,
        window_sizes: Any = WINDOW_SIZES,
        **expect: Any,
    ) -> "CudaEngine":
        """Load a checkpoint onto ``device`` (``cuda``, ``cuda:N``; ``cpu`` for tests: autocast only).

        ``precision``: the frame encoder's autocast type, ``bf16`` (default where the GPU has it),
        ``fp16`` or ``fp32``; ``head_precision``: the head's and the pose stages' (default ``fp32``);
        ``cuda_graphs`` (default: on a GPU): capture the calls at ``batch_sizes`` (frames, pose time
        steps) and ``window_sizes`` (windows). ``expect`` is checked against the checkpoint's metadata.
        Options and the GPU are checked before the weights are read; every refusal is one sentence.
        """
        if cuda_graphs is None:
            cuda_graphs = not str(device).strip().lower().startswith("cpu")
        opts = resolve_options(device, precision, head_precision, cuda_graphs, batch_sizes, window_sizes)
        model, meta = load_model(path, **expect)
        return cls(model, meta, **opts)

    # ------------------------------------------------------------------ the functions captured
    def _autocast(self, precision: str) -> Any:
        if precision == "fp32":
            return contextlib.nullcontext()
        # no weight cache: a cache filled during a capture would be freed under the graph's feet
        return torch.autocast(self.device.type, dtype=DTYPES[precision], cache_enabled=False)

    def _functions(self) -> Iterator[Tuple[str, Fn, List[Tuple[int, ...]], Tuple[int, ...]]]:
        """``(name, fn, item shapes, sizes)`` of every call the engine runs."""
        model, cfg = self.model, self.config
        v, c, j = cfg.vision, cfg.clip, cfg.pose.num_joints
        s = v.image_size

        def encoder(images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
            with self._autocast(self.precision):
                x, e = model.encode_frames(images)
            return x.float(), e.float()

        def head(*inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
            with self._autocast(self.head_precision):
                return (model.head(*inputs).float(),)

        window = [(c.rgb_frames, 1 + v.num_patches, v.width), (c.rgb_frames, v.embed_dim), (c.pose_frames, j, 3)]
        yield "frame_encoder", encoder, [(3, s, s)], self.batch_sizes
        yield "head", head, window, self.window_sizes
        if not self.pose_cache:
            return
        shapes = stage_shapes(cfg)
        _, c3, h, w = shapes[-1]["taps"]
        yield "head_cached", head, [*window, (c3, c.rgb_frames, h, w)], self.window_sizes
        for i, stage in enumerate(shapes):

            def partials(x: torch.Tensor, i: int = i) -> Tuple[torch.Tensor, ...]:
                with self._autocast(self.head_precision):
                    return (model.pose_partials(i, x).float(),)

            item = (c.group, j, 3) if i == 0 else stage["input"]
            yield f"pose_stage{i}", partials, [item], self.batch_sizes

    def _run(self, name: str, arrays: Sequence[np.ndarray]) -> List[np.ndarray]:
        with self._lock:
            return self._runners[name](arrays)

    # ------------------------------------------------------------------ the Engine interface
    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        x, e = self._run("frame_encoder", [self.check_frames(images)])
        return x, e

    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        feeds = self.check_head_inputs(tokens, frame_emb, keypoints)
        return self._run("head", [feeds["tokens"], feeds["frame_emb"], feeds["keypoints"]])[0]

    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        if not self.pose_cache:
            return Engine.pose_partials(self, stage, x)
        return self._run(f"pose_stage{stage}", [self.check_pose_input(stage, x)])[0]

    def head_cached(
        self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray, pose_pre: np.ndarray
    ) -> np.ndarray:
        if not self.pose_cache:
            return Engine.head_cached(self, tokens, frame_emb, keypoints, pose_pre)
        feeds = self.check_head_inputs(tokens, frame_emb, keypoints)
        pre = self.check_pose_pre(pose_pre, feeds["tokens"].shape[0])
        return self._run("head_cached", [feeds["tokens"], feeds["frame_emb"], feeds["keypoints"], pre])[0]

    @property
    def graphs(self) -> Dict[str, Tuple[int, ...]]:
        """The captured batch sizes of each call (none without CUDA graphs)."""
        return {k: tuple(b for b, (g, _, _) in r.static.items() if g is not None) for k, r in self._runners.items()}

    @property
    def failed_captures(self) -> Dict[str, List[int]]:
        """The batch sizes whose capture failed, by call (they run eagerly; a warning said why)."""
        return {k: r.failed for k, r in self._runners.items() if r.failed}


# ---------------------------------------------------------------------------------- parity
def parity(engine: Engine, reference: Engine, windows: int = 64, seed: int = 0) -> Dict[str, Any]:
    """How ``engine`` agrees with ``reference`` (eager float32) on ``windows`` random windows run one at
    a time (the streaming case): top-1 agreement and the largest logit error relative to the logits'
    scale (``graphs.rel_error``), for ``head`` and, where the engine runs the pose branch in pieces,
    for ``head_cached`` fed by ``pose_partials`` as the live recognizer does. ``ok``: both within
    ``PARITY_TARGETS``."""
    cfg = reference.config
    images, kp = example_inputs(cfg, windows, seed)
    ref = np.concatenate([reference(images[i : i + 8], kp[i : i + 8]) for i in range(0, windows, 8)])
    got, cached = [], []
    for i in range(windows):
        x, e = engine.encode_frames(images[i])
        got.append(engine.head(x[None], e[None], kp[i : i + 1]))
        if engine.pose_cache:
            pre = PoseBranchCache.for_config(engine.pose_partials, cfg).window(0, kp[i])
            cached.append(engine.head_cached(x[None], e[None], kp[i : i + 1], pre[None]))
    out: Dict[str, Any] = {"windows": windows, **_agreement(np.concatenate(got), ref)}
    if cached:
        out["cached"] = _agreement(np.concatenate(cached), ref)
    out["ok"] = all(
        r["top1_agreement"] >= PARITY_TARGETS["top1_agreement"] and r["rel_error"] <= PARITY_TARGETS["rel_error"]
        for r in (out, out.get("cached", out))
    )
    return out


def _agreement(got: np.ndarray, ref: np.ndarray) -> Dict[str, float]:
    return {"top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()), "rel_error": rel_error(got, ref)}
