#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""DermLens vs ONNX Runtime vs PyTorch, driven by bench/run.sh.

The PyTorch peer is built here from the DermLens model file itself (the
safetensors header is read with json, tensors with numpy): the same graph,
the same weights (OHWI -> OIHW), TF-SAME asymmetric padding through F.pad.
Correctness first (all three within --tol of each other on the dog image),
then timing with the contenders alternated in every round; medians.

Imported models (--torchvision ARCH): the PyTorch peer is the torchvision
network itself (weights=None, seeded, BatchNorm statistics randomised as in
tests/onnx_torch_test.py, so every run builds the same weights);
`--export-onnx FILE` writes its ONNX file (opset 13) and exits, run.sh then
imports that file with `dermlens import` and ONNX Runtime runs the very same
file. --tol-rel bounds the agreement relative to the logit range instead.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ model file

def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop('__metadata__', {})
    tensors = {}
    for name, t in header.items():
        # F16 (weights/FORMAT.md) widens to float32, as the engine does at load
        dt = {'F32': '<f4', 'F16': '<f2'}.get(t['dtype'])
        if dt is None:
            raise ValueError(f'{name}: dtype {t["dtype"]} not supported')
        b, e = t['data_offsets']
        size = np.dtype(dt).itemsize
        tensors[name] = np.frombuffer(data, dtype=dt, count=(e - b) // size, offset=b).reshape(t['shape']).astype(np.float32)
    return meta, tensors


def same_pad(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class TorchNet(torch.nn.Module):
    """Executes a DermLens graph (weights/FORMAT.md) in NCHW with PyTorch ops."""

    def __init__(self, meta, tensors):
        super().__init__()
        g = json.loads(meta['graph'])
        self.input_name = g['input']['name']
        self.in_hwc = (g['input']['height'], g['input']['width'], g['input']['channels'])
        self.nodes = g['nodes']
        self.output = g.get('output') or self.nodes[-1]['name']
        self.params = {}
        shapes = {self.input_name: self.in_hwc}
        for n in self.nodes:
            a = shapes[n['inputs'][0]]
            op = n['op']
            if op in ('conv2d', 'avgpool', 'maxpool'):
                kh, kw = n['kernel']
                sh, sw = n.get('stride', [1, 1])
                pad = n.get('padding', 'valid')
                if pad == 'same':
                    t, b = same_pad(a[0], kh, sh)
                    l, r = same_pad(a[1], kw, sw)
                elif pad == 'valid':
                    t = b = l = r = 0
                else:
                    t, b, l, r = pad
                n['_pads'] = (l, r, t, b)  # F.pad order
                oh = (a[0] + t + b - kh) // sh + 1
                ow = (a[1] + l + r - kw) // sw + 1
                c = n['units'] if op == 'conv2d' else a[2]
                shapes[n['name']] = (oh, ow, c)
                if op == 'conv2d':
                    w = torch.from_numpy(tensors[n['weight']].transpose(0, 3, 1, 2).copy())
                    bias = torch.from_numpy(tensors[n['bias']].copy()) if n.get('bias') else None
                    self.params[n['name']] = (w, bias)
            elif op == 'dense':
                w = torch.from_numpy(tensors[n['weight']].copy())
                bias = torch.from_numpy(tensors[n['bias']].copy()) if n.get('bias') else None
                self.params[n['name']] = (w, bias)
                shapes[n['name']] = (1, 1, n['units'])
            elif op == 'global_avgpool':
                shapes[n['name']] = (1, 1, a[2])
            elif op == 'pad':
                t, b, l, r = n['padding']
                n['_pads'] = (l, r, t, b)
                shapes[n['name']] = (a[0] + t + b, a[1] + l + r, a[2])
            elif op in ('add', 'softmax', 'dropout'):
                shapes[n['name']] = a
            else:
                raise ValueError(f'node {n["name"]}: op {op} not supported by the PyTorch peer')
        self.shapes = shapes

    @staticmethod
    def act(x, a):
        if a in (None, 'none'):
            return x
        if a == 'relu':
            return F.relu(x)
        if a == 'relu6':
            return F.hardtanh(x, 0.0, 6.0)
        if a == 'hswish':
            return F.hardswish(x)
        if a == 'silu':
            return F.silu(x)
        raise ValueError(a)

    def forward(self, x):
        v = {self.input_name: x}
        for n in self.nodes:
            op = n['op']
            a = v[n['inputs'][0]]
            if op == 'conv2d':
                w, b = self.params[n['name']]
                if any(n['_pads']):
                    a = F.pad(a, n['_pads'])
                y = self.act(F.conv2d(a, w, b, stride=tuple(n.get('stride', [1, 1])),
                                      groups=n.get('groups', 1)), n.get('activation'))
            elif op == 'add':
                y = self.act(a + v[n['inputs'][1]], n.get('activation'))
            elif op == 'avgpool':
                k, s = tuple(n['kernel']), tuple(n.get('stride', [1, 1]))
                if any(n['_pads']):  # average over in-bounds elements only
                    ones = torch.ones_like(a[:, :1])
                    y = (F.avg_pool2d(F.pad(a, n['_pads']), k, s) /
                         F.avg_pool2d(F.pad(ones, n['_pads']), k, s))
                else:
                    y = F.avg_pool2d(a, k, s)
            elif op == 'maxpool':
                a = F.pad(a, n['_pads'], value=float('-inf')) if any(n['_pads']) else a
                y = F.max_pool2d(a, tuple(n['kernel']), tuple(n.get('stride', [1, 1])))
            elif op == 'global_avgpool':
                y = a.mean(dim=(2, 3), keepdim=True)
            elif op == 'dense':
                w, b = self.params[n['name']]
                flat = a.permute(0, 2, 3, 1).reshape(a.shape[0], -1) if a.dim() == 4 else a
                y = self.act(F.linear(flat, w, b), n.get('activation'))
            elif op == 'softmax':
                y = torch.softmax(a, dim=1)
            elif op == 'pad':
                y = F.pad(a, n['_pads'])
            elif op == 'dropout':
                y = a
            v[n['name']] = y
            if n['name'] == self.output:
                break
        return v[self.output].reshape(x.shape[0], -1)


def flops(net):
    f = 0
    shapes = net.shapes
    for n in net.nodes:
        if n['op'] == 'conv2d':
            oh, ow, oc = shapes[n['name']]
            ic = shapes[n['inputs'][0]][2]
            f += 2 * oh * ow * oc * n['kernel'][0] * n['kernel'][1] * (ic // n.get('groups', 1))
        elif n['op'] == 'dense':
            a = shapes[n['inputs'][0]]
            f += 2 * n['units'] * a[0] * a[1] * a[2]
    return f


class TorchvisionNet(torch.nn.Module):
    """A torchvision classifier with reproducible random weights (--torchvision)."""

    def __init__(self, arch, hwc=(224, 224, 3)):
        super().__init__()
        import torchvision
        torch.manual_seed(1234)
        gen = torch.Generator().manual_seed(1234)
        self.net = getattr(torchvision.models, arch)(weights=None)
        with torch.no_grad():
            for mod in self.net.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    c = mod.num_features
                    mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                    mod.running_var.copy_(torch.rand(c, generator=gen) * 0.8 + 0.6)
                    mod.weight.data.copy_(torch.rand(c, generator=gen) * 0.8 + 0.6)
                    mod.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)
        self.net.eval()
        self.in_hwc = hwc

    def forward(self, x):
        return self.net(x)


# ------------------------------------------------------------------ helpers

def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def peak_rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return -1


# ------------------------------------------------------------------ main

def train_rows(net, driver, model, batch, threads, rounds, steps, use_cpu):
    """One whole-network training step (forward, cross-entropy with label
    smoothing 0.1, backward, AdamW) on a random batch: DermLens' driver
    against the same graph in PyTorch, alternating, medians per step."""
    H, W, C = net.in_hwc
    params = [p for wb in net.params.values() for p in wb if p is not None]
    for p in params:
        p.requires_grad_(True)
    net.train()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (batch, C, H, W)).astype(np.float32))
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        logits = net(x)
        labels = torch.arange(batch) * 7 % logits.shape[1]

        def step():
            opt.zero_grad(set_to_none=True)
            lossf(net(x), labels).backward()
            opt.step()
        step()
        times = {'dermlens': [], 'pytorch': []}
        clock = time.process_time if use_cpu else time.perf_counter
        for r in range(rounds):
            for who in (['dermlens', 'pytorch'] if r % 2 == 0 else ['pytorch', 'dermlens']):
                settle()
                if who == 'dermlens':
                    j = run_json([driver, 'train', model, str(batch), str(t), str(steps)])
                    times[who] += j['cpu_ms' if use_cpu else 'times_ms']
                else:
                    for _ in range(steps):
                        a = clock()
                        step()
                        times[who].append((clock() - a) * 1e3)
        d, p = batch / (med(times['dermlens']) / 1e3), batch / (med(times['pytorch']) / 1e3)
        line = (f'training step (batch {batch}, {t} thread{"s" if t != 1 else ""}): DermLens {d:.1f} img/s, '
                f'PyTorch {p:.1f} img/s, {d / p:.2f} x PyTorch')
        print(line, flush=True)
        rows.append({'batch': batch, 'threads': t, 'dermlens_img_s': d, 'pytorch_img_s': p, 'line': line,
                     'n': {k: len(v) for k, v in times.items()}})
    for p in params:
        p.requires_grad_(False)
    net.eval()
    return rows


