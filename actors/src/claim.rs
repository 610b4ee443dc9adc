//! The claim on a blob: who fetches it, and how every other request gets its bytes. One type, `BlobClaim`, travels
//! from the cache actor through the image actor to the front door; the single request that must fetch the blob gets
//! a `Lease` instead (`ClaimReply::Lead`), whose transfer every other claim of that digest follows.

use crate::outcome::PassReason;
use crate::transfer::{Transfer, TransferPublisher};

/// How a request gets a blob's bytes.
#[derive(Clone)]
pub enum BlobClaim {
    /// From the cache (it was committed by the time the claim was answered).
    Cached,
    /// From the transfer fetching it now (any repository's).
    Follow(Transfer),
    /// Straight from the upstream, uncached.
    PassThrough(PassReason),
}

/// The lead of one blob fetch: the publisher its followers listen to, and their handle.
pub struct Lease {
    /// How the leader reports progress and the outcome.
    pub publisher: TransferPublisher,
    /// The followers' handle (hand it to waiting requests).
    pub transfer: Transfer,
}

/// The cache actor's answer to a claim.
pub enum ClaimReply {
    /// You fetch it; everyone else follows `lease.transfer`.
    Lead(Lease),
    /// Get the bytes this way.
    Claim(BlobClaim),
}
