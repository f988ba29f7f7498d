"""The Evo 2 speed-ups on CPU: what runs here (torch.compile, FP8 matmuls through torch._scaled_mm)
gives the eager embeddings within stated tolerances on the tiny random Evo 2 model, through the real
evo2/Vortex code; what cannot run here (Vortex's Triton kernels, CUDA graphs) falls back with a
logged line and gives eager exactly. The GPU figures: docs/benchmarks.md."""

import gc
import logging
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evo2_cpu
from conftest import random_dna
from evoscan.backends import get_backend
from evoscan.backends import evo2_speed
from evoscan.backends.evo2_speed import LayerForward, _featurizer_fir, fp8_linear, quantise_rows, use_fp8
from evoscan.cli import main as evoscan_main

LAYER = "blocks.5.mlp.l3"


def cosines(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    evo2_cpu.install()
    return evo2_cpu.save_tiny_model(tmp_path_factory.mktemp("evo2"))


@pytest.fixture(scope="module")
def seqs():
    rng = np.random.default_rng(3)
    return [random_dna(rng, 256) for _ in range(8)]


def backend(tiny, speedups):
    config, weights = tiny
    return get_backend("evo2", config=config, weights=weights, layer=LAYER, batch_size=4, speedups=speedups)


@pytest.fixture(scope="module")
def eager(tiny, seqs):
    return backend(tiny, ()).embed(seqs)


def test_compile_gives_the_eager_embeddings(tiny, seqs, eager):
    """Inductor fuses bf16 chains and rounds less often than eager: close, not bit-equal."""
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = backend(tiny, ("compile",))
    vectors = compiled.embed(seqs)
    assert compiled.forward.used == ["compile"] and compiled.provenance()["speedups"] == ["compile"]
    assert counters["stats"]["unique_graphs"] > 0  # dynamo compiled the blocks
    assert np.isfinite(vectors).all()
    assert cosines(vectors, eager).min() >= 0.999, cosines(vectors, eager)
    assert not np.array_equal(vectors, eager)
    # closed after embedding (as `evoscan run` does before its search): nothing holds the model any more,
    # the compiled code included
    model = weakref.ref(compiled.evo2.model)
    compiled.close()
    gc.collect()
    assert model() is None


def test_a_compiler_that_cannot_run_falls_back_before_any_provenance(tiny, seqs, eager, monkeypatch, caplog):
    """The compiled blocks are tried on a few tokens when the model is loaded, so the provenance
    (written before the first batch) already says whether compile ran."""
    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Broken())
    with caplog.at_level(logging.WARNING, logger="evoscan.evo2"):
        b = backend(tiny, ("compile",))
        assert b.identity()["speedups"] == ["compile"]  # asked for; known before the model loads
        assert b.provenance()["speedups"] == []  # loads it: what ran
    assert b.forward.used == []
    assert "torch.compile failed (RuntimeError: no C++ compiler here)" in caplog.text
    assert np.array_equal(b.embed(seqs), eager)


def test_gpu_only_speedups_fall_back_with_a_warning_and_give_eager_exactly(tiny, seqs, eager, caplog):
    with caplog.at_level(logging.WARNING, logger="evoscan.evo2"):
        b = backend(tiny, ("conv", "kernels", "graphs", "fp8"))
        assert b.forward.used == [] and b.provenance()["speedups"] == []
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ("conv", "kernels", "graphs", "fp8"):
        assert f"{name} not used" in warned
    assert np.array_equal(b.embed(seqs), eager)


def test_the_default_speedup_falls_back_quietly_on_cpu(tiny, seqs, eager, caplog):
    """The default (conv, exact on the GPU) is not asked for by the user: a note, not a warning."""
    config, weights = tiny
    with caplog.at_level(logging.INFO, logger="evoscan.evo2"):
        b = get_backend("evo2", config=config, weights=weights, layer=LAYER, batch_size=4)
        b.embed(seqs[:1])
    notes = [r for r in caplog.records if "conv not used" in r.getMessage()]
    assert notes and all(r.levelno == logging.INFO for r in notes)
    assert b.forward.fallbacks == ["conv: Vortex's Triton kernels need a CUDA GPU"]
    assert np.array_equal(b.embed(seqs), eager)


