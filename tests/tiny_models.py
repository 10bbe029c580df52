"""Tiny randomly-initialised models and an offline byte-level BPE tokenizer (as the paper's B.1), no downloads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads can run many
# times slower than one when the other core is busy.
torch.set_num_threads(1)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 600):
    """A byte-level BPE trained on `texts`, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")


def tiny_t5(tokenizer, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer) + 8, d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=1,
                      num_decoder_layers=1, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                      dropout_rate=0.0, tie_word_embeddings=False)
    return T5ForConditionalGeneration(config)


def tiny_gpt2(tokenizer, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=512,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


def save(model, tokenizer, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def fixture_examples(shared_data: Path):
    """Every turn of the real-schema example files (both formats), as `Example`s."""
    from prosocial.data.formats import read_dialogues

    folder = shared_data / "prosocial_dialog_examples"
    return [e for path in sorted(folder.glob("*.json")) for d in read_dialogues(path) for e in d.examples()]


def corpus_texts(examples) -> list[str]:
    return [t for e in examples for t in (*e.context, e.response or "", *e.rots)]
