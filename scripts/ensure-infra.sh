#!/usr/bin/env bash
# Makes sure what the run and the tests need is answering: RabbitMQ (with the management plugin),
# PostgreSQL and headless Chromium. Starts locally installed servers; otherwise says exactly what
# to install. Usage: scripts/ensure-infra.sh broker [postgres] [browser]
set -euo pipefail

AMQP_HOST=${NTBCARE_BROKER_HOST:-127.0.0.1}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_broker() {
  if ! port_open "$AMQP_HOST" 5672; then
    if command -v rabbitmq-server >/dev/null 2>&1; then
      echo "ensure-infra: starting the local rabbitmq-server"
      rabbitmq-server -detached || true
      rabbitmqctl await_startup --timeout 120 >/dev/null
    else
      cat >&2 <<MSG
ensure-infra: no RabbitMQ answers at $AMQP_HOST:5672 and rabbitmq-server is not installed.
  Install it (Debian/Ubuntu: sudo apt-get install rabbitmq-server), or start the whole stack
  with containers: docker compose up -d rabbitmq   (then run make run again).
MSG
      exit 1
    fi
  fi
  # The management API (15672) is used by the tests to make isolated vhosts, and by ntbcare status.
  if ! port_open "$AMQP_HOST" 15672 && command -v rabbitmq-plugins >/dev/null 2>&1; then
    echo "ensure-infra: enabling rabbitmq_management"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    for _ in $(seq 1 60); do port_open "$AMQP_HOST" 15672 && break; sleep 1; done
  fi
}

ensure_postgres() {
  if port_open 127.0.0.1 5432; then return; fi
  if command -v pg_lsclusters >/dev/null 2>&1; then
    version=$(pg_lsclusters --no-header | awk 'NR==1{print $1}')
    echo "ensure-infra: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do port_open 127.0.0.1 5432 && return; sleep 1; done
  fi
  echo "ensure-infra: PostgreSQL is not answering on 127.0.0.1:5432; install postgresql (trust auth for local tests)" >&2
  exit 1
}

ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return; fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "ensure-infra: installing Debian's chromium and chromium-driver for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "ensure-infra: browser tests need chromium and chromium-driver (apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
}

for need in "$@"; do
  case "$need" in
    broker) ensure_broker ;;
    postgres) ensure_postgres ;;
    browser) ensure_browser ;;
    *) echo "ensure-infra: unknown requirement $need" >&2; exit 2 ;;
  esac
done
