// Child processes of scripts/bench.mjs and scripts/profile.mjs: the load generator and the local
// origin. Both run asynchronously: Miniflare's own loop lives in the calling process and must
// keep running meanwhile.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Runs `cmd` to its end: its status and what it printed. */
export function run(cmd, args) {
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

/** The local origin (benches/origin.mjs), in its own process so its CPU time can be read apart. */
export async function startLocalOrigin() {
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
