//! Entry point: parses the command line. (Minimal main of this branch.)

mod cli;
mod config;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let cli::Command::Version = cli.command {
        println!("{}", cli::version_line());
    }
}
