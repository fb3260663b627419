#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real architectures through the ONNX importer, compared with PyTorch.

For each torchvision architecture: random weights (weights=None, nothing is
downloaded) with randomised BatchNorm statistics and affine parameters (so
folding is really exercised), eval mode, exported with torch.onnx.export
(opset 13, plus opset 11 / 17 where the exporter supports them), imported
by the engine (tests/onnx_logits.c: dl_import_onnx -> model file -> load ->
forward on the same input) and compared with PyTorch's logits:
max |difference| <= 1e-4 x (logit range).

    onnx_torch_test.py ONNX_LOGITS_EXE [ARCH ...]

Exits 77 (skip) when torch / torchvision are not importable (Debian:
python3-torch, python3-torchvision); retries with /usr/bin/python3 first
when another interpreter runs this script.
"""
import os
import subprocess
import sys
import tempfile

TOLERANCE = 1e-4
DEFAULT_ARCHS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                 "efficientnet_b0", "regnet_y_400mf"]

try:
    import numpy as np
    import torch
    import torchvision
except ImportError:
    system = "/usr/bin/python3"
    if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
            and not os.environ.get("DL_ONNX_TORCH_REEXEC"):
        os.environ["DL_ONNX_TORCH_REEXEC"] = "1"
        os.execv(system, [system] + sys.argv)
    print("SKIP: torch / torchvision not installed (apt-get install python3-torch python3-torchvision)")
    sys.exit(77)


def randomise_norms(model, gen):
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            mod.running_var.copy_(torch.rand(c, generator=gen) * 0.8 + 0.6)
            mod.weight.data.copy_(torch.rand(c, generator=gen) * 0.8 + 0.6)
            mod.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)


def run(exe, arch, opset, tmp):
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    model = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        randomise_norms(model, gen)
    model.eval()
    x = torch.randn(1, 3, 224, 224, generator=gen)
    with torch.no_grad():
        ref = model(x).numpy().reshape(-1).astype(np.float64)
    onnx_path = os.path.join(tmp, f"{arch}-{opset}.onnx")
    torch.onnx.export(model, x, onnx_path, opset_version=opset, input_names=["input"],
                      output_names=["logits"])
    inp = os.path.join(tmp, "input.f32")
    x.numpy().astype("<f4").tofile(inp)
    out = os.path.join(tmp, f"{arch}-{opset}.safetensors")
    p = subprocess.run([exe, onnx_path, inp, out], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL {arch} opset {opset}: import/run failed: {p.stderr.strip()}")
        return False
    lines = p.stdout.strip().split("\n")
    got = np.array([float(v) for v in lines[:-1]], dtype=np.float64)
    if got.shape != ref.shape:
        print(f"FAIL {arch} opset {opset}: {got.shape[0]} logits, PyTorch has {ref.shape[0]}")
        return False
    rng = float(ref.max() - ref.min())
    diff = float(np.abs(got - ref).max())
    rel = diff / max(rng, 1e-12)
    ok = rel <= TOLERANCE and np.argmax(got) == np.argmax(ref)
    print(f"{'ok  ' if ok else 'FAIL'} {arch:20s} opset {opset}: max |diff| {diff:.3e}, logit range {rng:.3f}, "
          f"relative {rel:.2e} (bound {TOLERANCE:g}); engine graph: {lines[-1]}")
    return ok


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    archs = sys.argv[2:] or DEFAULT_ARCHS
    torch.set_num_threads(1)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            for opset in (13, 11, 17) if arch == archs[0] else (13,):
                try:
                    ok = run(exe, arch, opset, tmp)
                except Exception as e:  # an exporter that cannot write this opset
                    if opset != 13:
                        print(f"note {arch} opset {opset}: the exporter failed ({type(e).__name__}); not counted")
                        continue
                    raise
                failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
