// The admin API: closed without its secret, silent without the right token, strict about input
// (nothing is written from a bad request), and one origin belongs to at most one partner.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, logOf } from './harness.mjs';

let w;
before(async () => {
  w = await startWorker();
});
after(() => w?.stop());

test('admin_without_admin_token_secret_stays_closed', async () => {
  for (const adminToken of [null, 'too-short-to-be-a-token']) {
    const closed = await startWorker({ adminToken });
    try {
      for (const token of [undefined, 'too-short-to-be-a-token', 'x'.repeat(40)]) {
        const res = await closed.admin('/partners', { token });
        assert.equal(res.status, 503, `secret ${adminToken}, token ${token}`);
        assert.equal((await res.json()).error, 'admin_disabled');
      }
    } finally {
      await closed.stop();
    }
  }
});

test('admin_missing_token_is_401_and_reveals_nothing', async () => {
  await addPartner(w, 'hidden', ['https://hidden.example']);
  for (const p of ['/partners', '/partners/hidden', '/partners/nobody']) {
    const res = await w.admin(p, { token: null });
    assert.equal(res.status, 401, p);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgeward"');
    const text = await res.text();
    assert.equal(JSON.parse(text).error, 'unauthorized');
    assert.doesNotMatch(text, /hidden/);
  }
  // The same answer for a partner that exists and one that does not.
  const a = await w.admin('/partners/hidden', { method: 'DELETE', token: null });
  const b = await w.admin('/partners/nobody', { method: 'DELETE', token: null });
  assert.deepEqual([a.status, await a.text()], [b.status, await b.text()]);
  assert.equal((await w.admin('/partners/hidden')).status, 200, 'still there');
});

test('admin_wrong_token_is_401_invalid_token', async () => {
  for (const auth of [
    `Bearer ${w.adminToken}x`,
    `Bearer ${w.adminToken.slice(1)}`,
    `Basic ${w.adminToken}`,
    `Bearer`,
    `${w.adminToken}`,
  ]) {
    const res = await w.fetch('/admin/partners', { headers: { authorization: auth } });
    assert.equal(res.status, 401, auth);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    const body = await res.json();
    assert.ok(['invalid_token', 'unauthorized'].includes(body.error), auth);
    assert.equal(body.partners, undefined);
  }
  const wrong = await w.fetch('/admin/partners', { headers: { authorization: `Bearer ${'z'.repeat(48)}` } });
  assert.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="edgeward", error="invalid_token"');
  assert.equal((await wrong.json()).error, 'invalid_token');
});

test('admin_token_in_query_string_is_not_accepted', async () => {
  const res = await w.fetch(`/admin/partners?access_token=${w.adminToken}`);
  assert.equal(res.status, 401);
});

test('admin_partner_crud_round_trip', async () => {
  const put = await w.admin('/partners/crud', {
    method: 'PUT',
    body: { name: ' Crud Learning ', origins: ['https://App.Crud.example:443/', 'https://XN--bcher-kva.crud.example'] },
  });
  assert.equal(put.status, 201);
  const created = await put.json();
  assert.deepEqual(
    { id: created.id, name: created.name, origins: created.origins, status: created.status },
    {
      id: 'crud',
      name: 'Crud Learning',
      origins: ['https://app.crud.example', 'https://xn--bcher-kva.crud.example'],
      status: 'active',
    },
  );
  assert.equal(typeof created.created_at, 'number');
  const unicode = await w.admin('/partners/crud2', { method: 'PUT', body: { name: 'U', origins: ['https://bücher.crud2.example'] } });
  assert.equal(unicode.status, 400);
  const err = await unicode.json();
  assert.equal(err.field, 'origins[0]');
  assert.match(err.error_description, /punycode/);

  const replace = await w.admin('/partners/crud', {
    method: 'PUT',
    body: { name: 'Crud', origins: ['https://app.crud.example'], status: 'suspended' },
  });
  assert.equal(replace.status, 200);
  const replaced = await replace.json();
  assert.equal(replaced.status, 'suspended');
  assert.equal(replaced.created_at, created.created_at);
  assert.ok(replaced.updated_at >= created.updated_at);

  const get = await w.admin('/partners/crud');
  assert.equal(get.status, 200);
  assert.deepEqual(await get.json(), replaced);

  const list = await (await w.admin('/partners')).json();
  assert.deepEqual(list.partners.find((p) => p.id === 'crud'), replaced);

  assert.equal((await w.admin('/partners/crud', { method: 'DELETE' })).status, 204);
  const gone = await w.admin('/partners/crud');
  assert.equal(gone.status, 404);
  assert.equal((await gone.json()).error, 'not_found');
  const again = await w.admin('/partners/crud', { method: 'DELETE' });
  assert.equal(again.status, 404);
  assert.equal((await again.json()).error, 'not_found');
});

