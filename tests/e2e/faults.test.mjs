// Storage faults: a Durable Object that cannot be reached (injected with the test-only var
// EDGEWARD_INJECT_FAULTS, honoured on a loopback issuer only) gives a clean 503
// temporarily_unavailable, fails closed, and leaves nothing half written. KV faults are in
// gate.test.mjs (gate_fails_closed_when_kv_fails) and admin.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startWorker, addPartner, startOrigin, sleep } from './harness.mjs';
import { CookieJar, basicAuth, browserFlow, formFields, linkAndConfirm, pkce } from './oauth.mjs';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from '../../scripts/lib/jwk.mjs';

const PASSWORD = 'fault password 1234';
const ORIGIN = 'https://app.acme.example';

async function withWorker(faults, fn, vars = {}) {
  const w = await startWorker({ vars: { EDGEWARD_INJECT_FAULTS: faults, ...vars } });
  try {
    await fn(w);
  } finally {
    await w.stop();
  }
}

async function assertUnavailable(res, what) {
  assert.equal(res.status, 503, what);
  assert.equal(res.headers.get('location'), null, `${what}: no redirect`);
  const text = await res.text();
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    assert.equal(res.headers.get('retry-after'), '5', what);
    assert.equal(JSON.parse(text).error, 'temporarily_unavailable', what);
  } else {
    assert.match(text, /Something went wrong/, `${what}: an error page`);
  }
  assert.doesNotMatch(text, /injected/, `${what}: the internal cause stays in the log`);
}

async function signIn(w, username) {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  res = await jar.postForm('/login', { ...formFields(await res.text()), username, password: PASSWORD });
  assert.equal(res.status, 303, 'signed in');
  return jar;
}

test('fault_grant_store_down_means_503_and_no_code', async () => {
  await withWorker('GRANTS:*', async (w) => {
    await addPartner(w, 'acme', [ORIGIN]);
    const c = await (await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'A', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid'] } })).json();
    await w.admin('/users/ada', { method: 'PUT', body: { password: PASSWORD, name: 'Ada' } });
    const jar = await signIn(w, 'ada');
    const { challenge } = pkce();
    const q = new URLSearchParams({ response_type: 'code', client_id: c.client_id, redirect_uri: `${ORIGIN}/cb`, scope: 'openid', state: 's', code_challenge: challenge, code_challenge_method: 'S256' });
    let res = await jar.fetch(`/oauth2/authorize?${q}`);
    if (res.status === 200) {
      // The consent page first; allowing must then fail cleanly, not redirect with a code.
      res = await jar.postForm('/oauth2/authorize', { ...formFields(await res.text()), decision: 'allow' });
    }
    // The client and redirect URI are verified, so the error goes back to the client
    // (RFC 6749 §4.1.2.1: temporarily_unavailable), without a code.
    assert.equal(res.status, 303, 'after the consent post');
    const back = new URL(res.headers.get('location'));
    assert.equal(`${back.origin}${back.pathname}`, `${ORIGIN}/cb`);
    assert.equal(back.searchParams.get('error'), 'temporarily_unavailable');
    assert.equal(back.searchParams.get('state'), 's');
    assert.equal(back.searchParams.get('code'), null, 'no code without a stored grant');
    const token = await w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: `${'A'.repeat(22)}.${'B'.repeat(43)}`, redirect_uri: `${ORIGIN}/cb`, code_verifier: 'v'.repeat(43) }).toString(),
    });
    await assertUnavailable(token, 'redemption while grants are down');
    const line = w.requestLogs().find((l) => l.route === '/oauth2/token');
    assert.match(line.cause, /GRANTS: injected fault/, 'the cause is logged');
  });
});

