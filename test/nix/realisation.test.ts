import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { formatRealisation, parseRealisation, realisationSigners, signRealisation } from '../../src/nix/realisation.js'
import { parsePublicKey, parseSecretKey } from '../../src/nix/signing.js'
import { NIX_OFFLINE, nixAvailable } from '../helpers/nix.js'
import { tmp } from '../helpers/cli.js'

describe.runIf(nixAvailable)('realisations, against real Nix', () => {
  it('our signature of a realisation is the one Nix makes, and Nix\'s verifies with our fingerprint', () => {
    const dir = tmp()
    const [secret, pub] = [join(dir, 'k.secret'), join(dir, 'k.public')]
    execFileSync('nix-store', ['--generate-binary-cache-key', 'real-1', secret, pub])
    const expr = join(dir, 'ca.nix')
    writeFileSync(expr, `derivation { name = "ca-sig-${Date.now()}-${process.pid}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "PATH=/usr/bin:/bin; mkdir $out; echo x > $out/x" ]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }`)
    const features = ['--extra-experimental-features', 'nix-command ca-derivations']
    // Built with a signing key: Nix signs the realisation it records.
    execFileSync('nix-build', [expr, '--no-out-link', ...NIX_OFFLINE, ...features, '--option', 'secret-key-files', secret], { stdio: 'ignore' })
    const [fromNix] = JSON.parse(execFileSync('nix', [...features, 'realisation', 'info', '--json', '--file', expr, '--option', 'substituters', ''], { encoding: 'utf8' })) as unknown[]
    const signed = parseRealisation(JSON.stringify(fromNix))
    expect(signed.signatures).toHaveLength(1)
    expect(realisationSigners(signed, [parsePublicKey(readFileSync(pub, 'utf8'))])).toHaveLength(1)
    const ours = signRealisation(parseSecretKey(readFileSync(secret, 'utf8')), { ...signed, signatures: [] })
    expect(ours.signatures).toEqual(signed.signatures)
    expect(formatRealisation(ours)).toBe(JSON.stringify(fromNix))
  })
})
