"""A minimal ctypes binding to llama.cpp's C API, for recording reference data.

llama.cpp is NOT part of this project. It is built outside the repository and
this module only loads its shared library, found through the environment
variable LLAMA_CPP_BIN (the folder of the build holding libllama.so; llama.cpp
puts its shared libraries next to its binaries). The struct layouts below are
those of include/llama.h at llama.cpp commit
c392e5094deaf2d1a7c18683214f007fad3fe42b (February 2025) and nothing else:
`Llama.__init__` checks that the library's default parameters read back as
that header documents them, so a different build is refused instead of being
misread.

Why ctypes and not llama-cpp-python: the reference data must come from the
same llama.cpp build (commit c392e509) as `llama-tokenize` and
`llama-quantize`; llama-cpp-python bundles and builds another llama.cpp.
Standard library only.
"""

import ctypes
import os

GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1


class ModelParams(ctypes.Structure):
    _fields_ = [
        ("devices", ctypes.c_void_p),
        ("n_gpu_layers", ctypes.c_int32),
        ("split_mode", ctypes.c_int),
        ("main_gpu", ctypes.c_int32),
        ("tensor_split", ctypes.c_void_p),
        ("progress_callback", ctypes.c_void_p),
        ("progress_callback_user_data", ctypes.c_void_p),
        ("kv_overrides", ctypes.c_void_p),
        ("vocab_only", ctypes.c_bool),
        ("use_mmap", ctypes.c_bool),
        ("use_mlock", ctypes.c_bool),
        ("check_tensors", ctypes.c_bool),
    ]


class ContextParams(ctypes.Structure):
    _fields_ = [
        ("n_ctx", ctypes.c_uint32),
        ("n_batch", ctypes.c_uint32),
        ("n_ubatch", ctypes.c_uint32),
        ("n_seq_max", ctypes.c_uint32),
        ("n_threads", ctypes.c_int32),
        ("n_threads_batch", ctypes.c_int32),
        ("rope_scaling_type", ctypes.c_int),
        ("pooling_type", ctypes.c_int),
        ("attention_type", ctypes.c_int),
        ("rope_freq_base", ctypes.c_float),
        ("rope_freq_scale", ctypes.c_float),
        ("yarn_ext_factor", ctypes.c_float),
        ("yarn_attn_factor", ctypes.c_float),
        ("yarn_beta_fast", ctypes.c_float),
        ("yarn_beta_slow", ctypes.c_float),
        ("yarn_orig_ctx", ctypes.c_uint32),
        ("defrag_thold", ctypes.c_float),
        ("cb_eval", ctypes.c_void_p),
        ("cb_eval_user_data", ctypes.c_void_p),
        ("type_k", ctypes.c_int),
        ("type_v", ctypes.c_int),
        ("logits_all", ctypes.c_bool),
        ("embeddings", ctypes.c_bool),
        ("offload_kqv", ctypes.c_bool),
        ("flash_attn", ctypes.c_bool),
        ("no_perf", ctypes.c_bool),
        ("abort_callback", ctypes.c_void_p),
        ("abort_callback_data", ctypes.c_void_p),
    ]


class Batch(ctypes.Structure):
    _fields_ = [
        ("n_tokens", ctypes.c_int32),
        ("token", ctypes.POINTER(ctypes.c_int32)),
        ("embd", ctypes.POINTER(ctypes.c_float)),
        ("pos", ctypes.POINTER(ctypes.c_int32)),
        ("n_seq_id", ctypes.POINTER(ctypes.c_int32)),
        ("seq_id", ctypes.POINTER(ctypes.POINTER(ctypes.c_int32))),
        ("logits", ctypes.POINTER(ctypes.c_int8)),
    ]


# What llama_context_default_params() returns at c392e509 (src/llama.cpp);
# n_threads is GGML_DEFAULT_N_THREADS (4).
_EXPECTED_CONTEXT_DEFAULTS = dict(
    n_ctx=512, n_batch=2048, n_ubatch=512, n_seq_max=1, n_threads=4,
    n_threads_batch=4, rope_scaling_type=-1, pooling_type=-1, attention_type=-1,
    rope_freq_base=0.0, rope_freq_scale=0.0, yarn_ext_factor=-1.0,
    yarn_attn_factor=1.0, yarn_beta_fast=32.0, yarn_beta_slow=1.0,
    yarn_orig_ctx=0, defrag_thold=-1.0, cb_eval=None, cb_eval_user_data=None,
    type_k=GGML_TYPE_F16, type_v=GGML_TYPE_F16, logits_all=False,
    embeddings=False, offload_kqv=True, flash_attn=False, no_perf=True,
    abort_callback=None, abort_callback_data=None)
_EXPECTED_MODEL_DEFAULTS = dict(
    devices=None, n_gpu_layers=0, split_mode=1, main_gpu=0, tensor_split=None,
    progress_callback=None, progress_callback_user_data=None,
    kv_overrides=None, vocab_only=False, use_mmap=True, use_mlock=False,
    check_tensors=False)


