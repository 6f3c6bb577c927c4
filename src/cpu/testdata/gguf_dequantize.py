"""Reference dequantizer for dequantize_test: the PyPI `gguf` package's
gguf.quants.dequantize (numpy ports of ggml's dequantize_row_*).

    python gguf_dequantize.py TYPE IN OUT
TYPE is a ggml type name (Q8_0, Q4_K, F16, BF16, ...); IN holds whole blocks
of that type (raw bytes); OUT receives the elements as little-endian float32.
Exit status 3 if the gguf package cannot be imported (the test says so)."""
import sys

try:
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
except ImportError as e:  # the venv lacks scripts/requirements-test.txt
    print(f"gguf_dequantize.py: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    type_name, src, dst = sys.argv[1:4]
    qtype = GGMLQuantizationType[type_name]
    raw = np.fromfile(src, dtype=np.uint8)
    if qtype == GGMLQuantizationType.F32:
        out = raw.view(np.float32)
    else:
        # gguf wants the byte rows of a [rows, row_bytes] tensor; one row of
        # all the blocks is fine.
        with np.errstate(all="ignore"):  # inf/NaN scales in random blocks
            out = dequantize(raw.reshape(1, -1), qtype)
    with np.errstate(all="ignore"):
        np.asarray(out, dtype=np.float32).reshape(-1).tofile(dst)


if __name__ == "__main__":
    main()
