//! `ocibench`: the client side of `scripts/bench` (see docs/benchmarks.md). Every command prints one line of
//! `key=value` figures on standard output; diagnostics go to standard error.
//!
//! ```text
//! ocibench port
//! ocibench push       --addr H:P --repo NAME [--tag T] --layers SIZE,SIZE.. [--count N --concurrency C]
//! ocibench storm      --addr H:P --repo NAME [--tag T] [--query ?ns=..] --clients N [--rss-pids PID,PID]
//! ocibench pull-all   --addr H:P --prefix NAME [--tag T] [--query ?ns=..] --count N --clients C
//! ocibench latency    --addr H:P --path P [--method GET|HEAD] [--accept A] [--n 200] [--warmup 20]
//! ocibench load       --addr H:P --path P [--method HEAD] [--accept A] [--connections 32] [--seconds 5]
//! ocibench gen-cache  --dir D [--count 100000] [--ns docker.io] [--prefix library/start-] [--tag 1]
//! ocibench wait-ready --addr H:P --path P --pid PID --t0-ns NS [--timeout-s 60] [--metrics H:P]
//! ocibench names      --addr H:P --prefix NAME --count N --clients C --pid PID [--query ?ns=..] [--metrics H:P]
//! ```

mod http;
mod image;
mod load;
mod names;
mod pull;
mod rss;
mod startup;

use std::collections::HashMap;

/// `--key value` pairs.
pub struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or_else(|| format!("expected --option, got {k:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Args(map))
    }

    pub fn str(&self, key: &str) -> Result<String, String> {
        self.0.get(key).cloned().ok_or_else(|| format!("--{key} is required"))
    }

    pub fn str_or(&self, key: &str, default: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| default.to_string())
    }

    pub fn num(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{key} {v:?}: {e}")),
        }
    }

    /// A comma-separated list of process ids (empty when absent).
    pub fn pids(&self, key: &str) -> Result<Vec<u32>, String> {
        self.str_or(key, "")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("--{key} {s:?}: {e}")))
            .collect()
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("usage: ocibench COMMAND [--option value]...; see the top of bench/src/main.rs");
        std::process::exit(2);
    };
    let result = Args::parse(rest).and_then(|args| match command.as_str() {
        "port" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            println!("{}", listener.local_addr().map_err(|e| e.to_string())?.port());
            Ok(())
        }
        "push" => image::cmd_push(&args),
        "storm" => pull::cmd_storm(&args),
        "pull-all" => pull::cmd_pull_all(&args),
        "latency" => load::cmd_latency(&args),
        "load" => load::cmd_load(&args),
        "gen-cache" => startup::cmd_gen_cache(&args),
        "wait-ready" => startup::cmd_wait_ready(&args),
        "names" => names::cmd_names(&args),
        other => Err(format!("unknown command {other:?}")),
    });
    if let Err(e) = result {
        eprintln!("ocibench {command}: {e}");
        std::process::exit(1);
    }
}
