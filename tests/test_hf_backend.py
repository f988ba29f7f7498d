"""The hf backend through the real transformers loading path: a tiny random BERT with a
character-level DNA tokenizer, saved to a local directory and loaded by evoscan."""

import json
import shutil

import numpy as np
import pytest

from conftest import random_dna, run_counting_loads, write_fasta
from evoscan.backends import get_backend
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
        return run_counting_loads([*args, *extra], "hf", caplog, capsys)

    assert run("--sw-shuffles", "5")[0] == 1
    loads, err = run("--sw-shuffles", "6")
    assert loads == 0 and "embed: reusing embeddings.h5" in err and "check: making scores.h5 anew" in err
    loads, err = run("--sw-shuffles", "6", "--layer", "1")
    assert loads == 1 and "embed: making embeddings.h5 anew" in err


def test_weights_that_cannot_load_are_refused_at_the_first_batch(model_dir, tmp_path, seqs):
    """The config is read when the backend is made (layer, size, provenance); the weights when it
    first embeds, refused there in one line."""
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    b = get_backend("hf", model=broken)
    assert b.dim == 32 and b.identity()["architecture"] == "bert"
    with pytest.raises(EvoscanError, match="broken: cannot load the model"):
        b.embed(seqs)


def edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def drop_tensors(model, prefix):
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith(prefix)}, model / "model.safetensors",
              metadata={"format": "pt"})


