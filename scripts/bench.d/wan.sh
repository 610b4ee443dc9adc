# Sourced by scripts/bench: the wan section (issue 23): this server and distribution's proxy, one after the other, on
# the same emulated thin uplink. A private network namespace whose loopback has an HTB link (BENCH_WAN_RATE bits/s,
# 20 Mbit/s) on the upstream's source port, as tests/common/wan.rs builds it; the upstream (docker-registry), the proxy
# under test and the clients all run inside on 127.0.0.1. The link's bytes are HTB's own count (`tc -s class show`).
# Each figure starts the proxy afresh (empty cache), so nothing one figure left running crosses the next one's link.
# Needs root (ip netns); without it the section prints n/a rows.
# shellcheck shell=bash

wan_rate=${BENCH_WAN_RATE:-20000000}                          # bits/s
wan_clients=${BENCH_WAN_CLIENTS:-20}
wan_layers=${BENCH_WAN_LAYERS:-52428800,31457280,20971520}      # 50 + 30 + 20 MiB, plus a config: the 100 MiB image
wan_big_mib=${BENCH_WAN_BIG_MIB:-500}                          # the layer that fills the link (never pulled whole)
wan_restart_mib=${BENCH_WAN_RESTART_MIB:-100}
wan_share_s=${BENCH_WAN_SHARE_SECONDS:-10}
wan_ns=""

