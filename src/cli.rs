//! The command line (clap derive), mirroring the Go server's: global options accepted before or
//! after the command, `serve` with its options, `version`, and the Go server's `load`, `list`
//! and `prune` commands (run by `commands`: on a cache directory no server holds, or through a
//! running server's admin API).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{NonEmptyStringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::values::{parse_duration, parse_host, LogFormat, LogLevel};

/// Pull-only, pull-through, caching OCI Distribution server.
#[derive(Debug, Clone, Parser)]
#[command(name = "ociregistry", version, about)]
pub struct Cli {
    /// Log level: debug, info, warn or error [default: from the config, else info]
    #[arg(long, global = true, value_enum, ignore_case = true, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// Log line format: text, or json (one object per line) [default: from the config, else text]
    #[arg(long, global = true, value_enum, ignore_case = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Config file (YAML); replaces the embedded default config
    #[arg(long, global = true, value_name = "PATH", value_parser = path_parser())]
    pub config_file: Option<PathBuf>,

    /// Image cache directory [default: from the config, else /var/lib/ociregistry]
    #[arg(long, global = true, value_name = "PATH", value_parser = path_parser())]
    pub image_path: Option<PathBuf>,

    /// Log to this file instead of standard error
    #[arg(long, global = true, value_name = "PATH", value_parser = path_parser())]
    pub log_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the registry server
    Serve(ServeArgs),
    /// Load images into the cache: pull an image list through the upstreams, or load a docker-save or OCI-layout
    /// archive with no upstream
    Load(LoadArgs),
    /// List the cached images
    List(ListArgs),
    /// Remove images from the cache, and what no image needs any more
    Prune(PruneArgs),
    /// Print the version
    Version,
    /// Print every key path the config file accepts, one a line (for the chart test and the docs check)
    #[command(hide = true)]
    ConfigKeys(ConfigKeysArgs),
}

