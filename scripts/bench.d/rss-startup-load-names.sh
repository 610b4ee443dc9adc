# Sourced by scripts/bench: the rss, startup, load and names sections.
# shellcheck shell=bash
section_rss() {
  local repo=library/big push nblobs who mark result gets bytes
  local -A rss wall per_blob
  push=$("$ob" push --addr "$up" --repo "$repo" --layers $((big_mib * 1024 * 1024)))
  nblobs=$(kv blobs "$push")
  for who in ours dist; do
    mark=$(upstream_mark)
    result=$("$ob" storm --addr "${addr[$who]}" --repo "$repo" --query "${query[$who]}" --clients "$big_clients" \
      --rss-pids "${pid[$who]}")
    read -r gets bytes < <(upstream_gets "$repo" "$mark")
    say "rss $who: $result; upstream blob GETs $gets"
    rss[$who]=$(mib "$(kv peak_rss_kib "$result")")
    [ "$(kv failed "$result")" = 0 ] && wall[$who]=$(kv wall_s "$result") || wall[$who]=n/a
    per_blob[$who]=$(ratio "$gets" "$nblobs")
  done
  row rss "$big_clients clients x $big_mib MiB layer, cold: peak RSS (MiB)" "${rss[ours]}" "${rss[dist]}" - \
    "$(ratio "${rss[ours]}" "${rss[dist]}")x dist" "<= 64" "$(verdict "${rss[ours]}" "<=" 64)"
  row rss "$big_clients clients x $big_mib MiB layer, cold: wall (s)" "${wall[ours]}" "${wall[dist]}" - \
    "$(ratio "${wall[ours]}" "${wall[dist]}")x dist" - -
  row rss "$big_clients clients x $big_mib MiB layer, cold: upstream GETs per blob" "${per_blob[ours]}" \
    "${per_blob[dist]}" - - "1 (README)" "$(verdict "${per_blob[ours]}" "<=" 1)"
}

drop_caches() {
  sync
  if [ "$(id -u)" -eq 0 ]; then
    echo 3 >/proc/sys/vm/drop_caches
  else
    echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null
  fi
}

section_startup() {
  local dir=$work/start-cache port metrics probe gen mode t0 spid result ready rss rss_1s loaded rss_loaded
  gen=$("$ob" gen-cache --dir "$dir" --count "$start_n")
  sync # written back before the warm start, so that it does not compete with the writeback
  say "generated: $gen"
  port=$("$ob" port)
  metrics=$("$ob" port)
  sed -e "s|^imagePath: .*|imagePath: $dir|" -e "s|^port: .*|port: $port|" -e "s|^metrics: .*|metrics: $metrics|" \
    "$work/ours.yml" >"$work/start.yml"
  probe="/v2/library/start-$(printf %06d $((start_n / 2)))/manifests/1?ns=docker.io"
  for mode in warm dropped; do
    if [ "$mode" = dropped ] && ! drop_caches; then
      row startup "$start_n manifests, page cache dropped: cannot drop caches (needs root)" n/a - - - - n/a
      continue
    fi
    t0=$(date +%s%N)
    start "start-$mode" "$bin" --config-file "$work/start.yml" serve
    spid=$last_pid
    result=$("$ob" wait-ready --addr "127.0.0.1:$port" --path "$probe" --pid "$spid" --t0-ns "$t0" --timeout-s 120 \
      --metrics "127.0.0.1:$metrics")
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    say "start-up, page cache $mode: $result"
    ready=$(kv ready_ms "$result")
    ready=$(awk -v r="$ready" 'BEGIN { if (r !~ /^[0-9.]+$/) print "n/a"; else printf "%.0f", r }')
    loaded=$(kv loaded_ms "$result")
    loaded=$(awk -v r="$loaded" 'BEGIN { if (r !~ /^[0-9.]+$/) print "n/a"; else printf "%.0f", r }')
    rss=$(mib "$(kv rss_kib "$result")")
    rss_1s=$(mib "$(kv rss_1s_kib "$result")")
    rss_loaded=$(mib "$(kv rss_loaded_kib "$result")")
    row startup "$start_n manifests, page cache $mode: first cached HEAD answered after (ms)" "$ready" - - - \
      "<= 1000" "$(verdict "$ready" "<=" 1000)"
    row startup "$start_n manifests, page cache $mode: RSS then / 1 s later (MiB)" "$rss / $rss_1s" - - - "<= 48" \
      "$(verdict "$(awk -v a="$rss" -v b="$rss_1s" 'BEGIN { print (a + 0 > b + 0 ? a : b) }')" "<=" 48)"
    row startup "$start_n manifests, page cache $mode: index fully loaded after (ms) / RSS then (MiB)" \
      "$loaded / $rss_loaded" - - - "RSS <= 48" "$(verdict "$rss_loaded" "<=" 48)"
  done
}

