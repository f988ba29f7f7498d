"""Faster Evo 2 forwards to the embedding layer, each measured against the plain (eager bf16) one.

- `conv` (the default): the featurizer's 3-tap depthwise causal convolution of every Hyena block
  by Vortex's fused Triton kernel (`hcs_depthwise_conv`) in place of PyTorch's generic
  `conv_depthwise2d`; the same fp32 arithmetic (cosine to the plain vectors 1.000000 at six
  decimals on the H200, recall@10 1). CUDA with Triton.
- `kernels`: Vortex's fused Triton kernels for the Hyena cascades (its `use_hc*_kernel` flags:
  the short gated convolution, the medium and long FFT convolutions). CUDA with Triton.
- `compile`: `torch.compile` of each block that runs (fuses the elementwise chains around the
  matmuls). Any device with a compiler; tried on a few tokens when the model is loaded, and if
  the compiler cannot run there, the blocks run eagerly.
- `graphs`: the whole forward captured as a CUDA graph per batch shape and replayed (no launch
  gaps). CUDA only.
- `fp8` (opt-in, never a default): the blocks' linear layers as FP8 (e4m3) matmuls with per-row scales
  (`torch._scaled_mm`), weights quantised once. Hopper/Ada GPUs (compute capability >= 8.9).

On the GPU (docs/benchmarks.md, evo2_7b on an H200) `conv` and `graphs` left the vectors as they
were (cosine 1.000000 at six decimals), and only `conv` gained (1.06x); `kernels`, `compile` and
`fp8` move the vectors beyond the exactness bar and are opt-in. What cannot run where the model is
falls back to the plain path with one logged line (a warning when asked for, a note for the
default). The provenance lists the speed-ups that ran and change the vectors (`VECTOR_CHANGING`);
the exact ones are left out, so chunks embedded with and without them (a node without Triton) merge.
CPU tests of the paths that run on CPU: tests/test_evo2_speed.py.
"""

from __future__ import annotations

import logging

SPEEDUPS = ("conv", "kernels", "compile", "graphs", "fp8")
DEFAULT_SPEEDUPS = ("conv",)  # exact on the GPU; the rest opt-in (docs/benchmarks.md)
VECTOR_CHANGING = ("kernels", "fp8", "compile")  # recorded in the provenance when they ran (in this order)
FP8_MAX = 448.0  # largest finite float8 e4m3fn

log = logging.getLogger("evoscan.evo2")


def parse_speedups(text) -> tuple[str, ...]:
    """'kernels,graphs' (or a sequence of names) -> ('kernels', 'graphs'); 'none' or '' -> ()."""
    items = (text or "").split(",") if isinstance(text, str) or text is None else list(text)
    names = tuple(n.strip() for n in items if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in SPEEDUPS]
    if unknown:
        raise ValueError(f"unknown speed-up {unknown[0]!r}; choose from {', '.join(SPEEDUPS)} or none")
    return tuple(n for n in SPEEDUPS if n in names)


# ---- conv and kernels: Vortex's Triton kernels -------------------------------------------------

def kernels_unavailable(device) -> str | None:
    """Why Vortex's Triton kernels cannot run here, or None when they can."""
    if device.type != "cuda":
        return "Vortex's Triton kernels need a CUDA GPU"
    from vortex.model import engine

    if engine.hcs_conv is None or engine.hcm_fft_conv is None or engine.hcl_fft_conv is None:
        return "Vortex's Triton kernels did not import (is Triton installed?)"
    return None


def _engines(blocks):
    for block in blocks:
        engine = getattr(getattr(block, "filter", None), "engine", None)
        if engine is not None:
            yield engine


KERNEL_FLAGS = ("use_hcs_kernel", "use_hcm_kernel", "use_hcl_kernel")


def use_kernels(blocks, on: bool) -> None:
    """Vortex's fused kernels for the Hyena cascades on, or back to the flags found before."""
    for engine in _engines(blocks):
        if on:
            engine.__dict__.setdefault("flags_before", {f: getattr(engine, f) for f in KERNEL_FLAGS})
            for flag in KERNEL_FLAGS:
                setattr(engine, flag, True)
        else:
            for flag, value in engine.__dict__.pop("flags_before", {}).items():
                setattr(engine, flag, value)


def use_conv(blocks, on: bool) -> None:
    """The featurizer's depthwise convolution by Vortex's fused kernel, on or back off."""
    for engine in _engines(blocks):
        engine.__dict__.pop("parallel_fir", None)
        if on:
            engine.parallel_fir = _featurizer_fir(engine.parallel_fir)


