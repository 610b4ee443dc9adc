//! The keys of the cache's life: `maxCacheSize`, `pinned`, `pruneConfig` (the Go server's, `dryRun` also spelled
//! `dryrun`), `preloadImages` and `imageFile` (the Go server's), and `os` / `arch` (which platforms of an index a
//! preload takes; all when unset).

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::error::ConfigError;
use super::yaml::{Section, Walker};

pub const PRUNE_KEYS: &[&str] = &["enabled", "type", "duration", "frequency", "count", "expr", "dryRun", "dryrun"];
/// The Go server's defaults.
pub const DEFAULT_PRUNE_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_PRUNE_FREQUENCY: Duration = Duration::from_secs(24 * 3600);

/// What the background pruning removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneKind {
    /// Images not pulled for `duration`.
    Accessed,
    /// Images first cached more than `duration` ago.
    Created,
    /// Images whose name matches one of `expr`.
    Pattern,
}

/// `pruneConfig`, when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneConfig {
    pub kind: PruneKind,
    /// Regular expressions (`expr`, comma-separated), for `pattern`; checked to compile.
    pub exprs: Vec<String>,
    /// For `accessed` and `created`.
    pub duration: Duration,
    /// Time between runs.
    pub frequency: Duration,
    /// At most this many images a run (`count`; -1 or absent: no limit).
    pub count: Option<usize>,
    pub dry_run: bool,
}

/// The values of these keys in one file (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifeSettings {
    /// `maxCacheSize` in bytes; `None` (absent, empty or 0): no cap.
    pub max_cache_size: Option<u64>,
    /// `pinned` patterns, checked.
    pub pinned: Vec<String>,
    /// `pruneConfig` when `enabled: true`.
    pub prune: Option<PruneConfig>,
    /// `preloadImages`: files (or globs), comma-separated, loaded in the background after start.
    pub preload_images: Option<String>,
    /// `imageFile`: the file `load` uses when `--image-file` is not given.
    pub image_file: Option<PathBuf>,
    /// `os` and `arch`: the platform preloads take from an index (all when unset).
    pub os: Option<String>,
    pub arch: Option<String>,
}

/// Read the keys from the top-level section.
pub fn parse_life(walker: &mut Walker, top: &Section<'_>) -> Result<LifeSettings, ConfigError> {
    let max_cache_size = match top.get("maxCacheSize") {
        Some(Value::String(s)) if s.trim().is_empty() => None,
        _ => walker.size(top, "maxCacheSize")?.filter(|n| *n > 0),
    };
    let pinned = match top.get("pinned") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let key = format!("pinned[{i}]");
                let Value::String(text) = item else {
                    return Err(walker.invalid(&key, item, "expected an image pattern such as docker.io/library/*"));
                };
                actors::Pins::new(&[text]).map_err(|e| walker.invalid(&key, item, e))?;
                out.push(text.trim().to_string());
            }
            out
        }
        Some(other) => return Err(walker.invalid("pinned", other, "expected a list of image patterns")),
    };
    let prune = match top.get("pruneConfig") {
        None => None,
        Some(value) => parse_prune(walker, value)?,
    };
    Ok(LifeSettings {
        max_cache_size,
        pinned,
        prune,
        preload_images: walker.string(top, "preloadImages")?,
        image_file: walker.string(top, "imageFile")?.map(PathBuf::from),
        os: walker.string(top, "os")?,
        arch: walker.string(top, "arch")?,
    })
}

fn parse_prune(walker: &mut Walker, value: &Value) -> Result<Option<PruneConfig>, ConfigError> {
    let section = walker.section("pruneConfig", value, PRUNE_KEYS)?;
    let dry_run = walker.boolean(&section, "dryRun")? || walker.boolean(&section, "dryrun")?;
    let kind = match walker.string(&section, "type")?.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("accessed") => PruneKind::Accessed,
        Some("created") => PruneKind::Created,
        Some("pattern") => PruneKind::Pattern,
        Some(_) => {
            let v = section.get("type").cloned().unwrap_or(Value::Null);
            return Err(walker.invalid(&section.key("type"), &v, "expected accessed, created or pattern"));
        }
    };
    let exprs: Vec<String> = walker
        .string(&section, "expr")?
        .map(|e| e.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    for e in &exprs {
        if let Err(err) = regex::Regex::new(e) {
            let v = section.get("expr").cloned().unwrap_or(Value::Null);
            return Err(walker.invalid(&section.key("expr"), &v, format!("not a regular expression: {err}")));
        }
    }
    let count = match section.get("count") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(-1) => None,
            Some(n) if n > 0 => Some(n as usize),
            _ => return Err(walker.invalid(&section.key("count"), v, "expected -1 (no limit) or a positive number")),
        },
    };
    let duration = walker.duration(&section, "duration")?.unwrap_or(DEFAULT_PRUNE_DURATION);
    let frequency = walker.duration(&section, "frequency")?.unwrap_or(DEFAULT_PRUNE_FREQUENCY);
    if !walker.boolean(&section, "enabled")? {
        return Ok(None);
    }
    if kind == PruneKind::Pattern && exprs.is_empty() {
        return Err(walker.required_by(&section.key("expr"), &section.key("type"), " (type: pattern)"));
    }
    Ok(Some(PruneConfig { kind, exprs, duration, frequency, count, dry_run }))
}