impl Command {
    /// The command's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Load(_) => "load",
            Command::List(_) => "list",
            Command::Prune(_) => "prune",
            Command::Version => "version",
            Command::ConfigKeys(_) => "config-keys",
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct ConfigKeysArgs {
    /// Print the Helm chart's key lists instead (charts/ociregistry/templates/_keys.tpl)
    #[arg(long)]
    pub helm: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Listen port [default: from the config, else 8080]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Listen IP address [default: from the config, else 0.0.0.0]
    #[arg(long, value_name = "IP", value_parser = parse_host)]
    pub host: Option<String>,

    /// Time allowed for an upstream's response head: milliseconds, or a duration like "60s"
    #[arg(long, value_name = "MS", value_parser = parse_duration)]
    pub pull_timeout: Option<Duration>,

    /// Time allowed to connect to an upstream, e.g. "10s" (a bare number is milliseconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// An upstream body idle this long fails, e.g. "60s" (a bare number is milliseconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// A client that takes no bytes of a response for this long is disconnected, e.g. "60s" (a bare number is
    /// milliseconds) [default: from the config, else 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub client_idle_timeout: Option<Duration>,

    /// How long in-flight responses and upstream fetches may run after SIGTERM, e.g. "60s" [default: from the
    /// config, else 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,

    /// Namespace for requests that name none
    #[arg(long, value_name = "NS", value_parser = NonEmptyStringValueParser::new())]
    pub default_ns: Option<String>,

    /// Load these image lists or archives in the background after start (comma-separated; `*` and `?` in file
    /// names)
    #[arg(long, value_name = "FILE[,GLOB...]")]
    pub preload_images: Option<String>,

    /// Platform OS a preload takes from an index [default: every platform]
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,

    /// Platform architecture a preload takes from an index, e.g. amd64 or arm64/v8 [default: every platform]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,

    /// Port of the health listener (/health, /ready); 0 = off [default: from the config, else off]
    #[arg(long, value_name = "PORT")]
    pub health: Option<u16>,

    /// Port of the metrics listener (/metrics); 0 = off [default: from the config, else off]
    #[arg(long, value_name = "PORT")]
    pub metrics: Option<u16>,

    /// Check tags named `latest` with the upstream on every pull (tagTtl 0s for them)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub always_pull_latest: Option<bool>,

    /// Serve only the hello-world image (not supported yet)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub hello_world: Option<bool>,

    /// Never contact upstreams: serve what is cached, answer 404 for the rest
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub air_gapped: Option<bool>,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// A list of image references (one a line, `#` comments), or a docker-save tarball, or an OCI layout
    /// (directory or tar), gzipped or not [default: `imageFile` from the config]
    #[arg(long, value_name = "FILE", value_parser = path_parser())]
    pub image_file: Option<PathBuf>,
    /// The name (`ns/repo[:tag]`) of the image of a single-image archive that carries none
    #[arg(long, value_name = "REF")]
    pub resolve_ref: Option<String>,
    /// Platform OS to take from an index [default: every platform]
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// Platform architecture to take from an index, e.g. amd64 or arm64/v8 [default: every platform]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print a header row
    #[arg(long)]
    pub header: bool,
    /// Only images matching this regular expression
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,
    /// Shorten digests
    #[arg(long)]
    pub short_digest: bool,
    /// Print the images as a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Prune images whose name (ns/repo:tag) matches one of these regular expressions
    #[arg(long, value_name = "REGEX[,...]")]
    pub pattern: Option<String>,
    /// Prune images first cached before this time (UTC); with --pattern, images must match both
    #[arg(long, value_name = "YYYY-MM-DDTHH:MM:SS")]
    pub date: Option<String>,
    /// Show what would be pruned without removing anything
    #[arg(long)]
    pub dry_run: bool,
}

/// A non-empty path.
fn path_parser() -> impl TypedValueParser<Value = PathBuf> {
    NonEmptyStringValueParser::new().map(PathBuf::from)
}

/// The line printed by `ociregistry version`.
pub fn version_line() -> String {
    format!("ociregistry {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ociregistry").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_before_or_after_the_command() {
        for args in [
            &["--log-level", "debug", "--image-path", "/c", "serve"][..],
            &["serve", "--log-level", "DEBUG", "--image-path", "/c"][..],
        ] {
            let cli = parse(args).expect("parses");
            assert_eq!(cli.log_level, Some(LogLevel::Debug));
            assert_eq!(cli.image_path, Some(PathBuf::from("/c")));
            assert!(matches!(cli.command, Command::Serve(_)));
        }
        let cli = parse(&["serve", "--log-level", "warning"]).expect("alias");
        assert_eq!(cli.log_level, Some(LogLevel::Warn));
        for args in [&["--log-format", "json", "serve"][..], &["serve", "--log-format", "JSON"][..]] {
            assert_eq!(parse(args).expect("parses").log_format, Some(LogFormat::Json));
        }
        assert_eq!(parse(&["serve"]).expect("parses").log_format, None);
    }

    #[test]
    fn operations_options() {
        let cli = parse(&["serve", "--health", "8081", "--metrics", "0", "--shutdown-grace", "90s"]).expect("parses");
        let Command::Serve(serve) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(serve.health, Some(8081));
        assert_eq!(serve.metrics, Some(0));
        assert_eq!(serve.shutdown_grace, Some(Duration::from_secs(90)));
    }

    #[test]
    fn serve_options() {
        let cli = parse(&[
            "serve",
            "--port",
            "5000",
            "--host",
            "127.0.0.1",
            "--pull-timeout",
            "1500",
            "--connect-timeout",
            "3s",
            "--idle-timeout",
            "2m",
            "--default-ns",
            "docker.io",
            "--air-gapped",
            "--hello-world=false",
        ])
        .expect("parses");
        let Command::Serve(serve) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(serve.port, Some(5000));
        assert_eq!(serve.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(serve.pull_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(serve.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(serve.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(serve.default_ns.as_deref(), Some("docker.io"));
        assert_eq!(serve.air_gapped, Some(true));
        assert_eq!(serve.hello_world, Some(false));
        assert_eq!(serve.always_pull_latest, None);
    }

    #[test]
    fn bad_option_values_are_rejected() {
        for args in [
            &["serve", "--port", "0"][..],
            &["serve", "--port", "65536"][..],
            &["serve", "--host", "localhost"][..],
            &["serve", "--pull-timeout", "0"][..],
            &["serve", "--idle-timeout", "soon"][..],
            &["serve", "--client-idle-timeout", "0"][..],
            &["serve", "--log-level", "trace"][..],
            &["serve", "--image-path", ""][..],
            &["serve", "--default-ns", ""][..],
            &["serve", "--health", "65536"][..],
            &["serve", "--metrics", "-1"][..],
            &["serve", "--shutdown-grace", "0"][..],
            &["serve", "--shutdown-grace", "soon"][..],
            &["serve", "--log-format", "logfmt"][..],
        ] {
            assert!(parse(args).is_err(), "accepted {args:?}");
        }
    }

    #[test]
    fn go_commands_parse() {
        let cli = parse(&["list", "--header", "--pattern", "x", "--short-digest"]).expect("list");
        assert_eq!(cli.command.name(), "list");
        let cli = parse(&["prune", "--pattern", "a,b", "--date", "2025-01-01T00:00:00", "--dry-run"]).expect("prune");
        assert_eq!(cli.command.name(), "prune");
        let cli = parse(&["load", "--image-file", "/i.txt", "--os", "linux"]).expect("load");
        assert_eq!(cli.command.name(), "load");
        assert_eq!(parse(&["version"]).expect("version").command.name(), "version");
        assert!(version_line().starts_with("ociregistry "));
    }
}
