//! The access-time journal, for every backend: one line per recorded access, appended in batches by the cache actor,
//! read back at start, rewritten whole when it has grown well past the number of live objects.
//!
//! Lines: `b <unix> <digest>` for a blob, `r <unix> <namespace> <repository> <tag|digest>` for a reference (none of
//! those fields can contain a space). A line that does not parse is skipped: losing an access time only makes an
//! object look older. Where the lines go is the backend's `Journal`: one object `access.log` appended to (not
//! synced: an access time lost in a crash is harmless), or one object per batch under `access/<writer>/` (a bucket
//! shared by replicas; a rewrite replaces only the writer's own).

use std::collections::HashMap;

use futures_util::StreamExt;

use crate::error::StoreError;
use crate::reference::ImageKey;
use crate::store::backend::{Backend, Journal};
use crate::store::records::{now_ms, AccessEntry, RefKey, StoredObject};

/// The appended journal's key.
const APPENDED: &str = "access.log";

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

/// The encoded form of entries.
fn encode(entries: &[AccessEntry]) -> String {
    entries.iter().filter_map(line).collect()
}

/// Gathers journal text: the latest access of every object, and how many lines were read.
#[derive(Default)]
struct Latest {
    at: HashMap<StoredObject, i64>,
    lines: usize,
}

impl Latest {
    fn read(&mut self, text: &str) {
        for entry in text.lines().filter_map(parse) {
            self.lines += 1;
            let at = self.at.entry(entry.object).or_insert(entry.at);
            *at = (*at).max(entry.at);
        }
    }
}

/// Append entries to the journal.
pub(crate) async fn record<B: Backend>(backend: &B, entries: &[AccessEntry]) -> Result<(), StoreError> {
    let text = encode(entries);
    if text.is_empty() {
        return Ok(());
    }
    match backend.journal() {
        Journal::Appended => backend.append(APPENDED, text.into()).await,
        Journal::Batches { writer } => {
            let key = format!("access/{writer}/{:020}.log", now_ms());
            backend.put(&key, text.into(), false).await
        }
    }
}

/// Replace every recorded access time (this writer's, for batches) with exactly these.
pub(crate) async fn rewrite<B: Backend>(backend: &B, entries: &[AccessEntry]) -> Result<(), StoreError> {
    match backend.journal() {
        Journal::Appended => backend.put(APPENDED, encode(entries).into(), false).await,
        Journal::Batches { writer } => {
            let old: Vec<String> = backend
                .list(&format!("access/{writer}/"))
                .filter_map(|l| async move { l.ok().map(|l| l.key) })
                .collect()
                .await;
            record(backend, entries).await?;
            for key in old {
                let _ = backend.delete(&key).await;
            }
            Ok(())
        }
    }
}

/// The latest access of every object in the journal, and how many lines the appended journal has (compaction
/// rewrites it when it has grown; batches of shared stores are not counted).
pub(crate) async fn read<B: Backend>(backend: &B) -> (Vec<AccessEntry>, usize) {
    let mut latest = Latest::default();
    match backend.journal() {
        Journal::Appended => {
            if let Ok(Some((bytes, _))) = backend.get(APPENDED).await {
                latest.read(&String::from_utf8_lossy(&bytes));
            }
        }
        Journal::Batches { .. } => {
            let keys: Vec<String> =
                backend.list("access/").filter_map(|l| async move { l.ok().map(|l| l.key) }).collect().await;
            for key in keys {
                if let Ok(Some((bytes, _))) = backend.get(&key).await {
                    latest.read(&String::from_utf8_lossy(&bytes));
                }
            }
            latest.lines = 0;
        }
    }
    (latest.at.into_iter().map(|(object, at)| AccessEntry { object, at }).collect(), latest.lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::store::memory::SharedMemory;

    #[tokio::test]
    async fn round_trip_and_latest_wins() {
        let memory = SharedMemory::default();
        let blob = StoredObject::Blob(Digest::sha256_of(b"x"));
        let key = RefKey {
            image: ImageKey::new("docker.io".parse().expect("ns"), "library/a".parse().expect("repo")),
            reference: "v1".parse().expect("tag"),
        };
        let record_ = StoredObject::Record(key);
        let entries = [AccessEntry { object: blob.clone(), at: 10 }, AccessEntry { object: record_.clone(), at: 5 }];
        record(&memory, &entries).await.expect("append");
        record(&memory, &[AccessEntry { object: blob.clone(), at: 20 }]).await.expect("append");
        memory.append(APPENDED, "garbage line\nb x y\n".into()).await.expect("append garbage");
        let (mut found, lines) = read(&memory).await;
        found.sort_by_key(|e| e.at);
        assert_eq!(lines, 3, "the two bad lines are skipped");
        assert_eq!(found, vec![AccessEntry { object: record_, at: 5 }, AccessEntry { object: blob, at: 20 }]);
    }
}
