// CPU profiles of the Worker under load, from V8's own sampling profiler (the inspector of the
// local workerd): where an isolate's time goes per route, by function, JavaScript glue and
// WebAssembly alike. It profiles a build that keeps its function names (scripts/profile.sh makes
// one in build-prof/ and runs this); a release build has none: its WebAssembly shows as wasm-function[n].
//
// Routes: the no-op /healthz, GET /edge/whoami, the token endpoint (client_credentials) and the
// forward path (GET /api/... to benches/origin.mjs). For each route: wrk loads it for `seconds` while the profiler samples every 50 µs; then the
// samples are summed by function (self time), and the top rows printed with their share of the
// isolate's busy time (all samples but "(idle)"), and the busy time per request. The profile is
// written to `outdir`/<route>.cpuprofile, which Chrome's DevTools open.
// The profiler sees the isolate's thread only: HTTP parsing, KV and the outbound fetch that
// workerd does on its own threads are in scripts/bench.sh's CPU column, not here.
// Usage: node scripts/profile.mjs [build dir, default build-prof] [seconds, default 5] [outdir]
import { mkdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startWorker } from '../tests/e2e/harness.mjs';
import { run, startLocalOrigin } from './lib/processes.mjs';
import { basicAuth } from '../tests/e2e/oauth.mjs';
import { generateJwk, publicJwk } from './lib/jwk.mjs';

const build = process.argv[2] || 'build-prof';
const seconds = Number(process.argv[3] || 5);
const outdir = process.argv[4] || mkdtempSync(path.join(os.tmpdir(), 'edgeward-profile-'));
const ORIGIN = 'https://bench.partner.example';
const INSPECTOR_PORT = 9329;
const LIMITS = {
  api_per_minute: 10_000_000,
  api_per_client_per_minute: 10_000_000,
  token_per_minute: 10_000_000,
  token_per_client_per_minute: 10_000_000,
};

/** A Chrome DevTools Protocol session with the edgeward isolate. */
async function inspect() {
  const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json/list`)).json();
  const target = targets.find((t) => t.id?.includes('edgeward') || t.webSocketDebuggerUrl?.includes('edgeward'));
  if (!target) throw new Error(`no edgeward isolate among the inspector's targets: ${JSON.stringify(targets)}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let next = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close() };
}

/** Self time per function, from a V8 .cpuprofile. */
function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const dt = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const sums = new Map();
  for (const [id, us] of dt) {
    const f = byId.get(id).callFrame;
    const file = f.url ? path.basename(f.url) : '';
    const name = `${f.functionName || '(anonymous)'}${file ? ` [${file}]` : ''}`;
    sums.set(name, (sums.get(name) ?? 0) + us);
  }
  return sums;
}

const origin = await startLocalOrigin();
const w = await startWorker({
  build,
  keepLogs: false,
  inspectorPort: INSPECTOR_PORT,
  vars: { ORIGIN_URL: origin.url, API_SCOPES: JSON.stringify({ '/api': 'api' }) },
});
try {
  const partnerKey = generateJwk('EdDSA');
  const put = await w.admin('/partners/bench', {
    method: 'PUT',
    body: { name: 'Bench Partner', origins: [ORIGIN], jwks: { keys: [publicJwk(partnerKey)] }, rate_limits: LIMITS },
  });
  if (!put.ok) throw new Error(`PUT partner: ${put.status} ${await put.text()}`);
  const svc = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench service', grant_types: ['client_credentials'], scopes: ['api'] },
  })).json();
  const tokenRes = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(svc.client_id, svc.client_secret) },
    body: 'grant_type=client_credentials&scope=api',
  });
  if (tokenRes.status !== 200) throw new Error(`token: ${tokenRes.status}`);
  const token = (await tokenRes.json()).access_token;
  const tokenScript = path.join(outdir, 'token.lua');
  mkdirSync(outdir, { recursive: true });
  writeFileSync(tokenScript, [
    'wrk.method = "POST"',
    'wrk.body = "grant_type=client_credentials&scope=api"',
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    `wrk.headers["Authorization"] = "${basicAuth(svc.client_id, svc.client_secret)}"`,
  ].join('\n'));
  const who = ['-H', `Origin: ${ORIGIN}`, '-H', `Authorization: Bearer ${token}`];
  const routes = [
    { id: 'noop', args: [`${w.url}/healthz`] },
    { id: 'whoami', args: [...who, `${w.url}/edge/whoami`] },
    { id: 'token', args: ['-s', tokenScript, `${w.url}/oauth2/token`] },
    { id: 'forward', args: [...who, `${w.url}/api/v1/bench`] },
  ];
  const cdp = await inspect();
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
  for (const r of routes) {
    await run('wrk', ['-t1', '-c4', '-d2s', ...r.args]); // warm
    await cdp.send('Profiler.start');
    const out = await run('wrk', ['-t1', '-c4', `-d${seconds}s`, ...r.args]);
    const { profile } = await cdp.send('Profiler.stop');
    const requests = Number(out.stdout.match(/(\d+) requests in/)?.[1] ?? NaN);
    writeFileSync(path.join(outdir, `${r.id}.cpuprofile`), JSON.stringify(profile));
    const sums = selfTimes(profile);
    const busy = [...sums].filter(([n]) => n !== '(idle) ').reduce((a, [n, us]) => (n.startsWith('(idle)') ? a : a + us), 0);
    console.log(`\n### ${r.id}: ${requests} requests, isolate busy ${(busy / requests).toFixed(0)} µs/request\n`);
    console.log('| function (self time) | µs/request | share of busy |');
    console.log('|---|---:|---:|');
    const rows = [...sums].filter(([n]) => !n.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 30);
    for (const [name, us] of rows) {
      console.log(`| ${name.replaceAll('|', '\\|')} | ${(us / requests).toFixed(1)} | ${((100 * us) / busy).toFixed(1)}% |`);
    }
  }
  cdp.close();
  console.log(`\nprofiles: ${outdir}`);
} finally {
  await w.stop();
  origin.stop();
}
