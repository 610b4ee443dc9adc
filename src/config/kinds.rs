//! The value forms of the config file, one small type each: `Val<K>` holds a value read by kind `K` (`None`: not
//! set). Each kind reads the YAML value itself, so that a wrong value is refused with the value as written and the
//! reason, and the Go server's forms are all accepted: milliseconds or a duration string, sizes with units,
//! `never` and `0s` TTLs, and "0 or empty means off". The error travels through serde as one marked string that
//! `read.rs` turns back into a `ConfigError` with the key path.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use actors::freshness::TagTtl;
use actors::upstream::guard::UpstreamPolicy;
use actors::PruneRule;
use serde::de::{Deserialize, Deserializer, Error as _};
use serde_yaml::Value;

use crate::values::forms::{parse_endpoint, parse_rate, parse_size, RateError, SizeError};
use crate::values::{from_millis, parse_duration, parse_host, DurationError, LogFormat, LogLevel};

/// Frames a kind's error (`MARK value MARK reason`) inside serde's error text.
pub const MARK: char = '\u{1f}';
/// Shown in place of a value that must not be echoed (a password, or what may be one).
pub const HIDDEN: &str = "(not shown)";

/// How one form reads a YAML value (null only for an entry of a list, to be refused: elsewhere null is "not set").
/// `Ok(None)` is "not set" too (an empty string for most forms); `Err` is the reason the value is refused.
pub trait Kind {
    type Out: Clone;
    /// The value is never shown in messages.
    const HIDDEN: bool = false;
    fn read(value: &Value) -> Result<Option<Self::Out>, String>;
}

/// A config value of kind `K`; `None` when absent, null or (for most kinds) empty.
pub struct Val<K: Kind>(pub Option<K::Out>);

impl<K: Kind> Val<K> {
    pub fn get(&self) -> Option<K::Out> {
        self.0.clone()
    }
}

impl<K: Kind> Default for Val<K> {
    fn default() -> Self {
        Val(None)
    }
}

impl<'de, K: Kind> Deserialize<'de> for Val<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Val(None));
        }
        K::read(&value).map(Val).map_err(|reason| {
            let shown = if K::HIDDEN { HIDDEN.to_string() } else { describe(&value) };
            D::Error::custom(format!("{MARK}{shown}{MARK}{reason}"))
        })
    }
}

/// A short rendering of a value for messages: scalars verbatim (strings quoted), collections by kind.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "(a list)".to_string(),
        Value::Mapping(_) => "(a mapping)".to_string(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, describe(&tagged.value)),
    }
}

/// A string; empty is "not set".
fn text(value: &Value) -> Result<Option<&str>, String> {
    match value {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err("expected a string".to_string()),
    }
}

