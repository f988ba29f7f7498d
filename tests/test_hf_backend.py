"""The hf backend through the real transformers loading path: a tiny random BERT with a
character-level DNA tokenizer, saved to a local directory and loaded by evoscan."""

import numpy as np
import pytest

from conftest import random_dna
from evoscan.backends import get_backend
from evoscan.errors import EvoscanError
from evoscan.windows import reverse_complement


def save_tiny_dna_bert(path):
    """A tiny random BERT (2 layers, 32 dims) with a character-level DNA tokenizer, saved to PATH."""
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
    BertModel(config).save_pretrained(path)
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
