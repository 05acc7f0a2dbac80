import { defineCommand } from 'citty'
import { consola } from 'consola'
import { UsageError } from '../errors.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
import { formatPublicKey, generateSecretKey, publicKeyOf } from '../nix/signing.js'
import { repoKeyPaths, writeKeyFiles } from '../repo.js'
import { repoArg, repoOf } from './common.js'

export default defineCommand({
  meta: {
    name: 'keygen',
    description: 'Create an Ed25519 key pair in Nix format: it signs narinfos and names the cache on IPNS.\n\nExample: nixipfs keygen builder1.example.org-1'
  },
  args: {
    name: { type: 'positional', required: true, description: 'Key name, by Nix convention HOST-N (e.g. cache.example.org-1)' },
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Write the secret key here instead of the repo (created 0600)', valueHint: 'FILE' },
    'public-key-file': { type: 'string', description: 'Write the public key here instead of the repo', valueHint: 'FILE' }
  },
  async run ({ args }) {
    const repoPaths = repoKeyPaths(repoOf(args))
    const secret = args['secret-key-file'] ?? repoPaths.secret
    const pub = args['public-key-file'] ?? (args['secret-key-file'] !== undefined ? `${args['secret-key-file']}.pub` : repoPaths.public)
    if ((args['public-key-file'] !== undefined) && args['secret-key-file'] === undefined) {
      throw new UsageError('--public-key-file needs --secret-key-file')
    }
    const key = generateSecretKey(args.name)
    await writeKeyFiles(key, secret, pub, args['secret-key-file'] !== undefined ? '--secret-key-file' : '--repo')
    consola.success(`secret key: ${secret}`)
    consola.log(`public key: ${formatPublicKey(publicKeyOf(key))}`)
    consola.log(`IPNS name:  ${ipnsNameOf(key.publicKey)}`)
  }
})
