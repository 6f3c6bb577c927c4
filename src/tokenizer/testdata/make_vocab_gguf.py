#!/usr/bin/env python3
"""Writes a vocabulary-only GGUF (no tensors) from a Hugging Face tokenizer
folder, with the tokenizer keys llama.cpp's convert_hf_to_gguf.py writes for a
`gpt2` (byte-level BPE) vocabulary, using the PyPI `gguf` package (gguf-py,
the converter's own library):

  tokenizer.ggml.model      "gpt2"
  tokenizer.ggml.pre        the name given (llama-bpe for Llama 3)
  tokenizer.ggml.tokens     id -> token: model.vocab's byte-level strings,
                            added tokens' content, "[PAD<id>]" for ids
                            without a token (as get_vocab_base does)
  tokenizer.ggml.token_type 1 normal, 3 control (added, special), 4
                            user-defined (added, not special), 5 unused
  tokenizer.ggml.merges, bos/eos/... ids, add_bos/eos_token
                            from gguf.SpecialVocab (what the converter calls)

Usage: make_vocab_gguf.py TOKENIZER_DIR PRE_NAME OUT.gguf
Exit 77 (a skip for the tests) when the `gguf` package is missing.
"""

import json
import os
import pathlib
import sys
import tempfile

try:
    import gguf
except ImportError:
    print("make_vocab_gguf.py: the PyPI package `gguf` is not installed "
          "(scripts/requirements-test.txt)", file=sys.stderr)
    sys.exit(77)


def tokens_and_types(tokenizer):
    """The converter's get_vocab_base(), on tokenizer.json alone."""
    vocab = tokenizer["model"]["vocab"]
    added = {t["id"]: t for t in tokenizer.get("added_tokens") or []}
    size = max(list(vocab.values()) + list(added)) + 1
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(size):
        if i in added:
            tokens.append(added[i]["content"])
            special = added[i].get("special", False)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    return tokens, types


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    tokenizer_dir, pre, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokens, types = tokens_and_types(tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed: concurrent test processes
    # never see a half-written file.
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".gguf.tmp")
    os.close(fd)
    writer = gguf.GGUFWriter(tmp, arch="llama")
    writer.add_name(tokenizer_dir.name + " vocabulary")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(
        writer, quiet=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(f"{out}: {len(tokens)} tokens")


if __name__ == "__main__":
    main()
