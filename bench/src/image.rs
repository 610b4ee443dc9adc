//! Test images made of incompressible random bytes, pushed straight through the registry push API (monolithic
//! upload: `POST` then `PUT ?digest=`), which is far faster than skopeo for 1,500 images and streams a 400 MiB layer
//! from a generator without a file or a buffer of its size.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::http::{self, Client};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// splitmix64: fast, and different seeds give unrelated streams.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// `len` random bytes from `seed`, as a reader (the same bytes every time for the same seed).
pub struct Gen {
    rng: Rng,
    remaining: u64,
}

impl Gen {
    pub fn new(seed: u64, len: u64) -> Gen {
        Gen { rng: Rng::new(seed), remaining: len }
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        // Whole 8-byte words per call keep the stream independent of the caller's buffer sizes.
        let n = if n == self.remaining as usize || n < 8 { n } else { n - n % 8 };
        self.rng.fill(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of everything a reader yields.
fn digest_of(reader: &mut dyn Read) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(format!("sha256:{}", hex(&h.finalize())));
        }
        h.update(&buf[..n]);
    }
}

/// A seed unique to this process, this moment and `salt`.
pub fn seed(salt: &str) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = Sha256::digest(format!("{salt}/{nanos}/{}", std::process::id()).as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Upload one blob (monolithic): `POST /blobs/uploads/`, then `PUT <location>&digest=` with the whole body.
fn upload(c: &mut Client, repo: &str, digest: &str, len: u64, body: &mut dyn Read) -> Result<(), String> {
    let (head, _) =
        c.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], Some(&[])).map_err(|e| err("upload POST", e))?;
    if head.status != 202 {
        return Err(format!("upload POST for {repo}: status {}", head.status));
    }
    let location = head.header("location").ok_or("upload POST: no Location")?.to_string();
    // The location may be absolute; keep the path and query.
    let path = match location.strip_prefix("http://").or_else(|| location.strip_prefix("https://")) {
        Some(rest) => rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_default(),
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let path = format!("{path}{sep}digest={digest}");
    let result = (|| -> io::Result<u16> {
        let conn = c.conn()?;
        conn.send("PUT", &path, &[("Content-Type", "application/octet-stream")], Some(len), &[])?;
        http::copy_to(conn, body)?;
        let head = conn.read_head(false)?;
        conn.skip_body(&head)?;
        Ok(head.status)
    })();
    match result {
        Ok(201) => Ok(()),
        Ok(status) => Err(format!("upload PUT of {digest} to {repo}: status {status}")),
        Err(e) => {
            c.reset();
            Err(err("upload PUT", e))
        }
    }
}

/// What a push made.
pub struct Pushed {
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// Config first, then the layers: (digest, size).
    pub blobs: Vec<(String, u64)>,
}

impl Pushed {
    /// Bytes a client pulls for the whole image: manifest and every blob.
    pub fn image_bytes(&self) -> u64 {
        self.manifest_size + self.blobs.iter().map(|b| b.1).sum::<u64>()
    }
}

/// Push `repo:tag`: a small config and one random layer per entry of `layers` (sizes in bytes).
pub fn push_image(c: &mut Client, repo: &str, tag: &str, layers: &[u64], seed: u64) -> Result<Pushed, String> {
    let mut rng = Rng::new(seed);
    let mut blobs = Vec::new();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"ocibench": format!("{repo}:{tag} {seed:016x}")}},
    });
    let config = serde_json::to_vec(&config).map_err(|e| err("config", e))?;
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    upload(c, repo, &config_digest, config.len() as u64, &mut &config[..])?;
    blobs.push((config_digest, config.len() as u64));
    for &len in layers {
        let layer_seed = rng.next_u64();
        let digest = digest_of(&mut Gen::new(layer_seed, len)).map_err(|e| err("hash", e))?;
        upload(c, repo, &digest, len, &mut Gen::new(layer_seed, len))?;
        blobs.push((digest, len));
    }
    let descriptor = |mt: &str, (d, s): &(String, u64)| serde_json::json!({"mediaType": mt, "digest": d, "size": s});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &blobs[0]),
        "layers": blobs[1..].iter().map(|b| descriptor(LAYER_TYPE, b)).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| err("manifest", e))?;
    let (head, _) = c
        .request("PUT", &format!("/v2/{repo}/manifests/{tag}"), &[("Content-Type", MANIFEST_TYPE)], Some(&manifest))
        .map_err(|e| err("manifest PUT", e))?;
    if head.status != 201 {
        return Err(format!("manifest PUT {repo}:{tag}: status {}", head.status));
    }
    Ok(Pushed {
        manifest_digest: format!("sha256:{}", sha256_hex(&manifest)),
        manifest_size: manifest.len() as u64,
        blobs,
    })
}

/// `push`: one image (`--repo`), or `--count` images named `<repo><i, 4 digits>` pushed by `--concurrency` clients.
pub fn cmd_push(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let repo = args.str("repo")?;
    let tag = args.str_or("tag", "1");
    let layers: Vec<u64> = args
        .str("layers")?
        .split(',')
        .map(|s| s.trim().parse::<u64>().map_err(|e| err("--layers", e)))
        .collect::<Result<_, _>>()?;
    let count = args.num("count", 0)? as usize;
    let base = seed(&repo);
    if count == 0 {
        let pushed = push_image(&mut Client::new(&addr), &repo, &tag, &layers, base)?;
        println!(
            "image_bytes={} blobs={} manifest_digest={} manifest_size={} blob_digests={} blob_sizes={}",
            pushed.image_bytes(),
            pushed.blobs.len(),
            pushed.manifest_digest,
            pushed.manifest_size,
            pushed.blobs.iter().map(|b| b.0.as_str()).collect::<Vec<_>>().join(","),
            pushed.blobs.iter().map(|b| b.1.to_string()).collect::<Vec<_>>().join(","),
        );
        return Ok(());
    }
    let concurrency = args.num("concurrency", 8)? as usize;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let errors: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Client::new(&addr);
                    let mut errors = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return errors;
                        }
                        let name = format!("{repo}{i:04}");
                        if let Err(e) = push_image(&mut c, &name, &tag, &layers, base ^ (i as u64).wrapping_mul(0x9E37))
                        {
                            errors.push(e);
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("push worker")).collect()
    });
    for e in errors.iter().take(5) {
        eprintln!("ocibench push: {e}");
    }
    println!("images={count} failed={} wall_s={:.3}", errors.len(), start.elapsed().as_secs_f64());
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {count} pushes failed", errors.len()))
    }
}
