//! Entry point: parses the command line, builds the settings and reports them. (Minimal main of
//! this branch; the server proper is wired in elsewhere.)

mod cli;
mod config;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::Version = cli.command {
        println!("{}", cli::version_line());
        return ExitCode::SUCCESS;
    }
    match config::load(&cli) {
        Ok((settings, warnings)) => {
            for warning in warnings {
                eprintln!("ociregistry: warning: {warning}");
            }
            println!("{settings}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ociregistry: {err}");
            ExitCode::from(2)
        }
    }
}
