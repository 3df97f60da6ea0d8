// Load-tests the built Worker served directly by local workerd (Miniflare, no wrangler proxy) and
// prints one markdown table per section, all measured in one run:
//  1. edgeward's edge checks: GET /edge/whoami (partner gate for the page's Origin, access token,
//     partner active, rate limit; answered at the edge) against the no-op /healthz of the same
//     Worker; the token endpoint too.
//  2. the same checks hand-written in JavaScript with `jose` (benches/jose-worker), served the
//     same way, against its own no-op route; and edgeward's throughput divided by its.
//  3. the forward path: GET /api/... through edgeward to a local origin (benches/origin.mjs)
//     against the same request sent straight to that origin.
//  4. bundle sizes (`wrangler deploy --dry-run`) and CPU time per request.
// Then the per-flow timings (code flow, linking, automatic login).
//
// Every wrk run is one route for `seconds`; the routes are measured in alternating rounds and the
// median round is reported: on a small machine one round is noisy. Each run that presents an
// access token gets a fresh one (they live 300 s).
//
// CPU time per request: utime + stime of the process that served the run (the workerd process
// Miniflare started, all its threads; for the origin, its node process), read from
// /proc/<pid>/stat before and after the wrk run and divided by the requests wrk completed. It is
// the whole runtime's work, not only the Worker's code: HTTP parsing, Miniflare's entry worker
// that routes each request, edgeward's request-log line. Clock ticks are 10 ms, so a short run is
// coarse; the no-op row gives the runtime's share.
// Usage: node scripts/bench.mjs [seconds] [connections] [rounds]
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Miniflare } from 'miniflare';
import { unstable_readConfig } from 'wrangler';
import { startWorker, ROOT } from '../tests/e2e/harness.mjs';
import { CookieJar, pkce, basicAuth, browserFlow, confirmLink, formFields } from '../tests/e2e/oauth.mjs';
import { randomUUID } from 'node:crypto';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from './lib/jwk.mjs';

const seconds = Number(process.argv[2] || 8);
const connections = Number(process.argv[3] || 16);
const rounds = Number(process.argv[4] || 3);
const ORIGIN = 'https://bench.partner.example';
const JOSE_CONFIG = path.join(ROOT, 'benches', 'jose-worker', 'wrangler.toml');
if (seconds >= 280) throw new Error('rounds must stay well under the access tokens’ 300 s');

/**
 * The bench partner's rate limits, per minute: the one place to set them. edgeward's defaults
 * (6,000 API calls and 600 token requests a minute per partner) would turn most of a load test
 * into 429s. The jose Worker gets the same API limits.
 */
const BENCH_LIMITS = {
  api_per_minute: 10_000_000,
  api_per_client_per_minute: 10_000_000,
  token_per_minute: 10_000_000,
  token_per_client_per_minute: 10_000_000,
};

/**
 * Creates or replaces a partner with `spec` and the bench's rate limits. A Worker whose admin
 * API does not know `rate_limits` yet (it then has no limits either) gets the spec without them.
 * Returns whether the limits were set.
 */
async function putPartner(w, id, spec) {
  const res = await w.admin(`/partners/${id}`, { method: 'PUT', body: { ...spec, rate_limits: BENCH_LIMITS } });
  if (res.ok) return true;
  const text = await res.text();
  if (res.status === 400 && text.includes('rate_limits') && text.includes('unknown field')) {
    const plain = await w.admin(`/partners/${id}`, { method: 'PUT', body: spec });
    if (plain.ok) return false;
    throw new Error(`PUT partner ${id}: ${plain.status} ${await plain.text()}`);
  }
  throw new Error(`PUT partner ${id}: ${res.status} ${text}`);
}

// wrk runs asynchronously: Miniflare's own loop lives in this process and must keep running.
function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const headerArgs = (headers) => Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state). */
function statFields(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return { comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')), f: s.slice(s.lastIndexOf(')') + 2).split(' ') };
}

