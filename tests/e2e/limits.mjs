// Helpers of the rate-limit tests (ratelimit.test.mjs, ratelimit_shards.test.mjs).
import assert from 'node:assert/strict';

/** A partner with `rate_limits` (set before any request, so no cache holds older limits). */
export async function partnerWithLimits(w, id, rate_limits) {
  const res = await w.admin(`/partners/${id}`, {
    method: 'PUT',
    body: { name: id, origins: [`https://${id}.example`], rate_limits },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

/** A client_credentials client of `partner` with the `api` scope. */
export async function serviceClient(w, partner) {
  const res = await w.admin(`/partners/${partner}/clients`, {
    method: 'POST',
    body: { name: 'svc', redirect_uris: [`https://${partner}.example/cb`], grant_types: ['client_credentials'], scopes: ['api'] },
  });
  assert.equal(res.status, 201);
  return res.json();
}