def settle():
    """Let the previous contender's idle threads stop before the next one is
    timed. PyTorch runs in this process and its intra-op threads keep
    spinning for a while after a forward; a contender started right after
    shared a core with them (measured: DermLens' first 2-4 forwards on 2
    threads took 6-8 ms instead of 3.2 when launched just after PyTorch's
    turn, fine 0.5 s later). ONNX Runtime, a separate node process that
    takes ~0.1 s to start, was barely touched, so the rows were unfair."""
    time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--model')
    ap.add_argument('--onnx', required=True)
    ap.add_argument('--driver', help='build dir bench/bench_dermlens')
    ap.add_argument('--ort', help='bench/ort.js')
    ap.add_argument('--image', help='224x224 RGB8 HWC raw image')
    ap.add_argument('--torchvision', metavar='ARCH',
                    help='imported model: the PyTorch peer is this torchvision network (seeded random weights)')
    ap.add_argument('--export-onnx', action='store_true',
                    help='with --torchvision: write its ONNX file to --onnx (224x224, opset 13) and exit')
    ap.add_argument('--tol-rel', type=float, default=None,
                    help='agreement bound relative to the logit range (instead of --tol, absolute)')
    ap.add_argument('--baseline-driver', metavar='PATH',
                    help='another build\'s bench_dermlens (e.g. main\'s), alternated with the others in every '
                         'round: before/after in the same run (column "base")')
    ap.add_argument('--rounds', type=int, default=5, help='alternating rounds per row')
    ap.add_argument('--reps', type=int, default=10, help='timed forwards per contender per round')
    ap.add_argument('--batches', default='1,8')
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--tol', type=float, default=1e-3)
    ap.add_argument('--json-out', default=None)
    ap.add_argument('--check-only', action='store_true')
    ap.add_argument('--quick', action='store_true',
                    help='a smoke run: batch 1 only, 3 rounds x 5 runs (numbers only indicative)')
    ap.add_argument('--train-batch', type=int, default=32, help='training-step rows: batch (0: no training rows)')
    ap.add_argument('--train-steps', type=int, default=3, help='timed training steps per contender per round')
    ap.add_argument('--train-only', action='store_true', help='after the agreement check, only the training rows')
    ap.add_argument('--cpu', action='store_true',
                    help='time with process CPU time (all threads) instead of wall time: use on a shared '
                         'machine, where wall time mostly measures waiting for a core')
    args = ap.parse_args()
    if args.export_onnx:
        if not args.torchvision:
            sys.exit('--export-onnx needs --torchvision ARCH')
        tv = TorchvisionNet(args.torchvision)
        # the batch stays symbolic: ONNX Runtime runs the batch-8 rows on the same file
        torch.onnx.export(tv.net, torch.zeros(1, 3, 224, 224), args.onnx, opset_version=13, input_names=['input'],
                          output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
        print(f'wrote {args.onnx} ({args.torchvision}, random weights, opset 13)')
        return
    if not (args.model and args.driver and args.ort and args.image):
        sys.exit('need --model, --driver, --ort and --image')
    if args.quick:
        args.rounds, args.reps, args.batches = min(args.rounds, 3), min(args.reps, 5), '1'

    t0 = time.perf_counter()
    meta, tensors = read_safetensors(args.model)
    if args.torchvision:
        g = json.loads(meta['graph'])['input']
        net = TorchvisionNet(args.torchvision, (g['height'], g['width'], g['channels']))
    else:
        net = TorchNet(meta, tensors).eval()
    torch_load_ms = (time.perf_counter() - t0) * 1e3
    pre = json.loads(meta['preprocess'])
    H, W, C = net.in_hwc
    if args.torchvision:  # the imported graph's count, from the DermLens driver
        gflop = run_json([args.driver, 'time', args.model, '1', '1', '1'])['gflop_per_image']
    else:
        gflop = flops(net) / 1e9
    name = meta.get('name', os.path.basename(args.model))
    cpu = run_json([args.driver, 'cpu'])
    machine = (f'{cpu["cpu"]}, {cpu["cores"]} cores, L1d {cpu["l1d_kib"]} KiB, L2 {cpu["l2_kib"]} KiB, '
               f'L3 {cpu["l3_kib"]} KiB; DermLens kernels: {cpu["isa"]}')
    print(f'machine: {machine}')
    print(f'model: {name}  input {H}x{W}x{C}  {gflop:.3f} GFLOP/image')
    print(f'torch {torch.__version__} (threads set per row); '
          f'{subprocess.run(["node", args.ort, "check"], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()}')

    # ---------------- correctness on the dog image
    tmp = tempfile.mkdtemp(prefix='dlbench.')
    raw = np.fromfile(args.image, dtype=np.uint8)
    if raw.size != H * W * 3:
        sys.exit(f'{args.image}: {raw.size} bytes, want {H}x{W}x3 (network input size)')
    x = (raw.reshape(H, W, 3).astype(np.float32) - np.array(pre['mean'], np.float32)) / np.array(pre['std'], np.float32)
    x_nchw = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    dl_logits_f = os.path.join(tmp, 'dl.f32')
    run_json([args.driver, 'logits', args.model, args.image, str(W), str(H), dl_logits_f])
    dl = np.fromfile(dl_logits_f, dtype='<f4')
    in_f, ort_f = os.path.join(tmp, 'in.f32'), os.path.join(tmp, 'ort.f32')
    x_nchw.astype('<f4').tofile(in_f)
    subprocess.run(['node', args.ort, 'run', args.onnx, in_f, '1', str(C), str(H), str(W), ort_f, '1'], check=True)
    ort = np.fromfile(ort_f, dtype='<f4')
    with torch.no_grad():
        th = net(torch.from_numpy(x_nchw)).numpy().reshape(-1)
    diffs = {'ort_vs_dermlens': float(np.abs(ort - dl).max()),
             'torch_vs_dermlens': float(np.abs(th - dl).max()),
             'torch_vs_ort': float(np.abs(th - ort).max())}
    top = {'dermlens': int(dl.argmax()), 'onnxruntime': int(ort.argmax()), 'pytorch': int(th.argmax())}
    print('agreement on the dog image (max |logit difference|): ' +
          ', '.join(f'{k} {v:.2e}' for k, v in diffs.items()) + f'; top-1 {top}')
    tol = args.tol
    if args.tol_rel is not None:
        tol = args.tol_rel * float(ort.max() - ort.min())
        print(f'bound: {args.tol_rel:g} x logit range {float(ort.max() - ort.min()):.3f} = {tol:.3e}')
    ok = all(v < tol for v in diffs.values()) and len(set(top.values())) == 1
    if not ok:
        sys.exit(f'FAIL: peers disagree beyond {tol:.3e}')
    print(f'OK: all three agree within {tol:.3e}')
    results = {'model': name, 'gflop_per_image': gflop, 'agreement': diffs, 'top1': top, 'rows': []}
    if args.check_only:
        return
    if args.train_only:
        print(f'on: {machine}; {"process CPU time, all threads" if args.cpu else "wall time"}, medians of '
              f'{args.rounds} alternating rounds x {args.train_steps} steps')
        train_rows(net, args.driver, args.model, args.train_batch, [int(t) for t in args.threads.split(',')],
                   args.rounds, args.train_steps, args.cpu)
        return

    # ---------------- timing, contenders alternated within every round
    batches = [int(b) for b in args.batches.split(',')]
    threads = [int(t) for t in args.threads.split(',')]
    loads = {'dermlens': [], 'onnxruntime': [], 'pytorch': [torch_load_ms]}
    rss = {'dermlens': 0, 'onnxruntime': 0}
    for b in batches:
        for t in threads:
            times = {'dermlens': [], 'onnxruntime': [], 'pytorch': []}
            if args.baseline_driver:
                times['base'] = []
            xt = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (b, C, H, W)).astype(np.float32))
            torch.set_num_threads(t)
            with torch.no_grad():
                for _ in range(2):
                    net(xt)
            for r in range(args.rounds):
                order = list(times)
                order = order[r % len(order):] + order[:r % len(order)]
                for who in order:
                    key = 'cpu_ms' if args.cpu else 'times_ms'
                    settle()
                    if who == 'base':
                        j = run_json([args.baseline_driver, 'time', args.model, str(b), str(t), str(args.reps)])
                        times[who] += j[key]
                    elif who == 'dermlens':
                        j = run_json([args.driver, 'time', args.model, str(b), str(t), str(args.reps)])
                        times[who] += j[key]
                        loads[who].append(j['load_ms'])
                        rss[who] = max(rss[who], j['peak_rss_kb'])
                    elif who == 'onnxruntime':
                        j = run_json(['node', args.ort, 'bench', args.onnx, str(b), str(C), str(H), str(W),
                                      str(t), str(args.reps)])
                        times[who] += j[key]
                        loads[who].append(j['load_ms'])
                        rss[who] = max(rss[who], j['peak_rss_kb'])
                    else:
                        clock = time.process_time if args.cpu else time.perf_counter
                        with torch.no_grad():
                            for _ in range(args.reps):
                                a = clock()
                                net(xt)
                                times[who].append((clock() - a) * 1e3)
            row = {'batch': b, 'threads': t}
            for who, ts in times.items():
                per_img = med(ts) / b
                row[who] = {'ms_per_image': per_img, 'gflops': gflop / (per_img / 1e3), 'n': len(ts)}
            results['rows'].append(row)
            print(f'  measured batch {b} threads {t}', flush=True)

    ex = run_json([args.driver, 'extras', args.model, args.image, str(W), str(H), '1', str(max(args.reps, 5))])
    ex2 = run_json([args.driver, 'extras', args.model, args.image, str(W), str(H), '2', str(max(args.reps, 5))])
    results['extras'] = {'1': ex, '2': ex2}
    rss['pytorch'] = peak_rss_kb()

    print()
    print(f'{name}, {H}x{W}, {gflop:.3f} GFLOP/image; medians of {args.rounds} alternating rounds x {args.reps} runs'
          f' ({"process CPU time, all threads" if args.cpu else "wall time"})')
    print(f'on: {machine}')
    results['machine'] = cpu
    hdr = (f'{"batch":>5} {"thr":>3} | {"DermLens ms/img":>15} {"GFLOP/s":>7} | {"ORT ms/img":>10} {"GFLOP/s":>7} '
           f'{"ORT/DL":>6} | {"PyTorch ms/img":>14} {"GFLOP/s":>7} {"PT/DL":>6}')
    if args.baseline_driver:
        hdr += f' | {"base ms/img":>11} {"ORT/base":>8}'
    print(hdr)
    print('-' * len(hdr))
    for row in results['rows']:
        d, o, p = row['dermlens'], row['onnxruntime'], row['pytorch']
        line = (f'{row["batch"]:>5} {row["threads"]:>3} | {d["ms_per_image"]:>15.2f} {d["gflops"]:>7.1f} | '
                f'{o["ms_per_image"]:>10.2f} {o["gflops"]:>7.1f} {o["ms_per_image"] / d["ms_per_image"]:>6.2f} | '
                f'{p["ms_per_image"]:>14.2f} {p["gflops"]:>7.1f} {p["ms_per_image"] / d["ms_per_image"]:>6.2f}')
        if 'base' in row:
            q = row['base']
            line += f' | {q["ms_per_image"]:>11.2f} {o["ms_per_image"] / q["ms_per_image"]:>8.2f}'
        print(line)
    if args.baseline_driver:
        print(f'(base: {args.baseline_driver})')
    print()
    for t, e in (('1', ex), ('2', ex2)):
        c, gc, gf = med(e['classify_ms']), med(e['gradcam_ms']), med(e['gradcam_flipmean_ms'])
        print(f'Grad-CAM ({t} thread{"s" if t != "1" else ""}): classify {c:.2f} ms, classify+Grad-CAM map '
              f'(one pass) {gc:.2f} ms -> Grad-CAM costs {gc / c - 1:.2f} of a forward (extra); the default '
              f'8-flip mean {gf:.2f} ms ({gf / c:.1f}x classify); '
              f'plug-in engine work on 4000x3000 (classify + default map): {med(e["plugin_4000x3000_ms"]):.0f} ms')
    print(f'model load (median): DermLens {med(loads["dermlens"]):.1f} ms, ORT session {med(loads["onnxruntime"]):.1f} ms, '
          f'PyTorch (safetensors + module) {med(loads["pytorch"]):.1f} ms')
    print(f'peak RSS (whole process, largest batch): DermLens {rss["dermlens"] / 1024:.0f} MiB, ORT (node) '
          f'{rss["onnxruntime"] / 1024:.0f} MiB, PyTorch (python) {rss["pytorch"] / 1024:.0f} MiB')
    if args.train_batch > 0 and not args.torchvision and not args.quick:
        print(f'whole-network training step, medians of {args.rounds} alternating rounds x {args.train_steps} steps:')
        results['training'] = train_rows(net, args.driver, args.model, args.train_batch, threads, args.rounds,
                                         args.train_steps, args.cpu)
    results['load_ms'] = {k: med(v) for k, v in loads.items()}
    results['peak_rss_kb'] = rss
    if args.json_out:
        with open(args.json_out, 'w') as f:
            json.dump(results, f, indent=1)
        print(f'(raw results: {os.path.relpath(args.json_out)})')


if __name__ == '__main__':
    main()
