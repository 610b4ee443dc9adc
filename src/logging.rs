//! Logging setup: `logLevel` for our own crates (libraries log warnings and errors only), to standard error or
//! `logFile` (appended). Never logs credentials: no handler logs request headers. actix-server's accept errors are
//! logged at most once a minute (see `AcceptErrors`).

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::values::LogLevel;

/// Install the global subscriber: text, or one JSON object per line (`logFormat: json`, fields at the top level).
/// `RUST_LOG`, when set, overrides the filter (for debugging).
pub fn init(level: LogLevel, file: Option<&Path>, json: bool) -> Result<(), String> {
    let directives = format!("warn,ociregistry={0},actors={0}", level.as_str());
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    let (writer, ansi) = match file {
        Some(path) => (BoxMakeWriter::new(Mutex::new(open_log(path)?)), false),
        None => (BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal()),
    };
    let layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi).with_writer(writer).boxed()
    };
    let accept_errors = AcceptErrors::new(Duration::from_secs(60));
    let filter = filter.and(filter_fn(move |meta| accept_errors.pass(meta)));
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}

fn open_log(path: &Path) -> Result<std::fs::File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {} (logFile / --log-file): {e}", path.display()))
}

/// actix-server logs every failed `accept` at error level ("Error accepting connection: Too many open files"), once
/// per half-second back-off for as long as descriptors are short: a flood that buries everything else. One such
/// line per `period` says as much.
struct AcceptErrors {
    period: Duration,
    /// Milliseconds after `start` when one last passed, plus one (0: never).
    last: AtomicU64,
    start: OnceLock<Instant>,
}

impl AcceptErrors {
    fn new(period: Duration) -> AcceptErrors {
        AcceptErrors { period, last: AtomicU64::new(0), start: OnceLock::new() }
    }

    /// Whether an event passes: anything but an accept error does; an accept error only if none passed within the
    /// period.
    fn pass(&self, meta: &Metadata<'_>) -> bool {
        if *meta.level() != Level::ERROR || !meta.target().starts_with("actix_server::accept") {
            return true;
        }
        let now = self.start.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period.as_millis() as u64 {
            return false;
        }
        self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct Callsite;
    impl tracing::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static CALLSITE: Callsite = Callsite;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        let fields = FieldSet::new(&[], Identifier(&CALLSITE));
        Metadata::new("event", target, level, None, None, None, fields, Kind::EVENT)
    }

    #[test]
    fn accept_errors_pass_once_per_period() {
        let errors = AcceptErrors::new(Duration::from_millis(300));
        let accept = meta("actix_server::accept", Level::ERROR);
        assert!(errors.pass(&accept), "the first one");
        assert!(!errors.pass(&accept), "a second one within the period");
        assert!(errors.pass(&meta("actix_server::worker", Level::ERROR)), "other targets");
        assert!(errors.pass(&meta("actix_server::accept", Level::INFO)), "other levels");
        assert!(errors.pass(&meta("ociregistry", Level::ERROR)), "our own errors");
        std::thread::sleep(Duration::from_millis(350));
        assert!(errors.pass(&accept), "the next period");
        assert!(!errors.pass(&accept));
    }
}
