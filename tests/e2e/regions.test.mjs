// Each user's data in their region: a region at creation (strictly parsed), their objects
// reached through the region's namespace (the `eu` jurisdiction for EU users) with its location
// hint, the region carried by the session cookie and the grant id, and users from before
// regions (legacy placement) still signing in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, pkce, basicAuth, browserFlow } from './oauth.mjs';

const PASSWORD = 'correct horse battery staple';
const HINTS = { eu: 'weur', uk: 'weur', us: 'enam', apac: 'apac' };
let w;
let client;

before(async () => {
  // No default region: a new user must name one. Object calls log their placement.
  w = await startWorker({ vars: { DEFAULT_USER_REGION: '', EDGEWARD_LOG_PLACEMENT: '1' } });
  await addPartner(w, 'acme', ['https://app.acme.example']);
  const res = await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Acme Classroom',
      redirect_uris: ['https://app.acme.example/callback'],
      scopes: ['openid', 'profile'],
    },
  });
  assert.equal(res.status, 201);
  client = await res.json();
});
after(() => w?.stop());

const token = (fields) =>
  fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basicAuth(client.client_id, client.client_secret),
    },
    body: new URLSearchParams(fields).toString(),
  });

async function expectRefused(res, description) {
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.error, 'invalid_request', JSON.stringify(body));
  assert.equal(body.error_description, description);
}

/** Placement lines logged since `from` (an index into the Worker's log). */
function placements(from) {
  return w.logs
    .slice(from)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{"placement"'))
    .map((l) => JSON.parse(l).placement);
}

/** The whole code flow for `username`: sign-in, code, token, refresh, logout. */
async function signInEndToEnd(username, region) {
  const { verifier, challenge } = pkce();
  const jar = new CookieJar(w.url);
  const { callback } = await browserFlow(w, { client, username, password: PASSWORD, challenge, jar });
  const code = callback.searchParams.get('code');
  assert.ok(code, `${username}: no code in ${callback}`);
  const [gid] = code.split('.');
  if (region) assert.ok(gid.startsWith(`${region}_`), `${username}: grant id ${gid} names no region`);
  else assert.equal(gid.length, 22, `${username}: a legacy user's grant id is bare`);
  const session = [...jar.cookies].find(([k]) => k === 'edgeward_session')[1];
  if (region) assert.ok(session.endsWith(`.${region}`), `${username}: the session cookie carries the region`);
  else assert.equal(session.split('.').at(-1).length, 43, `${username}: a legacy session cookie names no region`);

  let res = await token({
    grant_type: 'authorization_code',
    code,
    redirect_uri: client.redirect_uris[0],
    code_verifier: verifier,
  });
  assert.equal(res.status, 200, `${username}: ${await res.clone().text()}`);
  const first = await res.json();
  assert.ok(first.refresh_token.startsWith(gid + '.'));
  res = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token });
  assert.equal(res.status, 200, `${username}: ${await res.clone().text()}`);
  const second = await res.json();
  assert.ok(second.access_token);
  res = await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${second.access_token}` } });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).name, `Pupil ${username}`);

  // Logout ends the session in the user's own object: the next authorization asks to sign in.
  res = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: first.id_token })}`);
  assert.equal(res.status, 200);
  const again = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0],
    scope: 'openid',
    state: 's',
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  res = await jar.fetch(`/oauth2/authorize?${again}`);
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^\/login\?/);
}