/** CPU time (user + system, all threads) a process has used so far, in ms. */
function cpuMs(pid) {
  const { f } = statFields(pid);
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** The workerd processes this process started (Miniflare spawns workerd directly). */
function workerdChildren() {
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const { comm, f } = statFields(name);
      if (comm === 'workerd' && Number(f[1]) === process.pid) pids.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

/** Starts something that spawns one workerd, and returns it with that workerd's pid. */
async function withWorkerdPid(start) {
  const before = new Set(workerdChildren());
  const started = await start();
  const pids = workerdChildren().filter((p) => !before.has(p));
  if (pids.length !== 1) throw new Error(`expected one new workerd process, found ${pids.length}`);
  return [started, pids[0]];
}

let pids = {}; // target -> pid whose CPU time is read

async function wrk(url, headers = {}, script = null) {
  const extra = script ? ['-s', script] : [];
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([t, p]) => [t, cpuMs(p)]));
  const r = await run('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', ...extra, ...headerArgs(headers), url]);
  const cpu = Object.fromEntries(Object.entries(pids).map(([t, p]) => [t, cpuMs(p) - cpuBefore[t]]));
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const num = (re) => {
    const m = r.stdout.match(re);
    if (!m) throw new Error(`cannot parse wrk output:\n${r.stdout}`);
    return m;
  };
  const toMs = ([, v, unit]) => Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60000 }[unit]);
  const non2xx = r.stdout.match(/Non-2xx or 3xx responses: (\d+)/);
  const sock = r.stdout.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const requests = Number(num(/(\d+) requests in/)[1]);
  return {
    rps: Number(num(/Requests\/sec:\s+([\d.]+)/)[1]),
    p50: toMs(num(/^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$/m)),
    p99: toMs(num(/^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m)),
    // wrk's "Non-2xx or 3xx" answers plus its socket errors (timeouts under load count here).
    errors: (non2xx ? Number(non2xx[1]) : 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    // µs of CPU per completed request, per process
    cpuUs: Object.fromEntries(Object.entries(cpu).map(([t, ms]) => [t, requests ? (ms * 1000) / requests : NaN])),
  };
}

const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const median = (xs) => percentile(xs, 50);

/** `wrangler deploy --dry-run` of a config: the bundle it would upload, and its sizes. */
function dryRun(config, outdir) {
  const r = spawnSync(
    path.join(ROOT, 'node_modules', '.bin', 'wrangler'),
    ['deploy', '--dry-run', '--outdir', outdir, ...(config ? ['--config', config] : [])],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, EDGEWARD_SKIP_BUILD: '1', WRANGLER_SEND_METRICS: 'false' } },
  );
  const m = `${r.stdout}${r.stderr}`.match(/Total Upload: ([\d.]+ \w+) \/ gzip: ([\d.]+ \w+)/);
  if (r.status !== 0 || !m) throw new Error(`wrangler deploy --dry-run ${config ?? ''} failed:\n${r.stdout}${r.stderr}`);
  return { dir: outdir, total: m[1], gzip: m[2] };
}

/** The local origin, in its own process. */
async function startLocalOrigin() {
  const child = spawn(process.execPath, [path.join(ROOT, 'benches', 'origin.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) resolve(buf.split('\n')[0].trim());
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`the origin exited (${code})`)));
  });
  return { url, pid: child.pid, stop: () => child.kill('SIGTERM') };
}

/** The jose Worker, served by its own Miniflare (its own workerd), with its KV records. */
async function startJoseWorker(bundle, vars, records) {
  const config = unstable_readConfig({ config: JOSE_CONFIG });
  const mf = new Miniflare({
    name: 'jose',
    modules: true,
    scriptPath: path.join(bundle, 'index.js'),
    modulesRoot: bundle,
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    kvNamespaces: ['GATE'],
    bindings: { ...config.vars, ...vars },
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      stderr.pipe(process.stderr);
    },
  });
  const url = (await mf.ready).origin;
  const kv = await mf.getKVNamespace('GATE');
  for (const [k, v] of Object.entries(records)) await kv.put(k, JSON.stringify(v));
  return { url, stop: () => mf.dispose() };
}

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
const partnerJwt = (typ, payload) => signJwt(partnerKey, { alg: 'EdDSA', kid: partnerKey.kid, typ }, payload);

