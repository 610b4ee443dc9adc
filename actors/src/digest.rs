//! Content digests: the `algorithm:encoded` identifiers of the OCI image spec,
//! their validation (only in [`Digest::from_str`]) and a streaming hasher.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use sha2::Digest as _;

/// A digest algorithm this registry can verify.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum DigestAlgorithm {
    /// SHA-256, encoded as 64 lowercase hex characters.
    Sha256,
    /// SHA-512, encoded as 128 lowercase hex characters.
    Sha512,
}

impl DigestAlgorithm {
    /// The registered algorithm name: `"sha256"` or `"sha512"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// The exact length of the hex-encoded part for this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<DigestAlgorithm> {
        match name {
            "sha256" => Some(DigestAlgorithm::Sha256),
            "sha512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an acceptable digest.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DigestError {
    /// The string does not match `algorithm ":" encoded` of the OCI grammar.
    #[error("malformed digest {0:?}: expected algorithm \":\" encoded")]
    Malformed(String),
    /// Well-formed, but the algorithm is neither sha256 nor sha512.
    #[error("unsupported digest algorithm {algorithm:?} in {digest:?}")]
    UnsupportedAlgorithm {
        /// The algorithm name as written.
        algorithm: String,
        /// The whole digest string.
        digest: String,
    },
    /// The encoded part has the wrong length for its algorithm.
    #[error("digest {digest:?} has {actual} encoded characters, {algorithm} needs {expected}")]
    WrongLength {
        /// The algorithm named by the digest.
        algorithm: DigestAlgorithm,
        /// Required number of hex characters.
        expected: usize,
        /// Number of encoded characters found.
        actual: usize,
        /// The whole digest string.
        digest: String,
    },
    /// The encoded part is not lowercase hexadecimal.
    #[error("digest {0:?} is not lowercase hex")]
    NotLowercaseHex(String),
}

/// A validated digest of a supported algorithm with a lowercase hex encoding.
///
/// Held as the raw hash bytes (a sha256 digest inline, 33 bytes of 40, no allocation): the index keeps several per
/// cached image, and the text form is written out only where it is shown (`Display`, `hex`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Digest(Raw);

/// The hash bytes, by algorithm. Ordered as the text forms are: by algorithm, then hex (the same order as bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Raw {
    Sha256([u8; 32]),
    Sha512(Box<[u8; 64]>),
}

impl Digest {
    /// The algorithm this digest was computed with.
    pub fn algorithm(&self) -> DigestAlgorithm {
        match self.0 {
            Raw::Sha256(_) => DigestAlgorithm::Sha256,
            Raw::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    /// The encoded (lowercase hex) part, without the `algorithm:` prefix.
    pub fn hex(&self) -> Hex {
        let bytes = self.bytes();
        let mut buf = [0u8; 128];
        let len = bytes.len() * 2;
        // Cannot fail: the buffer is exactly twice the bytes' length.
        let _ = hex::encode_to_slice(bytes, &mut buf[..len]);
        Hex { buf, len }
    }

    /// The raw hash bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.0 {
            Raw::Sha256(b) => b,
            Raw::Sha512(b) => &b[..],
        }
    }

    /// A digest from its raw hash bytes (`None` when they are not as long as the algorithm's hash).
    pub(crate) fn from_bytes(alg: DigestAlgorithm, bytes: &[u8]) -> Option<Digest> {
        Some(Digest(match alg {
            DigestAlgorithm::Sha256 => Raw::Sha256(bytes.try_into().ok()?),
            DigestAlgorithm::Sha512 => Raw::Sha512(Box::new(bytes.try_into().ok()?)),
        }))
    }

    /// Hashes `bytes` with `alg`.
    pub fn of(alg: DigestAlgorithm, bytes: &[u8]) -> Digest {
        let mut digester = Digester::new(alg);
        digester.update(bytes);
        digester.finalize()
    }

    /// Hashes `bytes` with SHA-256.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(DigestAlgorithm::Sha256, bytes)
    }
}

/// The lowercase hex form of a digest, written out on the stack (`Digest::hex`); reads as a `&str`.
#[derive(Clone, Copy)]
pub struct Hex {
    buf: [u8; 128],
    len: usize,
}