def other_tokenizer(model, letters, unknown=True):
    """A character-level tokenizer of `letters` (ids 5..) in place of the model's; without an
    `unknown` token (BPE) other letters are dropped."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]") if unknown else models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]",
                            unk_token="[UNK]" if unknown else None).save_pretrained(model)


BROKEN = {  # what is done to a copy of the tiny model -> the one line that refuses it
    "weights lack a layer": (lambda m: drop_tensors(m, "encoder.layer.1."),
                             r"the weights do not fill the model \(16 tensors missing"),
    "config promises more layers": (lambda m: edit_json(m / "config.json", num_hidden_layers=4),
                                    "the weights do not fill the model"),
    "config of other shapes": (lambda m: edit_json(m / "config.json", intermediate_size=48),
                               "the weights have other shapes than config.json gives"),
    "no tokenizer files": (lambda m: [f.unlink() for f in m.glob("tokenizer*")],
                           "the tokenizer does not keep the letters A, C, G and T of plain DNA"),
    "tokenizer without T": (lambda m: other_tokenizer(m, "ACGN"), "the tokenizer does not keep the letters"),
    "tokenizer that drops T": (lambda m: other_tokenizer(m, "ACGN", unknown=False),
                               "the tokenizer does not keep the letters"),
    "tokenizer without padding": (lambda m: edit_json(m / "tokenizer_config.json", pad_token=None),
                                  "the tokenizer has no padding token"),
    "tokenizer of a larger vocabulary": (lambda m: other_tokenizer(m, "VWXYZACGTN"),
                                         "the tokenizer gives token id 1[0-4], beyond the model's 10 embeddings"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_model_that_would_embed_wrongly_or_fail_deep_inside_is_refused_in_one_line(model_dir, tmp_path, seqs, case):
    """Each of these used to run to the end with wrong vectors (weights that do not fill the model,
    a tokenizer that maps DNA to its unknown token) or fail with an internal error."""
    change, message = BROKEN[case]
    broken = shutil.copytree(model_dir, tmp_path / "m")
    change(broken)
    with pytest.raises(EvoscanError, match=message):
        get_backend("hf", model=broken).embed(seqs)


def test_windows_longer_than_the_model_are_refused(model_dir, tmp_path):
    rng = np.random.default_rng(1)
    with pytest.raises(EvoscanError, match="windows of 700 bp are 702 tokens, more than the 600 positions"):
        get_backend("hf", model=model_dir).embed([random_dna(rng, 700)])
    # ESM (Nucleotide Transformer v1) numbers its absolute positions after the padding id (0 here)
    from transformers import EsmConfig, EsmModel

    esm = shutil.copytree(model_dir, tmp_path / "esm", ignore=shutil.ignore_patterns("config.json", "model*"))
    config = dict(vocab_size=10, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=40, pad_token_id=0, position_embedding_type="absolute")
    EsmModel(EsmConfig(**config)).save_pretrained(esm)
    assert get_backend("hf", model=esm).embed([random_dna(rng, 37)]).shape == (1, 32)  # 39 tokens
    with pytest.raises(EvoscanError, match="windows of 38 bp are 40 tokens, more than the 39 positions"):
        get_backend("hf", model=esm).embed([random_dna(rng, 38)])
    rotary = tmp_path / "rotary"
    shutil.copytree(esm, rotary, ignore=shutil.ignore_patterns("config.json", "model*"))
    EsmModel(EsmConfig(**{**config, "position_embedding_type": "rotary"})).save_pretrained(rotary)
    assert get_backend("hf", model=rotary).embed([random_dna(rng, 100)]).shape == (1, 32)  # no table to run past


def t5_config(model):
    from transformers import T5Config

    T5Config(vocab_size=10, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2).save_pretrained(model)


@pytest.mark.parametrize("change, message", [
    (lambda m: edit_json(m / "config.json", model_type="hyenadna",
                         auto_map={"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}),
     r"the model needs its own Python code \(auto_map in config.json\), which evoscan does not run"),
    (lambda m: edit_json(m / "config.json", auto_map={"AutoModel": "modeling_bert.BertModel"}),  # a known type
     r"the model needs its own Python code \(auto_map in config.json\)"),
    (t5_config, r"an encoder-decoder model \(t5\)"),
    (lambda m: edit_json(m / "config.json", num_hidden_layers="2"), "cannot read the model's config.json"),
])
def test_a_config_evoscan_cannot_use_is_refused_before_any_work(model_dir, tmp_path, change, message):
    broken = shutil.copytree(model_dir, tmp_path / "m")
    change(broken)
    with pytest.raises(EvoscanError, match=message):
        get_backend("hf", model=broken)


def test_other_weights_of_the_same_size_are_another_model(model_dir, tmp_path):
    """The identity a rerun's reuse is decided on reads the files' contents, not only names and sizes."""
    import torch
    from safetensors.torch import load_file, save_file

    other = shutil.copytree(model_dir, tmp_path / "m")
    tensors = load_file(other / "model.safetensors")
    torch.manual_seed(1)
    save_file({k: torch.randn_like(v) for k, v in tensors.items()}, other / "model.safetensors",
              metadata={"format": "pt"})
    assert (other / "model.safetensors").stat().st_size == (model_dir / "model.safetensors").stat().st_size
    assert get_backend("hf", model=other).identity() != get_backend("hf", model=model_dir).identity() | {
        "model": str(other)}


def test_a_checkpoint_without_the_pooler_embeds_as_the_whole_one(model_dir, tmp_path, seqs):
    """Checkpoints saved with a language-model head lack the pooler, which no hidden state uses."""
    headless = shutil.copytree(model_dir, tmp_path / "m")
    drop_tensors(headless, "pooler.")
    assert np.array_equal(get_backend("hf", model=headless).embed(seqs), get_backend("hf", model=model_dir).embed(seqs))


def test_transformers_settings_are_as_they_were_after(model_dir, seqs):
    from transformers.utils import logging as transformers_logging

    level, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    get_backend("hf", model=model_dir).embed(seqs)
    assert (transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()) == (level, bars)


def test_a_model_built_like_the_first_nucleotide_transformers_embeds(tmp_path):
    """ESM saved with its language-model head (no pooler) and ESM's own tokenizer of 6-mers then
    single letters, padding id 1: it loads, keeps DNA's letters, and its limit is 1,000 tokens."""
    import itertools

    import torch
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    model = tmp_path / "nt"
    model.mkdir()
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>",
             *("".join(k) for k in itertools.product("ACGT", repeat=6)), *"ACGTN"]
    (model / "vocab.txt").write_text("\n".join(vocab) + "\n")
    EsmTokenizer(str(model / "vocab.txt")).save_pretrained(model)
    torch.manual_seed(0)
    EsmForMaskedLM(EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=1002, pad_token_id=1, mask_token_id=2,
                             position_embedding_type="absolute")).save_pretrained(model)
    rng = np.random.default_rng(0)
    b = get_backend("hf", model=model, pooling="rc_mean")
    assert b.embed([random_dna(rng, 512), random_dna(rng, 300)]).shape == (2, 32) and b.architecture == "esm"
    with pytest.raises(EvoscanError, match="windows of 6000 bp are 1002 tokens, more than the 1000 positions"):
        b.embed([random_dna(rng, 6000)])
