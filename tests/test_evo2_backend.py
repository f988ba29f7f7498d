"""The real evo2 / Vortex code path on CPU: a tiny random-weight StripedHyena built from an Evo 2
config, saved as a checkpoint and loaded through evoscan's evo2 backend (shims: tests/evo2_cpu.py)."""

import json

import numpy as np
import pytest
import torch

import evo2_cpu
from conftest import random_dna, run_counting_loads, write_fasta
from evoscan import embed
from evoscan.backends import get_backend
from evoscan.backends.evo2 import Evo2Backend, check_layer, default_layer
from evoscan.cli import main as evoscan_main
from evoscan.errors import EvoscanError
from evoscan.windows import WindowParams, make_windows, read_windows, reverse_complement, write_windows

LAYER = "blocks.5.mlp.l3"


def cosines(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def assert_same(a, b):
    """Equal up to bf16 noise (a different padded length changes FFT sizes and rounding). Different
    sequences score cosine ~0.65 (mean) or ~0 (last) with this model, the same ones >= 0.9999."""
    assert (cosines(a, b) >= 0.9995).all(), cosines(a, b)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    evo2_cpu.install()
    return evo2_cpu.save_tiny_model(tmp_path_factory.mktemp("evo2"))


@pytest.fixture(scope="module")
def backend(tiny):
    config, weights = tiny
    return get_backend("evo2", config=config, weights=weights, layer=LAYER, batch_size=4)


@pytest.fixture(scope="module")
def seqs():
    rng = np.random.default_rng(0)
    return [random_dna(rng, n) for n in (200, 200, 160, 200, 120)]


def test_stopping_at_the_layer_equals_evo2_forward_hook(backend, seqs):
    """Our truncated forward and evo2's own Evo2.forward(return_embeddings=True) hook agree exactly."""
    ids = torch.tensor([backend.evo2.tokenizer.tokenize(seqs[0])], dtype=torch.long)
    ours = backend.hidden_states(ids)
    _, hooked = backend.evo2(ids, return_embeddings=True, layer_names=[LAYER])
    assert ours.dtype == torch.bfloat16 and ours.shape == (1, 200, 256)
    assert torch.equal(ours, hooked[LAYER])
    assert ours.float().abs().sum() > 0  # random weights: a real, non-trivial signal


def test_full_forward_option_gives_the_same_vectors(tiny, backend, seqs):
    config, weights = tiny
    full = get_backend("evo2", config=config, weights=weights, layer=LAYER, full_forward=True)
    assert np.array_equal(full.embed(seqs[:2]), backend.embed(seqs[:2]))


def test_batched_equals_one_at_a_time_and_padding_is_invisible(backend, seqs):
    together = backend.embed(seqs)  # mixed lengths: shorter ones are right-padded in their batch
    alone = np.stack([backend.embed([s])[0] for s in seqs])
    assert together.dtype == np.float32 and together.shape == (5, 256)
    assert_same(together, alone)
    # a short sequence padded next to a long one equals the short one alone
    assert_same(backend.embed([seqs[4], seqs[0]])[0], alone[4])
    assert (cosines(alone[0], alone[1:]) < 0.9).all()  # and different sequences differ


def test_soft_masked_lower_case_is_upper_cased(backend, seqs):
    assert np.array_equal(backend.embed([seqs[0].lower()]), backend.embed([seqs[0]]))


def test_rc_mean_pooling_is_strand_symmetric(tiny, seqs):
    config, weights = tiny
    rc = get_backend("evo2", config=config, weights=weights, layer=LAYER, pooling="rc_mean")
    fwd = rc.embed(seqs[:3])
    rev = rc.embed([reverse_complement(s) for s in seqs[:3]])
    assert_same(fwd, rev)
    plain = get_backend("evo2", config=config, weights=weights, layer=LAYER, pooling="mean")
    assert cosines(plain.embed(seqs[:1]), plain.embed([reverse_complement(seqs[0])]))[0] < 0.99


def test_last_token_pooling(tiny, backend, seqs):
    config, weights = tiny
    last = get_backend("evo2", config=config, weights=weights, layer=LAYER, pooling="last")
    ids = torch.tensor([backend.evo2.tokenizer.tokenize(seqs[2])], dtype=torch.long)
    direct = backend.hidden_states(ids)[0, -1].float().numpy()
    assert np.allclose(last.embed([seqs[2]])[0], direct)
    assert_same(last.embed([seqs[2], seqs[0]])[0], direct)  # padded next to a longer one


def test_layer_validation_against_the_real_configs():
    # the 1B model has 25 blocks and the 20B 24: blocks.28 exists in neither
    for model, blocks in (("evo2_1b_base", 25), ("evo2_20b", 24)):
        with pytest.raises(EvoscanError, match=f"'blocks.28' does not exist in {model} \\({blocks} blocks"):
            Evo2Backend(model=model, layer="blocks.28")
    with pytest.raises(EvoscanError, match="does not exist"):
        check_layer("layers.3", "evo2_7b", 32)
    assert default_layer(32) == "blocks.28.mlp.l3" and default_layer(25) == "blocks.22.mlp.l3"
    assert check_layer("blocks.31", "evo2_7b", 32) == 31


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch, tiny):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # as HF_HOME=tmp_path gives
    with pytest.raises(EvoscanError, match="no weights for evo2_7b: pass --weights .*HF_HOME/evo2_7b.pt.*--allow-download"):
        Evo2Backend(model="evo2_7b")
    with pytest.raises(EvoscanError, match="no such weights file"):
        Evo2Backend(model="evo2_7b", weights=tmp_path / "nope.pt")
    with pytest.raises(EvoscanError, match="unknown Evo 2 model"):
        Evo2Backend(model="evo3_7b")
    # the merged file where evo2 keeps downloads is found without --weights
    (tmp_path / "evo2_7b.pt").write_bytes(tiny[1].read_bytes())
    from evoscan.backends.evo2 import find_weights
    assert find_weights("evo2_7b", None) == tmp_path / "evo2_7b.pt"
    # but a custom architecture never takes the stock checkpoint found there (its keys would not load)
    with pytest.raises(EvoscanError, match="--model-config needs --weights: the checkpoint made with that architecture"):
        Evo2Backend(model="evo2_7b", config=tiny[0])


