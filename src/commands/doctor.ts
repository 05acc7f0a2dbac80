import { defineCommand } from 'citty'
import { consola } from 'consola'
import { DEFAULT_LISTEN } from '../constants.js'
import { NixipfsError } from '../errors.js'
import { diagnose } from '../doctor.js'
import { repeatedArg, repoArg, repoOf } from './common.js'

export default defineCommand({
  meta: {
    name: 'doctor',
    description: 'Check Nix\'s configuration (substituters, trusted-public-keys and their names, post-build-hook as a dry run), the repo, its key and record, the gateway and peers, and say what to fix.\n\n' +
      'Example: nixipfs doctor --gateway http://127.0.0.1:8080'
  },
  args: {
    ...repoArg,
    gateway: { type: 'string', default: `http://${DEFAULT_LISTEN}`, description: 'URL of the gateway Nix should use', valueHint: 'URL' },
    'http-gateway': { type: 'string', description: 'Peer to check is reachable; repeatable', valueHint: 'URL' },
    follow: { type: 'string', description: 'A key the gateway follows, checked for a name another key has too; repeatable', valueHint: 'KEY' },
    trust: { type: 'string', description: 'A key the gateway trusts, checked likewise; repeatable', valueHint: 'KEY' }
  },
  async run ({ args, rawArgs }) {
    const findings = await diagnose({ repo: repoOf(args), gateway: args.gateway, httpGateways: repeatedArg(rawArgs, 'http-gateway'), keys: [...repeatedArg(rawArgs, 'follow'), ...repeatedArg(rawArgs, 'trust')].filter(k => k.includes(':')) })
    for (const f of findings) {
      const line = `${f.check}: ${f.message}`
      if (f.ok) consola.success(line)
      else if (f.required) consola.error(line)
      else consola.warn(line)
    }
    const problems = findings.filter(f => !f.ok && f.required).length
    if (problems > 0) throw new NixipfsError('ERR_DOCTOR', `${problems} problem(s) to fix (above)`)
    consola.success('nothing to fix')
  }
})