test('admin_invalid_input_is_400_naming_the_field_and_writes_nothing', async () => {
  const cases = [
    [{ origins: ['https://a.example'] }, 'name'],
    [{ name: '', origins: ['https://a.example'] }, 'name'],
    [{ name: ['x'], origins: ['https://a.example'] }, 'name'],
    [{ name: 'A' }, 'origins'],
    [{ name: 'A', origins: [] }, 'origins'],
    [{ name: 'A', origins: 'https://a.example' }, 'origins'],
    [{ name: 'A', origins: ['https://a.example', 'http://b.example'] }, 'origins[1]'],
    [{ name: 'A', origins: ['https://a.example/path'] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://a.example?q=1'] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://a.example#f'] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://user:pw@a.example'] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://*.a.example'] }, 'origins[0]'],
    [{ name: 'A', origins: ['a.example'] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://a.example.'] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://a.example', 'https://A.example:443'] }, 'origins[1]'],
    [{ name: 'A', origins: [42] }, 'origins[0]'],
    [{ name: 'A', origins: ['https://a.example'], status: 'deleted' }, 'status'],
  ];
  for (const [body, field] of cases) {
    const res = await w.admin('/partners/invalid', { method: 'PUT', body });
    assert.equal(res.status, 400, JSON.stringify(body));
    const err = await res.json();
    assert.equal(err.error, 'invalid_request', JSON.stringify(body));
    assert.equal(err.field, field, JSON.stringify(body));
    assert.match(err.error_description, new RegExp(`^${field.replace(/[[\]]/g, '\\$&')}: `));
  }
  // A member we do not know is refused without naming it back (it is the caller's text).
  const unknown = await w.admin('/partners/invalid', { method: 'PUT', body: { name: 'A', origins: ['https://a.example'], admin: true } });
  assert.equal(unknown.status, 400);
  const err = await unknown.json();
  assert.equal(err.field, undefined);
  assert.equal(err.error_description, 'the body has a member that is not one of name, origins, status, issuer, jwks, jwks_uri, rate_limits');
  for (const raw of ['not json', '[]', 'null', '{"name":"A","origins":["https://a.example"]']) {
    const res = await w.admin('/partners/invalid', { method: 'PUT', body: raw });
    assert.equal(res.status, 400, raw);
    assert.equal((await res.json()).error, 'invalid_request');
  }
  assert.equal((await w.admin('/partners/invalid')).status, 404, 'nothing was written');
  const probe = await w.fetch('/api/x', { headers: { origin: 'https://a.example' } });
  assert.equal(probe.status, 403, 'no origin was published');
});

test('admin_invalid_partner_id_is_400', async () => {
  for (const id of ['Upper', '-dash', 'under_score', 'a%2Fb', 'x'.repeat(64)]) {
    const res = await w.admin(`/partners/${id}`, { method: 'PUT', body: { name: 'A', origins: ['https://id.example'] } });
    assert.equal(res.status, 400, id);
    assert.equal((await res.json()).field, 'partner_id', id);
  }
});

test('admin_body_must_be_json_and_small', async () => {
  const wrongType = await w.admin('/partners/typed', {
    method: 'PUT',
    body: '{"name":"A","origins":["https://typed.example"]}',
    headers: { 'content-type': 'text/plain' },
  });
  assert.equal(wrongType.status, 415);
  assert.equal((await wrongType.json()).error, 'unsupported_media_type');

  const huge = JSON.stringify({ name: 'A'.repeat(70 * 1024), origins: ['https://big.example'] });
  const tooLarge = await w.admin('/partners/big', { method: 'PUT', body: huge });
  assert.equal(tooLarge.status, 413);
  assert.equal((await tooLarge.json()).error, 'payload_too_large');
  assert.equal((await w.admin('/partners/typed')).status, 404);
  assert.equal((await w.admin('/partners/big')).status, 404);
});

test('admin_json_with_a_duplicate_member_is_refused', async () => {
  // serde_json would keep the last "status": a body that reads one way and acts another.
  const cases = [
    ['/partners/dup', '{"name":"Dup","origins":["https://dup.example"],"status":"suspended","status":"active"}'],
    ['/users/dupuser', '{"name":"A","password":"a long password 123","name":"B"}'],
  ];
  for (const [path, body] of cases) {
    const res = await w.admin(path, { method: 'PUT', body });
    assert.equal(res.status, 400, path);
    const err = await res.json();
    assert.equal(err.error, 'invalid_request', path);
    assert.match(err.error_description, /duplicate member/, path);
    assert.equal((await w.admin(path)).status, 404, `${path}: nothing stored`);
  }
  await addPartner(w, 'dupclients', ['https://dupclients.example']);
  const res = await w.admin('/partners/dupclients/clients', { method: 'POST', body: '{"name":"C","redirect_uris":["https://dupclients.example/cb"],"scopes":["openid"],"scopes":["openid","profile"]}' });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error_description, /duplicate member/);
});

test('admin_wrong_method_is_405_with_allow', async () => {
  const res = await w.admin('/partners/x', { method: 'POST', body: {} });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'GET, PUT, DELETE');
  const list = await w.admin('/partners', { method: 'DELETE' });
  assert.equal(list.status, 405);
  assert.equal(list.headers.get('allow'), 'GET');
});

test('admin_origin_of_another_partner_is_409_and_writes_nothing', async () => {
  await addPartner(w, 'owner', ['https://shared.example']);
  const res = await w.admin('/partners/thief', {
    method: 'PUT',
    body: { name: 'Thief', origins: ['https://own.thief.example', 'https://SHARED.example'] },
  });
  assert.equal(res.status, 409);
  const err = await res.json();
  assert.equal(err.error, 'origin_conflict');
  assert.equal(err.field, 'origins[1]');
  assert.match(err.error_description, /owner/);
  assert.equal((await w.admin('/partners/thief')).status, 404);
  const gate = await w.fetch('/api/x', { headers: { origin: 'https://shared.example' } });
  assert.equal(gate.status, 401, 'admitted by the gate (no token)');
  assert.equal((await logOf(w, gate)).partner, 'owner');
  assert.equal((await w.fetch('/api/x', { headers: { origin: 'https://own.thief.example' } })).status, 403);

  // Once released, the origin can move.
  await addPartner(w, 'owner', ['https://other.owner.example']);
  await addPartner(w, 'thief', ['https://shared.example']);
});

test('admin_concurrent_claims_of_one_origin_exactly_one_wins', async () => {
  const origin = 'https://contested.example';
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      w.admin(`/partners/racer-${i}`, { method: 'PUT', body: { name: `Racer ${i}`, origins: [origin] } }),
    ),
  );
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 201).length, 1, `statuses: ${statuses}`);
  assert.equal(statuses.filter((s) => s === 409).length, 19, `statuses: ${statuses}`);
  const winner = await results[statuses.indexOf(201)].json();
  const { partners } = await (await w.admin('/partners')).json();
  const holders = partners.filter((p) => p.origins.includes(origin));
  assert.deepEqual(holders.map((p) => p.id), [winner.id]);
  const gate = await w.fetch('/api/x', { headers: { origin } });
  assert.equal(gate.status, 401, 'admitted by the gate (no token)');
  assert.equal((await logOf(w, gate)).partner, winner.id);
});