def test_weights_by_a_relative_name_load(tiny, seqs, backend, tmp_path, monkeypatch):
    """As Nextflow stages them: the model loads in a scratch folder, so the name is made absolute
    first; the provenance keeps it as given (the same in every chunk's task)."""
    config, weights = tiny
    (tmp_path / "staged.pt").symlink_to(weights)
    monkeypatch.chdir(tmp_path)
    b = get_backend("evo2", config=config, weights="staged.pt", layer=LAYER, batch_size=4)
    assert np.array_equal(b.embed(seqs), backend.embed(seqs)) and b.provenance()["weights"] == "staged.pt"


def test_not_a_checkpoint_and_not_a_layer_are_one_line_errors(tiny, tmp_path):
    config, weights = tiny
    (tmp_path / "notes.pt").write_text("not weights\n")
    (tmp_path / "cut.pt").write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])  # a download cut short
    for bad in ("notes.pt", "cut.pt"):
        with pytest.raises(EvoscanError, match=f"{bad}: not a torch checkpoint \\(or a truncated one\\)"):
            get_backend("evo2", config=config, weights=tmp_path / bad, layer=LAYER)
    for full_forward in (False, True):  # a layer name of the right form that is no module: found on loading
        b = get_backend("evo2", config=config, weights=weights, layer="blocks.3.nosuch", full_forward=full_forward)
        with pytest.raises(EvoscanError, match="layer 'blocks.3.nosuch' is not a module of"):
            b.embed(["ACGT"])


