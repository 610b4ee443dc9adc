//! Runtime settings: value types and parsers shared by the command line and the config file.

mod duration;
mod values;

pub use duration::parse_duration;
pub use values::{parse_host, LogLevel};
