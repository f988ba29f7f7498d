"""The hf backend through the real transformers loading path: a tiny random BERT with a
character-level DNA tokenizer, saved to a local directory and loaded by evoscan."""

import logging

import numpy as np
import pytest

from conftest import random_dna, write_fasta
from evoscan.backends import get_backend
from evoscan.cli import main as evoscan_main
from evoscan.errors import EvoscanError
from evoscan.windows import reverse_complement


def save_tiny_dna_bert(path, nan: bool = False):
    """A tiny random BERT (2 layers, 32 dims) with a character-level DNA tokenizer, saved to PATH
    (as safetensors); `nan` puts a NaN in its last layer's weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "A", "C", "G", "T", "N"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=600)
    model = BertModel(config)
    if nan:
        with torch.no_grad():
            model.encoder.layer[1].output.dense.weight[0, 0] = float("nan")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_dna_bert(tmp_path_factory.mktemp("hf") / "tiny-dna-bert")


def cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def seqs():
    rng = np.random.default_rng(3)
    return [random_dna(rng, n) for n in (300, 120, 300)]


def test_loads_and_embeds_from_a_local_directory(model_dir, seqs):
    b = get_backend("hf", model=model_dir)
    out = b.embed(seqs)
    assert out.shape == (3, 32) and out.dtype == np.float32 and b.dim == 32
    prov = b.provenance()
    assert prov["architecture"] == "bert" and prov["layer"] == -1 and len(prov["model_digest"]) == 32


def test_padding_and_batching_do_not_change_results(model_dir, seqs):
    for pooling in ("mean", "last"):
        b = get_backend("hf", model=model_dir, pooling=pooling)
        together = b.embed(seqs)
        alone = np.stack([b.embed([s])[0] for s in seqs])
        assert np.allclose(together, alone, atol=1e-5)
        assert cos(alone[0], alone[1]) < 0.999


def test_case_and_strand(model_dir, seqs):
    b = get_backend("hf", model=model_dir, pooling="rc_mean")
    assert np.allclose(b.embed([seqs[0].lower()]), b.embed([seqs[0]]))
    assert np.allclose(b.embed(seqs), b.embed([reverse_complement(s) for s in seqs]), atol=1e-5)


def test_layer_choice(model_dir, seqs):
    first = get_backend("hf", model=model_dir, layer="0").embed(seqs[:1])
    last = get_backend("hf", model=model_dir, layer="-1").embed(seqs[:1])
    assert not np.allclose(first, last)
    with pytest.raises(EvoscanError, match="layer 7 does not exist: the model has hidden states 0..2"):
        get_backend("hf", model=model_dir, layer="7")


def test_not_a_model_directory(tmp_path):
    with pytest.raises(EvoscanError, match="not a Hugging Face model directory"):
        get_backend("hf", model=tmp_path)


def test_a_run_that_reuses_its_embeddings_never_loads_the_model(model_dir, tmp_path, caplog, capsys):
    """As for evo2: `evoscan run` decides reuse from what config.json and the directory say, so a
    rerun with other check settings never loads the model; another layer loads it and embeds anew."""
    rng = np.random.default_rng(5)
    fasta = write_fasta(tmp_path / "g.fa", {f"G{i}": random_dna(rng, 1024) for i in range(3)})
    args = ["run", "--fasta", str(fasta), "--window-size", "128", "--stride", "64", "--backend", "hf",
            "--model", str(model_dir), "--motif-shuffles", "5", "--outdir", str(tmp_path / "out")]

    def run(*extra: str) -> tuple[int, str]:
        caplog.clear()
        capsys.readouterr()
        with caplog.at_level(logging.INFO, logger="evoscan.hf"):
            code = evoscan_main([*args, *extra])
        assert code == 0, capsys.readouterr().err
        return sum(r.getMessage().startswith("hf: loading") for r in caplog.records), capsys.readouterr().err

    assert run("--sw-shuffles", "5")[0] == 1
    loads, err = run("--sw-shuffles", "6")
    assert loads == 0 and "embed: reusing embeddings.h5" in err and "check: making scores.h5 anew" in err
    loads, err = run("--sw-shuffles", "6", "--layer", "1")
    assert loads == 1 and "embed: making embeddings.h5 anew" in err


def test_weights_that_cannot_load_are_refused_at_the_first_batch(model_dir, tmp_path, seqs):
    """The config is read when the backend is made (layer, size, provenance); the weights when it
    first embeds, refused there in one line."""
    import shutil

    broken = shutil.copytree(model_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    b = get_backend("hf", model=broken)
    assert b.dim == 32 and b.identity()["architecture"] == "bert"
    with pytest.raises(EvoscanError, match="broken: cannot load the model"):
        b.embed(seqs)
