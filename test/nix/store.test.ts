import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { queryPathInfos, runNix } from '../../src/nix/store.js'
import { walkPath } from '../../src/nix/nar/walk.js'
import { encodeNar } from '../../src/nix/nar/encode.js'
import { NarHasher } from '../../src/nix/hash.js'
import { parseStorePath } from '../../src/nix/store-path.js'
import { InvalidStorePathError, NixCommandError } from '../../src/errors.js'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'

const base = (path: string): string => parseStorePath(path).baseName
const nixStoreQuery = (flag: string, path: string): string => execFileSync('nix-store', ['--query', flag, path], { encoding: 'utf8' }).trim()

describe('runNix', () => {
  it('says when the command is not installed', async () => {
    await expect(runNix('nixipfs-no-such-command', [])).rejects.toThrow(NixCommandError)
    await expect(runNix('nixipfs-no-such-command', [])).rejects.toThrow(/not installed/)
  })

  it('queryPathInfos of nothing asks nothing', async () => {
    expect(await queryPathInfos([])).toEqual([])
  })
})

describe.runIf(nixAvailable)('queryPathInfos with the live Nix', () => {
  let dep: string
  let top: string
  let dotted: string
  let withDotted: string
  let ca: string
  let dir: string

  beforeAll(() => {
    // A missing path makes Nix ask its substituters (cache.nixos.org, with retries): keep it local.
    vi.stubEnv('NIX_CONFIG', 'substituters =')
    const depExpr = shellDerivation('nixipfs-store-test-dep', 'mkdir $out; echo dep > $out/data; printf "#!/bin/sh\\n" > $out/run; chmod +x $out/run')
    const topExpr = shellDerivation('nixipfs-store-test-top', 'mkdir $out; ln -s $dep/data $out/link; echo $out > $out/self', 'dep = dep;')
    // `${./.envrc}` makes store paths whose name starts with a dot; referencing one must work.
    const dotExpr = shellDerivation('nixipfs-store-test-dotted', 'echo $env > $out', 'env = builtins.toFile ".envrc" "use nix";')
    ;[dep, top, withDotted] = nixBuild(`let dep = ${depExpr}; in [ dep (${topExpr}) (${dotExpr}) ]`) as [string, string, string]
    dotted = execFileSync('nix-store', ['--query', '--references', withDotted], { encoding: 'utf8' }).trim()
    dir = mkdtempSync(join(tmpdir(), 'nixipfs-store-'))
    mkdirTree(join(dir, 'nixipfs-store-test-ca'))
    ca = execFileSync('nix-store', ['--add', join(dir, 'nixipfs-store-test-ca')], { encoding: 'utf8' }).trim()
  })
  afterAll(() => {
    vi.unstubAllEnvs()
    rmSync(dir, { recursive: true, force: true })
  })

  it('describes a built path as the Nix database does', async () => {
    const [info, ...rest] = await queryPathInfos([top])
    expect(rest).toEqual([])
    expect(info).toEqual({
      path: top,
      narHash: nixStoreQuery('--hash', top),
      narSize: Number(nixStoreQuery('--size', top)),
      references: [base(dep), base(top)].sort(),
      deriver: base(nixStoreQuery('--deriver', top)),
      sigs: []
    })
  })

  it('gives the NarHash and NarSize of the NAR our walker makes', async () => {
    for (const info of await queryPathInfos([dep, top, ca])) {
      const h = new NarHasher()
      for await (const chunk of encodeNar(walkPath(info.path))) h.update(chunk)
      expect(h.digest()).toBe(info.narHash)
      expect(h.size).toBe(info.narSize)
    }
  })

  it('follows the closure with recursive', async () => {
    const infos = await queryPathInfos([top], true)
    expect(infos.map(i => i.path).sort()).toEqual([dep, top].sort())
    expect(infos.find(i => i.path === dep)!.references).toEqual([])
  })

  it('answers for several paths at once', async () => {
    const infos = await queryPathInfos([dep, top])
    expect(infos.map(i => i.path).sort()).toEqual([dep, top].sort())
  })

  it('reports the CA of a content-addressed path and no deriver', async () => {
    const [info] = await queryPathInfos([ca])
    expect(info!.ca).toBe(`fixed:r:${info!.narHash}`)
    expect(info!.deriver).toBeUndefined()
  })

  it('handles a reference to a path whose name starts with a dot', async () => {
    expect(parseStorePath(dotted).name).toBe('.envrc')
    const infos = await queryPathInfos([withDotted], true)
    expect(infos.find(i => i.path === withDotted)!.references).toEqual([base(dotted)])
    expect(infos.map(i => i.path)).toContain(dotted)
  })

  it('fails on a path outside the store, saying how to add it (not with Nix\'s flake error)', async () => {
    await expect(queryPathInfos([tmpdir()])).rejects.toThrow(InvalidStorePathError)
    await expect(queryPathInfos([tmpdir()])).rejects.toThrow(`${tmpdir()} is not a store path; add it with nix-store --add ${tmpdir()}`)
    // Found by an outside test: the store directory itself reached Nix, which looked for a flake.nix in it.
    for (const store of ['/nix/store/', '/nix/store']) await expect(queryPathInfos([store])).rejects.toThrow(`${store} is the store itself; name paths in it (/nix/store/<hash>-<name>)`)
  })

  it('fails on a store path that is not valid', async () => {
    const missing = '/nix/store/00000000000000000000000000000000-nixipfs-missing'
    await expect(queryPathInfos([missing])).rejects.toThrow(NixCommandError)
    await expect(queryPathInfos([missing])).rejects.toThrow(/valid.* in the local Nix store/)
  })
})

function mkdirTree (root: string): void {
  execFileSync('mkdir', ['-p', join(root, 'sub')])
  writeFileSync(join(root, 'sub', 'file'), 'content addressed\n')
}

describe('runNix', () => {
  it('gives the exit status of a command that exits without reading its input, and does not crash on EPIPE', async () => {
    // 8 MiB cannot fit in a pipe's buffer, so the write fails once the command is gone.
    const input = 'x'.repeat(8 * 1024 * 1024)
    await expect(runNix('sh', ['-c', 'exit 3'], input)).rejects.toThrow(/exited with 3/)
    expect(await runNix('sh', ['-c', 'echo done'], input)).toBe('done\n')
  })
})
