//! How a fetch ends, and what its followers see meanwhile: `Progress` while it runs, then exactly one `Outcome`
//! (`Done`, `Failed`, `PassThrough` with its reason, or `Abandoned`).

use std::fmt;

use crate::error::MirrorError;

/// Why a blob is passed through uncached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassReason {
    /// The cache directory cannot take new files right now.
    CacheUnwritable,
    /// The blob does not fit in the free space (above the reserve).
    TooLarge {
        /// Its size.
        size: u64,
    },
}

impl fmt::Display for PassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassReason::CacheUnwritable => f.write_str("the cache is not writable"),
            PassReason::TooLarge { size } => write!(f, "{size} bytes do not fit in the cache's free space"),
        }
    }
}

/// How a fetch ended, as every waiter sees it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Complete, verified (and committed unless the store refused): `size` bytes.
    Done {
        /// The blob's size.
        size: u64,
    },
    /// Failed; the error says why and maps to an HTTP status.
    Failed(MirrorError),
    /// Not cached: each waiter fetches the bytes for itself.
    PassThrough(PassReason),
    /// The leader went away without an outcome; asking again starts a new fetch.
    Abandoned,
}

/// The state of a transfer, as published to its readers.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The upstream has not answered yet.
    Starting,
    /// Bytes are arriving: `written` are in the store; `total` is the announced size, when known.
    Running {
        /// Bytes stored so far.
        written: u64,
        /// The announced size.
        total: Option<u64>,
    },
    /// Ended.
    Settled(Outcome),
}
