#!/usr/bin/env bash
# `make run`: the four services, each in its own process, plus the Graph API sandbox when no Page
# token is configured — in the foreground with prefixed logs (honcho); Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

export NTBCARE_ENV=${NTBCARE_ENV:-development}
export NTBCARE_DATA_DIR=${NTBCARE_DATA_DIR:-./var}
export PYTHONUNBUFFERED=1
mkdir -p "$NTBCARE_DATA_DIR"

procfile=Procfile
if [ "$NTBCARE_ENV" = development ] && [ -z "${ROUTING_TOKENS:-}" ]; then
  # Development sign-in tokens for the desk and two agencies (never used outside development).
  export ROUTING_TOKENS="diskominfotik:dev-desk-token,dpupr:dev-dpupr-token,pemkab-loteng:dev-loteng-token"
  echo "Development tokens: desk=dev-desk-token, dpupr=dev-dpupr-token, pemkab-loteng=dev-loteng-token"
fi
if [ -z "${FACEBOOK_PAGE_ACCESS_TOKEN:-}" ] && [ -z "${FACEBOOK_PAGES:-}" ]; then
  if [ "$NTBCARE_ENV" = development ]; then
    sandbox=${GRAPH_SANDBOX_ADDRESS:-127.0.0.1:8005}
    export FACEBOOK_GRAPH_URL="http://$sandbox"
    export FACEBOOK_PAGES="100000000000001:sandbox-page-token"
    # Development secrets only in development: elsewhere the services' start-up checks ask for
    # the real ones (and refuse these values, see shared/core/config.py).
    export FACEBOOK_APP_SECRET=${FACEBOOK_APP_SECRET:-dev-app-secret}
    export FACEBOOK_VERIFY_TOKEN=${FACEBOOK_VERIFY_TOKEN:-dev-verify-token}
    # The sandbox serves Meta-shaped media links on a loopback address: let intake download them.
    export INTAKE_MEDIA_ALLOW_HOSTS=${INTAKE_MEDIA_ALLOW_HOSTS:-$sandbox}
    procfile=Procfile.dev
    echo "No Page token set: using the local Graph API sandbox at http://$sandbox (Page 100000000000001)."
  else
    echo "NTBCARE_ENV=$NTBCARE_ENV and no Page token (FACEBOOK_PAGES): no Graph API sandbox outside development."
  fi
fi

broker=${AMQP_URI:-amqp://guest:guest@127.0.0.1:5672/}
cat <<MSG
NTBCare (NTBCARE_ENV=$NTBCARE_ENV, data in $NTBCARE_DATA_DIR, broker ${broker##*@})
  intake        http://${INTAKE_WEB_ADDRESS:-127.0.0.1:8001}   (/health, POST /api/complaints, /webhooks/facebook)
  routing       http://${ROUTING_WEB_ADDRESS:-127.0.0.1:8002}   (/health, /api/…, /console/)
  notification  http://${NOTIFICATION_WEB_ADDRESS:-127.0.0.1:8003}   (/health)
  reporting     http://${REPORTING_WEB_ADDRESS:-127.0.0.1:8004}   (/health, /api/complaints/<code>, /dashboard)
  gateway       http://${GATEWAY_WEB_ADDRESS:-127.0.0.1:8006}   (/health; outside systems call it over the broker: docs/gateway.md)
File a test complaint (in another terminal):
  .venv/bin/python -m scripts.file_test_complaint "Jalan di Praya Lombok Tengah rusak parah"
MSG
exec .venv/bin/honcho start -f "$procfile"
