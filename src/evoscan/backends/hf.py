"""The `hf` backend: any Hugging Face DNA language model stored in a local directory.

Loaded with transformers' AutoTokenizer / AutoModel from the directory only (never the hub), on
the GPU when there is one, at the first batch to embed. `layer` indexes the model's hidden states
(0 = embeddings, -1 = last, the default). Pooling as for evo2: `mean` over real tokens (special
tokens and padding excluded), the `last` real token, or `rc_mean` (both strands). Sequences are
upper-cased; output float32.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import pickle
import re
from pathlib import Path

import numpy as np

from ..errors import EvoscanError, UsageError, first_line
from . import register
from .model_files import directory_digest
from .pooling import POOLINGS, embed_pooled, pool

log = logging.getLogger("evoscan.hf")

_DNA = "ACGTTGCAAACCGGTTTTGGCCAA"  # every letter, alone and in runs: a DNA tokenizer keeps them all


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' warnings, loading reports and bars off stderr, which is for evoscan's one-line
    errors (what the reports say is checked here); its settings as they were after."""
    from transformers.utils import logging as transformers_logging

    level, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)
        if bars:
            transformers_logging.enable_progress_bar()


def _max_tokens(model) -> int | None:
    """The most tokens the model's positions take: none for rotary positions; for absolute ones
    numbered after the padding id (ESM, RoBERTa), that many fewer."""
    config = model.config
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    table = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
    offset = getattr(table, "padding_idx", None)
    return positions - offset - 1 if isinstance(offset, int) else positions


