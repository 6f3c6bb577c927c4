#!/usr/bin/env python3
"""Independent float64 forward pass of a `llama` GGUF (reference for tests).

Written from the Llama model definition (as in Hugging Face transformers'
LlamaForCausalLM), not from llama.cpp or from this project's engine. Uses only
numpy and the PyPI `gguf` package: `gguf.GGUFReader` reads the file and
`gguf.quants.dequantize` turns every stored tensor (F32, F16, BF16, Q8_0,
Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, ...) into exact float32 values, which
are then widened to float64; every operation after that is float64.

The model, step by step (T tokens, hidden H, heads N, KV heads G, head dim D):
  x = token_embd[ids]                                       [T, H]
  per layer:
    h = RMSNorm(x) * attn_norm
    q = h Wq^T [T, N*D], k = h Wk^T, v = h Wv^T [T, G*D]
    RoPE on q and k (HF rotate_half convention, see below; frequencies
      base^(-2i/D), divided by rope_freqs[i] where the file has
      rope_freqs.weight: Llama 3 rope scaling as the converter stores it;
      positions divided by the factor for `linear` scaling)
    causal softmax(q k^T / sqrt(D)) v, query head n reads KV head n // (N/G)
    x += attn Wo^T
    h = RMSNorm(x) * ffn_norm
    x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
  logits = (RMSNorm(x) * output_norm) Wout^T, Wout = output.weight, or
    token_embd.weight when the file has none (tied embeddings).

Q/K row order. llama.cpp's converter permutes the rows of attn_q / attn_k of
`llama` models (convert_hf_to_gguf.py, `permute`: per head, row j*D/2 + i of
the checkpoint moves to row 2i + j) so that its RoPE can rotate adjacent pairs
(2i, 2i+1). This reference UNDOES the permutation at load and applies RoPE in
HF's rotate_half convention (pairs (i, i + D/2)). Why: the reference then is
the model's definition exactly as the original checkpoint and HF state it,
sharing nothing with llama.cpp's RoPE code, and its q/k per head are in the
checkpoint's order (what an engine that un-permutes at load also holds). The
two conventions give identical attention scores and logits.

Dequantization is per layer (a layer's weights in float64 live only while
that layer runs); the output matrix is applied in row chunks.

Usage (prints a JSON summary: argmax, top-5, timing):
  python3 tests/tools/llama_reference_forward.py MODEL.gguf --ids 1,2,3 \
      [--logits-out last_logits.npy] [--hidden-out states.npz]
  python3 tests/tools/llama_reference_forward.py MODEL.gguf --ids-json seqs.json \
      --logits-out logits.npy      (seqs.json: [[ids...], ...]; one row per sequence)
As a module: `ReferenceModel(path).forward([ids, ...], keep_hidden=False)`.
"""

import argparse
import json
import os
import sys
import time

# One BLAS thread unless the caller says otherwise: the matrices are small, and
# OpenBLAS's spinning threads slow it down many times over on a busy 2-core
# machine (measured: 5x576 @ 576x1536 in 1.8 ms with one thread, 67 ms with
# two while other jobs ran).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from gguf import GGUFReader, GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize  # noqa: E402


class GGUFModelError(ValueError):
    pass


def _field(reader, key, default=None, required=True):
    field = reader.fields.get(key)
    if field is None:
        if required and default is None:
            raise GGUFModelError(f"{reader.path}: missing metadata key {key}")
        return default
    return field.contents()