def test_fp8_linear_is_close_to_the_float_product():
    """Per-row e4m3 scales on both sides: about 3 % relative error on Gaussian data, never worse
    than 6 %; a single large value in a row does not wreck the other rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 64, generator=g).bfloat16()
    x[0, 0, 0] = 1000.0
    w = torch.randn(48, 64, generator=g).bfloat16()
    bias = torch.randn(48, generator=g).bfloat16()
    wq, ws = quantise_rows(w)
    out = fp8_linear(x, wq, ws.t().contiguous(), bias)
    ref = x.double() @ w.double().T + bias.double()
    assert out.shape == (3, 40, 48) and out.dtype == torch.bfloat16
    err = ((out.double() - ref).norm(dim=-1) / ref.norm(dim=-1))
    assert err.max() < 0.06, err.max()
    assert err.flatten()[1:].median() < 0.04


def test_fp8_through_the_backend_and_an_empty_bias(tiny, seqs, eager, monkeypatch):
    """--speedups fp8 where it can run (here: torch._scaled_mm on CPU, the GPU check lifted) goes
    through every linear layer, Vortex's projections (which return a pair) included, and is
    recorded; an empty bias (Transformer Engine's Linear without one) adds nothing."""
    monkeypatch.setattr(evo2_speed, "fp8_unavailable", lambda device: None)
    b = backend(tiny, ("fp8",))
    assert b.forward.used == ["fp8"] and b.provenance()["speedups"] == b.identity()["speedups"] == ["fp8"]
    assert all(hasattr(blk.projections, "fp8_weight") for blk in b.forward.blocks if hasattr(blk, "projections"))
    assert cosines(b.embed(seqs), eager).min() >= 0.97
    x, w = torch.randn(4, 32).bfloat16(), torch.randn(16, 32).bfloat16()
    wq, ws = quantise_rows(w)
    assert torch.equal(fp8_linear(x, wq, ws.t().contiguous(), torch.empty(0)), fp8_linear(x, wq, ws.t().contiguous()))


def test_fp8_forward_on_the_real_blocks_and_back(tiny, seqs, eager):
    """FP8 on every linear layer of the blocks (torch._scaled_mm runs on CPU too): close to bf16
    (cosine 0.977-0.983 on these windows through 6 random blocks: why it stays opt-in), hooks
    still fire at the layer, and undo gives eager back bit for bit."""
    b = backend(tiny, ())
    b.forward.undo()
    forward = LayerForward(b.evo2.model, b.block, b._module)
    switched = use_fp8(forward.blocks, True)
    assert switched == sum(isinstance(m, torch.nn.Linear) or type(m).__name__ == "TELinear"
                           for blk in forward.blocks for m in blk.modules())
    b.forward = forward
    vectors = b.embed(seqs)
    assert np.isfinite(vectors).all() and not np.array_equal(vectors, eager)
    assert cosines(vectors, eager).min() >= 0.97, cosines(vectors, eager)
    forward.undo()
    b.forward = LayerForward(b.evo2.model, b.block, b._module)
    assert np.array_equal(b.embed(seqs), eager)


def test_featurizer_convolution_keeps_the_engines_arithmetic(tiny, monkeypatch):
    """The featurizer's 3-tap filter through the fused depthwise convolution: the wrapper hands the
    kernel the (B, D, L) input and returns what the engine's own conv1d branch returns. The Triton
    kernel cannot run on CPU, so its place is taken by the same convolution written as shifted sums
    (the kernel itself is Vortex's, measured on the GPU: docs/benchmarks.md)."""
    import vortex.ops.hcs_interface as hcs

    def shifted_sums(u, weight):
        taps = weight.shape[-1]
        padded = F.pad(u, (taps - 1, 0))
        return sum(weight[None, :, 0, k, None] * padded[..., k:k + u.shape[-1]] for k in range(taps))

    monkeypatch.setattr(hcs, "hcs_depthwise_conv", shifted_sums)
    b = backend(tiny, ())
    cascade = next(blk.filter for blk in b.evo2.model.blocks if hasattr(blk, "filter"))
    u = torch.randn(2, 64, 3 * 256).bfloat16()
    dims = (256, 4, 64, cascade.state_size, cascade.hyena_filter_groups)
    args = dict(dims=dims, gate=False, column_split_hyena=True, fir_length=cascade.short_filter_length,
                inference_params=None, padding_mask=None, dim_last=True)
    want, _ = cascade.engine.parallel_fir(F.conv1d, u, cascade.short_filter_weight, None, 64, **args)
    got, state = _featurizer_fir(cascade.engine.parallel_fir)(F.conv1d, u, cascade.short_filter_weight, None, 64, **args)
    assert state is None and got.shape == want.shape == (2, 3 * 256, 64) and got.dtype == want.dtype
    assert torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2)
    # the gated inner filter is not the featurizer's: it goes to the engine unchanged
    inner = dict(args, gate=True, dim_last=False, groups=cascade.hyena_filter_groups)
    calls = []
    _featurizer_fir(lambda *a, **k: calls.append(k) or ("engine", None))(F.conv1d, u, None, None, 64, **inner)
    assert calls and calls[0]["gate"] is True