def _modules_run(model, inputs) -> set[str]:
    """The names of the modules that a forward over `inputs` runs."""
    import torch

    ran: set[str] = set()
    hooks = [module.register_forward_hook(lambda *_, name=name: ran.add(name))
             for name, module in model.named_modules()]
    try:
        with torch.inference_mode():
            model(**inputs, output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    return ran


class HFBackend:
    name = "hf"

    def __init__(self, model: str | Path, layer: str | int | None = None, pooling: str = "mean",
                 batch_size: int = 16):
        if pooling not in POOLINGS:
            raise EvoscanError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.path = Path(model)
        if not (self.path / "config.json").is_file():
            raise EvoscanError(f"{self.path}: not a Hugging Face model directory (no config.json); "
                               "give a local directory saved with save_pretrained")
        try:
            self.layer = int(layer) if layer is not None else -1
        except ValueError:
            raise UsageError(f"--layer for the hf backend is a hidden-state index (e.g. -1), not {layer!r}") from None
        self.pooling, self.batch_size = pooling, batch_size
        try:
            from transformers import AutoConfig
        except ImportError:
            raise EvoscanError("the hf backend needs transformers: pip install transformers") from None
        try:
            with _quiet_transformers():
                config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        except Exception as err:  # transformers raises many kinds for a config it cannot use
            if "trust_remote_code" not in str(err):
                raise EvoscanError(f"{self.path}: cannot read the model's config.json ({first_line(err)})") from None
            config = None
        if config is None or getattr(config, "auto_map", None):  # (a known model_type does not raise)
            raise EvoscanError(f"{self.path}: the model needs its own Python code (auto_map in config.json), which "
                               "evoscan does not run; use a model whose architecture transformers ships")
        if getattr(config, "is_encoder_decoder", False):
            raise EvoscanError(f"{self.path}: an encoder-decoder model ({config.model_type}); the hf backend "
                               "embeds with encoder-only or decoder-only models")
        n_layers, dim = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
        if not (isinstance(n_layers, int) and n_layers > 0 and isinstance(dim, int) and dim > 0):
            raise EvoscanError(f"{self.path}: config.json gives no positive num_hidden_layers and hidden_size "
                               f"(found {n_layers!r}, {dim!r}); give the config the model was saved with")
        if not -(n_layers + 1) <= self.layer <= n_layers:
            raise UsageError(f"layer {self.layer} does not exist: the model has hidden states 0..{n_layers} "
                             "(0 = embeddings, -1 = last)")
        self.dim, self.architecture = dim, config.model_type
        self._digest = directory_digest(self.path)

    # The model is loaded on first use, so a run that reuses its embeddings never loads it; what
    # the provenance needs comes from config.json. Loading checks what transformers would only
    # warn about or fail on later: weights that do not fill the model, a tokenizer of another model.

    @functools.cached_property
    def _loaded(self):
        import torch
        from transformers import AutoModel, AutoTokenizer

        log.info("hf: loading %s", self.path)
        with _quiet_transformers():
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            except Exception as err:  # a missing, damaged or foreign tokenizer, in many kinds
                raise EvoscanError(f"{self.path}: cannot load the tokenizer ({first_line(err)})") from None
            try:
                model, info = AutoModel.from_pretrained(self.path, local_files_only=True, output_loading_info=True)
            except pickle.UnpicklingError:
                raise EvoscanError(f"{self.path}: refused to load weights that are not plain tensors (a damaged file, "
                                   "or Python objects whose loading could run code); use safetensors weights") from None
            except Exception as err:  # missing, damaged, truncated or misfit files, a package the model needs
                if "ignore_mismatched_sizes" in str(err):  # (its details are in a report we silence)
                    raise EvoscanError(f"{self.path}: the weights have other shapes than config.json gives: a "
                                       "config that does not match the checkpoint") from None
                raise EvoscanError(f"{self.path}: cannot load the model ({first_line(err)})") from None
            if tokenizer.special_tokens_map.get("pad_token") is None:
                raise EvoscanError(f"{self.path}: the tokenizer has no padding token, which batches of windows "
                                   "need; set tokenizer.pad_token and save the tokenizer again")
            tokens = tokenizer.convert_ids_to_tokens(tokenizer(_DNA, add_special_tokens=False)["input_ids"])
            if re.sub("[^ACGT]", "", "".join(tokens).upper()) != _DNA:  # an unknown token, or letters dropped
                raise EvoscanError(f"{self.path}: the tokenizer does not keep the letters A, C, G and T of plain DNA: "
                                   "its files are missing, or it is not a DNA model's tokenizer, or it expects "
                                   "k-mers separated by spaces")
            probe = tokenizer([_DNA], return_tensors="pt")
        self._check_tokens(probe["input_ids"], model, len(_DNA))
        # Weights the checkpoint lacks are left random: harmless in a head the forward never runs (or
        # in the pooler, which no hidden state passes through), fatal in a layer.
        missing = [key for key in info["missing_keys"] if "pooler" not in key.split(".")]
        ran = _modules_run(model, probe) if missing else set()
        missing = sorted(key for key in missing if key.rpartition(".")[0] in ran)
        if missing or info["mismatched_keys"]:
            example = missing[0] if missing else next(iter(info["mismatched_keys"]))[0]
            raise EvoscanError(f"{self.path}: the weights do not fill the model ({len(missing)} tensors missing, "
                               f"{len(info['mismatched_keys'])} of another shape, e.g. {example}): a partial or "
                               "damaged checkpoint, or a config.json that does not match it")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return tokenizer, model.eval().to(device), device

    def _pooled(self, seqs: list[str]) -> np.ndarray:
        import torch

        tokenizer, model, device = self._loaded
        with _quiet_transformers():  # (a window longer than the tokenizer's own maximum is warned about)
            enc = tokenizer(seqs, padding=True, return_tensors="pt", return_special_tokens_mask=True)
        self._check_tokens(enc["input_ids"], model, max(map(len, seqs)))
        special = enc.pop("special_tokens_mask")
        real = (enc["attention_mask"].bool() & ~special.bool()).to(device)
        with torch.inference_mode():
            out = model(**{k: v.to(device) for k, v in enc.items()}, output_hidden_states=True)
        return pool(out.hidden_states[self.layer].float(), real, self.pooling)

    def _check_tokens(self, ids, model, longest_bp: int) -> None:
        """Refuse what the model would fail on deep inside: more tokens than it has positions, or
        token ids beyond its vocabulary."""
        limit = _max_tokens(model)
        if limit is not None and ids.shape[1] > limit:
            raise EvoscanError(f"windows of {longest_bp} bp are {ids.shape[1]} tokens, more than the {limit} "
                               f"positions of {self.path}; use a smaller --window-size")
        try:
            vocabulary = model.get_input_embeddings().num_embeddings
        except (AttributeError, NotImplementedError):  # no plain embedding table: nothing to check against
            vocabulary = None
        if vocabulary is not None and int(ids.max()) >= vocabulary:
            raise EvoscanError(f"{self.path}: the tokenizer gives token id {int(ids.max())}, beyond the model's "
                               f"{vocabulary} embeddings: the tokenizer does not belong to this model")

    def embed(self, seqs: list[str]) -> np.ndarray:
        return embed_pooled(self._pooled, seqs, self.pooling)

    def provenance(self) -> dict:
        versions = {}
        for package in ("transformers", "torch"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[package] = importlib.metadata.version(package)
        return {"backend": self.name, "model": str(self.path), "model_digest": self._digest,
                "architecture": self.architecture, "layer": self.layer,
                "pooling": self.pooling, "uppercase": True, "versions": versions}

    identity = provenance  # known from config.json and the directory, before the model loads

    def close(self) -> None:
        """Drop the model and tokenizer; a later call loads them again."""
        self.__dict__.pop("_loaded", None)


@register("hf")
def make(**options) -> HFBackend:
    return HFBackend(**options)