section_load() {
  local push who result
  local -A cold cached
  push=$("$ob" push --addr "$up" --repo library/load- --layers "$load_layers" --count "$load_n" --concurrency 8)
  say "pushed: $push"
  for who in ours dist; do
    for pass in cold cached; do
      result=$("$ob" pull-all --addr "${addr[$who]}" --prefix library/load- --query "${query[$who]}" \
        --count "$load_n" --clients "$load_clients")
      say "load $who $pass: $result"
      local v
      [ "$(kv failed "$result")" = 0 ] && v=$(kv images_per_s "$result") || v=n/a
      if [ "$pass" = cold ]; then cold[$who]=$v; else cached[$who]=$v; fi
    done
  done
  row load "$load_n images x 5 blobs, $load_clients pullers: pull-through (images/s)" "${cold[ours]}" "${cold[dist]}" \
    "Go ~320 (6-core i7-8700)" "$(ratio "${cold[ours]}" "${cold[dist]}")x dist" - -
  row load "$load_n images x 5 blobs, $load_clients pullers: cached (images/s)" "${cached[ours]}" "${cached[dist]}" \
    "Go ~1,800 (6-core i7-8700)" "$(ratio "${cached[ours]}" "${cached[dist]}")x dist" - -
}

section_names() {
  local who result
  local -A peak idle gone
  local actors_idle=n/a
  for who in ours dist; do
    local metrics=()
    [ "$who" = ours ] && metrics=(--metrics "127.0.0.1:$ours_metrics")
    result=$("$ob" names --addr "${addr[$who]}" --prefix library/nope- --query "${query[$who]}" --count "$names_n" \
      --clients 16 --pid "${pid[$who]}" "${metrics[@]}")
    say "names $who: $result"
    [ "$who" = ours ] && actors_idle=$(kv actors_idle "$result")
    peak[$who]=$(awk -v p="$(kv rss_peak_kib "$result")" -v s="$(kv rss_start_kib "$result")" 'BEGIN { printf "%.1f", (p - s) / 1024 }')
    idle[$who]=$(awk -v p="$(kv rss_idle_kib "$result")" -v s="$(kv rss_start_kib "$result")" 'BEGIN { printf "%.1f", (p - s) / 1024 }')
    gone[$who]="$(kv actors_end "$result") -> $(kv actors_idle "$result") after $(kv idle_after_s "$result") s"
  done
  row names "$names_n GETs of distinct nonexistent repositories: RSS growth at the peak (MiB)" "${peak[ours]}" \
    "${peak[dist]}" - - "<= 24" "$(verdict "${peak[ours]}" "<=" 24)"
  row names "$names_n GETs of distinct nonexistent repositories: RSS growth once idle (MiB)" "${idle[ours]}" \
    "${idle[dist]}" - - "<= 24" "$(verdict "${idle[ours]}" "<=" 24)"
  row names "$names_n GETs of distinct nonexistent repositories: image actors right after -> idle" "${gone[ours]}" \
    - - - "-> 0" "$([ "$actors_idle" = 0 ] && echo pass || echo FAIL)"
}

