//! Access times. Readers note what they served in `Touches` (a set, so a hot object costs one lookup per request and
//! one entry per drain); the cache actor drains it every few seconds into the index's access times, and records the
//! changed times in the store's journal in batches, compacting the journal when it has grown well past the live set.
//! A cache hit therefore never writes a file and never waits for the actor.

use std::collections::HashMap;

use dashmap::DashSet;

use crate::digest::Digest;
use crate::store::{AccessEntry, RefKey, StoredObject};

/// Objects served since the last drain. Written by readers, drained only by the cache actor.
#[derive(Debug, Default)]
pub struct Touches {
    refs: DashSet<RefKey>,
    blobs: DashSet<Digest>,
}

impl Touches {
    /// A client pulled through this reference.
    pub fn reference(&self, key: &RefKey) {
        if !self.refs.contains(key) {
            self.refs.insert(key.clone());
        }
    }

    /// A client was served this blob.
    pub fn blob(&self, digest: &Digest) {
        if !self.blobs.contains(digest) {
            self.blobs.insert(digest.clone());
        }
    }

    /// Everything noted since the last drain.
    pub(super) fn drain(&self) -> (Vec<RefKey>, Vec<Digest>) {
        let refs: Vec<RefKey> = self.refs.iter().map(|k| k.key().clone()).collect();
        for k in &refs {
            self.refs.remove(k);
        }
        let blobs: Vec<Digest> = self.blobs.iter().map(|d| d.key().clone()).collect();
        for d in &blobs {
            self.blobs.remove(d);
        }
        (refs, blobs)
    }
}

/// Access times changed since the last write to the journal, and the journal's size.
#[derive(Debug, Default)]
pub(super) struct AccessBook {
    dirty: HashMap<StoredObject, i64>,
    /// Lines appended to the journal since it was last rewritten (an estimate of its size).
    pub(super) journal_lines: usize,
}

impl AccessBook {
    pub(super) fn changed(&mut self, object: StoredObject, at: i64) {
        self.dirty.insert(object, at);
    }

    pub(super) fn forget(&mut self, object: &StoredObject) {
        self.dirty.remove(object);
    }

    pub(super) fn take(&mut self) -> Vec<AccessEntry> {
        self.dirty.drain().map(|(object, at)| AccessEntry { object, at }).collect()
    }
}
