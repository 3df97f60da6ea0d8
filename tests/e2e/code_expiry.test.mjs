// Authorization codes live at most 60 seconds (RFC 9700 §4.1.2 / OAuth 2.1). This test waits
// out a real code's lifetime against the running Worker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, sleep } from './harness.mjs';
import { pkce, basicAuth, browserFlow } from './oauth.mjs';

let w;
let client;
const PASSWORD = 'correct horse battery staple';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme', redirect_uris: ['https://app.acme.example/cb'], scopes: ['openid'] },
  })).json();
  await w.admin('/users/frank', { method: 'PUT', body: { password: PASSWORD, name: 'Frank' } });
});
after(() => w?.stop());

test('token_expired_code_is_invalid_grant', { timeout: 120_000 }, async () => {
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'frank', password: PASSWORD, challenge, scope: 'openid' });
  await sleep(61_000);
  const res = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: callback.searchParams.get('code'),
      redirect_uri: client.redirect_uris[0], code_verifier: verifier,
    }),
  });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.error, 'invalid_grant');
  assert.match(body.error_description, /expired/);
  assert.equal(body.access_token, undefined);
});
