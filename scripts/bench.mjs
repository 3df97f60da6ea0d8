// Load-tests the built Worker served directly by local workerd (Miniflare, no wrangler proxy):
// the gated /api route against the no-op /healthz of the same Worker, in the same run.
// Routes are measured in alternating rounds and the median round is reported: on a small
// machine one round is noisy.
// Usage: node scripts/bench.mjs [seconds] [connections] [rounds]
import { spawn } from 'node:child_process';
import { startWorker, addPartner } from '../tests/e2e/harness.mjs';

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

async function wrk(url, headers = {}) {
  const r = await run(['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', ...headerArgs(headers), url]);
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

const w = await startWorker({ keepLogs: false });
try {
  await addPartner(w, 'bench', [ORIGIN]);
  const check = await w.fetch('/api/v1/bench', { headers: { origin: ORIGIN } });
  if (check.status !== 200) throw new Error(`gated route answered ${check.status}`);
  const routes = [
    ['no-op /healthz', `${w.url}/healthz`, {}],
    ['gated /api (partner origin)', `${w.url}/api/v1/bench`, { Origin: ORIGIN }],
  ];
  // Warm both routes (JIT, isolate, gate cache), then measure.
  for (const [, url, headers] of routes) await run(['-t1', '-c4', '-d2s', ...headerArgs(headers), url]);
  const samples = routes.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (const [i, [, url, headers]] of routes.entries()) samples[i].push(await wrk(url, headers));
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
} finally {
  await w.stop();
}
