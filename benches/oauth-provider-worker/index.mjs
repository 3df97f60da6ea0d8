// The second peer of scripts/bench.sh: Cloudflare's `@cloudflare/workers-oauth-provider` on its
// documented defaults, as its README's one-Worker shape (`OAuthProvider`) shows it, with the least
// application code around it. The library serves the token endpoint (`/oauth/token`), its
// metadata and the protected `apiRoute`; this file is the application's part:
//   - `/authorize` completes every authorization at once, for a fixed remembered user: the
//     "returning user" of edgeward's bench (signed in, consent already given), so no login page
//     and no consent page. `parseAuthRequest` validates the client, redirect URI, response type
//     and PKCE; `completeAuthorization` stores a grant with a one-time code in OAUTH_KV (and, by
//     default, revokes the user's earlier grants for the same client); then a 302 to the client.
//   - `/api/...` (the apiHandler) answers who the access token belongs to: the library has
//     already checked the token against OAUTH_KV and decrypted its props.
//   - `/healthz` is the no-op route (for the cold-start comparison).
//   - `POST /bench/clients` creates a client with the library's `createClient`, for the bench
//     only: it needs `Authorization: Bearer <BENCH_SETUP_TOKEN>` and answers 404 while that var
//     is empty.
// The resource (the token audience) is var RESOURCE: the library wants the apiRoute's absolute
// URL as the Worker is reached (it checks the token's audience against the request's URL), so the
// bench sets it to the local port it serves the Worker on. The provider is made at the top level,
// as the README does, so it reads the var from the module-level `env` of `cloudflare:workers`.
import { env } from 'cloudflare:workers';
import { OAuthProvider, AuthorizationError } from '@cloudflare/workers-oauth-provider';

const USER_ID = 'bench';

const text = (status, body) => new Response(body, { status, headers: { 'content-type': 'text/plain; charset=utf-8' } });

const apiHandler = {
  async fetch(request, env, ctx) {
    return Response.json({ userId: ctx.props.userId, clientId: ctx.auth.clientId, scope: ctx.auth.scope });
  },
};

const defaultHandler = {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/healthz') return text(200, 'ok');
    if (url.pathname === '/authorize' && request.method === 'GET') {
      try {
        const oauthRequest = await env.OAUTH_PROVIDER.parseAuthRequest(request);
        const { redirectTo } = await env.OAUTH_PROVIDER.completeAuthorization({
          request: oauthRequest,
          userId: USER_ID,
          metadata: {},
          scope: oauthRequest.scope,
          props: { userId: USER_ID },
        });
        return Response.redirect(redirectTo, 302);
      } catch (error) {
        // As the library's consent-page guide says: redirect only once the client and its
        // redirect URI were validated, otherwise answer here.
        if (error instanceof AuthorizationError && error.redirectTo) return Response.redirect(error.redirectTo, 302);
        if (error instanceof AuthorizationError) return text(400, error.description);
        throw error;
      }
    }
    if (url.pathname === '/bench/clients' && request.method === 'POST') {
      if (!env.BENCH_SETUP_TOKEN) return text(404, 'not found');
      if (request.headers.get('authorization') !== `Bearer ${env.BENCH_SETUP_TOKEN}`) return text(401, 'unauthorized');
      const client = await env.OAUTH_PROVIDER.createClient(await request.json());
      return Response.json(client, { status: 201 });
    }
    return text(404, 'not found');
  },
};

export default new OAuthProvider({
  apiRoute: '/api/',
  apiHandler,
  defaultHandler,
  authorizeEndpoint: '/authorize',
  tokenEndpoint: '/oauth/token',
  scopesSupported: ['openid', 'profile'],
  resourceMetadata: { resource: env.RESOURCE },
});
