//! Setting values shared by the command line and the config file, and nothing of either: the log level and format,
//! the listen-host check, and durations. A duration is a whole number of milliseconds (as the Go server's
//! `pullTimeout`), digits in a string (milliseconds again) or a humantime duration such as "10s", "2m" or "500ms";
//! zero is never a valid timeout. `forms.rs`: sizes and base URLs; `secret.rs`: a string that never formats as
//! itself. `cli` and `config` both import these files; they import neither.

pub mod forms;
pub mod secret;

use std::fmt;
use std::net::{AddrParseError, IpAddr};
use std::time::Duration;

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

/// Checks that a listen host is an IP address (v4 or v6) and returns it unchanged.
pub fn parse_host(text: &str) -> Result<String, AddrParseError> {
    text.parse::<IpAddr>().map(|_| text.to_string())
}

/// Why a duration could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a duration must be greater than zero")]
    NotPositive,
    #[error("expected whole milliseconds or a duration with a unit such as \"10s\", \"2m\", \"500ms\"")]
    Unparsable,
}

/// Parses a duration given as text (command line or YAML string).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let millis = text.parse::<u64>().map_err(|_| DurationError::Unparsable)?;
        return from_millis(millis);
    }
    if text.starts_with('-') {
        return Err(DurationError::NotPositive);
    }
    let duration = humantime::parse_duration(text).map_err(|_| DurationError::Unparsable)?;
    if duration.is_zero() {
        return Err(DurationError::NotPositive);
    }
    Ok(duration)
}

/// A duration given as a whole number of milliseconds.
pub fn from_millis(millis: u64) -> Result<Duration, DurationError> {
    if millis == 0 {
        return Err(DurationError::NotPositive);
    }
    Ok(Duration::from_millis(millis))
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
    fn host_must_be_ip() {
        assert_eq!(parse_host("0.0.0.0").as_deref(), Ok("0.0.0.0"));
        assert_eq!(parse_host("::1").as_deref(), Ok("::1"));
        assert!(parse_host("localhost").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn accepts_units_and_plain_milliseconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("60000"), Ok(Duration::from_secs(60)));
        assert_eq!(from_millis(1500), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn rejects_zero_negative_and_garbage() {
        assert_eq!(parse_duration("0"), Err(DurationError::NotPositive));
        assert_eq!(parse_duration("0s"), Err(DurationError::NotPositive));
        assert_eq!(parse_duration("-5s"), Err(DurationError::NotPositive));
        assert_eq!(from_millis(0), Err(DurationError::NotPositive));
        assert_eq!(parse_duration("ten seconds"), Err(DurationError::Unparsable));
        assert_eq!(parse_duration(""), Err(DurationError::Unparsable));
        assert_eq!(parse_duration("10 parsecs"), Err(DurationError::Unparsable));
    }
}
