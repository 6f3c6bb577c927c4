#!/usr/bin/env python3
"""Writes a Llama checkpoint folder (config.json, *.safetensors, tokenizer.json)
as one GGUF file, model and tokenizer, with the PyPI `gguf` package (gguf-py,
llama.cpp's converter library) the way llama.cpp's convert_hf_to_gguf.py lays
out a Llama 3 model: tensor names blk.N.*, attn_q / attn_k rows permuted for
ggml's rope, rope_freqs from `rope_scaling` (rope_type llama3), no output
tensor when the embeddings are tied, 2-D weights in BF16 (the checkpoint's
bits), 1-D norms in F32, and the vocabulary as make_vocab_gguf.py writes it.
Written here, apart from SafeRoute's own GGUF writer, so the test compares the
engine's GGUF path with its safetensors path on the same weights.

Usage: make_guard_gguf.py MODEL_DIR PRE_NAME OUT.gguf
Exit 77 (a skip for the tests) when numpy or `gguf` is missing.
"""
import json
import math
import os
import pathlib
import struct
import sys
import tempfile

try:
    import gguf
    import numpy as np
except ImportError as e:
    print(f"make_guard_gguf.py: {e} (scripts/requirements-test.txt)", file=sys.stderr)
    sys.exit(77)

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src" / "tokenizer" / "testdata"))
import make_vocab_gguf  # noqa: E402

LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def read_bf16_tensors(model_dir):
    """{name: uint16 array} of every BF16 tensor of the checkpoint's shards."""
    index = model_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values()))
             if index.exists() else ["model.safetensors"])
    out = {}
    for name in files:
        blob = (model_dir / name).read_bytes()
        (n,) = struct.unpack("<Q", blob[:8])
        for key, info in json.loads(blob[8:8 + n]).items():
            if key == "__metadata__":
                continue
            if info["dtype"] != "BF16":
                sys.exit(f"{name}: {key}: dtype {info['dtype']}, this script takes BF16")
            begin, end = info["data_offsets"]
            out[key] = np.frombuffer(blob[8 + n + begin:8 + n + end], dtype="<u2").reshape(
                info["shape"])
    return out


def gguf_name(hf_name):
    fixed = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<module...>.weight
    return f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:-1])]}.weight"


def permute_for_ggml_rope(w, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute: per head, rotate-half row
    order -> interleaved pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def llama3_rope_factors(config, head_dim):
    """The per-frequency divisors the converter stores as rope_freqs.weight."""
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type") != "llama3":
        return None
    base = config.get("rope_theta", 10000.0)
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    factors = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi / (1.0 / base ** (i / head_dim))
        if wavelen < old_context / high:
            factors.append(1.0)
        elif wavelen > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model_dir, pre, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        sys.exit(f"{model_dir}/config.json: model_type {config.get('model_type')}, not llama")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim", config["hidden_size"] // heads)
    tensors = read_bf16_tensors(model_dir)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".gguf.tmp")
    os.close(fd)
    writer = gguf.GGUFWriter(tmp, arch="llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokens, types = make_vocab_gguf.tokens_and_types(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(
        writer, quiet=True)

    factors = llama3_rope_factors(config, head_dim)
    if factors is not None:
        writer.add_tensor("rope_freqs.weight", factors)
    for hf_name, bits in tensors.items():
        name = gguf_name(hf_name)
        if name.endswith("attn_q.weight"):
            bits = permute_for_ggml_rope(bits, heads)
        elif name.endswith("attn_k.weight"):
            bits = permute_for_ggml_rope(bits, kv_heads)
        if bits.ndim == 1:
            writer.add_tensor(name, bf16_to_f32(bits))
        else:
            raw = np.ascontiguousarray(bits).view(np.uint8)  # [rows, 2 * cols] bytes
            writer.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
