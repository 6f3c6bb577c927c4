"""Writes the gguf_fuzz seed corpus (and the files gguf_test reads as GGUFs
written by an independent writer) with the PyPI `gguf` package's GGUFWriter:
    build/venv/bin/python src/io/testdata/fuzz/make_gguf_seeds.py
Deterministic (fixed seed); re-running rewrites the same bytes."""
import os

import gguf
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_fuzz")


def make(path, tensors, extra=lambda w: None, alignment=None):
    w = gguf.GGUFWriter(path, "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_head_count(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    extra(w)
    for name, arr, qtype in tensors:
        if qtype is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_shape=arr.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenizer(w):
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(["a", "b", "<s>", "\u0120x"])
    w.add_token_types([1, 1, 3, 1])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(2)
    w.add_bool("tokenizer.ggml.add_bos_token", True)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1)
    make(f"{OUT}/small_f32.gguf",
         [("token_embd.weight", rng.standard_normal((4, 32)).astype(np.float32), None),
          ("output_norm.weight", np.ones(32, np.float32), None)], tokenizer)
    q8 = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32),
                              gguf.GGMLQuantizationType.Q8_0)
    q4k = rng.integers(0, 256, (1, 144), dtype=np.uint8)  # one raw Q4_K block, shape [1, 256]
    make(f"{OUT}/quantized.gguf",
         [("a", q8, gguf.GGMLQuantizationType.Q8_0), ("b", q4k, gguf.GGMLQuantizationType.Q4_K),
          ("c", rng.standard_normal(3).astype(np.float16), None)], alignment=64)
    make(f"{OUT}/metadata_only.gguf", [], tokenizer)


if __name__ == "__main__":
    main()
