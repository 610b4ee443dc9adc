//! x
#[allow(dead_code)]
mod http;

fn main() {}
