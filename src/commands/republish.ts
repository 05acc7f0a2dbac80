import { defineCommand } from 'citty'
import { consola } from 'consola'
import { republish } from '../cache/republish.js'
import { lifetimeArgs, lifetimeMsOf, repeatedArg, repoArg, repoOf, signingKey } from './common.js'
import { nodeArgs } from './network-args.js'
import { putToRoutingServers } from '../net/record-push.js'

export default defineCommand({
  meta: {
    name: 'republish',
    description: 'Sign the current cache root again with the next sequence and a fresh validity, before the record expires.\n' +
      'A running gateway does this by itself for the repo\'s own key.\n\n' +
      'Example: nixipfs republish --lifetime-hours 48'
  },
  args: {
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Nix secret key of the cache (default: the repo key)', valueHint: 'FILE' },
    routing: nodeArgs.routing,
    ...lifetimeArgs
  },
  async run ({ args, rawArgs }) {
    const repo = repoOf(args)
    const recordLifetimeMs = lifetimeMsOf(args)
    const key = await signingKey(repo, args['secret-key-file'], false)
    const record = await republish(repo, key, { recordLifetimeMs, continueSequence: args['continue-sequence'] === true })
    consola.success(`/ipns/${record.name} → /ipfs/${record.root.toString()}`)
    consola.log(`sequence: ${record.sequence}`)
    consola.log(`expires:  ${record.validity}`)
    await putToRoutingServers(record, repeatedArg(rawArgs, 'routing'), consola)
  }
})
