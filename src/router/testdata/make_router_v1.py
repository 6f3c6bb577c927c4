#!/usr/bin/env python3
"""Writes router_v1.safetensors (a tiny Bayesian-MLP router file, format
version 1) and router_v1_expected.json (its scores on a few inputs).

Independent of the C++ code: plain Python writes the safetensors bytes and
computes the posterior-mean forward pass (Linear -> LayerNorm -> ReLU, twice,
then Linear; sigmoid) in double precision. Run once per format version; the
outputs are committed as a regression fixture (router_file_test.cc)."""
import json
import math
import os
import struct

D, H = 4, 3
HERE = os.path.dirname(os.path.abspath(__file__))


def lcg_values(seed, n, scale):
    """Deterministic pseudo-random values in [-scale, scale], rounded to float32."""
    out, x = [], seed
    for _ in range(n):
        x = (1103515245 * x + 12345) % (1 << 31)
        v = (x / (1 << 31) * 2 - 1) * scale
        out.append(struct.unpack('<f', struct.pack('<f', v))[0])
    return out


def f32(v):
    return struct.unpack('<f', struct.pack('<f', v))[0]


params = {}  # name -> (shape, values)
for i, (fan_in, fan_out) in enumerate([(D, H), (H, H), (H, 1)]):
    params[f'fc{i}.weight'] = ([fan_out, fan_in], lcg_values(10 + i, fan_in * fan_out, 0.9))
    params[f'fc{i}.bias'] = ([fan_out], lcg_values(20 + i, fan_out, 0.3))
    params[f'fc{i}.weight_log_sigma'] = ([fan_out, fan_in], [f32(math.log(0.1))] * (fan_in * fan_out))
    params[f'fc{i}.bias_log_sigma'] = ([fan_out], [f32(math.log(0.05))] * fan_out)
    if i < 2:
        params[f'ln{i}.weight'] = ([fan_out], [f32(1.0 + 0.1 * k) for k in range(fan_out)])
        params[f'ln{i}.bias'] = ([fan_out], [f32(0.2 - 0.15 * k) for k in range(fan_out)])

config = {
    'type': 'bnn', 'feature_dim': D, 'hidden_dim': H, 'prior_sigma': 0.1,
    'fingerprint': 'tiny-guard:last-layer', 'threshold': 0.4,
    'calibration': [[0.2, 0.6, -1], [0.4, 0.3, -1], [0.7, 0.1, -1]],
    'calibration_source': {'examples': 10},
    'training': {'examples': 100, 'positives': 10, 'seed': 1},
}


def write_safetensors(path):
    header, blobs, offset = {}, [], 0
    for name, (shape, values) in params.items():
        blob = struct.pack(f'<{len(values)}f', *values)
        header[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header['__metadata__'] = {'format': 'saferoute-router', 'version': '1',
                              'config': json.dumps(config)}
    text = json.dumps(header).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def forward(x):
    def dense(i, inp):
        (out_dim, in_dim), w = params[f'fc{i}.weight']
        b = params[f'fc{i}.bias'][1]
        return [sum(w[o * in_dim + k] * inp[k] for k in range(in_dim)) + b[o] for o in range(out_dim)]

    def norm_relu(i, h):
        mean = sum(h) / len(h)
        var = sum((v - mean) ** 2 for v in h) / len(h)
        g, b = params[f'ln{i}.weight'][1], params[f'ln{i}.bias'][1]
        return [max(0.0, g[k] * (h[k] - mean) / math.sqrt(var + 1e-5) + b[k]) for k in range(len(h))]

    a = norm_relu(0, dense(0, x))
    a = norm_relu(1, dense(1, a))
    z = dense(2, a)[0]
    return 1 / (1 + math.exp(-z))


inputs = [[f32(v) for v in row] for row in
          ([0.5, -1.0, 2.0, 0.1], [-0.3, 0.8, -1.2, 1.5], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])]
write_safetensors(os.path.join(HERE, 'router_v1.safetensors'))
with open(os.path.join(HERE, 'router_v1_expected.json'), 'w') as f:
    json.dump({'inputs': inputs, 'scores': [forward(x) for x in inputs]}, f, indent=1)
    f.write('\n')