def _featurizer_fir(parallel_fir):
    """The engine's `parallel_fir` with its ungated short filter (the featurizer, 3 taps) done by
    Vortex's fused depthwise causal convolution, the rest unchanged. Same arithmetic as the
    original's branch: fp32 convolution of the (B, D, L) input, cast back, no bias."""
    import torch
    import torch.nn.functional as F
    from vortex.ops.hcs_interface import hcs_depthwise_conv

    def fir(fir_fn, u, weight, bias, L, *args, gate=False, fir_length=3, dim_last=True,
            inference_params=None, padding_mask=None, **kwargs):
        if (fir_fn is F.conv1d and not gate and fir_length < 128 and bias is None and not args
                and inference_params is None and padding_mask is None):
            x = u.permute(0, 2, 1) if dim_last else u
            x32 = x.to(torch.float32, memory_format=torch.contiguous_format)  # one copy, as the kernel wants
            return hcs_depthwise_conv(x32, weight.float())[..., :L].to(x.dtype), None
        return parallel_fir(fir_fn, u, weight, bias, L, *args, gate=gate, fir_length=fir_length,
                            dim_last=dim_last, inference_params=inference_params,
                            padding_mask=padding_mask, **kwargs)

    return fir


# ---- fp8 -------------------------------------------------------------------------------------

def fp8_unavailable(device) -> str | None:
    import torch

    if device.type != "cuda":
        return "FP8 matmuls need a CUDA GPU"
    if torch.cuda.get_device_capability(device) < (8, 9):
        return f"FP8 matmuls need compute capability >= 8.9 (this GPU: {torch.cuda.get_device_capability(device)})"
    return None


def quantise_rows(x):
    """Each row of a 2-D tensor as float8 e4m3 with its own fp32 scale: x ~= q * scale."""
    import torch

    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale).to(torch.float8_e4m3fn), scale


def fp8_linear(x, weight_q, weight_scale, bias=None):
    """x @ weight.T (+ bias) through FP8 with per-row scales on both sides, bf16 out."""
    import torch

    rows = x.reshape(-1, x.shape[-1])
    xq, x_scale = quantise_rows(rows)
    out = torch._scaled_mm(xq, weight_q.t(), scale_a=x_scale, scale_b=weight_scale,
                           out_dtype=torch.bfloat16)
    if bias is not None and bias.numel():  # (Transformer Engine's Linear keeps an empty bias)
        out = out + bias
    return out.reshape(*x.shape[:-1], out.shape[-1])


def use_fp8(blocks, on: bool) -> int:
    """Route the blocks' linear layers through FP8 (or back); returns how many were switched.
    The module keeps its hooks and weights; only its forward changes."""
    import torch

    switched = 0
    for block in blocks:
        for module in block.modules():
            weight = getattr(module, "weight", None)
            if not (isinstance(module, torch.nn.Linear) or type(module).__name__ == "TELinear"):
                continue
            if not on:
                module.__dict__.pop("forward", None)
                module.__dict__.pop("fp8_weight", None)
                continue
            if weight is None or weight.dim() != 2 or weight.shape[0] % 16 or weight.shape[1] % 16:
                continue  # _scaled_mm wants both dimensions in multiples of 16
            wq, ws = quantise_rows(weight.detach())
            module.fp8_weight = (wq, ws.t().contiguous())
            module.forward = _fp8_forward(module)
            switched += 1
    return switched


def _fp8_forward(module):
    returns_pair = type(module).__name__ == "TELinear"  # Vortex's projection returns (out, bias or None)

    def forward(x):
        wq, ws = module.fp8_weight
        if returns_pair:
            if module.te_return_bias:
                return fp8_linear(x, wq, ws), module.bias
            return fp8_linear(x, wq, ws, module.bias), None
        return fp8_linear(x, wq, ws, module.bias)

    return forward


# ---- graphs ----------------------------------------------------------------------------------