test('fault_link_not_half_stored_when_the_user_record_fails', async () => {
  const key = generateJwk('EdDSA');
  await withWorker('USERS:record_link', async (w) => {
    await w.admin('/partners/acme', { method: 'PUT', body: { name: 'Acme', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } } });
    await w.admin('/users/bo', { method: 'PUT', body: { password: PASSWORD, name: 'Bo' } });
    const jar = await signIn(w, 'bo');
    const sign = (typ, payload) => signJwt(key, { alg: 'EdDSA', kid: key.kid, typ }, payload);
    const now = Math.floor(Date.now() / 1000);
    const request = sign(LINK_REQUEST_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-bo', jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`, account_label: 'bo', state: 'st' });
    const { page, agreed, confirmed: res } = await linkAndConfirm(jar, key, request);
    assert.equal(page.status, 200);
    assert.equal(agreed.status, 303, 'the user agreed; the partner confirms next');
    await assertUnavailable(res, 'confirming a link while the user record fails');
    // The link the person cannot see must not log them in either.
    const assertion = sign(LOGIN_ASSERTION_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-bo', jti: randomUUID(), iat: now, exp: now + 60 });
    const auto = await w.fetch('/login/auto', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
      body: new URLSearchParams({ assertion, return_to: '/account' }).toString(),
    });
    assert.equal(auto.status, 403, 'not linked');
    assert.match(await auto.text(), /not linked/);
    const links = await (await w.admin('/users/bo/links')).json();
    assert.deepEqual(links.links ?? links, [], 'no link recorded anywhere');
  });
});

test('fault_lost_link_confirmation_reply_still_links_once', async () => {
  const key = generateJwk('EdDSA');
  await withWorker('LINKS:confirm:lost_once', async (w) => {
    await w.admin('/partners/acme', { method: 'PUT', body: { name: 'Acme', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } } });
    await w.admin('/users/di', { method: 'PUT', body: { password: PASSWORD, name: 'Di' } });
    const jar = await signIn(w, 'di');
    const sign = (typ, payload) => signJwt(key, { alg: 'EdDSA', kid: key.kid, typ }, payload);
    const now = Math.floor(Date.now() / 1000);
    const request = sign(LINK_REQUEST_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-di', jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`, account_label: 'di', state: 'st' });
    // The object links, its reply is lost, the retry names the same attempt: linked, not a replay.
    const { agreed, confirmed: res } = await linkAndConfirm(jar, key, request);
    assert.equal(agreed.status, 303);
    assert.equal(res.status, 200, 'the retry got the answer');
    assert.ok((await res.json()).link_token);
    const retried = w.logs.filter((l) => /LINKS: attempt 1 failed, retrying: LINKS: injected lost reply/.test(l));
    assert.equal(retried.length, 1, 'the reply was really lost once, and the command sent again');
    const assertion = sign(LOGIN_ASSERTION_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-di', jti: randomUUID(), iat: now, exp: now + 60 });
    const auto = await w.fetch('/login/auto', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
      body: new URLSearchParams({ assertion, return_to: '/account' }).toString(),
    });
    assert.equal(auto.status, 303, 'the link stands');
  });
});

test('fault_link_whose_user_record_was_written_but_its_reply_lost_stands', async () => {
  const key = generateJwk('EdDSA');
  await withWorker('USERS:record_link:lost', async (w) => {
    await w.admin('/partners/acme', { method: 'PUT', body: { name: 'Acme', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } } });
    await w.admin('/users/eva', { method: 'PUT', body: { password: PASSWORD, name: 'Eva' } });
    const jar = await signIn(w, 'eva');
    const sign = (typ, payload) => signJwt(key, { alg: 'EdDSA', kid: key.kid, typ }, payload);
    const now = Math.floor(Date.now() / 1000);
    const request = sign(LINK_REQUEST_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-eva', jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`, account_label: 'eva', state: 'st' });
    // The user's object records the link and its reply is lost: the user's record says it was
    // written, so the link stands, as the person sees it on their account page.
    const { agreed, confirmed: res } = await linkAndConfirm(jar, key, request);
    assert.equal(agreed.status, 303);
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok((await res.json()).link_token);
    const links = (await (await w.admin('/users/eva/links')).json()).links;
    assert.deepEqual(links.map((l) => [l.partner_id, l.partner_sub]), [['acme', 'acme-eva']]);
    const assertion = sign(LOGIN_ASSERTION_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-eva', jti: randomUUID(), iat: now, exp: now + 60 });
    const auto = await w.fetch('/login/auto', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
      body: new URLSearchParams({ assertion, return_to: '/account' }).toString(),
    });
    assert.equal(auto.status, 303, 'the link signs the user in');
  });
});

