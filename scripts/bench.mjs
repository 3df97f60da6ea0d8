// Load-tests the built Worker served directly by local workerd (Miniflare, no wrangler proxy):
// the gated /api route against the no-op /healthz of the same Worker, in the same run.
// Routes are measured in alternating rounds and the median round is reported: on a small
// machine one round is noisy.
// Usage: node scripts/bench.mjs [seconds] [connections] [rounds]
import { spawn } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startWorker } from '../tests/e2e/harness.mjs';
import { CookieJar, pkce, basicAuth, browserFlow, formFields } from '../tests/e2e/oauth.mjs';
import { createPrivateKey, randomUUID, sign as cryptoSign } from 'node:crypto';
import { generateJwk, publicJwk } from './lib/jwk.mjs';

const seconds = Number(process.argv[2] || 10);
const connections = Number(process.argv[3] || 16);
const rounds = Number(process.argv[4] || 3);
const ORIGIN = 'https://bench.partner.example';

// wrk runs asynchronously: Miniflare's own loop lives in this process and must keep running.
function run(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const headerArgs = (headers) => Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

async function wrk(url, headers = {}, script = null) {
  const extra = script ? ['-s', script] : [];
  const r = await run(['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', ...extra, ...headerArgs(headers), url]);
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const num = (re) => {
    const m = r.stdout.match(re);
    if (!m) throw new Error(`cannot parse wrk output:\n${r.stdout}`);
    return m;
  };
  const toMs = ([, v, unit]) => Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60000 }[unit]);
  const non2xx = r.stdout.match(/Non-2xx or 3xx responses: (\d+)/);
  return {
    rps: Number(num(/Requests\/sec:\s+([\d.]+)/)[1]),
    p50: toMs(num(/^\s+50%\s+([\d.]+)(us|ms|s|m)$/m)),
    p99: toMs(num(/^\s+99%\s+([\d.]+)(us|ms|s|m)$/m)),
    errors: non2xx ? Number(non2xx[1]) : 0,
  };
}

const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

