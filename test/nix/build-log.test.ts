import { describe, expect, it } from 'vitest'
import { DRV_BASE_NAME, buildLogFile, nixLogDir } from '../../src/nix/build-log.js'

describe('where Nix keeps build logs', () => {
  it('is NIX_LOG_DIR or /nix/var/log/nix for the system store, always under the root for a chroot store', () => {
    expect(nixLogDir(undefined, {})).toBe('/nix/var/log/nix')
    expect(nixLogDir(undefined, { NIX_LOG_DIR: '/var/log/nix' })).toBe('/var/log/nix')
    expect(nixLogDir('/tmp/store', { NIX_LOG_DIR: '/var/log/nix' })).toBe('/tmp/store/nix/var/log/nix')
  })

  it('names the bzip2 file drvs/<2 characters>/<the rest>.bz2', () => {
    expect(buildLogFile('/nix/var/log/nix', 'qfs2nnhim815cdz9p00f3ik6ac2kbzzd-hello.drv'))
      .toBe('/nix/var/log/nix/drvs/qf/s2nnhim815cdz9p00f3ik6ac2kbzzd-hello.drv.bz2')
  })

  it('knows a derivation base name from anything else', () => {
    expect(DRV_BASE_NAME.test('qfs2nnhim815cdz9p00f3ik6ac2kbzzd-hello.drv')).toBe(true)
    for (const name of ['qfs2nnhim815cdz9p00f3ik6ac2kbzzd-hello', 'qfs2nnhim815cdz9p00f3ik6ac2kbzzd-a/b.drv', 'eeee-hello.drv', '../x.drv']) {
      expect(DRV_BASE_NAME.test(name)).toBe(false)
    }
  })
})