/// Declares a kind: `kind!(Name -> Out, |value| body)`, `body` giving `Result<Option<Out>, String>`; or, for a
/// string where empty is "not set", `kind!(Name -> Out, text |str| body)`, `body` giving `Result<Out, String>`.
/// `hidden true,` before the body keeps the value out of messages.
macro_rules! kind {
    ($(#[$doc:meta])* $name:ident -> $out:ty, $(hidden $hidden:literal,)? text |$t:ident| $body:expr) => {
        kind!($(#[$doc])* $name -> $out, $(hidden $hidden,)? |v| text(v)?.map(|$t| $body).transpose());
    };
    ($(#[$doc:meta])* $name:ident -> $out:ty, $(hidden $hidden:literal,)? |$v:ident| $body:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl Kind for $name {
            type Out = $out;
            $(const HIDDEN: bool = $hidden;)?
            fn read($v: &Value) -> Result<Option<$out>, String> {
                $body
            }
        }
    };
}

/// Declares a kind of a string naming one of a few values, in any letter case.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident -> $out:ty, $expected:literal, { $($text:literal => $val:expr),+ $(,)? }) => {
        kind!($(#[$doc])* $name -> $out, |v| match text(v)?.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
            None => Ok(None),
            $(Some($text) => Ok(Some($val)),)+
            Some(_) => Err($expected.to_string()),
        });
    };
}

named!(/// `scheme`, the URL scheme used to reach an upstream registry: true for https.
    SchemeKind -> bool, "expected http or https", { "http" => false, "https" => true });
named!(/// `serverTlsConfig.clientAuth`: true for verify (a client certificate signed by `serverTlsConfig.ca` is
    /// required; a client without one fails the handshake), false for none (no certificate is requested).
    ClientAuthKind -> bool, "expected none or verify", { "none" => false, "verify" => true });

named!(/// `pruneConfig.type`, what the background pruning removes, as the actors' `PruneRule` made from
    /// `pruneConfig.duration` (images not pulled for it, or first cached more than it ago); `None` for `pattern`,
    /// whose rule is made from `pruneConfig.expr` (images whose name matches one of them).
    PruneType -> Option<fn(Duration) -> PruneRule>, "expected accessed, created or pattern",
    { "accessed" => Some(PruneRule::NotPulledFor), "created" => Some(PruneRule::CreatedMoreThan), "pattern" => None });

kind!(/// A string.
    Text -> String, text |t| Ok(t.to_string()));
kind!(/// A path.
    PathText -> PathBuf, text |t| Ok(PathBuf::from(t)));
kind!(/// Any value (keys of the Go server that have no effect here).
    Any -> (), |_v| Ok(Some(())));
kind!(/// `true` or `false`.
    Flag -> bool, |v| v.as_bool().map(Some).ok_or_else(|| "expected true or false".to_string()));
kind!(/// A TCP port, 1 to 65535.
    Port -> u16, |v| port(v).map(Some));
kind!(/// A listener's port, where 0 and "" mean off (`Some(None)`).
OffPort -> Option<u16>, |v| match v {
    _ if v.as_str() == Some("") || v.as_u64() == Some(0) => Ok(Some(None)),
    _ => port(v).map(|p| Some(Some(p))),
});
kind!(/// A duration greater than zero: whole milliseconds, or a string such as "10s".
    Millis -> Duration, |v| millis(v).map(Some).map_err(|e| e.to_string()));
kind!(/// A duration, or "" for not set (`token.expiry` of the Go server's default config).
Expiry -> Duration, |v| match v {
    Value::String(s) if s.is_empty() => Ok(None),
    _ => Millis::read(v),
});
kind!(/// A duration, or `never` (`Some(None)`).
Never -> Option<Duration>, |v| match v {
    Value::String(s) if s.trim() == "never" => Ok(Some(None)),
    _ => Ok(Some(Some(millis(v).map_err(|e| e.to_string())?))),
});
kind!(/// A tag TTL: `never`, or a duration that may be zero (`0s`: every pull).
    Ttl -> TagTtl, |v| ttl(v).map(Some).map_err(|err| format!("{err} (or \"never\")")));
kind!(/// A byte size: whole bytes, or a number with a unit ("500Mi").
    Size -> u64, |v| size(v).map(Some));
kind!(/// A size where 0 and "" mean no limit (`Some(None)`).
OffSize -> Option<u64>, |v| match v {
    Value::String(s) if s.trim().is_empty() => Ok(Some(None)),
    _ => size(v).map(|n| Some((n > 0).then_some(n))),
});
kind!(/// `upstreamBandwidth`: bytes or bits per second (`values::forms::parse_rate`); 0 and "" mean no cap (`Some(None)`).
    Rate -> Option<NonZeroU64>, |v| match v {
    Value::String(s) if s.trim().is_empty() => Ok(Some(None)),
    Value::Number(n) => n.as_u64().map(|n| Some(NonZeroU64::new(n))).ok_or_else(|| RateError::Unparsable.to_string()),
    Value::String(s) => parse_rate(s).map(|n| Some(NonZeroU64::new(n))).map_err(|e| e.to_string()),
    _ => Err(RateError::Unparsable.to_string()),
});
kind!(/// A listen IP address.
    Host -> String, text |t| parse_host(t).map_err(|_| "expected an IP address such as 0.0.0.0 or ::".to_string()));
kind!(/// The cache directory; empty is refused rather than replaced by the default, maybe another file system.
ImagePath -> PathBuf, |v| match v {
    Value::String(s) if s.trim().is_empty() => {
        Err("the cache directory must not be empty; remove the key to use /var/lib/ociregistry".to_string())
    }
    _ => PathText::read(v),
});
kind!(/// `maxConcurrent`.
Concurrency -> usize, |v| match v.as_u64() {
    Some(n @ 1..=1024) => Ok(Some(n as usize)),
    _ => Err("expected a whole number from 1 to 1024".to_string()),
});
kind!(/// `rateLimitReserve`: a whole number of pulls, 0 or more.
Reserve -> u64, |v| v.as_u64().map(Some).ok_or_else(|| "expected a whole number of pulls, 0 or more".to_string()));
kind!(/// `pruneConfig.count`: -1 is no limit (`Some(None)`).
Count -> Option<usize>, |v| match v.as_i64() {
    Some(-1) => Ok(Some(None)),
    Some(n) if n > 0 => Ok(Some(Some(n as usize))),
    _ => Err("expected -1 (no limit) or a positive number".to_string()),
});
kind!(/// A base URL (`endpoint`, `cluster.self`, `storage.s3.endpoint`).
    Url -> String, text |t| parse_endpoint(t).map_err(str::to_string));
kind!(/// A registry's `name`, `host[:port]`.
RegistryName -> String, text |n| match n {
    _ if n.contains("://") => Err("expected host[:port] without a scheme (use 'scheme' or 'endpoint')".to_string()),
    _ if n.contains(['/', '@', '?', '#']) || n.chars().any(char::is_whitespace) => {
        Err("expected host[:port] without path, credentials or spaces".to_string())
    }
    _ => Ok(n.to_string()),
});
kind!(/// One `cluster.peers` entry.
Peer -> String, |v| match v {
    Value::String(t) => parse_endpoint(t).map(Some).map_err(str::to_string),
    _ => Err("expected a base URL such as http://10.0.0.5:8080".to_string()),
});
kind!(/// One `pinned` pattern, checked.
Pattern -> String, |v| match v {
    Value::String(t) => actors::Pins::new(&[t]).map(|_| Some(t.trim().to_string())).map_err(|e| e.to_string()),
    _ => Err("expected an image pattern such as docker.io/library/*".to_string()),
});
kind!(/// One `registries[].allow` or `registries[].deny` pattern, compiled.
RepoPath -> actors::access::RepoPattern, |v| match v {
    Value::String(t) => actors::access::RepoPattern::parse(t).map(Some).map_err(|e| e.to_string()),
    _ => Err("expected a repository path pattern such as library/* or org/**".to_string()),
});
kind!(/// `pruneConfig.expr`: regular expressions, comma-separated, each checked to compile.
Exprs -> Vec<regex::Regex>, |v| {
    let exprs = text(v)?.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty());
    let exprs = exprs.map(regex::Regex::new).collect::<Result<Vec<_>, _>>();
    let exprs = exprs.map_err(|err| format!("not a regular expression: {err}"))?;
    Ok((!exprs.is_empty()).then_some(exprs))
});
kind!(/// A credential helper's name: it runs as `docker-credential-<name>`.
HelperName -> String, text |n| match n.chars().find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '.' | '_' | '-')) {
    None => Ok(n.to_string()),
    Some(_) => Err("expected a helper name such as ecr-login (letters, digits, '.', '_', '-'); the mirror runs \
         docker-credential-<name>".to_string()),
});
kind!(/// `logLevel`.
    Level -> LogLevel, text |t| LogLevel::parse(t).ok_or("expected debug, info, warn or error".into()));