impl PruneConfig {
    /// The actors' schedule for it.
    pub fn schedule(&self) -> actors::PruneSchedule {
        let rule = match self.kind {
            PruneKind::Accessed => actors::PruneRule::NotPulledFor(self.duration),
            PruneKind::Created => actors::PruneRule::CreatedMoreThan(self.duration),
            PruneKind::Pattern => {
                actors::PruneRule::Matches(self.exprs.iter().filter_map(|e| regex::Regex::new(e).ok()).collect())
            }
        };
        actors::PruneSchedule {
            request: actors::PruneRequest { rules: vec![rule], limit: self.count, dry_run: self.dry_run },
            every: self.frequency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<(LifeSettings, Vec<String>), ConfigError> {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML");
        let mut walker = Walker::new("cfg.yaml");
        let top = walker.section(
            "",
            &value,
            &["maxCacheSize", "pinned", "pruneConfig", "preloadImages", "imageFile", "os", "arch"],
        )?;
        let life = parse_life(&mut walker, &top)?;
        Ok((life, walker.warnings))
    }

    #[test]
    fn keys_load() {
        let (life, warnings) = parse(
            "maxCacheSize: 50Gi\npinned: ['docker.io/library/*', 'registry.k8s.io/pause:*']\n\
             pruneConfig: {enabled: true, type: created, duration: 7d, frequency: 1h, count: 5, dryrun: true}\n\
             preloadImages: /p/images.txt\nimageFile: /p/x.tar\nos: linux\narch: arm64\n",
        )
        .expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(life.max_cache_size, Some(50 << 30));
        assert_eq!(life.pinned.len(), 2);
        let prune = life.prune.expect("enabled");
        assert_eq!((prune.kind, prune.count, prune.dry_run), (PruneKind::Created, Some(5), true));
        assert_eq!((prune.duration, prune.frequency), (Duration::from_secs(7 * 86400), Duration::from_secs(3600)));
        assert_eq!(life.preload_images.as_deref(), Some("/p/images.txt"));
        assert_eq!((life.os.as_deref(), life.arch.as_deref()), (Some("linux"), Some("arm64")));
    }

    #[test]
    fn go_defaults_and_off_values() {
        let (life, _) = parse(
            "maxCacheSize: ''\npruneConfig: {enabled: false, type: accessed, duration: 30d, frequency: 1d, count: -1, \
             expr: '', dryRun: false}\n",
        )
        .expect("valid");
        assert_eq!(life, LifeSettings::default());
        let (life, _) = parse("maxCacheSize: 0\npruneConfig: {enabled: true}\n").expect("valid");
        assert_eq!(life.max_cache_size, None);
        let prune = life.prune.expect("on");
        assert_eq!((prune.kind, prune.duration, prune.count), (PruneKind::Accessed, DEFAULT_PRUNE_DURATION, None));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (yaml, key) in [
            ("maxCacheSize: lots", "maxCacheSize"),
            ("pinned: docker.io/library/*", "pinned"),
            ("pinned: [alpine]", "pinned[0]"),
            ("pruneConfig: {enabled: true, type: size}", "pruneConfig.type"),
            ("pruneConfig: {enabled: true, count: 0}", "pruneConfig.count"),
            ("pruneConfig: {enabled: true, type: pattern, expr: '(unclosed'}", "pruneConfig.expr"),
            ("pruneConfig: {enabled: true, frequency: soon}", "pruneConfig.frequency"),
        ] {
            let err = parse(yaml).expect_err(yaml).to_string();
            assert!(err.starts_with(&format!("config key '{key}' (in cfg.yaml)")), "{yaml}: {err}");
        }
        let err = parse("pruneConfig: {enabled: true, type: pattern}").expect_err("no expr").to_string();
        assert!(err.contains("'pruneConfig.expr'"), "{err}");
    }
}
