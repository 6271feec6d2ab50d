#!/bin/sh
# l4lb-bgp-health.sh: announce the service address through BIRD only while
# l4lb is healthy. Polls l4lb's GET /healthz; while it answers 200 the BIRD
# protocol (a `protocol static` holding the VIP route, see
# configs/bird/bird-l4lb.conf) is enabled, otherwise (503 while l4lb drains,
# no answer when it is dead) it is disabled, and BIRD withdraws the route.
# Guide: docs/scale-out.md.
#
# Settings (environment):
#   L4LB_HEALTHZ_URL  default http://127.0.0.1:9090/healthz
#   BIRD_SOCKET       default /run/bird/bird.ctl
#   BIRD_PROTOCOL     default l4lb_vip
#   INTERVAL          seconds between checks, default 1 (fractions allowed)
#   TIMEOUT           seconds a check may take, default 1
#   RISE              consecutive 200s before announcing, default 2
#   FALL              consecutive failures before withdrawing, default 1
# On SIGTERM / SIGINT it withdraws the route and exits: nothing stays
# announced without a watcher. Transitions are logged on stderr.
set -u

URL=${L4LB_HEALTHZ_URL:-http://127.0.0.1:9090/healthz}
SOCK=${BIRD_SOCKET:-/run/bird/bird.ctl}
PROTO=${BIRD_PROTOCOL:-l4lb_vip}
INTERVAL=${INTERVAL:-1}
TIMEOUT=${TIMEOUT:-1}
RISE=${RISE:-2}
FALL=${FALL:-1}

log() { echo "l4lb-bgp-health: $*" >&2; }

# The protocol's state as BIRD reports it: up, down, start, or empty when BIRD does not answer.
bird_state() {
  birdc -s "$SOCK" show protocols "$PROTO" 2>/dev/null | awk -v p="$PROTO" '$1 == p { print $4 }'
}

# Makes BIRD's state match the wanted one (enable / disable). Re-checked on
# every round, so a restarted BIRD (which starts the protocol disabled) is
# corrected within one interval.
silent=0
apply() {
  state=$(bird_state)
  if [ -z "$state" ]; then
    [ "$silent" = 1 ] || log "BIRD does not answer on $SOCK (or has no protocol $PROTO)"
    silent=1
    return
  fi
  silent=0
  case "$1:$state" in
    enable:down) birdc -s "$SOCK" enable "$PROTO" >/dev/null && log "healthy: announcing ($PROTO enabled)" ;;
    disable:up | disable:start) birdc -s "$SOCK" disable "$PROTO" >/dev/null && log "not healthy: withdrawing ($PROTO disabled)" ;;
  esac
}

stop() {
  apply disable
  exit 0
}
trap stop TERM INT

want=disable
ok=0
bad=0
while :; do
  code=$(curl -s -o /dev/null -m "$TIMEOUT" -w '%{http_code}' "$URL" 2>/dev/null)
  if [ "$code" = 200 ]; then
    ok=$((ok + 1)); bad=0
    [ "$ok" -ge "$RISE" ] && want=enable
  else
    bad=$((bad + 1)); ok=0
    if [ "$bad" -ge "$FALL" ] && [ "$want" = enable ]; then log "/healthz answered ${code:-nothing} (000 = no answer)"; fi
    [ "$bad" -ge "$FALL" ] && want=disable
  fi
  apply "$want"
  sleep "$INTERVAL" &
  wait $!
done
