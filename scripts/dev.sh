#!/usr/bin/env bash
# Serves edgeward locally on http://127.0.0.1:8787 with local KV and Durable Objects (kept in
# .wrangler/state between runs), seeded with a demo partner. Installs whatever is missing first.
# Ctrl-C stops it. EDGEWARD_PORT changes the port.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EDGEWARD_ROOT"

PORT="${EDGEWARD_PORT:-8787}"
URL="http://127.0.0.1:$PORT"
ORIGIN_PORT="${EDGEWARD_ORIGIN_PORT:-8788}"

bash scripts/setup.sh

if [ ! -f .dev.vars ]; then
  log "writing .dev.vars with a fresh local ADMIN_TOKEN (git-ignored)"
  token="$(node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("hex"))')"
  umask 077
  printf '# Local secrets for `wrangler dev` (never committed).\nADMIN_TOKEN="%s"\n' "$token" > .dev.vars
fi
if ! grep -q '^SIGNING_KEYS=' .dev.vars; then
  log "adding local signing keys (Ed25519 + RS256) to .dev.vars"
  keys="$(node -e 'import("./scripts/lib/jwk.mjs").then(m => process.stdout.write(JSON.stringify(m.initialKeySet())))')"
  printf "SIGNING_KEYS='%s'\n" "$keys" >> .dev.vars
fi
if ! grep -q '^ISSUER=' .dev.vars; then
  printf 'ISSUER="%s"\n' "$URL" >> .dev.vars
fi
if ! grep -q '^ORIGIN_URL=' .dev.vars; then
  printf 'ORIGIN_URL="http://127.0.0.1:%s"\n' "$ORIGIN_PORT" >> .dev.vars
fi
ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' .dev.vars)"
export ADMIN_TOKEN EDGEWARD_URL="$URL"

# wrangler runs scripts/build.sh (the release build) before serving, and again when src/ or crates/core/src/ changes.
log "building and starting wrangler dev on $URL"
node scripts/dev-origin.mjs "$ORIGIN_PORT" &
origin_pid=$!
wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to .wrangler/state --show-interactive-dev-session=false &
wrangler_pid=$!
trap 'kill $wrangler_pid $origin_pid 2>/dev/null; wait $wrangler_pid 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 600); do
  if curl -fsS "$URL/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$wrangler_pid" 2>/dev/null || die "wrangler dev exited; see its output above"
  sleep 0.5
done
curl -fsS "$URL/healthz" >/dev/null || die "the Worker did not come up on $URL"

log "seeding the demo partner, client and user (what exists is left as it is)"
bash scripts/lib/seed-demo.sh
# shellcheck disable=SC1091
source .wrangler/demo.env
verifier="demo-verifier-$(printf '%040d' 0)"
challenge="$(node -e 'process.stdout.write(require("node:crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' "$verifier")"
authorize_url="$URL/oauth2/authorize?response_type=code&client_id=$DEMO_CLIENT_ID&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcallback&scope=openid%20profile&state=demo&nonce=n1&code_challenge=$challenge&code_challenge_method=S256"

cat <<MSG

edgeward is running on $URL (secrets in .dev.vars; Ctrl-C stops it). Try:

  # a partner's server calls the API through the gateway (token, scope, then the origin
  # stand-in on 127.0.0.1:$ORIGIN_PORT shows the identity it was given)
  token=\$(curl -s $URL/oauth2/token -u "$DEMO_CLIENT_ID:$DEMO_CLIENT_SECRET" \\
    -d grant_type=client_credentials -d scope=api | node -pe 'JSON.parse(require("fs").readFileSync(0)).access_token')
  curl -s $URL/api/v1/hello -H "Authorization: Bearer \$token"
  curl -s $URL/edge/whoami -H "Authorization: Bearer \$token"
  curl -i $URL/api/v1/hello                      # 401: no token

  # the partner gate: the demo partner's page gets past it (then needs a token), another does not
  curl -i $URL/api/v1/hello -H 'Origin: https://demo-partner.example'
  curl -i $URL/api/v1/hello -H 'Origin: https://evil.example'

  # sign in as the demo pupil (username pupil, password "demo password 1234"): open
  $authorize_url
  # you land on http://localhost:3000/callback?code=...; exchange the code within 60 s:
  curl -s $URL/oauth2/token -u "$DEMO_CLIENT_ID:$DEMO_CLIENT_SECRET" \\
    -d grant_type=authorization_code -d redirect_uri=http://localhost:3000/callback \\
    -d code_verifier=$verifier -d code=PASTE_THE_CODE

  # discovery, keys, and the operator CLI (reads ADMIN_TOKEN from .dev.vars)
  curl -s $URL/.well-known/openid-configuration
  scripts/partner list
  scripts/partner suspend demo     # within ${GATE_CACHE_TTL_SECONDS:-30} s the gate answers partner_suspended

MSG
wait "$wrangler_pid"
