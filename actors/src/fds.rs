//! The process's file descriptors, for the standard `process_open_fds` and `process_max_fds` gauges: read from
//! `/proc/self` at scrape time (Linux; elsewhere both are unknown and the gauges are not exported).

/// Descriptors open now: the entries of `/proc/self/fd` (the directory's own, opened to list it, not counted).
pub(crate) fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), from `/proc/self/limits`; `None` when unlimited.
pub(crate) fn max_fds() -> Option<u64> {
    soft_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit of the `Max open files` line of a `/proc/PID/limits` text.
fn soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63541                63541                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_limit(text), Some(1024));
        assert_eq!(soft_limit("Max open files            unlimited            unlimited            files"), None);
        assert_eq!(soft_limit("nothing"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn counts_this_process() {
        let files: Vec<_> = (0..16).map(|_| std::fs::File::open("/proc/self/limits").expect("open")).collect();
        let open = open_fds().expect("/proc/self/fd");
        assert!(open >= files.len() as u64, "{open} open descriptors while this test holds {}", files.len());
        assert!(max_fds().expect("a limit") >= open);
    }
}