test('admin_write_when_kv_fails_is_503_saved_and_not_lost', async () => {
  const broken = await startWorker({ failingKv: true });
  try {
    const res = await broken.admin('/partners/pending', {
      method: 'PUT',
      body: { name: 'Pending', origins: ['https://pending.example'] },
    });
    assert.equal(res.status, 503);
    const err = await res.json();
    assert.equal(err.error, 'temporarily_unavailable');
    assert.match(err.error_description, /retried/);
    // The registry kept the change; publication waits in the outbox.
    assert.equal((await broken.admin('/partners/pending')).status, 200);
  } finally {
    await broken.stop();
  }
});

test('admin_partner_keys_inline_or_uri_public_only', async () => {
  const pub = { kty: 'OKP', crv: 'Ed25519', kid: 'k1', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
  const res = await w.admin('/partners/keyed', {
    method: 'PUT',
    body: { name: 'Keyed', origins: ['https://keyed.example'], issuer: 'https://id.keyed.example', jwks: { keys: [pub] } },
  });
  assert.equal(res.status, 201);
  const saved = await res.json();
  assert.equal(saved.issuer, 'https://id.keyed.example');
  assert.deepEqual(saved.jwks, { keys: [pub] });

  const uri = await w.admin('/partners/keyed-uri', {
    method: 'PUT',
    body: { name: 'By URI', origins: ['https://uri.example'], jwks_uri: 'https://uri.example/.well-known/jwks.json' },
  });
  assert.equal(uri.status, 201);
  const byUri = await uri.json();
  assert.equal(byUri.issuer, 'https://uri.example', 'issuer defaults to the first origin');

  const refused = [
    [{ jwks: { keys: [{ ...pub, d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A' }] } }, 'jwks.keys[0]'],
    [{ jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, 'jwks.keys[0]'],
    [{ jwks_uri: 'https://evil.example/jwks.json' }, 'jwks_uri'],
    [{ jwks_uri: 'http://refused.example/jwks.json' }, 'jwks_uri'],
    [{ jwks: { keys: [pub] }, jwks_uri: 'https://refused.example/jwks.json' }, 'jwks_uri'],
  ];
  for (const [extra, field] of refused) {
    const r = await w.admin('/partners/refused', { method: 'PUT', body: { name: 'R', origins: ['https://refused.example'], ...extra } });
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.equal((await r.json()).field, field, JSON.stringify(extra));
  }
  assert.equal((await w.admin('/partners/refused')).status, 404, 'nothing was written');
});

test('admin_issuer_of_another_partner_is_409', async () => {
  await addPartner(w, 'iss-one', ['https://one.iss.example']);
  const res = await w.admin('/partners/iss-two', {
    method: 'PUT',
    body: { name: 'Two', origins: ['https://two.iss.example'], issuer: 'https://one.iss.example' },
  });
  assert.equal(res.status, 409);
  const err = await res.json();
  assert.equal(err.error, 'issuer_conflict');
  assert.equal(err.field, 'issuer');
  assert.equal((await w.admin('/partners/iss-two')).status, 404);
  // Once the first partner is gone, its issuer is free.
  assert.equal((await w.admin('/partners/iss-one', { method: 'DELETE' })).status, 204);
  const again = await w.admin('/partners/iss-two', {
    method: 'PUT',
    body: { name: 'Two', origins: ['https://two.iss.example'], issuer: 'https://one.iss.example' },
  });
  assert.equal(again.status, 201);
});

async function assertFieldRefused(res, field, what) {
  assert.equal(res.status, 400, what);
  const err = await res.json();
  assert.equal(err.error, 'invalid_request', what);
  assert.equal(err.field, field, what);
}

test('admin_partner_cannot_take_our_own_issuer_in_any_spelling', async () => {
  const ours = new URL(w.url);
  const spellings = [
    w.url,
    `HTTP://${ours.host}`,
    `http://${ours.hostname.toUpperCase()}:${ours.port}`,
    `${w.url}/`,
  ];
  for (const issuer of spellings) {
    const res = await w.admin('/partners/mimic', { method: 'PUT', body: { name: 'Mimic', origins: ['https://mimic.example'], issuer } });
    await assertFieldRefused(res, 'issuer', issuer);
  }
  // The default issuer is the first origin: our own origin cannot be a partner's issuer that way.
  const byOrigin = await w.admin('/partners/mimic', { method: 'PUT', body: { name: 'Mimic', origins: [w.url] } });
  await assertFieldRefused(byOrigin, 'issuer', 'our origin as the first origin');
  assert.equal((await w.admin('/partners/mimic')).status, 404, 'nothing was written');
  // Another path on our host is another issuer.
  const beside = await w.admin('/partners/mimic', { method: 'PUT', body: { name: 'Mimic', origins: ['https://mimic.example'], issuer: `${w.url}/partners/mimic` } });
  assert.equal(beside.status, 201);
});

test('admin_names_with_control_bidi_or_zero_width_characters_are_400', async () => {
  const bad = {
    'right-to-left override': 'Acme \u202Eelif.exe',
    'left-to-right embedding': 'Acme \u202A',
    'first strong isolate': 'Acme \u2068x\u2069',
    'right-to-left mark': 'Acme\u200F',
    'arabic letter mark': 'Acme\u061C',
    'zero-width space': 'Ac\u200Bme',
    'zero-width joiner': 'Ac\u200Dme',
    'byte order mark': '\uFEFFAcme',
    'line separator': 'Acme\u2028Admin',
    'paragraph separator': 'Acme\u2029Admin',
    'bell': 'Acme\u0007',
    'C1 control': 'Ac\u0085me',
  };
  await addPartner(w, 'names', ['https://names.example']);
  for (const [what, name] of Object.entries(bad)) {
    await assertFieldRefused(await w.admin('/partners/names-bad', { method: 'PUT', body: { name, origins: ['https://names-bad.example'] } }), 'name', `partner: ${what}`);
    await assertFieldRefused(await w.admin('/partners/names/clients', { method: 'POST', body: { name, redirect_uris: ['https://names.example/cb'] } }), 'name', `client: ${what}`);
    await assertFieldRefused(await w.admin('/users/namesbad', { method: 'PUT', body: { name, password: 'correct horse battery staple' } }), 'name', `user: ${what}`);
  }
  assert.equal((await w.admin('/partners/names-bad')).status, 404, 'no partner was written');
  assert.equal((await w.admin('/users/namesbad')).status, 404, 'no user was written');
  assert.deepEqual((await (await w.admin('/partners/names/clients')).json()).clients ?? [], [], 'no client was written');
  // Names in any script are fine.
  assert.equal((await w.admin('/users/namesok', { method: 'PUT', body: { name: 'Zoë 学校 مدرسة', password: 'correct horse battery staple' } })).status, 201);
});