test('fault_rate_limiter_down_fails_closed_at_the_gateway', async () => {
  const origin = await startOrigin();
  try {
    await withWorker('LIMITS:*', async (w) => {
      await addPartner(w, 'acme', [ORIGIN]);
      const c = await (await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'A', redirect_uris: [`${ORIGIN}/cb`], grant_types: ['client_credentials'], scopes: ['api'] } })).json();
      const token = await w.fetch('/oauth2/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
        body: 'grant_type=client_credentials',
      });
      await assertUnavailable(token, 'token endpoint without its limiter');
      assert.equal(origin.received.length, 0);
    }, { ORIGIN_URL: origin.url, API_SCOPES: '{"/api": "api"}' });
  } finally {
    await origin.stop();
  }
});

test('fault_audit_and_usage_down_never_fail_a_request', async () => {
  await withWorker('AUDIT:*,AUDIT_BUFFER:*,AUDIT_QUEUE:*,AUDIT_ARCHIVE:*,USAGE:*,USAGE_QUEUE:send,DB:*', async (w) => {
    await addPartner(w, 'acme', [ORIGIN]);
    const denied = await w.fetch('/api/v1/x', { headers: { origin: 'https://evil.example' } });
    assert.equal(denied.status, 403, 'the audited refusal is still answered');
    const c = await (await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'A', redirect_uris: [`${ORIGIN}/cb`], grant_types: ['client_credentials'], scopes: ['api'] } })).json();
    assert.equal(c.client_id.length > 0, true, 'an audited admin change still succeeds');
    const token = await w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
      body: 'grant_type=client_credentials',
    });
    assert.equal(token.status, 200, 'a counted request still succeeds');
  }, { USAGE_FLUSH_SECONDS: '0' });
});

test('fault_audit_buffer_down_sends_events_to_the_queue_directly', async () => {
  // Every append to a buffer shard fails: each event goes to the audit queue as a message of its
  // own, and still reaches the archive exactly once.
  await withWorker('AUDIT_BUFFER:*', async (w) => {
    await addPartner(w, 'acme', [ORIGIN]);
    const denied = await w.fetch('/api/v1/x', { headers: { origin: 'https://evil.example' } });
    assert.equal(denied.status, 403);
    const want = [denied.headers.get('x-request-id')];
    const end = Date.now() + 30_000;
    let events = [];
    while (Date.now() < end) {
      events = (await (await w.admin('/audit?limit=100')).json()).events;
      if (events.some((e) => e.type === 'origin_denied') && events.some((e) => e.type === 'admin_change')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(events.some((e) => e.type === 'origin_denied' && want.includes(e.request_id)), 'the refusal arrived');
    assert.equal(events.filter((e) => e.type === 'admin_change').length, 1, 'the partner creation, once');
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no event twice');
    assert.ok(w.logs.some((l) => l.includes('sending the event directly')));
  });
});

test('fault_injection_is_ignored_outside_loopback', async () => {
  // The var is inert on a deployed (https) issuer: the same fault list changes nothing there.
  const w = await startWorker({ vars: { EDGEWARD_INJECT_FAULTS: 'REGISTRY:*', ISSUER: 'https://id.school.example' } });
  try {
    const res = await w.admin('/partners/acme', { method: 'PUT', body: { name: 'A', origins: [ORIGIN] } });
    assert.equal(res.status, 201, 'the registry answered: no fault was injected');
  } finally {
    await w.stop();
  }
});

test('fault_object_that_never_answers_is_a_503_within_the_time_out', async () => {
  await withWorker('GRANTS:redeem:hang', async (w) => {
    await addPartner(w, 'acme', [ORIGIN]);
    const c = await (await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'A', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid'] } })).json();
    const started = Date.now();
    const res = await w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: `${'A'.repeat(22)}.${'B'.repeat(43)}`, redirect_uri: `${ORIGIN}/cb`, code_verifier: 'v'.repeat(43) }).toString(),
    });
    const waited = Date.now() - started;
    await assertUnavailable(res, 'a hanging grant store');
    assert.ok(waited >= 4500 && waited < 15_000, `answered after ${waited} ms (time-out 5 s)`);
    const line = w.requestLogs().find((l) => l.route === '/oauth2/token');
    assert.match(line.cause, /no answer within 5 s/);
  });
});

