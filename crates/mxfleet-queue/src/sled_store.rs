//! Every line of sled code in mxfleet: the on-disk copy of the state machine.
//!
//! One sled tree holds three key families:
//! - `e/<queue id, 8 bytes BE>` → postcard `QueueEntry`
//! - `d/<dedup key, 32 bytes>` → postcard `DedupRecord`
//! - `m/last_applied`, `m/membership` → postcard openraft metadata
//! - `m/fleet` → postcard `FleetState` (destinations, reachability, counters)
//! - `s/g/<32 bytes>`, `s/a/<32 bytes>`, `s/v/<32 bytes>` → postcard greylist,
//!   allowlist and verification records of `SpamState`
//!
//! `persist` writes the changed keys and `last_applied` in ONE sled batch, so after a
//! crash sled holds a consistent prefix of the log and openraft re-applies the rest.
//! sled's flush is not power-safe on Linux, so sled never holds the only copy of
//! anything acknowledged: the Raft log (fsynced) and the snapshot file do. If sled comes
//! back older than the last snapshot, or unreadable, the caller rebuilds it from the
//! snapshot (`replace_all`).

use std::io;
use std::path::Path;

use mxfleet_core::spam::SpamDigest;
use mxfleet_core::state::DedupRecord;
use mxfleet_core::{Change, DedupKey, QueueEntry, QueueId, QueueState, SpamKey, SpamState};

use crate::types::{LogId, StoredMembership, decode, encode};

const KEY_LAST_APPLIED: &[u8] = b"m/last_applied";
const KEY_MEMBERSHIP: &[u8] = b"m/membership";
const KEY_FLEET: &[u8] = b"m/fleet";
const ENTRY_PREFIX: &[u8] = b"e/";
const DEDUP_PREFIX: &[u8] = b"d/";
const GREYLIST_PREFIX: &[u8] = b"s/g/";
const ALLOWLIST_PREFIX: &[u8] = b"s/a/";
const VERIFIED_PREFIX: &[u8] = b"s/v/";

/// What sled holds: the queue, and the openraft metadata that says how far it goes.
#[derive(Debug, Default)]
pub(crate) struct PersistedState {
    pub queue: QueueState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// The sled database of one node's state machine.
pub(crate) struct SledStore {
    // Keep the Db alive: the tree's background flusher belongs to it.
    _db: sled::Db,
    tree: sled::Tree,
}

fn io_err(op: &'static str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("sled {op}: {e}"))
}

fn entry_key(id: QueueId) -> Vec<u8> {
    [ENTRY_PREFIX, &id.0.to_be_bytes()[..]].concat()
}

fn dedup_key(key: &DedupKey) -> Vec<u8> {
    [DEDUP_PREFIX, &key.0[..]].concat()
}

fn spam_key(prefix: &[u8], key: &SpamDigest) -> Vec<u8> {
    [prefix, &key.0[..]].concat()
}

/// Reads one spam table: `prefix` + 32-byte digest → postcard record.
fn load_spam_table<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    prefix: &[u8],
    table: &mut std::collections::BTreeMap<SpamDigest, T>,
) -> io::Result<()> {
    for item in tree.scan_prefix(prefix) {
        let (key, value) = item.map_err(|e| io_err("scan", e))?;
        let Ok(raw_key) = <[u8; 32]>::try_from(&key[prefix.len()..]) else {
            return Err(io_err("decode spam key", "wrong length"));
        };
        let record: T = decode(&value).map_err(|e| io_err("decode spam record", e))?;
        table.insert(SpamDigest(raw_key), record);
    }
    Ok(())
}

/// Adds the current value of one spam record (or its removal) to `batch`.
fn persist_spam_key(batch: &mut sled::Batch, spam: &SpamState, key: &SpamKey) -> io::Result<()> {
    fn put<T: serde::Serialize>(
        batch: &mut sled::Batch,
        sled_key: Vec<u8>,
        value: Option<&T>,
    ) -> io::Result<()> {
        match value {
            Some(value) => batch.insert(sled_key, encode(value).map_err(|e| io_err("encode", e))?),
            None => batch.remove(sled_key),
        }
        Ok(())
    }
    match key {
        SpamKey::Greylist(k) => put(batch, spam_key(GREYLIST_PREFIX, k), spam.greylist.get(k)),
        SpamKey::Allowlist(k) => put(batch, spam_key(ALLOWLIST_PREFIX, k), spam.allowlist.get(k)),
        SpamKey::Verification(k) => put(batch, spam_key(VERIFIED_PREFIX, k), spam.verified.get(k)),
    }
}