class GraphedForward:
    """`forward(ids)` replayed from a CUDA graph captured once per input shape (at most `limit`
    shapes; others run plainly). The output is copied out of the graph's memory."""

    def __init__(self, forward, limit: int = 4):
        self.forward, self.limit, self.graphs, self.longest = forward, limit, {}, 0

    def __call__(self, ids):
        key = tuple(ids.shape)
        if ids.shape[1] > self.longest:  # Vortex re-allocates its position caches for longer inputs,
            self.graphs.clear()          # which graphs captured before would still read
            self.longest = ids.shape[1]
        if key not in self.graphs:
            if len(self.graphs) >= self.limit:
                return self.forward(ids)
            self.graphs[key] = self._capture(ids)
        graph, static_ids, static_out = self.graphs[key]
        static_ids.copy_(ids)
        graph.replay()
        return static_out.clone()

    def _capture(self, ids):
        import torch

        static_ids = ids.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: autotuning, FFT plans, caches
            for _ in range(2):
                self.forward(static_ids)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.forward(static_ids)
        return graph, static_ids, static_out


# ---- the forward -----------------------------------------------------------------------------

def vector_changing(speedups) -> list[str]:
    """Those of `speedups` that change the vectors, in the order they are applied."""
    return [name for name in VECTOR_CHANGING if name in speedups]


class LayerForward:
    """The Evo 2 forward up to `layer_module` inside block `block` (no later blocks, norm or
    logits), with the chosen speed-ups. Call with token ids [B, L]; returns the layer's states."""

    def __init__(self, model, block: int, layer_module, speedups=(), quiet: bool = False):
        self.model, self.captured = model, {}
        self.blocks = list(model.blocks[:block + 1])
        # registered once, before any compile, so that compiled blocks keep it
        self.hook = layer_module.register_forward_hook(self._capture)
        device = next(model.parameters()).device
        wanted, self.used, self.fallbacks = set(speedups), [], []

        def fall_back(name, why):  # a warning when the user asked for it, a note for the default
            self.fallbacks.append(f"{name}: {why}")
            log.log(logging.INFO if quiet else logging.WARNING, "evo2: %s not used: %s; running without it",
                    name, why)

        for name, switch in (("conv", use_conv), ("kernels", use_kernels)):
            if name in wanted:
                why = kernels_unavailable(device)
                if why:
                    fall_back(name, why)
                else:
                    switch(self.blocks, True)
                    self.used.append(name)
        if "fp8" in wanted:
            why = fp8_unavailable(device)
            if why:
                fall_back("fp8", why)
            else:
                use_fp8(self.blocks, True)
                self.used.append("fp8")
        self.run_blocks = self.blocks
        if "compile" in wanted:
            self._compile(fall_back)
        self.graphed = None
        if "graphs" in wanted:
            if device.type != "cuda":
                fall_back("graphs", "CUDA graphs need a CUDA GPU")
            else:
                self.graphed = GraphedForward(self._forward)
                self.used.append("graphs")

    def _capture(self, _module, _inputs, output):
        self.captured["x"] = output[0] if isinstance(output, tuple) else output

    def _forward(self, ids):
        x = self.model.embedding_layer(ids)
        for idx, block in enumerate(self.run_blocks):
            x = self.model.cross_device_transfer(x, idx)
            x, _ = block(x, inference_params=None, padding_mask=None)
        return self.captured.pop("x")

    def _compile(self, fall_back) -> None:
        """Compiled blocks, tried once on a few tokens so that what ran is known before any
        provenance is written; if the compiler cannot run here, the plain blocks (and if those
        fail too, the error is the model's, not the compiler's)."""
        import torch

        for name in ("recompile_limit", "cache_size_limit"):  # one compile per block kind and shape
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
        # the layer's own block stays eager: hooks inside compiled code do not fire
        self.run_blocks = [torch.compile(b, dynamic=False) for b in self.blocks[:-1]] + self.blocks[-1:]
        device = next(self.model.parameters()).device
        trial = torch.full((1, 8), ord("A"), dtype=torch.long, device=device)
        try:
            with torch.inference_mode():
                self._forward(trial)
            self.used.append("compile")
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as err:
            self.run_blocks = self.blocks
            with torch.inference_mode():
                self._forward(trial)
            fall_back("compile", f"torch.compile failed ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:160] if str(err) else ''})")

    def __call__(self, ids):
        import torch

        with torch.inference_mode():
            return self.graphed(ids) if self.graphed is not None else self._forward(ids)

    def changing(self) -> list[str]:
        """The speed-ups that ran and change the vectors: what the provenance records."""
        return vector_changing(self.used)

    def undo(self) -> None:
        """Put the model back as it was loaded (the hook, the kernels, the FP8 forwards)."""
        self.hook.remove()
        self.graphed, self.run_blocks = None, self.blocks
        use_kernels(self.blocks, False)
        use_conv(self.blocks, False)
        use_fp8(self.blocks, False)
