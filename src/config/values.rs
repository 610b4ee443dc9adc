//! Small enumerated setting values shared by the config file and the command line: the log
//! level and format, the upstream URL scheme, the upstream policy, and the listen-host check.

use std::fmt;
use std::net::{AddrParseError, IpAddr};

/// How much the server logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    #[value(alias = "warning")]
    Warn,
    Error,
}

impl LogLevel {
    /// Parses `debug`, `info`, `warn` (or `warning`), `error`, in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    /// The lower-case name, as used in a tracing filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written (`logFormat`, `--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`, in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The URL scheme used to reach an upstream registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// Parses `http` or `https`, in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which namespaces that have no `registries` entry the mirror may dial (`upstreamPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamPolicy {
    /// An unlisted namespace is dialled only when every address its host resolves to is public (no loopback,
    /// private, link-local, CGNAT or metadata address); redirect targets are checked the same way.
    #[default]
    Public,
    /// Only the listed registries.
    Listed,
    /// Any namespace, any address (trusted networks only).
    Any,
}

impl UpstreamPolicy {
    /// Parses `public`, `listed` or `any`, in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "public" => Some(UpstreamPolicy::Public),
            "listed" => Some(UpstreamPolicy::Listed),
            "any" => Some(UpstreamPolicy::Any),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamPolicy::Public => "public",
            UpstreamPolicy::Listed => "listed",
            UpstreamPolicy::Any => "any",
        }
    }
}

impl fmt::Display for UpstreamPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that a listen host is an IP address (v4 or v6) and returns it unchanged.
pub fn parse_host(text: &str) -> Result<String, AddrParseError> {
    text.parse::<IpAddr>().map(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_names() {
        assert_eq!(LogLevel::parse("DEBUG"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse("Info"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("warning"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("warn"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("error"), Some(LogLevel::Error));
        assert_eq!(LogLevel::parse("trace"), None);
        assert_eq!(LogLevel::Warn.to_string(), "warn");
    }

    #[test]
    fn log_format_names() {
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(" JSON "), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("logfmt"), None);
        assert_eq!(LogFormat::parse(""), None);
        assert_eq!(LogFormat::default(), LogFormat::Text);
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn scheme_names() {
        assert_eq!(Scheme::parse("HTTPS"), Some(Scheme::Https));
        assert_eq!(Scheme::parse("http"), Some(Scheme::Http));
        assert_eq!(Scheme::parse("ftp"), None);
        assert_eq!(Scheme::Http.to_string(), "http");
    }

    #[test]
    fn upstream_policy_names() {
        assert_eq!(UpstreamPolicy::parse("Public"), Some(UpstreamPolicy::Public));
        assert_eq!(UpstreamPolicy::parse("LISTED"), Some(UpstreamPolicy::Listed));
        assert_eq!(UpstreamPolicy::parse(" any "), Some(UpstreamPolicy::Any));
        assert_eq!(UpstreamPolicy::parse("open"), None);
        assert_eq!(UpstreamPolicy::default(), UpstreamPolicy::Public);
        assert_eq!(UpstreamPolicy::Listed.to_string(), "listed");
    }

    #[test]
    fn host_must_be_ip() {
        assert_eq!(parse_host("0.0.0.0").as_deref(), Ok("0.0.0.0"));
        assert_eq!(parse_host("::1").as_deref(), Ok("::1"));
        assert!(parse_host("localhost").is_err());
        assert!(parse_host("").is_err());
    }
}