def test_conv_in_the_real_forward_and_undone(tiny, seqs, eager, monkeypatch):
    """The featurizer wrapper inside the whole forward (its kernel's place taken by shifted sums,
    as above): the embeddings of eager, and after undo the engines are as they were. Exact
    speed-ups are not recorded in the provenance: chunks with and without them merge."""
    import vortex.ops.hcs_interface as hcs

    def shifted_sums(u, weight):
        taps = weight.shape[-1]
        padded = F.pad(u, (taps - 1, 0))
        return sum(weight[None, :, 0, k, None] * padded[..., k:k + u.shape[-1]] for k in range(taps))

    monkeypatch.setattr(hcs, "hcs_depthwise_conv", shifted_sums)
    monkeypatch.setattr(evo2_speed, "kernels_unavailable", lambda device: None)
    b = backend(tiny, ("conv", "kernels"))
    engines = list(evo2_speed._engines(b.forward.blocks))
    assert b.forward.used == ["conv", "kernels"] and b.provenance()["speedups"] == ["kernels"]
    assert all("parallel_fir" in e.__dict__ and e.use_hcs_kernel for e in engines)
    b.forward.undo()
    assert all("parallel_fir" not in e.__dict__ and not e.use_hcs_kernel for e in engines)
    b.forward = LayerForward(b.evo2.model, b.block, b._module, ("conv",))
    assert b.forward.used == ["conv"] and b.provenance()["speedups"] == []
    assert cosines(b.embed(seqs), eager).min() >= 0.9999


def test_speedups_option_is_checked_and_belongs_to_evo2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        evoscan_main(["embed", "--windows", str(tmp_path / "w.h5"), "--out", str(tmp_path / "e.h5"),
                      "--backend", "evo2", "--speedups", "kernels,turbo"])
    assert err.value.code == 2 and "unknown speed-up 'turbo'" in capsys.readouterr().err


def test_without_flash_attn_attention_runs_through_torch_and_is_recorded(tiny, seqs, eager):
    """PyPI's torch has no flash-attn (nor has this machine): the backend builds the model with
    torch attention itself, which the GPU image made from PyPI relies on, and says so."""
    import importlib.util

    assert importlib.util.find_spec("flash_attn") is None
    b = backend(tiny, ())
    assert b.attention == "torch" and b.provenance()["attention"] == "torch"
    assert all(not getattr(blk, "config", {}).get("use_flash_attn", False) for blk in b.evo2.model.blocks)
    assert np.array_equal(b.embed(seqs), eager)


def test_speedups_by_name_and_not_with_the_full_forward(tiny):
    config, weights = tiny
    named = get_backend("evo2", config=config, weights=weights, layer=LAYER, speedups="graphs,none")
    assert named.forward.fallbacks == ["graphs: CUDA graphs need a CUDA GPU"]
    from evoscan.errors import EvoscanError

    with pytest.raises(EvoscanError, match="drop --full-forward or --speedups"):
        get_backend("evo2", config=config, weights=weights, layer=LAYER, speedups="compile", full_forward=True)
    with pytest.raises(EvoscanError, match="unknown speed-up 'turbo'"):
        get_backend("evo2", config=config, weights=weights, layer=LAYER, speedups=["turbo"])