/** Times complete code flows, one after another (a person's flow is sequential). */
async function flows(w, client, n, { returning }) {
  const times = [];
  const jar = new CookieJar(w.url);
  for (let i = 0; i < n; i++) {
    const { verifier, challenge } = pkce();
    const start = performance.now();
    const { callback } = await browserFlow(w, {
      client, username: 'bench', password: 'bench password 123', challenge, scope: 'openid profile',
      jar: returning ? jar : new CookieJar(w.url),
    });
    const res = await fetch(`${w.url}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: verifier }),
    });
    if (res.status !== 200) throw new Error(`token answered ${res.status}`);
    await res.arrayBuffer();
    times.push(performance.now() - start);
  }
  return times;
}

const partnerKey = generateJwk('EdDSA');
function partnerJwt(payload) {
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${enc({ alg: 'EdDSA', kid: partnerKey.kid, typ: 'JWT' })}.${enc(payload)}`;
  return `${input}.${cryptoSign(null, Buffer.from(input), createPrivateKey({ key: partnerKey, format: 'jwk' })).toString('base64url')}`;
}

/** Linking flows (login, consent, allow) for fresh users, then automatic logins. */
async function linkFlows(w, n) {
  const linking = [];
  const auto = [];
  for (let i = 0; i < n; i++) {
    await w.admin(`/users/linker${i}`, { method: 'PUT', body: { password: 'bench password 123', name: `Linker ${i}` } });
  }
  for (let i = 0; i < n; i++) {
    const now = Math.floor(Date.now() / 1000);
    const request = partnerJwt({
      iss: ORIGIN, aud: w.url, sub: `bench-${i}`, jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`,
    });
    const jar = new CookieJar(w.url);
    const start = performance.now();
    let res = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
    res = await jar.fetch(res.headers.get('location'));
    res = await jar.postForm('/login', { ...formFields(await res.text()), username: `linker${i}`, password: 'bench password 123' });
    res = await jar.fetch(res.headers.get('location'));
    res = await jar.postForm('/link', { ...formFields(await res.text()), decision: 'allow' });
    if (res.status !== 303) throw new Error(`link answered ${res.status}`);
    linking.push(performance.now() - start);
  }
  for (let i = 0; i < n; i++) {
    const now = Math.floor(Date.now() / 1000);
    const assertion = partnerJwt({ iss: ORIGIN, aud: w.url, sub: `bench-${i}`, jti: randomUUID(), exp: now + 100 });
    const start = performance.now();
    const res = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion, return_to: '/account' })}`, { redirect: 'manual' });
    if (res.status !== 302) throw new Error(`auto login answered ${res.status}`);
    await res.arrayBuffer();
    auto.push(performance.now() - start);
  }
  return { linking, auto };
}

const w = await startWorker({ keepLogs: false });
const tmp = mkdtempSync(path.join(os.tmpdir(), 'edgeward-bench-'));
try {
  await w.admin('/partners/bench', {
    method: 'PUT',
    body: { name: 'Bench Partner', origins: [ORIGIN], jwks: { keys: [publicJwk(partnerKey)] } },
  });
  const check = await w.fetch('/api/v1/bench', { headers: { origin: ORIGIN } });
  if (check.status !== 200) throw new Error(`gated route answered ${check.status}`);
  const svc = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench service', grant_types: ['client_credentials'], scopes: ['classes.read'] },
  })).json();
  const web = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench web', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] },
  })).json();
  await w.admin('/users/bench', { method: 'PUT', body: { password: 'bench password 123', name: 'Bench User' } });
  const tokenScript = path.join(tmp, 'token.lua');
  writeFileSync(tokenScript, [
    'wrk.method = "POST"',
    'wrk.body = "grant_type=client_credentials"',
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    `wrk.headers["Authorization"] = "${basicAuth(svc.client_id, svc.client_secret)}"`,
  ].join('\n'));
  const routes = [
    ['no-op /healthz', `${w.url}/healthz`, {}],
    ['gated /api (partner origin)', `${w.url}/api/v1/bench`, { Origin: ORIGIN }],
    ['token endpoint (client_credentials, signs a JWT)', `${w.url}/oauth2/token`, {}, tokenScript],
  ];
  // Warm both routes (JIT, isolate, gate cache), then measure.
  for (const [, url, headers, script] of routes) {
    await run(['-t1', '-c4', '-d2s', ...(script ? ['-s', script] : []), ...headerArgs(headers), url]);
  }
  const samples = routes.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (const [i, [, url, headers, script]] of routes.entries()) samples[i].push(await wrk(url, headers, script));
  }
  const median = (runs) => [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)];
  const results = routes.map(([name], i) => [name, median(samples[i])]);
  const base = results[0][1].rps;
  console.log(
    `\nwrk: ${rounds} alternating rounds of ${seconds}s per route (median round shown), ` +
      `${connections} connections, 2 threads; Worker served by Miniflare (workerd)\n`,
  );
  console.log('| route | requests/s | p50 ms | p99 ms | non-2xx | ratio to no-op |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, r] of results) {
    console.log(`| ${name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} | ${(r.rps / base).toFixed(2)} |`);
  }

  const N = 20;
  const fresh = await flows(w, web, N, { returning: false });
  const back = await flows(w, web, N, { returning: true });
  console.log(`\nper-flow times, ${N} sequential flows each (client-side time, loopback):\n`);
  console.log('| flow | mean ms | p50 ms | max ms |');
  console.log('|---|---:|---:|---:|');
  const { linking, auto } = await linkFlows(w, N);
  for (const [name, t] of [
    ['new session: authorize, login (Argon2id), consent, token', fresh],
    ['returning user: authorize (session + consent remembered), token', back],
    ['account linking: link request, login (Argon2id), consent, link token', linking],
    ['automatic login: assertion verified, link found, session started', auto],
  ]) {
    const mean = t.reduce((a, b) => a + b, 0) / t.length;
    console.log(`| ${name} | ${mean.toFixed(1)} | ${percentile(t, 50).toFixed(1)} | ${Math.max(...t).toFixed(1)} |`);
  }
} finally {
  await w.stop();
  rmSync(tmp, { recursive: true, force: true });
}
