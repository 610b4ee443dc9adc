//! A WAN emulator on one machine (issue 23, item 1): a private network namespace whose loopback carries shaped links.
//!
//! [`Wan::new`] creates the namespace (`ip netns add`), brings its `lo` up and puts an HTB root on it whose default
//! class is unshaped. [`Wan::link`] adds an HTB class with `rate = ceil` (one emulated link); [`Link::shape`] sends the
//! answers *from* a source port through it (a `u32` filter on `sport`), which is the direction that matters: the
//! upstream's answers cross the link, requests and ACKs do not. Everything stays on 127.0.0.1 inside the namespace.
//! This kernel has no netem, so there is no round-trip delay here (a relay in front of the upstream would add one).
//!
//! A test calls [`Wan::enter`] first: the calling thread joins the namespace (`setns`), so every socket it opens and
//! every process and thread it starts afterwards (upstream, mirror, clients, port picking) is inside. Drop moves the
//! thread back if it entered and deletes the namespace, also when the test panics. Needs root (CI has it).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;

/// Namespaces created by this process so far (for unique names).
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The unshaped default class; links are 1:20 and up.
const DEFAULT_CLASS: u32 = 10;

/// One network namespace with an HTB root on its loopback.
pub struct Wan {
    name: String,
    next_class: AtomicU32,
    /// The thread that entered and the namespace it came from.
    entered: Mutex<Option<(ThreadId, File)>>,
}

/// One emulated link: an HTB class of the namespace's loopback.
pub struct Link {
    netns: String,
    class: u32,
    rate_bits_per_s: u64,
}

/// Run `ip netns exec NS COMMAND` (COMMAND's words separated by single spaces); `Err(one line)` if it fails.
fn in_ns(ns: &str, command: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(command.split(' '))
        .output()
        .map_err(|e| format!("run ip netns exec {ns} {command}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{command}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim().replace('\n', " / ")
        ))
    }
}

impl Wan {
    /// A new namespace named after this process and a counter, `lo` up, HTB root with an unshaped default class.
    /// Panics with one line saying why if it cannot (not root, no `ip`/`tc`, no HTB).
    pub fn new() -> Wan {
        let name = format!("ocireg-wan-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let added = Command::new("ip").args(["netns", "add", &name]).output();
        match added {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "wan: cannot create network namespace {name} (needs root and iproute2): {}",
                String::from_utf8_lossy(&out.stderr).trim().replace('\n', " / ")
            ),
            Err(e) => panic!("wan: cannot run `ip netns add {name}` (needs root and iproute2): {e}"),
        }
        // From here on Drop deletes the namespace, also if the setup below fails.
        let wan = Wan { name, next_class: AtomicU32::new(20), entered: Mutex::new(None) };
        let steps = [
            "ip link set lo up".to_string(),
            // r2q keeps HTB's quantum sane for the slow links, an explicit quantum for the fast default class.
            format!("tc qdisc add dev lo root handle 1: htb default {DEFAULT_CLASS} r2q 1000"),
            format!("tc class add dev lo parent 1: classid 1:{DEFAULT_CLASS} htb rate 100gbit quantum 200000"),
        ];
        for step in steps {
            if let Err(e) = in_ns(&wan.name, &step) {
                panic!("wan: cannot set up namespace {} (needs root, tc with HTB): {e}", wan.name);
            }
        }
        wan
    }

    /// The namespace's name (for `ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Move the calling thread into the namespace: every socket it opens and every process or thread it starts
    /// from now on is inside. Drop moves it back.
    pub fn enter(&self) {
        let mut entered = self.entered.lock().unwrap_or_else(|e| e.into_inner());
        assert!(entered.is_none(), "wan: namespace {} already entered", self.name);
        let home = File::open("/proc/thread-self/ns/net").expect("wan: open /proc/thread-self/ns/net");
        let target = File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("wan: open /run/netns/{}: {e}", self.name));
        // SAFETY: setns on an open namespace fd changes only the calling thread's network namespace.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "wan: setns into {}: {}", self.name, std::io::Error::last_os_error());
        *entered = Some((std::thread::current().id(), home));
    }

    /// A new emulated link of `rate_bits_per_s` (HTB `rate` = `ceil`); nothing goes through it until [`Link::shape`].
    pub fn link(&self, rate_bits_per_s: u64) -> Link {
        let class = self.next_class.fetch_add(1, Ordering::SeqCst);
        let rate = format!("{rate_bits_per_s}bit");
        let classid = format!("1:{class}");
        in_ns(&self.name, &format!("tc class add dev lo parent 1: classid {classid} htb rate {rate} ceil {rate}"))
            .unwrap_or_else(|e| panic!("wan: cannot add link {classid} in {}: {e}", self.name));
        Link { netns: self.name.clone(), class, rate_bits_per_s }
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let entered = self.entered.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((thread, home)) = entered {
            if thread == std::thread::current().id() {
                // SAFETY: as in `enter`, back to the namespace the thread came from.
                unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) };
            }
        }
        // Processes still inside keep the namespace alive until they exit; its name goes now.
        match Command::new("ip").args(["netns", "del", &self.name]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("wan: ip netns del {}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim()),
            Err(e) => eprintln!("wan: ip netns del {}: {e}", self.name),
        }
    }
}

impl Link {
    /// Answers from source port `port` go through this link (several ports on one link share it).
    pub fn shape(&self, port: u16) {
        let filter = format!(
            "tc filter add dev lo protocol ip parent 1: prio 1 u32 match ip sport {port} 0xffff flowid 1:{}",
            self.class
        );
        in_ns(&self.netns, &filter).unwrap_or_else(|e| panic!("wan: cannot shape port {port} in {}: {e}", self.netns));
    }

    /// Bytes sent through this link so far (IP packets as the qdisc counts them: payload plus TCP/IP headers).
    pub fn bytes(&self) -> u64 {
        let classid = format!("1:{}", self.class);
        let out = in_ns(&self.netns, &format!("tc -s class show dev lo classid {classid}"))
            .unwrap_or_else(|e| panic!("wan: cannot read link {classid} in {}: {e}", self.netns));
        sent_bytes(&out).unwrap_or_else(|| panic!("wan: no `Sent N bytes` for {classid} in:\n{out}"))
    }

    /// The link's rate in bits per second.
    pub fn rate_bits_per_s(&self) -> u64 {
        self.rate_bits_per_s
    }

    /// How long `bytes` take at the link's rate, in seconds.
    pub fn seconds_for(&self, bytes: u64) -> f64 {
        bytes as f64 * 8.0 / self.rate_bits_per_s as f64
    }
}

/// The `N` of the first ` Sent N bytes` in `tc -s class show` output.
fn sent_bytes(tc_output: &str) -> Option<u64> {
    let rest = &tc_output[tc_output.find("Sent ")? + 5..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A real registry started inside `wan` (after `enter`), `images` (`repo:tag`, layer sizes) pushed to it, then its
/// answers shaped by a new link of `rate_bits_per_s` (pushes are never shaped: their data goes to the registry).
pub fn shaped_registry(
    wan: &Wan,
    work: &super::TestDir,
    images: &[(&str, &[usize])],
    rate_bits_per_s: u64,
) -> (super::upstream::Upstream, Vec<super::images::Image>, Link) {
    let up = super::upstream::Upstream::start();
    let pushed = images
        .iter()
        .map(|(name, sizes)| super::images::custom(&up, &work.subdir(&name.replace(['/', ':'], "-")), name, sizes))
        .collect();
    let link = wan.link(rate_bits_per_s);
    link.shape(up.port());
    (up, pushed, link)
}