test('regions_a_new_user_must_name_a_valid_region_and_keeps_it', async () => {
  const put = (name, body) => w.admin(`/users/${name}`, { method: 'PUT', body: { password: PASSWORD, name, ...body } });
  await expectRefused(await put('nadia', {}), 'region: is required for a new user');
  for (const bad of ['mars', 'EU', 'Eu', ' eu', 'europe', 'gb', 'fedramp', '']) {
    await expectRefused(await put('nadia', { region: bad }), 'region: must be one of eu, uk, us, apac');
  }
  await expectRefused(await put('nadia', { region: 5 }), 'region: must be one of eu, uk, us, apac');
  // Nothing was made by a refused creation.
  assert.equal((await w.admin('/users/nadia')).status, 404);

  let res = await put('nadia', { region: 'uk' });
  assert.equal(res.status, 201);
  assert.equal((await res.json()).region, 'uk');
  assert.equal((await (await w.admin('/users/nadia')).json()).region, 'uk');
  // A PUT does not move a user; without a region (or with the same) it keeps theirs.
  await expectRefused(await put('nadia', { region: 'us' }), 'region: the user lives in uk; a PUT does not move a user');
  res = await w.admin('/users/nadia', { method: 'PUT', body: { name: 'Nadia B' } });
  assert.equal(res.status, 200);
  assert.deepEqual([(await res.json()).region], ['uk']);
  res = await w.admin('/users/nadia', { method: 'PUT', body: { name: 'Nadia C', region: 'uk' } });
  assert.equal(res.status, 200);

  // Removed, the username may be created again elsewhere.
  assert.equal((await w.admin('/users/nadia', { method: 'DELETE' })).status, 204);
  res = await put('nadia', { region: 'apac' });
  assert.equal(res.status, 201);
  assert.equal((await res.json()).region, 'apac');
});

test('regions_default_user_region_places_a_new_user_that_names_none', async () => {
  const other = await startWorker({ vars: { DEFAULT_USER_REGION: 'us' } });
  try {
    const res = await other.admin('/users/dana', { method: 'PUT', body: { password: PASSWORD, name: 'Dana' } });
    assert.equal(res.status, 201);
    assert.equal((await res.json()).region, 'us');
  } finally {
    await other.stop();
  }
});

test('regions_eu_users_objects_are_created_in_the_eu_jurisdiction_not_the_global_namespace', async () => {
  const from = w.logs.length;
  const res = await w.admin('/users/elsa', { method: 'PUT', body: { password: PASSWORD, name: 'Pupil elsa', region: 'eu' } });
  assert.equal(res.status, 201);
  const users = placements(from).filter((p) => p.binding === 'USERS');
  // The lookup for a legacy user of that name is global; the creation, in the jurisdiction.
  assert.deepEqual(users.at(-1), { binding: 'USERS', jurisdiction: 'eu', hint: 'weur', emulated: true });
  // The same name in the global namespace is another object: it holds nothing.
  const global = await w.objectCommand('USERS', 'user:elsa', { get: {} });
  assert.equal(global.Err?.error, 'not_found', JSON.stringify(global));

  // A US user has no jurisdiction, only the hint: the global name is theirs.
  const before = w.logs.length;
  assert.equal((await w.admin('/users/umar', { method: 'PUT', body: { password: PASSWORD, name: 'Pupil umar', region: 'us' } })).status, 201);
  assert.deepEqual(placements(before).filter((p) => p.binding === 'USERS').at(-1), { binding: 'USERS', jurisdiction: null, hint: 'enam', emulated: false });
  const found = await w.objectCommand('USERS', 'user:umar', { get: {} });
  assert.equal(found.Ok?.region, 'us', JSON.stringify(found));
});

test('regions_an_eu_user_is_never_stored_globally_when_the_jurisdiction_cannot_be_had', async () => {
  // An https issuer: no local stand-in for the jurisdiction, and local workerd has none.
  const https = await startWorker({ vars: { ISSUER: 'https://id.school.example' } });
  try {
    let res = await https.admin('/users/eva', { method: 'PUT', body: { password: PASSWORD, name: 'Eva', region: 'eu' } });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error, 'temporarily_unavailable');
    assert.equal(https.logs.some((l) => l.includes('jurisdiction eu')), true, 'the cause is logged');
    // Nothing of hers is in the global namespace; a UK user (no jurisdiction) is fine.
    const global = await https.objectCommand('USERS', 'user:eva', { get: {} });
    assert.equal(global.Err?.error, 'not_found', JSON.stringify(global));
    res = await https.admin('/users/ulla', { method: 'PUT', body: { password: PASSWORD, name: 'Ulla', region: 'uk' } });
    assert.equal(res.status, 201);
  } finally {
    await https.stop();
  }
});

