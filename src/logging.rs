//! Logging setup: `logLevel` for our own crates (libraries log warnings and errors only), to standard error or
//! `logFile` (appended). Never logs credentials: no handler logs request headers.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::LogLevel;

/// Install the global subscriber: text, or one JSON object per line (`logFormat: json`, fields at the top level).
/// `RUST_LOG`, when set, overrides the filter (for debugging).
pub fn init(level: LogLevel, file: Option<&Path>, json: bool) -> Result<(), String> {
    let directives = format!("warn,ociregistry={0},actors={0}", level.as_str());
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    if json {
        let builder = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .with_target(false);
        let result = match file {
            Some(path) => builder.with_writer(Mutex::new(open_log(path)?)).try_init(),
            None => builder.with_writer(std::io::stderr).try_init(),
        };
        return result.map_err(|e| format!("cannot set up logging: {e}"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = match file {
        Some(path) => builder.with_ansi(false).with_writer(Mutex::new(open_log(path)?)).try_init(),
        None => builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

fn open_log(path: &Path) -> Result<std::fs::File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {} (logFile / --log-file): {e}", path.display()))
}