impl SledStore {
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| io_err("open", e))?;
        let tree = db.open_tree("state").map_err(|e| io_err("open_tree", e))?;
        Ok(SledStore { _db: db, tree })
    }

    /// Reads the whole state back into memory.
    pub fn load(&self) -> io::Result<PersistedState> {
        let mut state = PersistedState::default();
        for item in self.tree.scan_prefix(ENTRY_PREFIX) {
            let (_, value) = item.map_err(|e| io_err("scan", e))?;
            let entry: QueueEntry = decode(&value).map_err(|e| io_err("decode entry", e))?;
            state.queue.entries.insert(entry.id, entry);
        }
        for item in self.tree.scan_prefix(DEDUP_PREFIX) {
            let (key, value) = item.map_err(|e| io_err("scan", e))?;
            let Ok(raw_key) = <[u8; 32]>::try_from(&key[DEDUP_PREFIX.len()..]) else {
                return Err(io_err("decode dedup key", "wrong length"));
            };
            let record: DedupRecord = decode(&value).map_err(|e| io_err("decode dedup", e))?;
            state.queue.dedup.insert(DedupKey(raw_key), record);
        }
        load_spam_table(&self.tree, GREYLIST_PREFIX, &mut state.queue.spam.greylist)?;
        load_spam_table(
            &self.tree,
            ALLOWLIST_PREFIX,
            &mut state.queue.spam.allowlist,
        )?;
        load_spam_table(&self.tree, VERIFIED_PREFIX, &mut state.queue.spam.verified)?;
        if let Some(bytes) = self
            .tree
            .get(KEY_LAST_APPLIED)
            .map_err(|e| io_err("get", e))?
        {
            state.last_applied = decode(&bytes).map_err(|e| io_err("decode last_applied", e))?;
        }
        if let Some(bytes) = self.tree.get(KEY_FLEET).map_err(|e| io_err("get", e))? {
            state.queue.fleet = decode(&bytes).map_err(|e| io_err("decode fleet", e))?;
        }
        if let Some(bytes) = self
            .tree
            .get(KEY_MEMBERSHIP)
            .map_err(|e| io_err("get", e))?
        {
            state.membership = decode(&bytes).map_err(|e| io_err("decode membership", e))?;
        }
        Ok(state)
    }

    /// Writes the keys `changes` names, with `last_applied` and `membership`, atomically.
    pub fn persist(
        &self,
        queue: &QueueState,
        changes: &[Change],
        last_applied: &Option<LogId>,
        membership: &StoredMembership,
    ) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        for change in changes {
            match change {
                Change::Entry(id) => match queue.entries.get(id) {
                    Some(entry) => batch.insert(
                        entry_key(*id),
                        encode(entry).map_err(|e| io_err("encode", e))?,
                    ),
                    None => batch.remove(entry_key(*id)),
                },
                Change::DedupPut(key) => {
                    if let Some(record) = queue.dedup.get(key) {
                        batch.insert(
                            dedup_key(key),
                            encode(record).map_err(|e| io_err("encode", e))?,
                        )
                    }
                }
                Change::DedupRemoved(key) => batch.remove(dedup_key(key)),
                Change::Fleet => batch.insert(
                    KEY_FLEET,
                    encode(&queue.fleet).map_err(|e| io_err("encode", e))?,
                ),
                Change::Spam(key) => persist_spam_key(&mut batch, &queue.spam, key)?,
            }
        }
        batch.insert(
            KEY_LAST_APPLIED,
            encode(last_applied).map_err(|e| io_err("encode", e))?,
        );
        batch.insert(
            KEY_MEMBERSHIP,
            encode(membership).map_err(|e| io_err("encode", e))?,
        );
        self.tree
            .apply_batch(batch)
            .map_err(|e| io_err("apply_batch", e))
    }

    /// Replaces everything (after installing a snapshot, or rebuilding from one).
    ///
    /// `clear` and the batch are two steps; a crash between them leaves no
    /// `last_applied`, which the next start treats as "rebuild from the snapshot".
    pub fn replace_all(&self, state: &PersistedState) -> io::Result<()> {
        self.tree.clear().map_err(|e| io_err("clear", e))?;
        let mut batch = sled::Batch::default();
        for (id, entry) in &state.queue.entries {
            batch.insert(
                entry_key(*id),
                encode(entry).map_err(|e| io_err("encode", e))?,
            );
        }
        for (key, record) in &state.queue.dedup {
            batch.insert(
                dedup_key(key),
                encode(record).map_err(|e| io_err("encode", e))?,
            );
        }
        batch.insert(
            KEY_FLEET,
            encode(&state.queue.fleet).map_err(|e| io_err("encode", e))?,
        );
        let spam = &state.queue.spam;
        let spam_keys = (spam.greylist.keys().map(|k| SpamKey::Greylist(*k)))
            .chain(spam.allowlist.keys().map(|k| SpamKey::Allowlist(*k)))
            .chain(spam.verified.keys().map(|k| SpamKey::Verification(*k)));
        for key in spam_keys {
            persist_spam_key(&mut batch, spam, &key)?;
        }
        batch.insert(
            KEY_LAST_APPLIED,
            encode(&state.last_applied).map_err(|e| io_err("encode", e))?,
        );
        batch.insert(
            KEY_MEMBERSHIP,
            encode(&state.membership).map_err(|e| io_err("encode", e))?,
        );
        self.tree
            .apply_batch(batch)
            .map_err(|e| io_err("apply_batch", e))?;
        self.tree.flush().map_err(|e| io_err("flush", e))?;
        Ok(())
    }
}
