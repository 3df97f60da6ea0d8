// The storage-call counters of scripts/scale.sh (src/edge/rt/counts.rs) exist only in the
// counting build, and even there only on a loopback issuer: a deployment never answers them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from './harness.mjs';

test('the release build has no storage-call counters', async () => {
  const w = await startWorker();
  try {
    const res = await w.fetch('/__io-counts');
    assert.equal(res.status, 404);
    assert.ok(!(await res.text()).includes('round_trips'));
  } finally {
    await w.stop();
  }
});

test('the counting build answers its counters only on a loopback issuer', async () => {
  const local = await startWorker({ build: 'build-counts' });
  try {
    await local.fetch('/healthz');
    const res = await local.fetch('/__io-counts?reset=1');
    assert.equal(res.status, 200);
    const counts = await res.json();
    assert.equal(typeof counts.round_trips, 'number');
    assert.deepEqual(Object.keys(counts).sort(), ['calls', 'kv_reads', 'kv_writes', 'placements', 'round_trips']);
  } finally {
    await local.stop();
  }
  const deployed = await startWorker({ build: 'build-counts', vars: { ISSUER: 'https://edge.example' } });
  try {
    const res = await deployed.fetch('/__io-counts');
    assert.equal(res.status, 404);
    assert.ok(!(await res.text()).includes('round_trips'));
  } finally {
    await deployed.stop();
  }
});

test('the counting build counts a storage call and its round trip', async () => {
  const w = await startWorker({ build: 'build-counts' });
  try {
    await w.fetch('/__io-counts?reset=1');
    const put = await w.admin('/partners/acme', { method: 'PUT', body: { name: 'Acme', origins: ['https://acme.example'] } });
    assert.equal(put.status, 201);
    const counts = await (await w.fetch('/__io-counts?reset=1')).json();
    assert.equal(counts.calls['do:REGISTRY'].registry.put, 1);
    assert.equal(counts.kv_writes['partner:acme'].n, 1);
    assert.ok(counts.round_trips >= 1, `round trips: ${counts.round_trips}`);
    const after = await (await w.fetch('/__io-counts')).json();
    assert.deepEqual(after.calls, {}, 'reset clears the counts');
  } finally {
    await w.stop();
  }
});