# wan_in CMD..: run CMD inside the namespace.
wan_in() { ip netns exec "$wan_ns" "$@"; }
wan_teardown() {
  [ -n "$wan_ns" ] || return 0
  ip netns del "$wan_ns" 2>/dev/null || true
  wan_ns=""
}
cleanup_hooks+=(wan_teardown)
# wan_bytes: bytes the link (HTB class 1:20) has carried so far.
wan_bytes() { wan_in tc -s class show dev lo classid 1:20 | awk '/Sent/ { print $2; exit }'; }
# wan_wait_bytes FROM N: wait (up to 5 minutes) until the link has carried N bytes since it counted FROM.
wan_wait_bytes() {
  local i
  for i in $(seq 3000); do
    [ $(($(wan_bytes) - $1)) -lt "$2" ] || return 0
    sleep 0.1
  done
  say "wan: the link never carried $2 bytes"
  return 1
}
# wan_quiet: wait until nothing has crossed the link for a second (a stopped transfer has drained).
wan_quiet() {
  local a b i
  b=$(wan_bytes)
  for i in $(seq 120); do
    sleep 1
    a=$b b=$(wan_bytes)
    [ "$a" != "$b" ] || return 0
  done
}
wan_stop_pid() { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# wan_mbit BYTES SECONDS: megabits per second.
wan_mbit() { awk -v b="$1" -v s="$2" 'BEGIN { if (b !~ /^[0-9.]+$/ || s + 0 == 0) print "n/a"; else printf "%.1f", b * 8 / s / 1e6 }'; }
wan_ms() { awk -v s="$1" 'BEGIN { if (s !~ /^[0-9.]+$/) print "n/a"; else printf "%.0f", s * 1000 }'; }

# wan_serve WHO [EXTRA_YAML]: start WHO (ours or dist) in the namespace on a fresh cache (kept across wan_restart),
# with EXTRA_YAML appended to its config (ours: top-level keys, e.g. "upstreamBandwidth: 5Mbit"). Sets wan_pid and
# wan_addr.
wan_serve() {
  local who=$1 extra=${2:-} port
  port=$(wan_in "$ob" port)
  wan_cache=$work/wan-$who-cache-$RANDOM
  if [ "$who" = ours ]; then
    printf '%s\n' "imagePath: $wan_cache" "host: 127.0.0.1" "port: $port" "logLevel: warn" "tagTtl: 1s" \
      "registries:" "  - name: docker.io" "    scheme: http" "    endpoint: http://$wan_up" "$extra" >"$work/wan-$who.yml"
  else
    printf '%s\n' "version: 0.1" "storage: {filesystem: {rootdirectory: $wan_cache}, delete: {enabled: true}}" \
      "http: {addr: \"127.0.0.1:$port\", secret: bench}" "proxy: {remoteurl: \"http://$wan_up\"}" \
      "log: {accesslog: {disabled: true}, level: error}" "health: {storagedriver: {enabled: false}}" "$extra" \
      >"$work/wan-$who.yml"
  fi
  wan_addr=127.0.0.1:$port
  wan_restart "$who"
}
# wan_restart WHO: start WHO again on its config and cache (after wan_serve, or after it was killed).
wan_restart() {
  if [ "$1" = ours ]; then
    start "wan-$1" ip netns exec "$wan_ns" "$bin" --config-file "$work/wan-$1.yml" serve
  else
    start "wan-$1" ip netns exec "$wan_ns" docker-registry serve "$work/wan-$1.yml"
  fi
  wan_pid=$last_pid
  wan_in bash -c "for i in \$(seq 300); do curl -s -o /dev/null http://$wan_addr/v2/ && exit 0; sleep 0.05; done; exit 1" ||
    { say "wan: $1 did not answer"; tail -n 20 "$work/wan-$1.log" >&2; return 1; }
}
wan_q() { [ "$1" = ours ] && echo "?ns=docker.io" || true; }

# Cold rollout: wan_clients containerd-like clients pull the fresh image at once. A proxy that fetches the image once
# per client (distribution does) would need the link for many minutes: the storm is stopped after three link times
# plus 10 s and the figures are then lower bounds (">=").
wan_cold() {
  local who=$1 b0 result bytes wall limit_s
  limit_s=$(awk -v t="$wan_cold_link_s" 'BEGIN { printf "%.0f", 3 * t + 10 }')
  wan_serve "$who"
  b0=$(wan_bytes)
  result=$(timeout --signal=KILL "$limit_s" ip netns exec "$wan_ns" "$ob" storm --addr "$wan_addr" \
    --repo library/wan-cold --query "$(wan_q "$who")" --clients "$wan_clients") || result="stopped after $limit_s s"
  bytes=$(($(wan_bytes) - b0))
  say "wan cold $who: $result; link bytes $bytes for $wan_cold_bytes image bytes"
  wan_stop_pid "$wan_pid"
  wan_quiet
  wan_cold_ratio[$who]=$(ratio "$bytes" "$wan_cold_bytes" 3)
  if [ "$(kv failed "$result")" = 0 ]; then
    wan_cold_wall[$who]=$(ratio "$(kv wall_s "$result")" "$wan_cold_link_s")
  elif [[ $result == stopped* ]]; then
    wan_cold_ratio[$who]=">= ${wan_cold_ratio[$who]}"
    wan_cold_wall[$who]=">= $(ratio "$limit_s" "$wan_cold_link_s")"
  else
    wan_cold_wall[$who]=n/a
  fi
}

# Head of line: while the big layer fills the link, the HEAD of a cached tag past its TTL and the GET of an uncached
# small manifest.
wan_hol() {
  local who=$1 q big b0 curl_pid head man accept="application/vnd.oci.image.manifest.v1+json, */*"
  q=$(wan_q "$who")
  wan_serve "$who"
  wan_in "$ob" storm --addr "$wan_addr" --repo library/wan-tag --query "$q" --clients 1 >/dev/null # cached
  sleep 1.5                                                                                          # past tagTtl
  b0=$(wan_bytes)
  start "wan-hol-$who-curl" ip netns exec "$wan_ns" curl -s -o /dev/null "http://$wan_addr/v2/library/wan-big/blobs/$wan_big_digest$q"
  curl_pid=$last_pid
  wan_wait_bytes "$b0" $((wan_rate / 8 * 2)) # two seconds of the link: it is full
  head=$(wan_in curl -s -o /dev/null -I -H "Accept: $accept" -w '%{http_code} %{time_total}' \
    "http://$wan_addr/v2/library/wan-tag/manifests/1$q")
  man=$(wan_in curl -s -o /dev/null -H "Accept: $accept" -w '%{http_code} %{time_total}' \
    "http://$wan_addr/v2/library/wan-small-$who/manifests/1$q")
  say "wan head of line $who: HEAD tag $head, GET uncached manifest $man (s), link bytes $(($(wan_bytes) - b0)) so far"
  wan_stop_pid "$curl_pid"
  wan_stop_pid "$wan_pid"
  wan_quiet
  [ "${head%% *}" = 200 ] && wan_hol_head[$who]=$(wan_ms "${head#* }") || wan_hol_head[$who]=n/a
  [ "${man%% *}" = 200 ] && wan_hol_man[$who]=$(wan_ms "${man#* }") || wan_hol_man[$who]=n/a
}

# Restart in the middle of a layer: a client GETs it until it has it whole; WHO is killed (SIGKILL) when half the
# layer has crossed the link and started again on the same cache.
wan_restart_mid() {
  local who=$1 q b0 client bytes sum out=$work/wan-restart-$1.out
  q=$(wan_q "$who")
  wan_serve "$who"
  b0=$(wan_bytes)
  start "wan-restart-$who-client" ip netns exec "$wan_ns" bash -c \
    "until curl -sf -o '$out' 'http://$wan_addr/v2/library/wan-restart/blobs/$wan_restart_digest$q'; do sleep 0.2; done"
  client=$last_pid
  wan_wait_bytes "$b0" $((wan_restart_bytes / 2))
  wan_stop_pid "$wan_pid"
  wan_restart "$who"
  wait "$client" || true
  bytes=$(($(wan_bytes) - b0))
  sum=sha256:$(sha256sum "$out" | cut -d' ' -f1)
  say "wan restart $who: link bytes $bytes for a $wan_restart_bytes-byte layer; client got $sum"
  rm -f "$out"
  wan_stop_pid "$wan_pid"
  wan_quiet
  if [ "$sum" = "$wan_restart_digest" ]; then wan_restart_ratio[$who]=$(ratio "$bytes" "$wan_restart_bytes" 3); else
    wan_restart_ratio[$who]=n/a
  fi
}

# Link sharing: another flow (a plain HTTP download from a second server whose port the same link shapes) and the
# proxy's own pull of the big layer, each in Mbit/s over wan_share_s seconds. LABEL names the row; EXTRA_YAML goes
# into the proxy's config (a cap variant is one more call with its key).
wan_share() {
  local label=$1 who=$2 extra=${3:-} q b0 b1 curl_pid other
  q=$(wan_q "$who")
  wan_serve "$who" "$extra"
  b0=$(wan_bytes)
  start "wan-share-$who-curl" ip netns exec "$wan_ns" curl -s -o /dev/null "http://$wan_addr/v2/library/wan-big/blobs/$wan_big_digest$q"
  curl_pid=$last_pid
  wan_wait_bytes "$b0" $((wan_rate / 8 * 2))
  b0=$(wan_bytes)
  other=$(wan_in curl -s -o /dev/null --max-time "$wan_share_s" -w '%{size_download}' "http://$wan_other/big" || true)
  b1=$(wan_bytes)
  say "wan share $label: other flow $other bytes, link $((b1 - b0)) bytes in $wan_share_s s"
  wan_stop_pid "$curl_pid"
  wan_stop_pid "$wan_pid"
  wan_quiet
  wan_share_other[$label]=$(wan_mbit "$other" "$wan_share_s")
  wan_share_proxy[$label]=$(wan_mbit "$((b1 - b0 - ${other:-0}))" "$wan_share_s")
}

section_wan() {
  local up_port up_pid_wan other_port other_pid push who mbit limit
  local -A wan_cold_ratio wan_cold_wall wan_hol_head wan_hol_man wan_restart_ratio wan_share_other wan_share_proxy
  mbit=$(awk -v r="$wan_rate" 'BEGIN { printf "%g", r / 1e6 }')
  wan_ns=ociregistry-bench-wan-$$
  if ! ip netns add "$wan_ns" 2>"$work/wan-netns.err"; then
    say "wan: cannot create a network namespace (needs root): $(head -n1 "$work/wan-netns.err")"
    wan_ns=""
    row wan "$mbit Mbit/s link: cannot create a network namespace (needs root)" n/a n/a - - - n/a
    return 0
  fi
  wan_in ip link set lo up
  wan_in tc qdisc add dev lo root handle 1: htb default 10 r2q 1000
  wan_in tc class add dev lo parent 1: classid 1:10 htb rate 100gbit quantum 200000
  wan_in tc class add dev lo parent 1: classid 1:20 htb rate "${wan_rate}bit" ceil "${wan_rate}bit"

  up_port=$(wan_in "$ob" port)
  cat >"$work/wan-upstream.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $work/wan-upstream}, delete: {enabled: true}}
http: {addr: "127.0.0.1:$up_port", secret: bench}
log: {accesslog: {disabled: true}, level: error}
health: {storagedriver: {enabled: false}}
YAML
  start wan-upstream ip netns exec "$wan_ns" docker-registry serve "$work/wan-upstream.yml"
  up_pid_wan=$last_pid
  wan_up=127.0.0.1:$up_port
  wan_in bash -c "for i in \$(seq 300); do curl -s -o /dev/null http://$wan_up/v2/ && exit 0; sleep 0.05; done; exit 1"
  other_port=$(wan_in "$ob" port)
  mkdir -p "$work/wan-other"
  truncate -s 2G "$work/wan-other/big" # sparse: read as zeros, more than any share measurement moves
  start wan-other ip netns exec "$wan_ns" python3 -m http.server --bind 127.0.0.1 --directory "$work/wan-other" "$other_port"
  other_pid=$last_pid
  wan_other=127.0.0.1:$other_port
  wan_in bash -c "for i in \$(seq 300); do curl -s -o /dev/null http://$wan_other/ && exit 0; sleep 0.05; done; exit 1"

  # The images, pushed before the link shapes anything (a push's data goes to the upstream: never shaped anyway).
  say "wan: pushing the images"
  push=$(wan_in "$ob" push --addr "$wan_up" --repo library/wan-cold --layers "$wan_layers")
  wan_cold_bytes=$(kv image_bytes "$push")
  wan_cold_link_s=$(awk -v b="$wan_cold_bytes" -v r="$wan_rate" 'BEGIN { printf "%.2f", b * 8 / r }')
  push=$(wan_in "$ob" push --addr "$wan_up" --repo library/wan-big --layers $((wan_big_mib * 1048576)))
  wan_big_digest=$(kv blob_digests "$push" | cut -d, -f2)
  push=$(wan_in "$ob" push --addr "$wan_up" --repo library/wan-restart --layers $((wan_restart_mib * 1048576)))
  wan_restart_digest=$(kv blob_digests "$push" | cut -d, -f2)
  wan_restart_bytes=$((wan_restart_mib * 1048576))
  wan_in "$ob" push --addr "$wan_up" --repo library/wan-tag --layers 2048,50000 >/dev/null
  for who in ours dist; do wan_in "$ob" push --addr "$wan_up" --repo "library/wan-small-$who" --layers 4096 >/dev/null; done

  for port in "$up_port" "$other_port"; do
    wan_in tc filter add dev lo protocol ip parent 1: prio 1 u32 match ip sport "$port" 0xffff flowid 1:20
  done

  for who in ours dist; do
    say "wan: $who"
    wan_cold "$who"
    wan_hol "$who"
    wan_restart_mid "$who"
    wan_share "$who" "$who"
  done
  # The same with the mirror capped at a quarter of the link (issue 23, item 3): the other flow keeps the rest.
  say "wan: ours, upstreamBandwidth 5Mbit"
  wan_share "ours, upstreamBandwidth 5Mbit" ours "upstreamBandwidth: 5Mbit"

  local image_mib
  image_mib=$(mib $((wan_cold_bytes / 1024)))
  row wan "$mbit Mbit/s link, cold rollout, $wan_clients clients x $image_mib MiB image: link bytes / image bytes" \
    "${wan_cold_ratio[ours]}" "${wan_cold_ratio[dist]}" - - "<= 1.02" "$(verdict "${wan_cold_ratio[ours]}" "<=" 1.02)"
  limit=$(awk -v t="$wan_cold_link_s" 'BEGIN { printf "%.2f", (1.1 * t + 2) / t }')
  row wan "cold rollout: wall / link time ($wan_cold_link_s s)" "${wan_cold_wall[ours]}" "${wan_cold_wall[dist]}" - - \
    "<= $limit (1.1x + 2 s)" "$(verdict "${wan_cold_wall[ours]}" "<=" "$limit")"
  row wan "head of line ($wan_big_mib MiB layer filling the link): HEAD of a cached tag past its TTL (ms)" \
    "${wan_hol_head[ours]}" "${wan_hol_head[dist]}" - - "<= 1000" "$(verdict "${wan_hol_head[ours]}" "<=" 1000)"
  row wan "head of line: GET of an uncached small manifest (ms)" "${wan_hol_man[ours]}" "${wan_hol_man[dist]}" - - \
    "<= 1000" "$(verdict "${wan_hol_man[ours]}" "<=" 1000)"
  row wan "restart mid-layer ($wan_restart_mib MiB, SIGKILL at half): link bytes / layer bytes" \
    "${wan_restart_ratio[ours]}" "${wan_restart_ratio[dist]}" - - "<= 1.05" \
    "$(verdict "${wan_restart_ratio[ours]}" "<=" 1.05)"
  row wan "link sharing: another flow on the link while the proxy pulls a large layer (Mbit/s, ${wan_share_s} s)" \
    "${wan_share_other[ours]}" "${wan_share_other[dist]}" - - - -
  row wan "link sharing: the proxy's own upstream rate meanwhile (Mbit/s)" \
    "${wan_share_proxy[ours]}" "${wan_share_proxy[dist]}" - - - -
  who="ours, upstreamBandwidth 5Mbit"
  row wan "link sharing, $who: another flow (Mbit/s)" "${wan_share_other[$who]}" - - - ">= 14" \
    "$(verdict "${wan_share_other[$who]}" ">=" 14)"
  row wan "link sharing, $who: the mirror's upstream rate (Mbit/s)" "${wan_share_proxy[$who]}" - - - "<= 5.5" \
    "$(verdict "${wan_share_proxy[$who]}" "<=" 5.5)"
  wan_stop_pid "$up_pid_wan"
  wan_stop_pid "$other_pid"
  wan_teardown
}