// A reply lost between the grant object and the Worker: the object committed the redemption
// (or rotation), the Worker did not hear it. The Worker sends the same attempt again, and the
// object answers it again instead of taking it for a replay, so the code is not burnt without
// its tokens and the refresh family is not revoked.
async function codeFlowClient(w) {
  await addPartner(w, 'acme', [ORIGIN]);
  const c = await (await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'A', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid'] } })).json();
  await w.admin('/users/ada', { method: 'PUT', body: { password: PASSWORD, name: 'Ada' } });
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: c, username: 'ada', password: PASSWORD, scope: 'openid', challenge });
  const code = callback.searchParams.get('code');
  assert.ok(code, 'a code');
  const token = (fields) =>
    w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
      body: new URLSearchParams(fields).toString(),
    });
  const redeem = () => token({ grant_type: 'authorization_code', code, redirect_uri: `${ORIGIN}/cb`, code_verifier: verifier });
  return { c, token, redeem };
}

test('fault_lost_redemption_reply_still_yields_the_tokens_once', async () => {
  await withWorker('GRANTS:redeem:lost_once,GRANTS:refresh:lost_once', async (w) => {
    const { token, redeem } = await codeFlowClient(w);
    let res = await redeem();
    const issued = await res.json();
    assert.equal(res.status, 200, `redeemed despite the lost reply: ${JSON.stringify(issued)}`);
    assert.ok(issued.access_token && issued.refresh_token);

    // The rotation's reply is lost as well: the retried rotation keeps the family alive.
    res = await token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token });
    const rotated = await res.json();
    assert.equal(res.status, 200, `refreshed despite the lost reply: ${JSON.stringify(rotated)}`);
    assert.notEqual(rotated.refresh_token, issued.refresh_token);
    res = await token({ grant_type: 'refresh_token', refresh_token: rotated.refresh_token });
    const next = await res.json();
    assert.equal(res.status, 200, 'the rotated token is the current one');
    // Both replies really were lost, and the commands sent again.
    const retried = w.logs.filter((l) => /GRANTS: attempt 1 failed, retrying: GRANTS: injected lost reply/.test(l));
    assert.equal(retried.length, 2, `one retry for the redemption, one for the rotation: ${retried.length}`);

    // A second redemption by anyone is still a replay, and still revokes the grant.
    res = await redeem();
    assert.equal(res.status, 400);
    assert.deepEqual(Object.keys(await res.json()).sort(), ['error', 'error_description']);
    res = await token({ grant_type: 'refresh_token', refresh_token: next.refresh_token });
    assert.equal(res.status, 400, 'the replay revoked the family');
    assert.equal((await res.json()).error, 'invalid_grant');
  });
});

test('fault_reply_lost_every_time_is_a_503_without_tokens', async () => {
  await withWorker('GRANTS:redeem:lost', async (w) => {
    const { redeem } = await codeFlowClient(w);
    const res = await redeem();
    await assertUnavailable(res, 'every reply lost');
    const line = w.requestLogs().find((l) => l.route === '/oauth2/token');
    assert.match(line.cause, /GRANTS: injected lost reply/);
  });
});

test('fault_password_change_that_cannot_revoke_still_ends_the_old_grants', async () => {
  await withWorker('GRANTS:revoke_all', async (w) => {
    const { token, redeem } = await codeFlowClient(w);
    const issued = await (await redeem()).json();
    assert.ok(issued.refresh_token);
    const res = await w.admin('/users/ada', { method: 'PUT', body: { password: 'a new password 4321', name: 'Ada' } });
    await assertUnavailable(res, 'the grants could not be revoked');
    // The password is set all the same, and a grant older than it is over.
    const refresh = await token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token });
    assert.equal(refresh.status, 400);
    const body = await refresh.json();
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description, /password has changed/);
    const info = await w.fetch('/oauth2/userinfo', { headers: { authorization: `Bearer ${issued.access_token}` } });
    assert.equal(info.status, 401);
  });
});