class ReferenceModel:
    def __init__(self, path):
        self.path = path
        self.reader = GGUFReader(path)
        r = self.reader
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise GGUFModelError(f"{path}: general.architecture is {arch!r}; this reference "
                                 "implements only 'llama'")
        self.n_layer = int(_field(r, "llama.block_count"))
        self.hidden = int(_field(r, "llama.embedding_length"))
        self.n_head = int(_field(r, "llama.attention.head_count"))
        self.n_kv = int(_field(r, "llama.attention.head_count_kv", self.n_head))
        self.head_dim = int(_field(r, "llama.attention.key_length",
                                   self.hidden // self.n_head))
        self.rope_dim = int(_field(r, "llama.rope.dimension_count", self.head_dim))
        if self.rope_dim != self.head_dim:
            raise GGUFModelError(f"{path}: partial RoPE (rope.dimension_count {self.rope_dim} "
                                 f"!= head dim {self.head_dim}) is not implemented")
        self.eps = float(_field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_field(r, "llama.rope.freq_base", 10000.0))
        scaling = _field(r, "llama.rope.scaling.type", "none", required=False)
        self.pos_scale = 1.0
        if scaling == "linear":
            self.pos_scale = 1.0 / float(_field(r, "llama.rope.scaling.factor"))
        elif scaling not in ("none", None):
            raise GGUFModelError(f"{path}: rope scaling type {scaling!r} is not implemented")
        if self.n_head % self.n_kv:
            raise GGUFModelError(f"{path}: {self.n_head} heads not a multiple of {self.n_kv} KV heads")
        self.tensors = {t.name: t for t in r.tensors}
        emb = self._tensor_info("token_embd.weight")
        self.vocab = int(emb.shape[1])
        self.output_name = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"
        factors = None
        if "rope_freqs.weight" in self.tensors:
            factors = self._dequant("rope_freqs.weight").reshape(-1)
        half = self.head_dim // 2
        inv_freq = self.rope_base ** (-np.arange(0, half, dtype=np.float64) * 2.0 / self.head_dim)
        if factors is not None:
            if factors.shape[0] != half:
                raise GGUFModelError(f"{path}: rope_freqs.weight has {factors.shape[0]} entries, "
                                     f"expected head_dim/2 = {half}")
            inv_freq = inv_freq / factors
        self.inv_freq = inv_freq  # [D/2]
        self.rope_factors = factors

    def _tensor_info(self, name):
        t = self.tensors.get(name)
        if t is None:
            raise GGUFModelError(f"{self.path}: missing tensor {name}")
        return t

    def _dequant(self, name, rows=None):
        """float64 array [rows, cols] (numpy order: the GGUF dims reversed)."""
        t = self._tensor_info(name)
        data = t.data
        if rows is not None:
            data = data[rows]
        out = dequantize(data, GGMLQuantizationType(t.tensor_type))
        dims = [int(d) for d in reversed(t.shape)]
        if rows is not None:
            dims[0] = len(rows)
        return np.asarray(out, dtype=np.float64).reshape(dims)

    def _unpermute(self, w, n_heads):
        """Inverse of the converter's permute: GGUF row h*D + 2i + j holds the
        checkpoint's row h*D + j*D/2 + i."""
        rows, cols = w.shape
        return w.reshape(n_heads, self.head_dim // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)

    def _rms_norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def _rope(self, x, positions):
        """x [heads, T, D] in rotate_half order."""
        angles = np.outer(positions * self.pos_scale, self.inv_freq)  # [T, D/2]
        cos = np.cos(np.concatenate([angles, angles], axis=-1))
        sin = np.sin(np.concatenate([angles, angles], axis=-1))
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def _attention(self, h, layer):
        T = h.shape[0]
        D = self.head_dim
        p = f"blk.{layer}."
        wq = self._unpermute(self._dequant(p + "attn_q.weight"), self.n_head)
        wk = self._unpermute(self._dequant(p + "attn_k.weight"), self.n_kv)
        wv = self._dequant(p + "attn_v.weight")
        q = (h @ wq.T).reshape(T, self.n_head, D).transpose(1, 0, 2)  # [N, T, D]
        k = (h @ wk.T).reshape(T, self.n_kv, D).transpose(1, 0, 2)  # [G, T, D]
        v = (h @ wv.T).reshape(T, self.n_kv, D).transpose(1, 0, 2)  # [G, T, D]
        positions = np.arange(T, dtype=np.float64)
        q = self._rope(q, positions)
        k = self._rope(k, positions)
        group = self.n_head // self.n_kv
        k = np.repeat(k, group, axis=0)  # [N, T, D]
        v = np.repeat(v, group, axis=0)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(D)  # [N, T, T]
        scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = (probs @ v).transpose(1, 0, 2).reshape(T, self.n_head * D)  # [T, N*D]
        return out @ self._dequant(p + "attn_output.weight").T

    def _mlp(self, h, layer):
        p = f"blk.{layer}."
        gate = h @ self._dequant(p + "ffn_gate.weight").T
        up = h @ self._dequant(p + "ffn_up.weight").T
        act = gate / (1.0 + np.exp(-gate)) * up
        return act @ self._dequant(p + "ffn_down.weight").T

    def forward(self, sequences, keep_hidden=False):
        """sequences: list of id lists. Returns (last-position logits
        [S, vocab] float64, hidden) where hidden, if kept, is per sequence a
        dict: embed [T, H], layer{L} [T, H] (residual after layer L, 1-based),
        final [T, H] (after the last norm)."""
        for s, ids in enumerate(sequences):
            if not ids:
                raise ValueError(f"sequence {s} is empty")
            bad = [i for i in ids if not 0 <= int(i) < self.vocab]
            if bad:
                raise ValueError(f"sequence {s}: ids {bad[:5]} outside the vocabulary [0, {self.vocab})")
        xs = []
        for ids in sequences:
            # Only the rows these ids need, dequantized.
            xs.append(self._dequant("token_embd.weight", rows=np.asarray(ids, dtype=np.int64)))
        hidden = [dict(embed=x.copy()) for x in xs] if keep_hidden else None
        for layer in range(self.n_layer):
            attn_norm = self._dequant(f"blk.{layer}.attn_norm.weight").reshape(-1)
            ffn_norm = self._dequant(f"blk.{layer}.ffn_norm.weight").reshape(-1)
            # Attention for every sequence, then the MLP: one dequantization
            # of each weight per layer however many sequences.
            xs = [x + self._attention(self._rms_norm(x, attn_norm), layer) for x in xs]
            xs = [x + self._mlp(self._rms_norm(x, ffn_norm), layer) for x in xs]
            if keep_hidden:
                for hs, x in zip(hidden, xs):
                    hs[f"layer{layer + 1}"] = x.copy()
        out_norm = self._dequant("output_norm.weight").reshape(-1)
        finals = [self._rms_norm(x, out_norm) for x in xs]
        if keep_hidden:
            for hs, f in zip(hidden, finals):
                hs["final"] = f
        last = np.stack([f[-1] for f in finals])  # [S, H]
        logits = np.empty((len(sequences), self.vocab), dtype=np.float64)
        chunk = 8192
        for start in range(0, self.vocab, chunk):
            rows = np.arange(start, min(start + chunk, self.vocab))
            logits[:, rows] = last @ self._dequant(self.output_name, rows=rows).T
        return logits, hidden


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--ids", help="comma-separated token ids (one sequence)")
    ap.add_argument("--ids-json", help="JSON file: a list of id lists")
    ap.add_argument("--logits-out", help=".npy of float64 last-position logits [S, vocab]")
    ap.add_argument("--hidden-out", help=".npz of float64 hidden states (seq{s}_{name})")
    args = ap.parse_args()
    if bool(args.ids) == bool(args.ids_json):
        ap.error("give exactly one of --ids and --ids-json")
    if args.ids:
        sequences = [[int(t) for t in args.ids.split(",")]]
    else:
        with open(args.ids_json) as f:
            sequences = json.load(f)
    t0 = time.perf_counter()
    try:
        model = ReferenceModel(args.model)
        logits, hidden = model.forward(sequences, keep_hidden=bool(args.hidden_out))
    except (GGUFModelError, ValueError) as e:
        sys.exit(f"error: {e}")
    seconds = time.perf_counter() - t0
    if args.logits_out:
        np.save(args.logits_out, logits)
    if args.hidden_out:
        np.savez(args.hidden_out, **{f"seq{s}_{k}": v for s, hs in enumerate(hidden)
                                     for k, v in hs.items()})
    summary = []
    for s, row in enumerate(logits):
        top = np.argsort(-row)[:5]
        summary.append(dict(tokens=len(sequences[s]), argmax=int(top[0]),
                            top5=[[int(i), float(row[i])] for i in top]))
    print(json.dumps(dict(model=args.model, seconds=round(seconds, 3), sequences=summary)))


if __name__ == "__main__":
    main()
