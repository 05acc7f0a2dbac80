import { defineCommand } from 'citty'
import { consola } from 'consola'
import { PackStore } from '../ipfs/pack-store.js'
import { allDisputes } from '../trust/disputes.js'
import { existingRepoOf, repoArg } from './common.js'

export default defineCommand({
  meta: {
    name: 'disputes',
    description: 'List the store paths builders disagree on: recorded by this node\'s quorum checks (a gateway with --trust) or unions (caches giving one path different NARs),\n' +
      'and signed dispute statements (nixipfs verify) that followed builders published or that were announced on the network.\n\n' +
      'Example: nixipfs disputes, or nixipfs disputes --json | jq .'
  },
  args: {
    ...repoArg,
    json: { type: 'boolean', description: 'Print JSON (as GET /disputes does)' }
  },
  async run ({ args }) {
    const repo = await existingRepoOf(args)
    const blocks = await PackStore.openRepo(repo)
    const disputes = await allDisputes(repo, blocks, m => consola.warn(m)).finally(async () => await blocks.close())
    if (args.json === true) { console.log(JSON.stringify(disputes, null, 2)); return }
    if (disputes.length === 0) { consola.info('no disputes recorded'); return }
    for (const d of disputes) {
      if (d.kind === 'quorum') {
        console.log(`${d.storePath}  (signers disagree; first seen ${d.firstSeen}, last ${d.lastSeen})`)
        for (const g of d.groups) console.log(`  ${g.narHash}  ${g.narSize} bytes  signed by ${g.keys.map(k => k.split(':')[0]).join(', ')}`)
      } else {
        console.log(`${d.storePath}  (rebuilt by ${d.by.split(':')[0]} on ${d.date}, ${d.via === 'network' ? 'announced on the network' : `published in /ipns/${d.cache}`})`)
        console.log(`  ${d.rebuilt.narHash}  ${d.rebuilt.narSize} bytes  rebuilt`)
        for (const s of d.signed) console.log(`  ${s.narHash}  ${s.narSize} bytes  signed by ${s.key}`)
      }
    }
  }
})