impl std::ops::Deref for Hex {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl AsRef<str> for Hex {
    fn as_ref(&self) -> &str {
        self
    }
}

impl AsRef<std::path::Path> for Hex {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&**self)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq<str> for Hex {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for Hex {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

/// `component (separator component)*`, component `[a-z0-9]+`, separator `[+._-]`.
fn is_algorithm_grammar(s: &str) -> bool {
    let is_sep = |c: char| matches!(c, '+' | '.' | '_' | '-');
    !s.is_empty()
        && s.split(is_sep)
            .all(|comp| !comp.is_empty() && comp.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `[a-zA-Z0-9=_-]+`.
fn is_encoded_grammar(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, encoded) = s.split_once(':').ok_or_else(|| DigestError::Malformed(s.to_owned()))?;
        if !is_algorithm_grammar(name) || !is_encoded_grammar(encoded) {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        let algorithm = DigestAlgorithm::from_name(name)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm { algorithm: name.to_owned(), digest: s.to_owned() })?;
        if encoded.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hex_len(),
                actual: encoded.len(),
                digest: s.to_owned(),
            });
        }
        if !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::NotLowercaseHex(s.to_owned()));
        }
        let raw = match algorithm {
            DigestAlgorithm::Sha256 => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(encoded, &mut b).map_err(|_| DigestError::NotLowercaseHex(s.to_owned()))?;
                Raw::Sha256(b)
            }
            DigestAlgorithm::Sha512 => {
                let mut b = Box::new([0u8; 64]);
                hex::decode_to_slice(encoded, &mut b[..]).map_err(|_| DigestError::NotLowercaseHex(s.to_owned()))?;
                Raw::Sha512(b)
            }
        };
        Ok(Digest(raw))
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm().as_str(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// A streaming hasher producing a [`Digest`].
#[derive(Clone)]
pub struct Digester {
    algorithm: DigestAlgorithm,
    hasher: Hasher,
}

impl Digester {
    /// Starts hashing with `alg`.
    pub fn new(alg: DigestAlgorithm) -> Self {
        let hasher = match alg {
            DigestAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Digester { algorithm: alg, hasher }
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Finishes hashing and returns the digest of everything fed so far.
    pub fn finalize(self) -> Digest {
        Digest(match self.hasher {
            Hasher::Sha256(h) => Raw::Sha256(h.finalize().into()),
            Hasher::Sha512(h) => Raw::Sha512(Box::new(h.finalize().into())),
        })
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[derive(Debug)]
    enum Want {
        Ok,
        Malformed,
        Unsupported,
        WrongLength,
        NotHex,
    }

    fn classify(r: &Result<Digest, DigestError>) -> &'static str {
        match r {
            Ok(_) => "Ok",
            Err(DigestError::Malformed(_)) => "Malformed",
            Err(DigestError::UnsupportedAlgorithm { .. }) => "Unsupported",
            Err(DigestError::WrongLength { .. }) => "WrongLength",
            Err(DigestError::NotLowercaseHex(_)) => "NotHex",
        }
    }

    #[test]
    fn parse_table() {
        let hex128 = "ab".repeat(64);
        let cases: Vec<(String, Want)> = vec![
            (format!("sha256:{HEX64}"), Want::Ok),
            (format!("sha512:{hex128}"), Want::Ok),
            (format!("sha256:{}", HEX64.to_uppercase()), Want::NotHex),
            (format!("sha256:{}g", &HEX64[..63]), Want::NotHex),
            (format!("sha256:{}", &HEX64[..63]), Want::WrongLength),
            (format!("sha256:{HEX64}0"), Want::WrongLength),
            (format!("sha512:{HEX64}"), Want::WrongLength),
            (format!("sha256:{hex128}"), Want::WrongLength),
            ("md5:d41d8cd98f00b204e9800998ecf8427e".into(), Want::Unsupported),
            ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".into(), Want::Unsupported),
            ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564".into(), Want::Unsupported),
            ("sha256:".into(), Want::Malformed),
            (":abc".into(), Want::Malformed),
            ("".into(), Want::Malformed),
            (HEX64.into(), Want::Malformed),
            (format!("SHA256:{HEX64}"), Want::Malformed),
            (format!("sha256::{HEX64}"), Want::Malformed),
            (format!("sha256:{HEX64}:"), Want::Malformed),
            (format!("sha256 :{HEX64}"), Want::Malformed),
            (format!("-sha256:{HEX64}"), Want::Malformed),
            (format!("sha256-:{HEX64}"), Want::Malformed),
            (format!("sha..256:{HEX64}"), Want::Malformed),
            ("sha256:abc/def".into(), Want::Malformed),
        ];
        for (input, want) in &cases {
            let got = input.parse::<Digest>();
            assert_eq!(classify(&got), format!("{want:?}"), "case {input:?}: got {got:?}");
            if let Ok(d) = got {
                assert_eq!(&d.to_string(), input, "case {input:?}: round trip");
            }
        }
    }

    #[test]
    fn unsupported_algorithm_carries_name() {
        let err = "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>().unwrap_err();
        assert!(matches!(&err, DigestError::UnsupportedAlgorithm { algorithm, .. } if algorithm == "md5"), "{err:?}");
        assert!(err.to_string().contains("md5"), "{err}");
    }

    #[test]
    fn hashing() {
        let d = Digest::sha256_of(b"");
        assert_eq!(d.to_string(), format!("sha256:{HEX64}"));
        assert_eq!(d.algorithm(), DigestAlgorithm::Sha256);
        assert_eq!(d.hex(), HEX64);

        let mut streaming = Digester::new(DigestAlgorithm::Sha512);
        streaming.update(b"hello ");
        streaming.update(b"world");
        let whole = Digest::of(DigestAlgorithm::Sha512, b"hello world");
        assert_eq!(streaming.finalize(), whole);
        assert_eq!(whole.hex().len(), 128);
        assert_eq!(whole.to_string().parse::<Digest>(), Ok(whole));
    }

    #[test]
    fn a_sha256_digest_needs_no_allocation() {
        assert!(std::mem::size_of::<Digest>() <= 40, "{} bytes", std::mem::size_of::<Digest>());
        let a = format!("sha256:{HEX64}").parse::<Digest>().expect("parses");
        let b = format!("sha512:{}", "ab".repeat(64)).parse::<Digest>().expect("parses");
        assert!(a < b, "ordered by algorithm first, as the text forms");
        let lower = format!("sha256:{}", "0".repeat(64)).parse::<Digest>().expect("parses");
        assert!(lower < a, "then by hex, as the text forms");
    }

    #[test]
    fn serde_goes_through_from_str() {
        let d = Digest::sha256_of(b"x");
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, d);
        let bad = serde_json::from_str::<Digest>(&format!("\"sha256:{}\"", HEX64.to_uppercase()));
        assert!(bad.is_err(), "uppercase hex must not deserialize");
    }
}
