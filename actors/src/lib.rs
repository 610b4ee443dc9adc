//! Concurrency core of ociregistry: naming and content-addressing types.
pub mod digest;
pub mod reference;