kind!(/// `logFormat`.
    Format -> LogFormat, text |t| LogFormat::parse(t).ok_or("expected text or json".into()));
named!(/// `upstreamPolicy`, the actors' own type.
    Policy -> UpstreamPolicy, "expected public, listed or any",
    { "public" => UpstreamPolicy::Public, "listed" => UpstreamPolicy::Listed, "any" => UpstreamPolicy::Any });
kind!(/// `storage.type`: true for s3.
StorageType -> bool, text |t| match t {
    "filesystem" | "s3" => Ok(t == "s3"),
    _ => Err("expected filesystem or s3".to_string()),
});
kind!(/// `cluster.scheme`.
PeerScheme -> String, text |t| match t {
    "http" | "https" => Ok(t.to_string()),
    _ => Err("expected http or https".to_string()),
});
kind!(/// A password: never shown.
Password -> String, hidden true, |v| match v {
    Value::String(s) => Ok((!s.is_empty()).then(|| s.clone())),
    _ => Err("expected a string (put the value in quotes)".to_string()),
});
kind!(/// A user name: never shown, as it may be a pasted `user:password`.
User -> String, hidden true, text |u| match u.chars().find(|&c| c == ':' || c.is_control()) {
    Some(_) => Err("a user name must not contain ':' or control characters".to_string()),
    None => Ok(u.to_string()),
});

fn port(value: &Value) -> Result<u16, String> {
    match value.as_u64().and_then(|n| u16::try_from(n).ok()) {
        Some(p) if p > 0 => Ok(p),
        _ => Err("expected a port number from 1 to 65535".to_string()),
    }
}

fn millis(value: &Value) -> Result<Duration, DurationError> {
    match value {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(ms), _) => from_millis(ms),
            (None, Some(_)) => Err(DurationError::NotPositive),
            _ => Err(DurationError::Unparsable),
        },
        Value::String(s) => parse_duration(s),
        _ => Err(DurationError::Unparsable),
    }
}

/// A duration as `millis` reads it, where zero (`0`, `0s`) is allowed, or `never`.
fn ttl(value: &Value) -> Result<TagTtl, DurationError> {
    match (value, millis(value)) {
        (Value::String(s), _) if s.trim() == "never" => Ok(TagTtl::Never),
        (_, Ok(d)) => Ok(TagTtl::After(d)),
        (Value::Number(n), _) if n.as_u64() == Some(0) => Ok(TagTtl::After(Duration::ZERO)),
        (Value::String(s), Err(DurationError::NotPositive)) if !s.trim().starts_with('-') => {
            Ok(TagTtl::After(Duration::ZERO))
        }
        (Value::Number(_), _) => Err(DurationError::NotPositive),
        (_, Err(e)) => Err(e),
    }
}

fn size(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => n.as_u64().ok_or(SizeError::Unparsable),
        Value::String(s) => parse_size(s),
        _ => Err(SizeError::Unparsable),
    }
    .map_err(|e| e.to_string())
}
