// The upgrade to sharded replay sets (issue 13): identifiers claimed in the per-signer objects of
// the earlier layout (`replay:{signer}`) stay refused while REPLAY_LEGACY_UNTIL lasts, the
// sharded store alone decides races, and without the var no old object is asked.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { startWorker, addPartner } from './harness.mjs';
import { publicJwk, generateJwk, signJwt } from '../../scripts/lib/jwk.mjs';

const key = generateJwk('EdDSA');
const workers = [];
after(() => Promise.all(workers.map((w) => w.stop())));

async function start(vars) {
  const w = await startWorker({ vars });
  workers.push(w);
  await addPartner(w, 'acme', ['https://app.acme.example']);
  const res = await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Server',
      grant_types: ['client_credentials'],
      scopes: ['classes.read'],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [publicJwk(key)] },
    },
  });
  assert.equal(res.status, 201);
  return { w, client: await res.json() };
}

function assertion(w, client, jti = randomUUID()) {
  const now = Math.floor(Date.now() / 1000);
  const id = client.client_id;
  const payload = { iss: id, sub: id, aud: `${w.url}/oauth2/token`, jti, iat: now, exp: now + 120 };
  return { jwt: signJwt(key, { alg: 'EdDSA', kid: key.kid, typ: 'JWT' }, payload), jti, exp: payload.exp };
}

function token(w, clientAssertion) {
  return fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: clientAssertion,
    }),
  });
}

/** Claims `jti` in the old layout, as a Worker before the upgrade did: its `claim` command sent to `replay:{client_id}`. */
async function claimInOldLayout(w, client, jti, exp) {
  const ns = await w.objects('REPLAY');
  const stub = ns.get(ns.idFromName(`replay:${client.client_id}`));
  const hashed = createHash('sha256').update(jti).digest('base64url');
  const now = Math.floor(Date.now() / 1000);
  const res = await stub.fetch('https://object.internal/command', {
    method: 'POST',
    body: JSON.stringify({ claim: { key: hashed, expires_at: exp + 60, now } }),
  });
  assert.deepEqual(await res.json(), { Ok: 'claimed' });
}

const soon = () => String(Math.floor(Date.now() / 1000) + 600);

test('replay_jti_claimed_in_the_old_layout_is_refused_while_the_legacy_var_lasts', async () => {
  const { w, client } = await start({ REPLAY_LEGACY_UNTIL: soon() });
  const used = assertion(w, client);
  await claimInOldLayout(w, client, used.jti, used.exp);
  const res = await token(w, used.jwt);
  assert.equal(res.status, 401, 'used before the upgrade');
  assert.equal((await res.json()).error, 'invalid_client');
  // An identifier the old layout never saw is claimed in its shard, once.
  const fresh = assertion(w, client);
  assert.equal((await token(w, fresh.jwt)).status, 200);
  assert.equal((await token(w, fresh.jwt)).status, 401, 'replayed after the upgrade');
});

test('replay_sharded_store_parallel_attempts_exactly_one_wins_with_the_legacy_check_on', async () => {
  const { w, client } = await start({ REPLAY_LEGACY_UNTIL: soon() });
  const a = assertion(w, client);
  const statuses = (await Promise.all(Array.from({ length: 20 }, () => token(w, a.jwt)))).map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses ${statuses}`);
  assert.equal(statuses.filter((s) => s === 401).length, 19, `statuses ${statuses}`);
  // Parallel attempts at an identifier used in the old layout: none wins.
  const old = assertion(w, client);
  await claimInOldLayout(w, client, old.jti, old.exp);
  const again = (await Promise.all(Array.from({ length: 10 }, () => token(w, old.jwt)))).map((r) => r.status);
  assert.deepEqual(again, Array(10).fill(401));
});

test('replay_old_objects_are_asked_only_with_the_legacy_var_and_a_failure_there_fails_closed', async () => {
  // The old layout's `check` fails wherever it is sent; the shards' `check_key`/`claim_key` do not.
  const faults = { EDGEWARD_INJECT_FAULTS: 'REPLAY:check' };
  const withVar = await start({ ...faults, REPLAY_LEGACY_UNTIL: soon() });
  const asked = await token(withVar.w, assertion(withVar.w, withVar.client).jwt);
  assert.equal(asked.status, 503, 'the old object is asked, and its failure is no admission');
  const { w, client } = await start({ ...faults, REPLAY_LEGACY_UNTIL: '' });
  const used = assertion(w, client);
  await claimInOldLayout(w, client, used.jti, used.exp);
  // No old object is asked: no injected failure, and the old layout's claim does not count.
  assert.equal((await token(w, used.jwt)).status, 200);
  assert.equal((await token(w, used.jwt)).status, 401, 'the shard refuses the replay');
  // A past deadline is the same as none.
  const past = await start({ ...faults, REPLAY_LEGACY_UNTIL: String(Math.floor(Date.now() / 1000) - 1) });
  assert.equal((await token(past.w, assertion(past.w, past.client).jwt)).status, 200);
});

test('replay_legacy_var_that_is_not_a_number_fails_closed', async () => {
  const { w, client } = await start({ REPLAY_LEGACY_UNTIL: 'tomorrow' });
  assert.equal((await token(w, assertion(w, client).jwt)).status, 503);
});
