#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8'
// A larger young generation: streaming NARs allocates a buffer per block, and
// fewer scavenges cut the CPU a gateway spends per NAR fetched from a peer
// (5–25% in runs of bench/p2p.mjs on a noisy 2-core VM; no change in RSS).
setFlagsFromString('--max-semi-space-size=32')
// The old generation grows to 1.75 times what a full GC leaves, not up to four
// times, V8's factor whatever the live set once the heap limit is large (here
// a 2 GiB limit gave it and 1 GiB did not; 24 GiB of RAM make the limit 4 GiB).
// A gateway serving a million-entry index peaked at 304 MiB of RSS, and with
// this at 232 MiB (bench/index.mjs). The price is more full GCs: fresh gateways
// serving the bench corpus to Nix used 5% more CPU (medians of 5 runs), a
// loopback fetch of it from a peer no more (11.0 s with a factor of 2 against
// 12.0 s without; 1.75 the same as 2). Keeping V8's factor until a full GC
// leaves much (a ~35 MiB index against 11–26 MiB) did not work: the peak comes
// before the first such GC.
setFlagsFromString('--heap-growing-percent=75')
const { main } = await import('../dist/cli.js')
await main()
