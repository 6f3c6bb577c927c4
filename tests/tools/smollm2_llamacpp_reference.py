#!/usr/bin/env python3
"""llama.cpp reference logits and greedy tokens for SmolLM2-135M-Instruct (F32 copy).

llama.cpp is NOT part of this project: it is built outside the repository;
this script loads its libllama.so through tests/tools/llamacpp_ctypes.py,
found with the environment variable LLAMA_CPP_BIN. Data committed in
tests/data/smollm2/ was made with llama.cpp c392e5094deaf2d1a7c18683214f007fad3fe42b.

Model: the F32 copy of the Q4_1 file
  (llama-quantize --allow-requantize SmolLM2-135M-Instruct.Q4_1.gguf \
       SmolLM2-135M-Instruct.F32.gguf F32),
so every weight is the exact value the Q4_1/Q8_0 blocks encode, and llama.cpp
runs F32 matmuls (no 8-bit quantization of activations). Context: KV cache
F32 (type_k = type_v = GGML_TYPE_F32), no flash attention, 2 threads, one
llama_decode per sequence (n_batch = n_ubatch = n_ctx = 512).

Writes into OUT_DIR:
  llamacpp_f32_logits.safetensors  logits_{i} F32 [49152]: last-position
      logits of sequence i; ids_{i} I32 [T_i]: its token ids.
  llamacpp_f32_sequences.json      the sequences: ids and the text they came from.
  greedy.jsonl                     one chat prompt a line: the user text, the
      prompt ids (chat template rendered by hand, tests/tools/smollm2_chat.py),
      16 greedy tokens (argmax, not stopped at <|im_end|>), the llama.cpp top-1
      minus top-2 logit margin at each step, and the decoded text.

Usage (in a venv with numpy and safetensors):
  LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin \
  python3 tests/tools/smollm2_llamacpp_reference.py SmolLM2-135M-Instruct.F32.gguf tests/data/smollm2
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_ctypes  # noqa: E402
import smollm2_chat  # noqa: E402

LONG_TEXT = """The history of computing is a story of layers. In 1945, John von Neumann described a machine that
kept its program in the same memory as its data; by 1951 the UNIVAC I had sold 46 units at about
$1,000,000 each. Transistors replaced vacuum tubes (1947-1960), integrated circuits followed, and in
1971 the Intel 4004 put 2,300 transistors on one chip running at 740 kHz.

Software grew alongside: FORTRAN (1957), COBOL (1959), C (1972), and later languages such as Python:

    def fib(n):
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a

Today a phone holds ~15 billion transistors, and models like SmolLM2 (135M parameters) run on it.
Whether that is "small" depends on who you ask — naïve estimates in 1965 said 65,000 components per
chip by 1975; Gordon Moore's guess held for decades. Les ordinateurs, les téléphones, 计算机 and
コンピューター all share this lineage. What comes next? Nobody knows, but it won't be boring!"""

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How many legs does a spider have? Answer in one sentence.",
]

GREEDY_STEPS = 16


def logits_array(row_ptr, n_vocab):
    return np.ctypeslib.as_array(row_ptr, shape=(n_vocab,)).astype(np.float32).copy()


def make_sequences(llm):
    one = llm.tokenize("Hello")
    assert len(one) == 1, one
    short = smollm2_chat.render_ids(lambda t, s: llm.tokenize(t, s), "Hi! Who are you?",
                                    system="Be brief.")
    long = llm.tokenize(LONG_TEXT)[:250]
    assert len(long) == 250, len(long)
    return [
        dict(name="one_token", text="Hello", ids=one),
        dict(name="chat_short", text=smollm2_chat.render_text("Hi! Who are you?", "Be brief."),
             ids=short),
        dict(name="long_250", text="first 250 tokens of: " + LONG_TEXT, ids=long),
    ]


def greedy(llm, prompt_ids, steps):
    llm.clear()
    row = llm.eval(prompt_ids)[0]
    pos = len(prompt_ids)
    tokens, margins = [], []
    for _ in range(steps):
        logits = logits_array(row, llm.n_vocab)
        top2 = np.argsort(-logits)[:2]
        tokens.append(int(top2[0]))
        margins.append(float(logits[top2[0]] - logits[top2[1]]))
        row = llm.eval([tokens[-1]], start_pos=pos)[0]
        pos += 1
    return tokens, margins


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_path, out_dir = sys.argv[1], sys.argv[2]
    llm = llamacpp_ctypes.Llama(model_path, n_ctx=512, n_threads=2,
                                kv_type=llamacpp_ctypes.GGML_TYPE_F32)
    sequences = make_sequences(llm)
    tensors = {}
    for i, seq in enumerate(sequences):
        llm.clear()
        tensors[f"logits_{i}"] = logits_array(llm.eval(seq["ids"])[0], llm.n_vocab)
        tensors[f"ids_{i}"] = np.asarray(seq["ids"], dtype=np.int32)
        seq["argmax"] = int(np.argmax(tensors[f"logits_{i}"]))
        seq["tokens"] = len(seq["ids"])
    save_file(tensors, os.path.join(out_dir, "llamacpp_f32_logits.safetensors"),
              metadata={"model": os.path.basename(model_path),
                        "llama_cpp_commit": "c392e5094deaf2d1a7c18683214f007fad3fe42b",
                        "kv_cache": "f32"})
    with open(os.path.join(out_dir, "llamacpp_f32_sequences.json"), "w") as f:
        json.dump(dict(model=os.path.basename(model_path), sequences=sequences), f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "greedy.jsonl"), "w") as f:
        for user in CHAT_PROMPTS:
            ids = smollm2_chat.render_ids(lambda t, s: llm.tokenize(t, s), user)
            tokens, margins = greedy(llm, ids, GREEDY_STEPS)
            f.write(json.dumps(dict(user=user, system=smollm2_chat.DEFAULT_SYSTEM,
                                    prompt_ids=ids, greedy=tokens,
                                    greedy_text=llm.detokenize(tokens),
                                    margins=[round(m, 4) for m in margins]),
                               ensure_ascii=False) + "\n")
    llm.close()
    print(json.dumps([dict(name=s["name"], tokens=s["tokens"], argmax=s["argmax"])
                      for s in sequences]))


if __name__ == "__main__":
    main()
