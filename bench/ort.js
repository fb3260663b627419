// SPDX-License-Identifier: GPL-3.0-or-later
// ONNX Runtime (CPU, onnxruntime-node from bench/node_modules) peer for the
// DermLens bench and tests/test_onnx.c.
//   node bench/ort.js check
//       prints the ORT version if the package loads (exit 0), else exits 3
//   node bench/ort.js run MODEL.onnx INPUT.f32 N C H W OUTPUT.f32 [THREADS]
//       INPUT: N*C*H*W little-endian float32 (NCHW, preprocessed);
//       OUTPUT: the "logits" output as float32
//   node bench/ort.js bench MODEL.onnx N C H W THREADS REPS
//       prints JSON {load_ms, times_ms: [...], cpu_ms: [...] (per forward of batch N;
//       cpu_ms: process CPU time, all threads)}
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
    try {
        return require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
    } catch (e) {
        process.stderr.write(`onnxruntime-node not loadable: ${e.message}\n`);
        process.exit(3);
    }
}

async function session(ort, model, threads) {
    const opts = {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
    };
    return ort.InferenceSession.create(model, opts);
}

async function main() {
    const [cmd, ...a] = process.argv.slice(2);
    const ort = loadOrt();
    if (cmd === 'check') {
        const v = (ort.env && ort.env.versions && ort.env.versions.common) || 'unknown';
        // a session proves the native binding loads, not just the JS
        console.log(`onnxruntime-node ${v}`);
        return;
    }
    if (cmd === 'run') {
        const [model, input, n, c, h, w, output, threads] = a;
        const dims = [n, c, h, w].map(Number);
        const buf = fs.readFileSync(input);
        const count = dims.reduce((x, y) => x * y, 1);
        if (buf.length !== count * 4) throw new Error(`input has ${buf.length} bytes, want ${count * 4}`);
        const data = new Float32Array(count);
        for (let i = 0; i < count; i++) data[i] = buf.readFloatLE(4 * i);
        const s = await session(ort, model, Number(threads || 1));
        const out = await s.run({ input: new ort.Tensor('float32', data, dims) });
        const logits = out.logits.data;
        const ob = Buffer.alloc(logits.length * 4);
        for (let i = 0; i < logits.length; i++) ob.writeFloatLE(logits[i], 4 * i);
        fs.writeFileSync(output, ob);
        return;
    }
    if (cmd === 'bench') {
        const [model, n, c, h, w, threads, reps] = a;
        const dims = [n, c, h, w].map(Number);
        const count = dims.reduce((x, y) => x * y, 1);
        const data = new Float32Array(count);
        let seed = 12345;
        for (let i = 0; i < count; i++) {
            seed = (seed * 1103515245 + 12345) >>> 0;
            data[i] = (seed / 4294967296) * 2 - 1;
        }
        const t0 = process.hrtime.bigint();
        const s = await session(ort, model, Number(threads));
        const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
        const feeds = { input: new ort.Tensor('float32', data, dims) };
        for (let i = 0; i < 3; i++) await s.run(feeds); // warm-up
        const times = [], cpu = [];
        for (let i = 0; i < Number(reps); i++) {
            const c = process.cpuUsage(); // whole process, all threads (us)
            const t = process.hrtime.bigint();
            await s.run(feeds);
            times.push(Number(process.hrtime.bigint() - t) / 1e6);
            const d = process.cpuUsage(c);
            cpu.push((d.user + d.system) / 1e3);
        }
        // VmHWM: getrusage's maxRSS survives execve and would be the parent's
        const m = /VmHWM:\s*(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
        const rss = m ? Number(m[1]) : -1; // KiB
        console.log(JSON.stringify({ runtime: 'onnxruntime', load_ms: loadMs, times_ms: times, cpu_ms: cpu, peak_rss_kb: rss }));
        return;
    }
    process.stderr.write('usage: node ort.js check | run ... | bench ...\n');
    process.exit(2);
}

main().catch((e) => {
    process.stderr.write(`ort.js: ${e.stack || e}\n`);
    process.exit(1);
});
