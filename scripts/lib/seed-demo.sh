#!/usr/bin/env bash
# Seeds the demo partner, client and user for scripts/dev.sh, against EDGEWARD_URL with
# ADMIN_TOKEN. Re-runnable: it creates what is missing and leaves what exists alone, so keys,
# limits, passwords or anything else a developer changed survive every start.
# The demo client's id and secret are kept in EDGEWARD_DEMO_ENV (default .wrangler/demo.env).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
partner="$root/scripts/partner"
demo_env="${EDGEWARD_DEMO_ENV:-$root/.wrangler/demo.env}"

"$partner" add demo --if-missing --name "Demo Learning App" \
  --origin https://demo-partner.example --origin http://localhost:3000

# The client secret is shown once, so the client is made once; again only if it is gone.
client_ok=false
if [ -f "$demo_env" ]; then
  # shellcheck disable=SC1090
  client_id="$(. "$demo_env" && printf '%s' "${DEMO_CLIENT_ID:-}")"
  if [ -n "$client_id" ]; then
    if out="$("$partner" client show "$client_id" 2>&1)"; then
      client_ok=true
    elif ! printf '%s' "$out" | grep -q '(404)'; then
      printf '%s\n' "$out" >&2
      exit 1
    fi
  fi
fi
if [ "$client_ok" = false ]; then
  out="$("$partner" client add demo --name "Demo Web App" \
    --redirect-uri http://localhost:3000/callback --scope openid --scope profile --scope email --scope roles \
    --scope api --grant authorization_code --grant refresh_token --grant client_credentials)"
  client_id="$(printf '%s\n' "$out" | awk 'NR==1 {print $1}')"
  client_secret="$(printf '%s\n' "$out" | sed -n 's/.*client_secret: //p')"
  mkdir -p "$(dirname "$demo_env")"
  (umask 077 && printf 'DEMO_CLIENT_ID=%s\nDEMO_CLIENT_SECRET=%s\n' "$client_id" "$client_secret" > "$demo_env")
  echo "demo client $client_id registered (in $demo_env)"
fi

# Demo users in each region (their data is stored there; docs/storage.md, "Where data lives").
printf 'demo password 1234' | "$partner" user add pupil --if-missing --region eu --name "Demo Pupil" \
  --email pupil@demo-school.example --role pupil --password-stdin >/dev/null
for region in uk us apac; do
  printf 'demo password 1234' | "$partner" user add "pupil-$region" --if-missing --region "$region" \
    --name "Demo Pupil ($region)" --email "pupil-$region@demo-school.example" --role pupil \
    --password-stdin >/dev/null
done