def test_a_config_or_checkpoint_that_does_not_fit_is_a_one_line_error(tiny, tmp_path):
    import yaml

    config, weights = tiny
    arch = yaml.safe_load(config.read_text())
    (tmp_path / "broken.yml").write_text("hidden_size: [256\n")
    (tmp_path / "other.yml").write_text("name: something else\n")
    for bad, message in (("broken.yml", "broken.yml: not YAML"), ("other.yml", "other.yml: not an Evo 2 architecture "
                                                                  r"\(no hidden_size or num_layers\)")):
        with pytest.raises(EvoscanError, match=message):
            get_backend("evo2", config=tmp_path / bad, weights=weights, layer=LAYER)
    with pytest.raises(EvoscanError, match="a folder, not a weights file"):
        get_backend("evo2", config=config, weights=tmp_path, layer=LAYER)
    (tmp_path / "wider.yml").write_text(yaml.safe_dump({**arch, "inner_mlp_size": arch["inner_mlp_size"] * 2}))
    b = get_backend("evo2", config=tmp_path / "wider.yml", weights=weights, layer=LAYER)  # found on loading
    with pytest.raises(EvoscanError, match="the checkpoint does not fit the architecture of .*wider.yml"):
        b.embed(["ACGT"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_without_a_gpu_evo2_says_it_needs_one(tiny, tmp_path):
    """Vortex cannot build the model on a CPU (the tests lift that with tests/evo2_cpu.py): a user
    without a GPU is told so in one line, not given torch's internal error."""
    from conftest import evoscan

    config, weights = tiny
    rng = np.random.default_rng(1)
    fasta = write_fasta(tmp_path / "g.fa", {"G0": random_dna(rng, 400), "G1": random_dna(rng, 400)})
    assert evoscan("windows", "--fasta", fasta, "--window-size", "128", "--stride", "128",
                   "-o", tmp_path / "w.h5").returncode == 0
    proc = evoscan("embed", "--windows", tmp_path / "w.h5", "--backend", "evo2", "--model-config", config,
                   "--weights", weights, "--layer", LAYER, "-o", tmp_path / "e.h5")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        "evoscan embed: error: evo2 builds its model on a CUDA GPU and torch sees none here; run the embedding on "
        "a GPU machine (Nextflow: -profile gpu), or choose a CPU backend")
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "e.h5.partial").exists()


def test_a_checkpoint_holding_code_is_refused_never_unpickled(tiny, tmp_path):
    """Weights whose pickle would run code: one-line refusal, and the code never runs."""
    import os

    config, _ = tiny
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"blocks.0.weight": Payload()}, tmp_path / "evil.pt")
    b = get_backend("evo2", config=config, weights=tmp_path / "evil.pt", layer=LAYER)  # loads on first use
    with pytest.raises(EvoscanError, match="evil.pt: refused to load a checkpoint that holds Python objects"):
        b.embed(["ACGT"])
    assert not marker.exists()


def test_fp8_models_need_transformer_engine():
    with pytest.raises(EvoscanError, match="evo2_40b needs FP8 through Transformer Engine"):
        Evo2Backend(model="evo2_40b")


def test_provenance(backend, tiny):
    prov = backend.provenance()
    assert prov["layer"] == LAYER and prov["pooling"] == "mean" and prov["stop_at_layer"]
    assert len(prov["weights_digest"]) == 32 and prov["versions"]["evo2"]


class DiesAfter:
    """A real backend that a 'kill' stops after some batches."""

    def __init__(self, backend, batches):
        self.backend, self.left = backend, batches
        self.name, self.dim, self.batch_size = backend.name, backend.dim, backend.batch_size

    def embed(self, seqs):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.backend.embed(seqs)

    def provenance(self):
        return self.backend.provenance()


