import { readFile } from 'node:fs/promises'
import { UsageError } from '../errors.js'
import { parsePublicKey, type PublicKey } from '../nix/signing.js'
import type { TrustPolicy } from '../trust/quorum.js'
import { repeatedArg } from './common.js'

/** The trust policy from `--trust`, `--trust-file`, `--threshold` and `--non-reproducible`; undefined when no key is trusted. */
export async function trustPolicyOf (args: { 'trust-file'?: string, threshold?: string }, rawArgs: string[]): Promise<TrustPolicy | undefined> {
  const lines = repeatedArg(rawArgs, 'trust')
  if (args['trust-file'] !== undefined) {
    const text = await readFile(args['trust-file'], 'utf8').catch((err: Error) => { throw new UsageError(`cannot read --trust-file: ${err.message}`) })
    lines.push(...text.split('\n').map(l => l.replace(/#.*/, '').trim()).filter(l => l !== ''))
  }
  const keys = new Map<string, PublicKey>()
  for (const line of lines) {
    const key = parsePublicKey(line)
    keys.set(Buffer.from(key.key).toString('base64'), key)
  }
  if (keys.size === 0) {
    if (args.threshold !== undefined) throw new UsageError('--threshold needs trusted keys (--trust KEY or --trust-file FILE)')
    return undefined
  }
  const threshold = args.threshold === undefined ? 1 : Number(args.threshold)
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > keys.size) {
    throw new UsageError(`--threshold must be a whole number from 1 to the ${keys.size} trusted key(s), got ${args.threshold}`)
  }
  return { keys: [...keys.values()], threshold, nonReproducible: repeatedArg(rawArgs, 'non-reproducible') }
}
