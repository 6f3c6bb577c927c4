#!/usr/bin/env python3
"""Seeds for tokenizer_gguf_fuzz: [u16 n][n bytes of text][GGUF image], the
image a small gpt2 vocabulary (the 256 bytes, a few merges, two specials)
written with the PyPI `gguf` package, one seed per pre-tokenizer name.

Usage: make_tokenizer_seeds.py OUT_DIR
"""

import os
import struct
import sys
import tempfile

import gguf


def byte_symbols():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def vocab_image(pre, drop_bytes=()):
    tokens = byte_symbols() + ["he", "ll", "hell", "Ġw", "or", "Ġwor", "12", "<|s|>", "<tool>"]
    types = [gguf.TokenType.NORMAL] * (len(tokens) - 2) + [gguf.TokenType.CONTROL,
                                                           gguf.TokenType.USER_DEFINED]
    for b in drop_bytes:
        types[b] = gguf.TokenType.UNUSED
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.gguf")
        w = gguf.GGUFWriter(path, arch="llama")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(["h e", "l l", "he ll", "Ġ w", "o r", "Ġw or", "1 2"])
        w.add_bos_token_id(len(tokens) - 2)
        w.add_add_bos_token(True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(path, "rb") as f:
            return f.read()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    text = "hello world 12 <|s|> ٣ don't\n\n".encode()
    seeds = {"smollm": vocab_image("smollm"), "llama_bpe": vocab_image("llama-bpe"),
             "qwen2": vocab_image("qwen2"), "smollm_missing_bytes": vocab_image("smollm", (4, 0xF1))}
    for name, image in seeds.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(struct.pack("<H", len(text)) + text + image)


if __name__ == "__main__":
    main()