def test_killed_evo2_embedding_resumes_to_the_same_file(backend, tmp_path):
    rng = np.random.default_rng(1)
    ws = make_windows(WindowParams(size=128, stride=128),
                      fasta=write_fasta(tmp_path / "w.fa", {f"G{i}": random_dna(rng, 512) for i in range(3)}))
    embed.embed_windows(ws, backend, tmp_path / "whole.h5")
    with pytest.raises(KeyboardInterrupt):
        embed.embed_windows(ws, DiesAfter(backend, 4), tmp_path / "resumed.h5")  # 2 batches of windows + decoys
    done = json.loads((tmp_path / "resumed.h5.partial" / "done.json").read_text())
    assert done["n_done"] == 8
    embed.embed_windows(ws, backend, tmp_path / "resumed.h5")
    whole, _ = embed.read_embeddings(tmp_path / "whole.h5", ws)
    resumed, prov = embed.read_embeddings(tmp_path / "resumed.h5", ws)
    assert np.array_equal(whole, resumed) and prov["backend"] == "evo2"


def test_cli_embed_with_the_evo2_backend(tiny, tmp_path):
    config, weights = tiny
    rng = np.random.default_rng(2)
    ws = make_windows(WindowParams(size=128, stride=64),
                      fasta=write_fasta(tmp_path / "w.fa", {"A": random_dna(rng, 400), "B": random_dna(rng, 300)}))
    write_windows(tmp_path / "windows.h5", ws)
    code = evoscan_main(["embed", "--windows", str(tmp_path / "windows.h5"), "--backend", "evo2",
                         "--model-config", str(config), "--weights", str(weights), "--layer", "blocks.3",
                         "--pooling", "rc_mean", "-o", str(tmp_path / "e.h5")])
    assert code == 0
    vectors, prov = embed.read_embeddings(tmp_path / "e.h5", ws)
    assert vectors.shape == (len(ws), 256) and prov["layer"] == "blocks.3" and prov["pooling"] == "rc_mean"
    code = evoscan_main(["embed", "--windows", str(tmp_path / "windows.h5"), "--backend", "evo2",
                         "--model-config", str(config), "--weights", str(weights), "--layer", "blocks.40",
                         "-o", str(tmp_path / "f.h5")])
    assert code == 2 and not (tmp_path / "f.h5").exists()  # a bad option


def test_random_weights_dry_run(tiny, seqs):
    config, _ = tiny
    dry = get_backend("evo2", config=config, weights="random", layer=LAYER)
    out = dry.embed(seqs[:2])
    assert np.isfinite(out).all() and out.shape == (2, 256)
    assert dry.provenance()["weights"] == "random" and dry.provenance()["weights_digest"] == ""


def test_a_run_that_reuses_its_embeddings_never_loads_the_model(tiny, tmp_path, caplog, capsys):
    """`evoscan run` decides from the backend's identity whether its embeddings can be reused: a
    rerun with other check settings never loads Evo 2 (minutes and a GPU's memory for 7B); another
    pooling loads it and embeds anew."""
    config, weights = tiny
    rng = np.random.default_rng(3)
    fasta = write_fasta(tmp_path / "g.fa", {f"G{i}": random_dna(rng, 1024) for i in range(3)})
    args = ["run", "--fasta", str(fasta), "--window-size", "128", "--stride", "64", "--backend", "evo2",
            "--model-config", str(config), "--weights", str(weights), "--layer", LAYER, "--motif-shuffles", "5",
            "--outdir", str(tmp_path / "out")]

    def run(*extra: str) -> tuple[int, str]:
        return run_counting_loads([*args, *extra], "evo2", caplog, capsys)

    loads, _ = run("--sw-shuffles", "5")
    assert loads == 1
    made = (tmp_path / "out" / "embeddings.h5").stat().st_mtime_ns
    loads, err = run("--sw-shuffles", "6")
    assert loads == 0 and "embed: reusing embeddings.h5" in err and "check: making scores.h5 anew" in err
    assert (tmp_path / "out" / "embeddings.h5").stat().st_mtime_ns == made
    loads, err = run("--sw-shuffles", "6", "--pooling", "last")
    assert loads == 1 and "embed: making embeddings.h5 anew" in err
    _, prov = embed.read_embeddings(tmp_path / "out" / "embeddings.h5", read_windows(tmp_path / "out" / "windows.h5"))
    assert prov["pooling"] == "last"
