//! The access-time journal (`access.log`): one line per recorded access, appended in batches by the cache actor,
//! read back at start, rewritten whole when it has grown well past the number of live objects.
//!
//! Lines: `b <unix> <digest>` for a blob, `r <unix> <namespace> <repository> <tag|digest>` for a reference (none of
//! those fields can contain a space). A line that does not parse is skipped: losing an access time only makes an
//! object look older.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::files::io;
use crate::error::StoreError;
use crate::reference::ImageKey;
use crate::store::records::{AccessEntry, RefKey, StoredObject};

fn line(entry: &AccessEntry) -> Option<String> {
    match &entry.object {
        StoredObject::Blob(d) => Some(format!("b {} {d}\n", entry.at)),
        StoredObject::Record(k) => {
            Some(format!("r {} {} {} {}\n", entry.at, k.image.ns(), k.image.repo(), k.reference))
        }
        StoredObject::Manifest(_) => None,
    }
}

fn parse(line: &str) -> Option<AccessEntry> {
    let mut fields = line.split(' ');
    let kind = fields.next()?;
    let at = fields.next()?.parse().ok()?;
    let object = match kind {
        "b" => StoredObject::Blob(fields.next()?.parse().ok()?),
        "r" => {
            let image = ImageKey::new(fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
            StoredObject::Record(RefKey { image, reference: fields.next()?.parse().ok()? })
        }
        _ => return None,
    };
    fields.next().is_none().then_some(AccessEntry { object, at })
}

/// Append entries (not fsynced: an access time lost in a crash is harmless).
pub(super) fn append(path: &Path, entries: &[AccessEntry]) -> Result<(), StoreError> {
    let text: String = entries.iter().filter_map(line).collect();
    if text.is_empty() {
        return Ok(());
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(io("open", path))?;
    f.write_all(text.as_bytes()).map_err(io("write", path))
}

/// The encoded form of a whole journal (for a rewrite).
pub(crate) fn encode(entries: &[AccessEntry]) -> String {
    entries.iter().filter_map(line).collect()
}

/// The entries of a journal's text (lines that do not parse are skipped).
pub(crate) fn parse_text(text: &str) -> Vec<AccessEntry> {
    text.lines().filter_map(parse).collect()
}

/// The latest access of every object in the journal, and how many lines it has.
pub(super) fn read(path: &Path) -> (Vec<AccessEntry>, usize) {
    let Ok(text) = fs::read_to_string(path) else {
        return (Vec::new(), 0);
    };
    let mut latest: HashMap<StoredObject, i64> = HashMap::new();
    let mut lines = 0;
    for entry in text.lines().filter_map(parse) {
        lines += 1;
        let at = latest.entry(entry.object).or_insert(entry.at);
        *at = (*at).max(entry.at);
    }
    (latest.into_iter().map(|(object, at)| AccessEntry { object, at }).collect(), lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn round_trip_and_latest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let blob = StoredObject::Blob(Digest::sha256_of(b"x"));
        let key = RefKey {
            image: ImageKey::new("docker.io".parse().expect("ns"), "library/a".parse().expect("repo")),
            reference: "v1".parse().expect("tag"),
        };
        let record = StoredObject::Record(key);
        append(&path, &[AccessEntry { object: blob.clone(), at: 10 }, AccessEntry { object: record.clone(), at: 5 }])
            .expect("append");
        append(&path, &[AccessEntry { object: blob.clone(), at: 20 }]).expect("append");
        fs::write(&path, format!("{}garbage line\nb x y\n", fs::read_to_string(&path).expect("read"))).expect("write");
        let (mut entries, lines) = read(&path);
        entries.sort_by_key(|e| e.at);
        assert_eq!(lines, 3, "the two bad lines are skipped");
        assert_eq!(entries, vec![AccessEntry { object: record, at: 5 }, AccessEntry { object: blob, at: 20 }]);
    }
}
