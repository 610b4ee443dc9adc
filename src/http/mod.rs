//! The HTTP layer: request-target parsing (more to come).
pub mod target;
