import { defineCommand } from 'citty'
import { consola } from 'consola'
import { NixipfsError, UsageError } from '../errors.js'
import { verifyAndPublish } from '../trust/verify.js'
import { lifetimeArgs, lifetimeMsOf, repeatedArg, repoArg, repoOf, signingKey } from './common.js'
import { followedName, networkOptionsOf, nodeArgs } from './network-args.js'

const { follow, peer, bootstrap, routing, 'http-gateway': httpGateway, 'listen-p2p': listenP2p, offline } = nodeArgs

export default defineCommand({
  meta: {
    name: 'verify',
    description: 'Rebuild store paths locally (nix-store --realise --check) and compare with what followed builders signed.\n' +
      'A mismatch is published as a signed dispute statement (disputes/<hash>.json) in the own cache, for followers to see,\n' +
      'and announced on /nixipfs/disputes/1 to the network of --peer or --bootstrap (every node checks, keeps, lists and relays it);\n' +
      'with --cosign, a match is published in the own cache signed by the own key (a co-signature for quorums).\n\n' +
      'Example: nixipfs verify /nix/store/…-hello-2.12 --follow builder-1:AbC…= --http-gateway http://mirror.example:8080 --cosign'
  },
  args: {
    path: { type: 'positional', required: true, description: 'Store paths to rebuild (their derivations must be known to the local Nix)' },
    follow,
    peer,
    bootstrap,
    routing,
    'http-gateway': httpGateway,
    'listen-p2p': listenP2p,
    offline,
    cosign: { type: 'boolean', description: 'Publish paths whose rebuild matches into the own cache, signed by the own key' },
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Key that signs co-signatures and dispute statements (default: the repo key)', valueHint: 'FILE' },
    ...lifetimeArgs
  },
  async run ({ args, rawArgs }) {
    const names = repeatedArg(rawArgs, 'follow').map(followedName)
    if (names.length === 0) throw new UsageError('name the builders to compare with: --follow KEY (repeatable)')
    const repo = repoOf(args)
    const results = await verifyAndPublish({
      repo,
      paths: args._,
      follow: names,
      network: networkOptionsOf(args, rawArgs),
      key: await signingKey(repo, args['secret-key-file'], true),
      cosign: args.cosign === true,
      recordLifetimeMs: lifetimeMsOf(args),
      log: consola
    })
    let differs = 0
    for (const r of results) {
      if (r.signed.length === 0) { consola.warn(`${r.storePath}: no followed builder has it; rebuilt as ${r.rebuilt.narHash}`); continue }
      if (r.agrees) { consola.success(`${r.storePath}: rebuilt bit for bit as ${r.signed.length} builder(s) signed (${r.rebuilt.narHash})${args.cosign === true ? '; co-signed' : ''}`); continue }
      differs++
      consola.error(`${r.storePath}: rebuilt as ${r.rebuilt.narHash}, but ${r.signed.filter(s => s.narHash !== r.rebuilt.narHash).map(s => `${s.key} signed ${s.narHash}`).join(', ')}`)
    }
    if (differs > 0) throw new NixipfsError('ERR_NOT_REPRODUCIBLE', `${differs} path(s) did not rebuild as signed; published signed dispute statement(s) in the own cache`)
  }
})
