//! The Go server's commands on the cache: `load`, `list`, `prune`.
//!
//! Each runs on the cache directory itself when no server holds it: the actors start over the directory (as
//! `serve` starts them, without the HTTP layer, the scrub or the background pruning), do the work through the cache
//! actor, write pending access times and stop. When a running server holds the directory (its lock), the command
//! goes through that server's admin API instead, with the same options and the same output (`client`,
//! `admin_api`). Files: `load`, `list`, `prune`, `preload` (the background preload of `serve`).

pub mod admin_api;
mod client;
pub mod config_keys;
pub mod list;
pub mod load;
pub mod preload;
pub mod prune;

use std::collections::HashMap;
use std::process::ExitCode;

use actors::preload::{LoadEvent, PlatformFilter};
use actors::{Mirror, StartError, StoreError};

use crate::cli::{Cli, Command};
use crate::config::Settings;

/// Where a command does its work.
enum Target {
    /// This process holds the cache directory.
    Local(Mirror),
    /// A running server does; through its admin API.
    Remote(client::AdminClient),
}

async fn open(settings: &Settings) -> Result<Target, String> {
    let mut config = crate::mirror_config(settings).map_err(|e| e.to_string())?;
    config.scrub.interval = None;
    config.lifecycle.prune = None;
    match Mirror::start(config).await {
        Ok(mirror) => {
            mirror.indexed().await;
            Ok(Target::Local(mirror))
        }
        Err(StartError::Store(StoreError::Locked(_))) => client::connect(settings).map(Target::Remote),
        Err(e) => Err(format!("imagePath {}: {e}", settings.mirror.image_path.display())),
    }
}

/// Run `load`, `list` or `prune`; the exit code.
pub fn run(cli: &Cli, settings: Settings) -> ExitCode {
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let target = open(&settings).await?;
        let code = match &cli.command {
            Command::List(args) => {
                let pattern = args.pattern.as_deref().map(regex::Regex::new).transpose().map_err(|e| e.to_string())?;
                let entries = match &target {
                    Target::Local(mirror) => list::image_entries(mirror.index()),
                    Target::Remote(client) => client.get_json("/cmd/image/list").await?,
                };
                print!("{}", list::render(&list::select(entries, pattern.as_ref()), args));
                ExitCode::SUCCESS
            }
            Command::Prune(args) => {
                let mut options = HashMap::new();
                for (k, v) in [("pattern", &args.pattern), ("date", &args.date)] {
                    if let Some(v) = v {
                        options.insert(k.to_string(), v.clone());
                    }
                }
                if args.dry_run {
                    options.insert("dryRun".into(), "true".into());
                }
                let request = prune::request(&options)?;
                let report = match &target {
                    Target::Local(mirror) => mirror.prune(request).await.map_err(|e| e.to_string())?,
                    Target::Remote(client) => {
                        let query: Vec<String> =
                            options.iter().map(|(k, v)| format!("{k}={}", load::encode(v))).collect();
                        client.post_json(&format!("/cmd/prune?{}", query.join("&"))).await?
                    }
                };
                print!("{}", prune::render(&report));
                ExitCode::SUCCESS
            }
            Command::Load(args) => {
                let file =
                    args.image_file.clone().or_else(|| settings.image_file.clone()).ok_or(
                        "load needs --image-file FILE (or imageFile in the config): an image list or an archive",
                    )?;
                let platform = PlatformFilter {
                    os: args.os.clone().or_else(|| settings.platform.os.clone()),
                    arch: args.arch.clone().or_else(|| settings.platform.arch.clone()),
                };
                let request = load::LoadRequest { file, resolve_ref: args.resolve_ref.clone(), platform };
                let display = load::Display::new();
                let progress = |event: LoadEvent| display.event(event);
                let summary = match &target {
                    Target::Local(mirror) => load::run_local(mirror, &request, &progress).await,
                    Target::Remote(client) => load::run_remote(client, &request, &progress).await?,
                };
                display.finish();
                load::print_summary(&summary);
                if summary.failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Command::Serve(_) | Command::Version | Command::ConfigKeys(_) => ExitCode::SUCCESS,
        };
        if let Target::Local(mirror) = &target {
            mirror.flush().await;
        }
        Ok::<_, String>(code)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ociregistry {}: {e}", cli.command.name());
            ExitCode::from(1)
        }
    }
}