test('fault_a_new_password_set_while_a_code_is_issued_leaves_no_code', async () => {
  // Each grant's creation is sent 3 s late, so the grant is listed with its user before its
  // object holds it, and a new password set meanwhile revokes a grant that does not exist yet.
  // Its creation must then be refused, and the authorization request answered without a code.
  await withWorker('GRANTS:create:late', async (w) => {
    const { c, redeem } = await codeFlowClient(w);
    const jar = await signIn(w, 'ada');
    const { challenge } = pkce();
    const q = new URLSearchParams({ response_type: 'code', client_id: c.client_id, redirect_uri: `${ORIGIN}/cb`, scope: 'openid', state: 's', code_challenge: challenge, code_challenge_method: 'S256' });
    const pending = jar.fetch(`/oauth2/authorize?${q}`);
    await sleep(500);
    const changed = await w.admin('/users/ada', { method: 'PUT', body: { password: 'a new password 4321', name: 'Ada' } });
    assert.equal(changed.status, 200, 'the password is changed while the code is being issued');
    const res = await pending;
    assert.equal(res.status, 302);
    const to = new URL(res.headers.get('location'));
    assert.equal(`${to.origin}${to.pathname}`, `${ORIGIN}/cb`, 'back to the verified redirect URI');
    assert.equal(to.searchParams.get('error'), 'login_required');
    assert.equal(to.searchParams.get('code'), null, 'no code');
    assert.equal(to.searchParams.get('state'), 's');
    // The code issued before the new password is over too.
    const old = await redeem();
    assert.equal(old.status, 400);
    assert.equal((await old.json()).error, 'invalid_grant');
  });
});

test('fault_user_deletion_that_fails_half_way_finishes_on_the_next_attempt', async () => {
  // The first three revocation attempts fail (one call and both of its retries): the DELETE
  // answers 503 with the user gone but the grant still listed; the next DELETE revokes it.
  await withWorker('GRANTS:revoke_all:fail3', async (w) => {
    const { redeem } = await codeFlowClient(w);
    const issued = await (await redeem()).json();
    const whoami = () => w.fetch('/edge/whoami', { headers: { authorization: `Bearer ${issued.access_token}` } });
    assert.equal((await whoami()).status, 200);
    await assertUnavailable(await w.admin('/users/ada', { method: 'DELETE' }), 'revocation failed');
    assert.equal((await w.admin('/users/ada')).status, 404, 'the user is gone at once');
    assert.equal((await whoami()).status, 200, 'but the grant is not revoked yet');
    const again = await w.admin('/users/ada', { method: 'DELETE' });
    assert.equal(again.status, 204, 'the retry finishes the job');
    const res = await whoami();
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error, 'invalid_token');
    assert.equal((await w.admin('/users/ada', { method: 'DELETE' })).status, 404, 'and then there is nothing left');
  });
});

test('fault_unlink_that_fails_half_way_finishes_on_the_next_attempt', async () => {
  const key = generateJwk('EdDSA');
  await withWorker('GRANTS:revoke_all:fail3', async (w) => {
    await w.admin('/partners/acme', { method: 'PUT', body: { name: 'Acme', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } } });
    await w.admin('/users/cy', { method: 'PUT', body: { password: PASSWORD, name: 'Cy' } });
    const jar = await signIn(w, 'cy');
    const sign = (typ, payload) => signJwt(key, { alg: 'EdDSA', kid: key.kid, typ }, payload);
    const now = Math.floor(Date.now() / 1000);
    const request = sign(LINK_REQUEST_TYP, { iss: ORIGIN, aud: w.url, sub: 'acme-cy', jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`, account_label: 'cy', state: 'st' });
    const { agreed, confirmed } = await linkAndConfirm(jar, key, request);
    assert.equal(agreed.status, 303, 'agreed');
    assert.equal(confirmed.status, 200, 'linked');
    // A grant through the link: the jwt-bearer grant of the partner's server.
    const svc = await (await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'Svc', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] } })).json();
    const res = await w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(svc.client_id, svc.client_secret) },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: sign('JWT', { iss: ORIGIN, aud: w.url, sub: 'acme-cy', jti: randomUUID(), iat: now, exp: now + 60 }) }).toString(),
    });
    assert.equal(res.status, 200);
    const { access_token } = await res.json();
    const whoami = () => w.fetch('/edge/whoami', { headers: { authorization: `Bearer ${access_token}` } });
    assert.equal((await whoami()).status, 200);

    await assertUnavailable(await w.admin('/users/cy/links/acme', { method: 'DELETE' }), 'revocation failed');
    assert.equal((await whoami()).status, 200, 'the grant is not revoked yet');
    assert.equal((await w.admin('/users/cy/links/acme', { method: 'DELETE' })).status, 204, 'the retry finishes the job');
    assert.equal((await whoami()).status, 401);
    assert.equal((await w.admin('/users/cy/links/acme', { method: 'DELETE' })).status, 404);
  });
});
