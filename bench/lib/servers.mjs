// The servers the benchmarks compare: nginx serving a file:// binary cache,
// and the nixipfs gateway.
import { spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { ROOT } from './mode.mjs'

/** The nixipfs entry point the benchmarks run (BENCH_CLI, else bin/nixipfs.mjs), with this node. */
export const CLI = process.env.BENCH_CLI ? resolve(process.env.BENCH_CLI) : join(ROOT, 'bin', 'nixipfs.mjs')

/** The line a gateway prints once it serves: its URL in group 1. */
export const SERVING = /serving .*at (http:\/\/127\.0\.0\.1:\d+)/

/**
 * An nginx.conf serving the binary cache in `root` on `host`:`port`
 * (127.0.0.1 unless given) as statically as nginx can (sendfile,
 * keep-alive), with its pid, logs and temporary files under `prefix`.
 */
export function nginxConfig ({ prefix, port, root, workers = '1', host = '127.0.0.1' }) {
  return `# a minimal static binary cache for the benchmarks
user root;
worker_processes ${workers};
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  types { text/x-nix-narinfo narinfo; text/plain nix-cache-info; application/x-nix-nar nar; }
  default_type application/octet-stream;
  server {
    listen ${host}:${port};
    root ${root};
  }
}
`
}

/**
 * Starts `nixipfs gateway --offline` over `repo` on a free loopback port
 * (`nodeArgs` go to node); resolves once it serves, with its pid, URL and
 * a `stop` that waits for it to exit.
 */
export async function startGateway (repo, nodeArgs = []) {
  const gw = spawn(process.execPath, [...nodeArgs, CLI, 'gateway', '--repo', repo, '--listen', '127.0.0.1:0', '--offline'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const url = await new Promise((resolveUrl, reject) => {
    let out = ''
    const on = (b) => { out += b; const m = SERVING.exec(out); if (m) resolveUrl(m[1]) }
    gw.stdout.on('data', on); gw.stderr.on('data', on)
    gw.on('exit', () => reject(new Error(`gateway exited: ${out}`)))
  })
  const stop = async () => { const exited = new Promise(resolveExit => gw.once('exit', resolveExit)); gw.kill('SIGTERM'); await exited }
  return { pid: gw.pid, url, stop }
}