test('regions_a_user_in_each_region_signs_in_refreshes_and_logs_out', async () => {
  for (const region of ['eu', 'uk', 'us', 'apac']) {
    const username = `pupil-${region}`;
    const res = await w.admin(`/users/${username}`, { method: 'PUT', body: { password: PASSWORD, name: `Pupil ${username}`, region } });
    assert.equal(res.status, 201);
    const from = w.logs.length;
    await signInEndToEnd(username, region);
    // Every user and grant call of the flow went to the user's region.
    const mine = placements(from).filter((p) => p.binding === 'USERS' || p.binding === 'GRANTS');
    assert.ok(mine.length >= 4, JSON.stringify(mine));
    for (const p of mine) {
      assert.equal(p.hint, HINTS[region], `${region}: ${JSON.stringify(p)}`);
      assert.equal(p.jurisdiction, region === 'eu' ? 'eu' : null);
    }
  }
});

test('regions_legacy_users_from_before_regions_still_sign_in_in_the_global_namespace', async () => {
  // A user as an earlier release stored them: in the global namespace, no region, no
  // directory entry.
  const made = await w.objectCommand('USERS', 'user:leo', {
    put: { username: 'leo', spec: { password: PASSWORD, name: 'Pupil leo', email: null, roles: [] }, now: 1 },
  });
  assert.equal(made.Ok?.created, true, JSON.stringify(made));
  assert.equal((await (await w.admin('/users/leo')).json()).region, null);
  const from = w.logs.length;
  await signInEndToEnd('leo', null);
  for (const p of placements(from).filter((p) => p.binding === 'USERS' || p.binding === 'GRANTS')) {
    assert.deepEqual([p.jurisdiction, p.hint], [null, null]);
  }
  // An update keeps them where they are; a region is not given by a PUT.
  let res = await w.admin('/users/leo', { method: 'PUT', body: { name: 'Pupil leo' } });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).region, null);
  res = await w.admin('/users/leo', { method: 'PUT', body: { name: 'Pupil leo', region: 'eu' } });
  await expectRefused(res, 'region: the user lives in no region (created before regions); a PUT does not move a user');
});

test('regions_a_session_cookie_naming_another_region_is_no_session', async () => {
  assert.equal((await w.admin('/users/rita', { method: 'PUT', body: { password: PASSWORD, name: 'Pupil rita', region: 'eu' } })).status, 201);
  const { challenge } = pkce();
  const jar = new CookieJar(w.url);
  await browserFlow(w, { client, username: 'rita', password: PASSWORD, challenge, jar });
  const session = jar.cookies.get('edgeward_session');
  assert.ok(session.endsWith('.eu'));
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0],
    scope: 'openid',
    state: 's',
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  // The same secret, pointed at another region or at the global namespace: no session there.
  for (const forged of [session.replace(/\.eu$/, '.us'), session.replace(/\.eu$/, ''), session.replace(/\.eu$/, '.mars')]) {
    jar.cookies.set('edgeward_session', forged);
    const res = await jar.fetch(`/oauth2/authorize?${params}`);
    assert.equal(res.status, 302, forged);
    assert.match(res.headers.get('location'), /^\/login\?/);
  }
  jar.cookies.set('edgeward_session', session);
  const res = await jar.fetch(`/oauth2/authorize?${params}`);
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^https:\/\/app\.acme\.example\/callback\?code=eu_/);
});

test('regions_an_unknown_username_is_a_failed_sign_in_like_a_wrong_password', async () => {
  for (const username of ['nobody-here', 'rita']) {
    const jar = new CookieJar(w.url);
    const { challenge } = pkce();
    const params = new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: client.redirect_uris[0],
      scope: 'openid',
      state: 's',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    let res = await jar.fetch(`/oauth2/authorize?${params}`);
    res = await jar.fetch(res.headers.get('location'));
    const html = await res.text();
    const fields = Object.fromEntries([...html.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2].replaceAll('&amp;', '&')]));
    res = await jar.postForm('/login', { ...fields, username, password: 'not the password at all' });
    assert.equal(res.status, 401, username);
  }
});
