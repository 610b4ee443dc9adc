# Sourced by scripts/bench: the storm and micro sections (cold pull storms; warm GETs against nginx).
# shellcheck shell=bash
section_storm() {
  local n r who repo push image_bytes nblobs mark cold warm gets bytes cpu0 cpu1 cpu2 up0 up1 up2 cw
  local -A c_wall w_wall per_blob up_ratio rss ratios cpu
  for n in 1 10 50; do
    for who in ours dist; do c_wall[$who]="" w_wall[$who]="" per_blob[$who]="" up_ratio[$who]="" rss[$who]="" ratios[$who]="" cpu[$who]=""; done
    for r in $(seq "$storm_rounds"); do
      repo=library/storm-$n-$r
      push=$("$ob" push --addr "$up" --repo "$repo" --layers "$storm_layers")
      image_bytes=$(kv image_bytes "$push")
      nblobs=$(kv blobs "$push")
      for who in ours dist; do
        mark=$(upstream_mark)
        cpu0=$(cpu_ms "${pid[$who]}") up0=$(cpu_ms "$up_pid")
        cold=$("$ob" storm --addr "${addr[$who]}" --repo "$repo" --query "${query[$who]}" --clients "$n" --rss-pids "${pid[$who]}")
        cpu1=$(cpu_ms "${pid[$who]}") up1=$(cpu_ms "$up_pid")
        read -r gets bytes < <(upstream_gets "$repo" "$mark")
        warm=$("$ob" storm --addr "${addr[$who]}" --repo "$repo" --query "${query[$who]}" --clients "$n")
        cpu2=$(cpu_ms "${pid[$who]}") up2=$(cpu_ms "$up_pid")
        cpu[$who]+=" $((cpu1 - cpu0))/$((cpu2 - cpu1))/$((up1 - up0))"
        say "storm N=$n round $r $who: cold $cold; warm $warm; upstream blob GETs $gets, bytes $bytes;" \
          "CPU ms: server cold $((cpu1 - cpu0)) warm $((cpu2 - cpu1)), upstream cold $((up1 - up0)) warm $((up2 - up1))"
        rss[$who]+=" $(mib "$(kv peak_rss_kib "$cold")")"
        [ "$(kv failed "$cold")" = 0 ] && cold=$(kv wall_s "$cold") || cold=n/a
        [ "$(kv failed "$warm")" = 0 ] && warm=$(kv wall_s "$warm") || warm=n/a
        c_wall[$who]+=" $cold" w_wall[$who]+=" $warm"
        cw=$(ratio "$cold" "$warm")
        ratios[$who]+=" $cw"
        per_blob[$who]+=" $(ratio "$gets" "$nblobs")"
        up_ratio[$who]+=" $(ratio "$bytes" "$image_bytes")"
      done
    done
    for who in ours dist; do
      # shellcheck disable=SC2086 # the lists are space-separated figures
      c_wall[$who]=$(median ${c_wall[$who]}) w_wall[$who]=$(median ${w_wall[$who]}) \
        per_blob[$who]=$(largest ${per_blob[$who]}) up_ratio[$who]=$(largest ${up_ratio[$who]}) \
        rss[$who]=$(largest ${rss[$who]}) ratios[$who]="${ratios[$who]# }"
    done
    local size_mib
    size_mib=$(mib $((image_bytes / 1024)))
    row storm "N=$n cold ($size_mib MiB image): upstream GETs per blob (worst round)" "${per_blob[ours]}" "${per_blob[dist]}" - \
      - "1 (README)" "$(verdict "${per_blob[ours]}" "<=" 1)"
    row storm "N=$n cold: upstream bytes / image bytes (worst round)" "${up_ratio[ours]}" "${up_ratio[dist]}" - - - -
    row storm "N=$n cold storm wall (s, median)" "${c_wall[ours]}" "${c_wall[dist]}" - \
      "$(ratio "${c_wall[ours]}" "${c_wall[dist]}")x dist" - -
    row storm "N=$n warm storm wall (s, median)" "${w_wall[ours]}" "${w_wall[dist]}" - \
      "$(ratio "${w_wall[ours]}" "${w_wall[dist]}")x dist" - -
    local cw_ours cw_dist target=- today=-
    # shellcheck disable=SC2086
    cw_ours=$(median ${ratios[ours]}) cw_dist=$(median ${ratios[dist]})
    if [ "$n" = 50 ]; then
      target="<= 1.1"
      today=$(verdict "$cw_ours" "<=" 1.1)
    fi
    row storm "N=$n cold wall / warm wall (median of rounds)" "$cw_ours" "$cw_dist" - - "$target" "$today"
    row storm "N=$n cold / warm, each round" "${ratios[ours]// /, }" "${ratios[dist]// /, }" - - - -
    cpu[ours]=${cpu[ours]# } cpu[dist]=${cpu[dist]# }
    row storm "N=$n CPU ms server cold/warm/upstream cold, each round" "${cpu[ours]// /, }" "${cpu[dist]// /, }" - - - -
    row storm "N=$n cold: peak RSS (MiB, worst round)" "${rss[ours]}" "${rss[dist]}" - - \
      "$([ "$n" = 50 ] && echo "<= 64" || echo -)" "$([ "$n" = 50 ] && verdict "${rss[ours]}" "<=" 64 || echo -)"
  done
}

# wrk_rps URL [ACCEPT]: requests/s over $secs s ($conns connections, 2 threads) after a 1 s warm-up; n/a if any
# response was not 2xx.
wrk_rps() {
  local args=(-t2 "-c$conns") result
  [ -z "${2:-}" ] || args+=(-H "Accept: $2")
  wrk "${args[@]}" -d1s "$1" >/dev/null 2>&1 || true
  result=$(wrk "${args[@]}" "-d${secs}s" "$1" 2>&1) || true
  if grep -q -e "Non-2xx" -e "Socket errors" <<<"$result"; then
    say "wrk $1: $(grep -e "Non-2xx" -e "Socket errors" <<<"$result" | tr '\n' ' ')"
  fi
  if grep -q "Non-2xx" <<<"$result"; then echo n/a; else awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$result"; fi
}
# ab_rps URL [ACCEPT]: HEAD requests/s with ab -i -k over $secs s.
ab_rps() {
  local args=(-q -i -k -c "$conns" -t "$secs" -n 100000000) result
  [ -z "${2:-}" ] || args+=(-H "Accept: $2")
  result=$(ab "${args[@]}" "$1" 2>&1) || true
  if grep -q "^Non-2xx responses" <<<"$result"; then
    say "ab $1: $(grep "^Non-2xx" <<<"$result")"
    echo n/a
  else
    awk '/^Requests per second:/ { printf "%.0f", $4 }' <<<"$result"
  fi
}
load_rps() { # ADDR PATH [ACCEPT]: HEAD requests/s with ocibench
  local result
  result=$("$ob" load --addr "$1" --path "$2" --method HEAD --accept "${3:-}" --connections "$conns" --seconds "$secs")
  say "ocibench load $1$2: $result"
  [ "$(kv non2xx "$result")" = 0 ] && kv rps "$result" || echo n/a
}
lat() { # ADDR PATH METHOD [ACCEPT]: "p50 / p99 / max, N > 10 ms" of 200 sequential requests on one connection
  local result
  sleep 1 # let the connections of the previous measurement wind down
  result=$("$ob" latency --addr "$1" --path "$2" --method "$3" --accept "${4:-}" --n 200)
  say "ocibench latency $3 $1$2: $result"
  if [ "$(kv non200 "$result")" = 0 ]; then
    awk -v a="$(kv p50_ms "$result")" -v b="$(kv p99_ms "$result")" -v c="$(kv max_ms "$result")" \
      -v n="$(kv over_10ms "$result")" 'BEGIN { printf "%.2f / %.2f / %.2f, %d > 10 ms", a, b, c, n }'
  else
    echo n/a
  fi
}

# best: the largest number among the lines read (n/a if none).
best() { awk '$1 ~ /^[0-9.]+$/ && (m == "" || $1 + 0 > m + 0) { m = $1 } END { print (m == "" ? "n/a" : m) }'; }

section_micro() {
  local accept="application/vnd.oci.image.manifest.v1+json, */*" push digests fig who r m_digest m_small m_large m_mid
  push=$("$ob" push --addr "$up" --repo library/micro --layers "$small_blob,$large_blob,$mid_blob")
  m_digest=$(kv manifest_digest "$push")
  digests=$(kv blob_digests "$push")
  m_small=$(cut -d, -f2 <<<"$digests")
  m_large=$(cut -d, -f3 <<<"$digests")
  m_mid=$(cut -d, -f4 <<<"$digests")
  for who in ours dist; do # one pull through each proxy caches everything
    "$ob" storm --addr "${addr[$who]}" --repo library/micro --query "${query[$who]}" --clients 1 >/dev/null
  done
  sleep 0.5
  for f in "blobs/sha256/${m_small#sha256:}" "blobs/sha256/${m_large#sha256:}" "blobs/sha256/${m_mid#sha256:}" \
    "manifests/sha256/${m_digest#sha256:}"; do
    [ -f "$work/ours-cache/$f" ] || say "not in the cache for nginx: $f"
  done
  # micro_path WHO WHAT: the path of a small blob, the large blob, the manifest by digest, or the manifest by tag;
  # for nginx the cache file of the same object (the manifest file stands in for the tag).
  micro_path() {
    if [ "$1" = nginx ]; then
      case $2 in
        small) echo "/blobs/sha256/${m_small#sha256:}" ;;
        mid) echo "/blobs/sha256/${m_mid#sha256:}" ;;
        large) echo "/blobs/sha256/${m_large#sha256:}" ;;
        *) echo "/manifests/sha256/${m_digest#sha256:}" ;;
      esac
    else
      case $2 in
        small) echo "/v2/library/micro/blobs/$m_small${query[$1]}" ;;
        mid) echo "/v2/library/micro/blobs/$m_mid${query[$1]}" ;;
        large) echo "/v2/library/micro/blobs/$m_large${query[$1]}" ;;
        manifest) echo "/v2/library/micro/manifests/$m_digest${query[$1]}" ;;
        tag) echo "/v2/library/micro/manifests/1${query[$1]}" ;;
      esac
    fi
  }
  micro_addr() { if [ "$1" = nginx ]; then echo "$ngx"; else echo "${addr[$1]}"; fi; }
  fig_small() { wrk_rps "http://$(micro_addr "$1")$(micro_path "$1" small)"; }
  fig_large() { # MiB/s
    wrk_rps "http://$(micro_addr "$1")$(micro_path "$1" large)" |
      awk '{ if ($1 !~ /^[0-9.]+$/) print "n/a"; else printf "%.0f", $1 * 8 }'
  }
  fig_manifest() { wrk_rps "http://$(micro_addr "$1")$(micro_path "$1" manifest)" "$accept"; }
  fig_head() { load_rps "$(micro_addr "$1")" "$(micro_path "$1" tag)" "$accept"; }
  fig_ab() { ab_rps "http://$(micro_addr "$1")$(micro_path "$1" tag)" "$accept"; }
  # Throughput: ours and nginx alternate twice and the better of each counts (neighbours on a shared machine come
  # and go); distribution, there for context, runs once.
  local -A v
  for fig in small large manifest head ab; do
    local o1 n1 o2 n2
    o1=$("fig_$fig" ours)
    n1=$("fig_$fig" nginx)
    o2=$("fig_$fig" ours)
    n2=$("fig_$fig" nginx)
    v[$fig.ours]=$(printf '%s\n' "$o1" "$o2" | best)
    v[$fig.nginx]=$(printf '%s\n' "$n1" "$n2" | best)
    v[$fig.dist]=$("fig_$fig" dist)
    say "micro $fig: ours $o1 $o2, nginx $n1 $n2, distribution ${v[$fig.dist]}"
  done
  r=$(ratio "${v[small.ours]}" "${v[small.nginx]}")
  row micro "GET 2.4 KiB blob, warm (req/s, wrk -c$conns)" "${v[small.ours]}" "${v[small.dist]}" \
    "${v[small.nginx]} nginx" "${r}x nginx" ">= 0.3x nginx" "$(verdict "$r" ">=" 0.3)"
  r=$(ratio "${v[large.ours]}" "${v[large.nginx]}")
  row micro "GET 8 MiB blob, warm (MiB/s, wrk -c$conns)" "${v[large.ours]}" "${v[large.dist]}" \
    "${v[large.nginx]} nginx" "${r}x nginx" ">= 0.9x nginx" "$(verdict "$r" ">=" 0.9)"
  r=$(ratio "${v[manifest.ours]}" "${v[manifest.nginx]}")
  row micro "GET manifest by digest (req/s, wrk -c$conns)" "${v[manifest.ours]}" "${v[manifest.dist]}" \
    "${v[manifest.nginx]} nginx" "${r}x nginx" ">= 0.5x nginx" "$(verdict "$r" ">=" 0.5)"
  r=$(ratio "${v[head.ours]}" "${v[head.nginx]}")
  row micro "HEAD manifest by tag (req/s, ocibench -c$conns)" "${v[head.ours]}" "${v[head.dist]}" \
    "${v[head.nginx]} nginx" "${r}x nginx" ">= 30000 req/s" "$(verdict "${v[head.ours]}" ">=" 30000)"
  r=$(ratio "${v[ab.ours]}" "${v[ab.nginx]}")
  row micro "HEAD manifest by tag (req/s, ab -i -k -c$conns)" "${v[ab.ours]}" "${v[ab.dist]}" \
    "${v[ab.nginx]} nginx" "${r}x nginx" ">= 30000 req/s" "$(verdict "${v[ab.ours]}" ">=" 30000)"

  # Latency: 200 sequential requests on one kept-alive connection each.
  local what method label
  for what in small mid manifest tag; do
    case $what in
      small) method=GET label="GET 2.4 KiB blob" ;;
      mid) method=GET label="GET 100 KiB blob (streamed)" ;;
      manifest) method=GET label="GET manifest by digest" ;;
      tag) method=HEAD label="HEAD manifest by tag" ;;
    esac
    for who in ours dist nginx; do
      v[$what.$who]=$(lat "$(micro_addr "$who")" "$(micro_path "$who" "$what")" "$method" "$accept")
    done
    row micro "1 connection, 200 sequential: $label, p50 / p99 / max (ms)" "${v[$what.ours]}" \
      "${v[$what.dist]}" "${v[$what.nginx]} nginx" - "< 2 ms p99" \
      "$(verdict "$(awk -F' / ' '{ print $2 }' <<<"${v[$what.ours]}")" "<" 2)"
  done
}