def _check_defaults(struct, expected, what):
    for name, value in expected.items():
        got = getattr(struct, name)
        if got != value:
            raise RuntimeError(
                f"{what}.{name} reads {got!r}, expected {value!r}: this libllama "
                "is not llama.cpp c392e509 (struct layout differs)")


def _load_library():
    bin_dir = os.environ.get("LLAMA_CPP_BIN")
    if not bin_dir:
        raise SystemExit("set LLAMA_CPP_BIN to the llama.cpp build folder holding libllama.so")
    lib = ctypes.CDLL(os.path.join(bin_dir, "libllama.so"))
    c = ctypes
    sig = {
        "llama_backend_init": ([], None),
        "llama_log_set": ([c.c_void_p, c.c_void_p], None),
        "llama_model_default_params": ([], ModelParams),
        "llama_context_default_params": ([], ContextParams),
        "llama_model_load_from_file": ([c.c_char_p, ModelParams], c.c_void_p),
        "llama_model_free": ([c.c_void_p], None),
        "llama_init_from_model": ([c.c_void_p, ContextParams], c.c_void_p),
        "llama_free": ([c.c_void_p], None),
        "llama_model_get_vocab": ([c.c_void_p], c.c_void_p),
        "llama_vocab_n_tokens": ([c.c_void_p], c.c_int32),
        "llama_tokenize": ([c.c_void_p, c.c_char_p, c.c_int32, c.POINTER(c.c_int32),
                            c.c_int32, c.c_bool, c.c_bool], c.c_int32),
        "llama_token_to_piece": ([c.c_void_p, c.c_int32, c.c_char_p, c.c_int32, c.c_int32,
                                  c.c_bool], c.c_int32),
        "llama_batch_init": ([c.c_int32, c.c_int32, c.c_int32], Batch),
        "llama_batch_free": ([Batch], None),
        "llama_decode": ([c.c_void_p, Batch], c.c_int32),
        "llama_get_logits_ith": ([c.c_void_p, c.c_int32], c.POINTER(c.c_float)),
        "llama_kv_cache_clear": ([c.c_void_p], None),
    }
    for name, (args, res) in sig.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib


_LOG_CALLBACK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_silent = _LOG_CALLBACK_TYPE(lambda level, text, user: None)


class Llama:
    """One model and one context: F32 KV cache, no flash attention, CPU only."""

    def __init__(self, model_path, n_ctx=1024, n_threads=2, kv_type=GGML_TYPE_F32,
                 quiet=True):
        self.lib = _load_library()
        if quiet:
            self.lib.llama_log_set(ctypes.cast(_silent, ctypes.c_void_p), None)
        self.lib.llama_backend_init()
        mp = self.lib.llama_model_default_params()
        _check_defaults(mp, _EXPECTED_MODEL_DEFAULTS, "llama_model_params")
        self.model = self.lib.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {model_path}")
        cp = self.lib.llama_context_default_params()
        _check_defaults(cp, _EXPECTED_CONTEXT_DEFAULTS, "llama_context_params")
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.type_k = kv_type
        cp.type_v = kv_type
        cp.flash_attn = False
        self.ctx = self.lib.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.vocab = self.lib.llama_model_get_vocab(self.model)
        self.n_vocab = self.lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = n_ctx

    def close(self):
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)

    def tokenize(self, text, parse_special=False):
        """Ids of `text`, no BOS (add_special=false)."""
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (ctypes.c_int32 * cap)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, cap, False, parse_special)
        if n < 0:
            raise RuntimeError(f"llama_tokenize needs {-n} slots")
        return list(buf[:n])

    def detokenize(self, ids):
        """The bytes the ids stand for (control tokens written out), as text
        (invalid UTF-8 replaced)."""
        out = b""
        buf = ctypes.create_string_buffer(256)
        for tok in ids:
            n = self.lib.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, True)
            if n < 0:
                raise RuntimeError(f"token {tok}: piece longer than {len(buf)} bytes")
            out += buf.raw[:n]
        return out.decode("utf-8", errors="replace")

    def eval(self, ids, start_pos=0, all_logits=False):
        """Runs `ids` at positions start_pos.. (the KV cache holds what came
        before). Returns a list of logit rows (ctypes float pointers, valid
        until the next call): one per token if all_logits, else the last."""
        n = len(ids)
        if start_pos + n > self.n_ctx:
            raise ValueError(f"{start_pos + n} tokens exceed n_ctx {self.n_ctx}")
        batch = self.lib.llama_batch_init(n, 0, 1)
        try:
            for i, tok in enumerate(ids):
                batch.token[i] = tok
                batch.pos[i] = start_pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (all_logits or i == n - 1) else 0
            batch.n_tokens = n
            rc = self.lib.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        finally:
            self.lib.llama_batch_free(batch)
        rows = range(n) if all_logits else [n - 1]
        return [self.lib.llama_get_logits_ith(self.ctx, i) for i in rows]

    def clear(self):
        self.lib.llama_kv_cache_clear(self.ctx)