/** Linking flows (login, consent, allow) for fresh users, then automatic logins. */
async function linkFlows(w, n) {
  const linking = [];
  const auto = [];
  for (let i = 0; i < n; i++) {
    await w.admin(`/users/linker${i}`, { method: 'PUT', body: { password: 'bench password 123', name: `Linker ${i}` } });
  }
  for (let i = 0; i < n; i++) {
    const now = Math.floor(Date.now() / 1000);
    const request = partnerJwt(LINK_REQUEST_TYP, {
      iss: ORIGIN, aud: w.url, sub: `bench-${i}`, jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`,
      account_label: `bench user ${i}`, state: `bench-state-${i}`,
    });
    const jar = new CookieJar(w.url);
    const start = performance.now();
    let res = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
    res = await jar.fetch(res.headers.get('location'));
    res = await jar.postForm('/login', { ...formFields(await res.text()), username: `linker${i}`, password: 'bench password 123' });
    res = await jar.fetch(res.headers.get('location'));
    res = await jar.postForm('/link', { ...formFields(await res.text()), decision: 'allow' });
    if (res.status !== 303) throw new Error(`link answered ${res.status}`);
    res = await confirmLink(w.url, partnerKey, request, res.headers.get('location'));
    if (res.status !== 200) throw new Error(`link confirmation answered ${res.status}`);
    linking.push(performance.now() - start);
  }
  for (let i = 0; i < n; i++) {
    const now = Math.floor(Date.now() / 1000);
    const assertion = partnerJwt(LOGIN_ASSERTION_TYP, { iss: ORIGIN, aud: w.url, sub: `bench-${i}`, jti: randomUUID(), exp: now + 100 });
    const start = performance.now();
    // As the partner's page posts it: the browser names the page's origin.
    const res = await fetch(`${w.url}/login/auto`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
      body: new URLSearchParams({ assertion, return_to: '/account' }),
    });
    if (res.status !== 303) throw new Error(`auto login answered ${res.status}`);
    await res.arrayBuffer();
    auto.push(performance.now() - start);
  }
  return { linking, auto };
}

/** The same token with one signature character changed: must be refused. */
function forged(token) {
  const i = token.lastIndexOf('.') + 10;
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
}

async function expectStatus(res, status, what) {
  const text = await res.text();
  if (res.status !== status) throw new Error(`${what} answered ${res.status}, expected ${status}: ${text}`);
  return text;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'edgeward-bench-'));
const edgewardBundle = dryRun(null, path.join(tmp, 'edgeward'));
const joseBundle = dryRun(JOSE_CONFIG, path.join(tmp, 'jose'));
const origin = await startLocalOrigin();
let w;
let jose;
try {
  [w, pids.edgeward] = await withWorkerdPid(() =>
    startWorker({ keepLogs: false, vars: { ORIGIN_URL: origin.url, API_SCOPES: JSON.stringify({ '/api': 'api' }) } }),
  );
  const limitsSet = await putPartner(w, 'bench', { name: 'Bench Partner', origins: [ORIGIN], jwks: { keys: [publicJwk(partnerKey)] } });
  const svc = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench service', grant_types: ['client_credentials'], scopes: ['api'] },
  })).json();
  const web = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench web', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] },
  })).json();
  await w.admin('/users/bench', { method: 'PUT', body: { password: 'bench password 123', name: 'Bench User' } });

  let token = null;
  async function freshToken() {
    const res = await w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(svc.client_id, svc.client_secret) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'api' }).toString(),
    });
    token = JSON.parse(await expectStatus(res, 200, 'the token endpoint')).access_token;
  }
  await freshToken();

  const jwks = await (await w.fetch('/.well-known/jwks.json')).json();
  [jose, pids.jose] = await withWorkerdPid(() =>
    startJoseWorker(
      joseBundle.dir,
      {
        ISSUER: w.url,
        AUDIENCE: `${w.url}/api`,
        JWKS: JSON.stringify(jwks),
        API_PER_MINUTE: String(BENCH_LIMITS.api_per_minute),
        API_PER_CLIENT_PER_MINUTE: String(BENCH_LIMITS.api_per_client_per_minute),
      },
      {
        [`origin:${ORIGIN}`]: { partner_id: 'bench', status: 'active' },
        [`client:${svc.client_id}`]: { partner_id: 'bench' },
        'partner:bench': { status: 'active' },
      },
    ),
  );
  pids.origin = origin.pid;

  // Both Workers must do the same job: same answer for the same token, forgeries refused.
  const whoHeaders = () => ({ Origin: ORIGIN, Authorization: `Bearer ${token}` });
  const ours = JSON.parse(await expectStatus(await w.fetch('/edge/whoami', { headers: whoHeaders() }), 200, 'edgeward whoami'));
  const theirs = JSON.parse(await expectStatus(await fetch(`${jose.url}/edge/whoami`, { headers: whoHeaders() }), 200, 'jose whoami'));
  if (!isDeepStrictEqual(ours, theirs)) throw new Error(`the whoami answers differ: ${JSON.stringify(ours)} vs ${JSON.stringify(theirs)}`);
  const bad = { Origin: ORIGIN, Authorization: `Bearer ${forged(token)}` };
  await expectStatus(await w.fetch('/edge/whoami', { headers: bad }), 401, 'edgeward whoami with a forged token');
  await expectStatus(await fetch(`${jose.url}/edge/whoami`, { headers: bad }), 401, 'jose whoami with a forged token');
  await expectStatus(await w.fetch('/edge/whoami', { headers: { ...whoHeaders(), Origin: 'https://evil.example' } }), 403, 'edgeward whoami, unknown origin');
  await expectStatus(await fetch(`${jose.url}/edge/whoami`, { headers: { ...whoHeaders(), Origin: 'https://evil.example' } }), 403, 'jose whoami, unknown origin');
  const forwardedText = await expectStatus(await w.fetch('/api/v1/bench', { headers: whoHeaders() }), 200, 'edgeward /api');
  if (JSON.parse(forwardedText).origin !== 'ok') throw new Error(`/api did not reach the origin: ${forwardedText}`);
  await expectStatus(await fetch(`${origin.url}/api/v1/bench`), 200, 'the origin');

  const tokenScript = path.join(tmp, 'token.lua');
  writeFileSync(tokenScript, [
    'wrk.method = "POST"',
    'wrk.body = "grant_type=client_credentials&scope=api"',
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    `wrk.headers["Authorization"] = "${basicAuth(svc.client_id, svc.client_secret)}"`,
  ].join('\n'));
  const routes = [
    { id: 'e-noop', target: 'edgeward', name: 'no-op /healthz', url: `${w.url}/healthz` },
    { id: 'e-who', target: 'edgeward', name: 'GET /edge/whoami (Origin + bearer token)', url: `${w.url}/edge/whoami`, headers: whoHeaders },
    { id: 'e-token', target: 'edgeward', name: 'token endpoint (client_credentials, signs a JWT)', url: `${w.url}/oauth2/token`, script: tokenScript },
    { id: 'j-noop', target: 'jose', name: 'no-op /healthz', url: `${jose.url}/healthz` },
    { id: 'j-who', target: 'jose', name: 'GET /edge/whoami (Origin + bearer token)', url: `${jose.url}/edge/whoami`, headers: whoHeaders },
    { id: 'o-direct', target: 'origin', name: 'straight to the origin', url: `${origin.url}/api/v1/bench`, headers: whoHeaders },
    { id: 'e-api', target: 'edgeward', name: 'through edgeward: checks, identity headers, forward', url: `${w.url}/api/v1/bench`, headers: whoHeaders },
  ];
  const start = performance.now();
  // Warm every route (JIT, isolate, caches), then measure.
  for (const r of routes) {
    if (r.headers) await freshToken();
    await run('wrk', ['-t1', '-c4', '-d2s', ...(r.script ? ['-s', r.script] : []), ...headerArgs(r.headers?.() ?? {}), r.url]);
  }
  const samples = Object.fromEntries(routes.map((r) => [r.id, []]));
  for (let round = 0; round < rounds; round++) {
    for (const r of routes) {
      if (r.headers) await freshToken();
      samples[r.id].push(await wrk(r.url, r.headers?.() ?? {}, r.script));
    }
  }
  const measuredS = (performance.now() - start) / 1000;
  // The median round by throughput; CPU per request is the median over rounds, per process.
  const res = Object.fromEntries(routes.map((r) => {
    const runs = samples[r.id];
    const m = [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)];
    const cpu = Object.fromEntries(Object.keys(pids).map((t) => [t, median(runs.map((x) => x.cpuUs[t]))]));
    return [r.id, { ...r, ...m, cpu }];
  }));
  const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '—');
  const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
  const row = (cells) => console.log(`| ${cells.join(' | ')} |`);

  console.log(
    `\nwrk: ${rounds} alternating rounds of ${seconds}s per route (median round shown), ${connections} connections, ` +
      `2 threads, ${os.cpus().length} cores; each Worker served by its own Miniflare (workerd). ` +
      `CPU µs/request: the serving process's CPU time (/proc/<pid>/stat utime+stime) over the run, divided by the requests served ` +
      `(the whole runtime, not only the Worker's code). Rate limits of the bench partner: ${limitsSet ? 'raised for the bench' : 'not settable on this build (no rate_limits in the admin API)'}.`,
  );

  console.log('\n### 1. edgeward: the edge checks against its no-op route\n');
  row(['route', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx / socket errors', 'workerd CPU µs/request', 'ratio to no-op']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:']);
  for (const id of ['e-noop', 'e-who', 'e-token']) {
    const r = res[id];
    row([r.name, f0(r.rps), f2(r.p50), f2(r.p99), `${r.non2xx} / ${r.errors - r.non2xx}`, f0(r.cpu.edgeward), f2(r.rps / res['e-noop'].rps)]);
  }

  console.log('\n### 2. the same checks hand-written with jose (benches/jose-worker)\n');
  row(['route', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx / socket errors', 'workerd CPU µs/request', 'ratio to no-op', 'edgeward ÷ jose (requests/s)']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  for (const [id, ours] of [['j-noop', 'e-noop'], ['j-who', 'e-who']]) {
    const r = res[id];
    row([r.name, f0(r.rps), f2(r.p50), f2(r.p99), `${r.non2xx} / ${r.errors - r.non2xx}`, f0(r.cpu.jose), f2(r.rps / res['j-noop'].rps), `${f2(res[ours].rps / r.rps)}×`]);
  }

  console.log('\n### 3. the forward path: GET /api/v1/bench to a local origin (node http, small JSON)\n');
  row(['path', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx / socket errors', 'edgeward workerd CPU µs/request', 'origin CPU µs/request', 'ratio to direct']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  for (const id of ['o-direct', 'e-api']) {
    const r = res[id];
    row([r.name, f0(r.rps), f2(r.p50), f2(r.p99), `${r.non2xx} / ${r.errors - r.non2xx}`, id === 'o-direct' ? '—' : f0(r.cpu.edgeward), f0(r.cpu.origin), f2(r.rps / res['o-direct'].rps)]);
  }

  console.log('\n### 4. bundle size and CPU time per request (workerd process, median over rounds)\n');
  row(['Worker', 'bundle (wrangler Total Upload)', 'gzip', 'CPU µs/request, no-op', 'CPU µs/request, whoami', 'whoami − no-op', 'CPU µs/request, /api forward']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:']);
  const e = (id) => res[id].cpu.edgeward;
  const j = (id) => res[id].cpu.jose;
  row(['edgeward (Rust/WebAssembly)', edgewardBundle.total, edgewardBundle.gzip, f0(e('e-noop')), f0(e('e-who')), f0(e('e-who') - e('e-noop')), f0(e('e-api'))]);
  row(['jose Worker (JavaScript)', joseBundle.total, joseBundle.gzip, f0(j('j-noop')), f0(j('j-who')), f0(j('j-who') - j('j-noop')), '—']);
  const anyErrors = ['e-who', 'j-who', 'e-api', 'e-token'].some((id) => res[id].errors > 0);
  if (anyErrors) {
    console.log(
      '\nnon-2xx answers under load: if they are 429s, raise the partner\'s limits (BENCH_LIMITS and putPartner in scripts/bench.mjs).',
    );
  }
  console.log(`\n(load phase: ${measuredS.toFixed(0)} s)`);

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
  await w?.stop();
  await jose?.stop();
  origin.stop();
  rmSync(tmp, { recursive: true, force: true });
}
