//! `ociregistry prune [--pattern REGEX,...] [--date YYYY-MM-DDTHH:MM:SS] [--dry-run]`, and the admin API's prune
//! (`POST /cmd/prune?pattern=&date=&dryRun=`, and the Go server's `DELETE /cmd/prune?type=&dur=&expr=&count=&dryRun=`):
//! one set of options, one request to the cache actor.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use actors::{PruneReport, PruneRequest, PruneRule};
use regex::Regex;

use crate::values::parse_duration;

/// Regular expressions separated by commas.
pub fn patterns(text: &str) -> Result<Vec<Regex>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Regex::new(p).map_err(|e| format!("{p:?} is not a regular expression: {e}")))
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) as unix seconds.
pub fn date(text: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("{text:?} is not a date like 2025-01-31T00:00:00: {e}"))?;
    Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
}

/// The request the command line or a query string describes. Keys: `pattern` (or the Go `expr` with
/// `type=pattern`), `date`, `type=accessed|created` with `dur`, `count`, `dryRun` (or `dryrun`).
pub fn request(options: &HashMap<String, String>) -> Result<PruneRequest, String> {
    let get = |k: &str| options.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut rules = Vec::new();
    if let Some(p) = get("pattern") {
        rules.push(PruneRule::Matches(patterns(p)?));
    }
    if let Some(d) = get("date") {
        rules.push(PruneRule::CreatedBefore(date(d)?));
    }
    match get("type").map(str::to_ascii_lowercase).as_deref() {
        None => {}
        Some("pattern") => {
            let expr = get("expr").ok_or("type=pattern needs expr=REGEX[,...]")?;
            rules.push(PruneRule::Matches(patterns(expr)?));
        }
        Some(kind @ ("accessed" | "created")) => {
            let dur = get("dur").ok_or_else(|| format!("type={kind} needs dur=DURATION (e.g. 30d)"))?;
            let dur = parse_duration(dur).map_err(|e| format!("dur={dur}: {e}"))?;
            rules.push(if kind == "accessed" { PruneRule::NotPulledFor(dur) } else { PruneRule::CreatedMoreThan(dur) });
        }
        Some(other) => return Err(format!("type={other}: expected accessed, created or pattern")),
    }
    let limit = match get("count") {
        None | Some("-1") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("count={n}: expected -1 or a positive number"))?,
        ),
    };
    let dry_run = ["dryRun", "dryrun"].iter().any(|k| get(k).is_some_and(|v| v == "true" || v == "1"));
    Ok(PruneRequest { rules, limit, dry_run })
}

/// What the command prints.
pub fn render(report: &PruneReport) -> String {
    let verb = if report.dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for image in &report.images {
        out.push_str(&format!("{verb}: {image}\n"));
    }
    out.push_str(&format!(
        "{}{verb} {} image(s), {} manifest(s), {} blob(s), {} bytes\n",
        if report.dry_run { "dry run: " } else { "" },
        report.images.len(),
        report.manifests,
        report.blobs,
        report.bytes
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_of_the_command_and_of_the_go_api() {
        let r = request(&q(&[("pattern", "hello,^docker.io/x"), ("date", "2025-01-31T00:00:00"), ("dryRun", "true")]))
            .expect("valid");
        assert!(r.dry_run && r.rules.len() == 2 && r.limit.is_none());
        assert!(matches!(r.rules[1], PruneRule::CreatedBefore(1_738_281_600)));
        let r = request(&q(&[("type", "accessed"), ("dur", "30d"), ("count", "5"), ("dryrun", "true")])).expect("go");
        assert!(r.dry_run && r.limit == Some(5));
        assert!(matches!(r.rules[0], PruneRule::NotPulledFor(d) if d.as_secs() == 30 * 86400));
        assert!(request(&q(&[])).expect("nothing").rules.is_empty(), "no rule: only the collection runs");
        for bad in [&[("pattern", "(")][..], &[("date", "yesterday")], &[("type", "size")], &[("type", "created")]] {
            assert!(request(&q(bad)).is_err(), "{bad:?}");
        }
    }
}
