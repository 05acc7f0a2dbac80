import { defineCommand } from 'citty'
import { consola } from 'consola'
import { listDisputes } from '../trust/disputes.js'
import { repoArg, repoOf } from './common.js'

export default defineCommand({
  meta: {
    name: 'disputes',
    description: 'List the store paths for which trusted builders signed different NARs, as this node recorded them.\n\n' +
      'A gateway run with --trust/--threshold records one whenever two trusted keys disagree.\n' +
      'Example: nixipfs disputes, or nixipfs disputes --json | jq .'
  },
  args: {
    ...repoArg,
    json: { type: 'boolean', description: 'Print JSON (as GET /disputes does)' }
  },
  async run ({ args }) {
    const disputes = await listDisputes(repoOf(args))
    if (args.json === true) { console.log(JSON.stringify(disputes, null, 2)); return }
    if (disputes.length === 0) { consola.info('no disputes recorded'); return }
    for (const d of disputes) {
      console.log(`${d.storePath}  (first seen ${d.firstSeen}, last ${d.lastSeen})`)
      for (const g of d.groups) console.log(`  ${g.narHash}  ${g.narSize} bytes  signed by ${g.keys.map(k => k.split(':')[0]).join(', ')}`)
    }
  }
})
