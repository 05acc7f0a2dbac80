#!/usr/bin/env node
// bench/chunk-overlap.mjs — how much of two store paths' NARs is shared
// at chunk granularity, for fixed 256 KiB chunks and for a rough
// content-defined chunker (gear hash, FastCDC-style normalized chunking,
// min 64 KiB / avg 256 KiB / max 1 MiB). The CDC here is only an estimate
// of what is achievable, NOT the project's cdc-v1 recipe.
//
// Usage: node bench/chunk-overlap.mjs OLD_PATH NEW_PATH
//   e.g. node bench/chunk-overlap.mjs $(bench/corpus.sh --pairs)
//   BENCH_SMOKE=1 without paths: the pair of the tiny corpus (bench/lib/mode.mjs)
//
// For each chunker it prints: bytes of NEW found in chunks of OLD, and the
// storage needed for both (sum of distinct chunks), relative to 2 NARs.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ROOT, SMOKE } from './lib/mode.mjs';

const given = process.argv.slice(2);
const pairs = () => spawnSync(join(ROOT, 'bench', 'corpus.sh'), ['--pairs'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).stdout.trim().split('\n');
const [a, b] = given.length === 0 && SMOKE ? pairs() : given;
if (!a || !b) {
  console.error('usage: node bench/chunk-overlap.mjs OLD_PATH NEW_PATH');
  process.exit(2);
}

function nar(path) {
  const r = spawnSync('nix-store', ['--dump', path], { maxBuffer: 4 << 30 });
  if (r.status !== 0) throw new Error(`nix-store --dump ${path}: ${r.stderr}`);
  return r.stdout;
}

function* fixed(buf, size = 256 * 1024) {
  for (let o = 0; o < buf.length; o += size) yield [o, Math.min(o + size, buf.length)];
}

// Gear table from a fixed-seed xorshift32, so results are repeatable.
const GEAR = new Uint32Array(256);
{
  let x = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    GEAR[i] = x;
  }
}
const topMask = (bits) => (((1 << bits) - 1) << (32 - bits)) >>> 0;

function* cdc(buf, min = 64 * 1024, avg = 256 * 1024, max = 1024 * 1024) {
  const bits = Math.round(Math.log2(avg));
  const maskS = topMask(bits + 2); // stricter before avg
  const maskL = topMask(bits - 2); // looser after avg
  let start = 0;
  const n = buf.length;
  while (start < n) {
    const end = Math.min(start + max, n);
    const mid = Math.min(start + avg, end);
    let i = Math.min(start + min, end);
    let h = 0;
    let cut = end;
    for (; i < mid; i++) {
      h = ((h << 1) + GEAR[buf[i]]) >>> 0;
      if ((h & maskS) === 0) { cut = i + 1; break; }
    }
    if (cut === end && i >= mid) {
      for (; i < end; i++) {
        h = ((h << 1) + GEAR[buf[i]]) >>> 0;
        if ((h & maskL) === 0) { cut = i + 1; break; }
      }
    }
    yield [start, cut];
    start = cut;
  }
}

function chunks(buf, chunker) {
  const m = new Map(); // digest -> length
  const list = [];
  for (const [s, e] of chunker(buf)) {
    const d = createHash('sha256').update(buf.subarray(s, e)).digest('base64');
    m.set(d, e - s);
    list.push([d, e - s]);
  }
  return { m, list };
}

const A = nar(a), B = nar(b);
const MB = (x) => (x / 1048576).toFixed(1) + ' MiB';
console.log(`old NAR ${MB(A.length)}  new NAR ${MB(B.length)}`);
const storage = {};
for (const [name, chunker] of [['fixed 256 KiB', fixed], ['gear CDC avg 256 KiB', cdc]]) {
  const t = Date.now();
  const ca = chunks(A, chunker), cb = chunks(B, chunker);
  let sharedBytes = 0, sharedChunks = 0;
  for (const [d, len] of cb.list) if (ca.m.has(d)) { sharedBytes += len; sharedChunks++; }
  const all = new Map([...ca.m, ...cb.m]);
  let store = 0;
  for (const len of all.values()) store += len;
  storage[name] = store;
  console.log(
    `${name}: new shares ${sharedChunks}/${cb.list.length} chunks, ` +
    `${MB(sharedBytes)} (${((100 * sharedBytes) / B.length).toFixed(1)}% of new); ` +
    `storage for both ${MB(store)} (${((100 * store) / (A.length + B.length)).toFixed(1)}% of 2 NARs)` +
    ` [${Date.now() - t} ms]`,
  );
}
const [f, c] = Object.values(storage);
console.log(`CDC storage / fixed storage = ${(c / f).toFixed(3)}`);
