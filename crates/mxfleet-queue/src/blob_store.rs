//! Local content-addressed blob store for message bodies.
//!
//! Every node keeps each body it has accepted or replicated as one file named by the
//! SHA-256 of its bytes ([`BodyDigest`]). Content addressing makes writes idempotent
//! (storing a body twice leaves one file) and lets a node check its copy without
//! trusting anyone.
//!
//! Main types:
//! - [`BlobStore`]: a cheap-to-clone handle (an `Arc`) on one root directory.
//! - [`BlobWriter`]: incremental writer for bodies that arrive in chunks (gRPC, SMTP DATA).
//! - [`StoredBlob`]: digest and size of a blob that is durable on disk.
//! - [`BlobError`]: every failure, with the operation and the path involved.
//!
//! Layout:
//! - `<root>/blobs/<sha256-hex>`: complete, durable bodies; never modified in place.
//! - `<root>/tmp/<pid>-<n>.part`: bodies being written. Anything found here by
//!   [`BlobStore::open`] is a crash leftover and is deleted.
//! - `<root>/quarantine/<sha256-hex>.<unix-millis>`: bodies whose bytes no longer match
//!   their name (a flipped bit, a torn write), moved aside by [`BlobStore::quarantine`]
//!   so that they are never served again. Nothing here is deleted automatically: an
//!   operator inspects the files and removes them.
//!
//! Reading for use: [`BlobStore::open_verified`] hashes a blob through the handle it
//! returns, so the bytes checked are the bytes then read (a rename cannot swap them).
//!
//! Durability protocol; a blob is acknowledged only after every step:
//! 1. Stream into a new file in `tmp/`, hashing on the way: a partial body never has a
//!    final name, and the body is never held whole in memory.
//! 2. Compare the digest with the expected one (if given). This happens before the
//!    fdatasync so that a corrupt upload costs no fsync; it is removed, never published.
//! 3. `fdatasync` the tmp file: the bytes must be on disk before a name points at them,
//!    or a crash could leave a final name over zeros or a hole.
//! 4. `rename` into `blobs/`: atomic, so readers see no blob or the whole blob. If the
//!    name already exists it holds the same bytes; renaming over it refreshes its mtime,
//!    which the garbage collector reads as "in use again".
//! 5. `fsync` the `blobs/` directory: the rename only changed the directory, and without
//!    this a crash can forget the new name although the data is on disk.
//!
//! `tmp/` is never fsynced: a lost unlink there only leaves a leftover for the next open.
//! Every fsync is counted ([`BlobStore::fsync_count`]) so a benchmark can show group
//! commit amortising them.
//!
//! One `BlobStore` per root per process: opening deletes everything in `tmp/`, including
//! files that another live store on the same root is still writing. Deleting a blob while
//! a put of the same body is in flight is the caller's race to avoid (reference counts).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::{io, process};

use mxfleet_core::{BodyDigest, UnixMillis};
use sha2::{Digest, Sha256};
use tokio::fs::{self, File};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio::sync::Mutex;
use tracing::warn;

use crate::metrics::BlobMetrics;

/// Write-through buffer: big enough to turn small SMTP/gRPC chunks into few syscalls.
const WRITE_BUFFER: usize = 256 * 1024;
/// Read size for `put_stream` and the verifying reads.
const READ_CHUNK: usize = 1024 * 1024;
/// Linux errno values for "no space left" and "quota exceeded".
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Failures of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store: {op} failed on {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob store: storage full at {}", path.display())]
    StorageFull { path: PathBuf },
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        expected: BodyDigest,
        actual: BodyDigest,
    },
    #[error("blob larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob {0} not found")]
    NotFound(BodyDigest),
    /// The stored bytes no longer hash to the blob's name: damaged on disk.
    #[error("blob {digest} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        digest: BodyDigest,
        actual: BodyDigest,
    },
}

impl BlobError {
    /// The one place io errors are classified: a full disk or quota becomes
    /// `StorageFull` (temporary: callers answer 452 and retry later), anything else `Io`.
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        let full = source.kind() == io::ErrorKind::StorageFull
            || matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT));
        if full {
            BlobError::StorageFull { path }
        } else {
            BlobError::Io { op, path, source }
        }
    }

    /// True if the disk or quota is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, BlobError::StorageFull { .. })
    }
}

/// Attaches the operation and path to an io error, through the one classifier above.
trait IoContext<T> {
    fn context(self, op: &'static str, path: &Path) -> Result<T, BlobError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, op: &'static str, path: &Path) -> Result<T, BlobError> {
        self.map_err(|e| BlobError::io(op, path, e))
    }
}

/// Like `context`, but a missing file is the caller-facing `NotFound(digest)`.
fn found<T>(
    res: io::Result<T>,
    d: &BodyDigest,
    op: &'static str,
    path: &Path,
) -> Result<T, BlobError> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound(*d)),
        res => res.context(op, path),
    }
}

/// A blob that is durable on disk under its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: BodyDigest,
    pub size: u64,
}

/// Handle on one blob store root. Clones share the same state and counters.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blobs: PathBuf,
    tmp: PathBuf,
    /// Where corrupt blobs are moved; created on first use.
    quarantine_dir: PathBuf,
    /// Held while a blob is checked and moved into quarantine, so that two readers who
    /// found the same blob corrupt move it once, and neither moves the good copy that
    /// the other has pulled in its place meanwhile.
    quarantine_lock: Mutex<()>,
    /// Suffix for the next tmp file name; only ever increases, so names are unique
    /// within this process (the pid separates processes).
    next_tmp: AtomicU64,
    /// fdatasync + fsync calls made by this store, for benchmarks.
    fsyncs: AtomicU64,
    /// Bodies made durable; shared with the queue's metrics and the body keeper.
    metrics: BlobMetrics,
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`, and deletes crash leftovers in `tmp/`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let root_existed = fs::try_exists(&root).await.context("stat root", &root)?;
        let (blobs, tmp) = (root.join("blobs"), root.join("tmp"));
        for dir in [&blobs, &tmp] {
            fs::create_dir_all(dir).await.context("create dir", dir)?;
        }
        let next_tmp = AtomicU64::new(0);
        let inner = Inner {
            blobs,
            tmp,
            quarantine_dir: root.join("quarantine"),
            quarantine_lock: Mutex::new(()),
            next_tmp,
            fsyncs: AtomicU64::new(0),
            metrics: BlobMetrics::default(),
        };
        let store = BlobStore {
            inner: Arc::new(inner),
        };
        // blobs/ and tmp/ are entries of root (and root of its parent, if we just made it):
        // sync them now, because every later blob's durability relies on blobs/ existing.
        store.sync_dir(&root).await?;
        if !root_existed {
            let parent = root.parent().filter(|p| !p.as_os_str().is_empty());
            store.sync_dir(parent.unwrap_or(Path::new("."))).await?;
        }
        let tmp = &store.inner.tmp;
        let mut entries = fs::read_dir(tmp).await.context("read dir", tmp)?;
        while let Some(entry) = entries.next_entry().await.context("read dir", tmp)? {
            let p = entry.path();
            fs::remove_file(&p).await.context("remove tmp", &p)?;
            warn!(path = %p.display(), "blob_tmp_removed");
        }
        Ok(store)
    }

    /// Starts an incremental write of a body of at most `max_size` bytes.
    pub async fn writer(&self, max_size: u64) -> Result<BlobWriter, BlobError> {
        loop {
            let n = self.inner.next_tmp.fetch_add(1, Ordering::Relaxed);
            let tmp = self.inner.tmp.join(format!("{}-{n}.part", process::id()));
            match File::create_new(&tmp).await {
                Ok(file) => {
                    return Ok(BlobWriter {
                        store: self.clone(),
                        tmp,
                        file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
                        hasher: Sha256::new(),
                        size: 0,
                        max_size,
                        owns_tmp: true,
                    });
                }
                // Another store on this root in this process took the name: use the next one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(BlobError::io("create tmp", &tmp, e)),
            }
        }
    }

    /// Stores everything `reader` yields, durably; see the module docs for the protocol.
    pub async fn put_stream<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        expected: Option<BodyDigest>,
        max_size: u64,
    ) -> Result<StoredBlob, BlobError> {
        let mut writer = self.writer(max_size).await?;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .context("read input", &writer.tmp)?;
            if n == 0 {
                return writer.finish(expected).await;
            }
            writer.write_chunk(&buf[..n]).await?;
        }
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn path(&self, digest: &BodyDigest) -> PathBuf {
        self.inner.blobs.join(digest.to_hex())
    }

    /// True if the blob is present. Io errors count as absent: callers that must
    /// tell the two apart use [`BlobStore::open_blob`].
    pub async fn contains(&self, digest: &BodyDigest) -> bool {
        let meta = fs::metadata(self.path(digest)).await;
        meta.is_ok_and(|m| m.is_file())
    }

    /// Opens a blob for reading; returns the file and its size.
    pub async fn open_blob(&self, digest: &BodyDigest) -> Result<(File, u64), BlobError> {
        let path = self.path(digest);
        let file = found(File::open(&path).await, digest, "open blob", &path)?;
        let meta = file.metadata().await.context("stat blob", &path)?;
        Ok((file, meta.len()))
    }

    /// Reads a whole blob into memory (tests and small bodies only).
    pub async fn read_all(&self, digest: &BodyDigest) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest);
        found(fs::read(&path).await, digest, "read blob", &path)
    }

    /// Deletes a blob durably. Returns whether it existed.
    pub async fn delete(&self, digest: &BodyDigest) -> Result<bool, BlobError> {
        let path = self.path(digest);
        match found(fs::remove_file(&path).await, digest, "delete blob", &path) {
            Ok(()) => {}
            Err(BlobError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        // Without this a crash could resurrect the blob after GC decided it was gone.
        self.sync_dir(&self.inner.blobs).await?;
        Ok(true)
    }

    /// Digests of all stored blobs, sorted. Names that are not lower-case 64-digit
    /// hex (stray files, editor backups) are ignored.
    pub async fn list(&self) -> Result<Vec<BodyDigest>, BlobError> {
        let blobs = &self.inner.blobs;
        let mut entries = fs::read_dir(blobs).await.context("read dir", blobs)?;
        let mut out = Vec::new();
        while let Some(entry) = entries.next_entry().await.context("read dir", blobs)? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Exact round trip only: from_hex also accepts upper case, which path() never uses.
            if let Some(digest) = BodyDigest::from_hex(name).filter(|d| d.to_hex() == name) {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a blob from disk; false if its bytes no longer match its name.
    pub async fn verify(&self, digest: &BodyDigest) -> Result<bool, BlobError> {
        let (mut file, _) = self.open_blob(digest).await?;
        Ok(hash_file(&mut file, &self.path(digest)).await? == *digest)
    }

    /// Opens a blob for reading after checking that its bytes still hash to its name;
    /// `Corrupt` if not. The check reads the whole file once through the returned
    /// handle, which is then rewound: a caller that goes on to read it all reads it
    /// twice, the second time mostly from the page cache.
    pub async fn open_verified(&self, digest: &BodyDigest) -> Result<(File, u64), BlobError> {
        let (mut file, size) = self.open_blob(digest).await?;
        let path = self.path(digest);
        let actual = hash_file(&mut file, &path).await?;
        if actual != *digest {
            return Err(BlobError::Corrupt {
                digest: *digest,
                actual,
            });
        }
        file.rewind().await.context("rewind blob", &path)?;
        Ok((file, size))
    }

    /// Moves a corrupt blob out of `blobs/` into `quarantine/<hex>.<now>`, where it stays
    /// until an operator removes it, and counts it (`mxfleet_blobs_corrupt_total`).
    /// Returns where it went, or `None` if there was nothing to move: the blob is
    /// missing, or intact (re-checked under the quarantine lock, because another reader
    /// may have moved it and pulled a good copy already). `now` comes from the caller's
    /// clock and only names the file.
    pub async fn quarantine(
        &self,
        digest: &BodyDigest,
        now: UnixMillis,
    ) -> Result<Option<PathBuf>, BlobError> {
        let _moving = self.inner.quarantine_lock.lock().await;
        match self.verify(digest).await {
            Ok(false) => {}
            Ok(true) | Err(BlobError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        let dir = &self.inner.quarantine_dir;
        if !fs::try_exists(dir).await.context("stat dir", dir)? {
            fs::create_dir_all(dir).await.context("create dir", dir)?;
            let root = dir.parent().unwrap_or(Path::new("."));
            self.sync_dir(root).await?;
        }
        // The name is unique under the lock: a second corruption of the same body in
        // the same millisecond gets a suffix instead of replacing the first evidence.
        let stem = format!("{}.{}", digest.to_hex(), now.0);
        let mut dest = dir.join(&stem);
        let mut n = 1;
        while fs::try_exists(&dest)
            .await
            .context("stat quarantine", &dest)?
        {
            dest = dir.join(format!("{stem}-{n}"));
            n += 1;
        }
        let path = self.path(digest);
        match found(
            fs::rename(&path, &dest).await,
            digest,
            "quarantine blob",
            &dest,
        ) {
            Ok(()) => {}
            // Collected meanwhile (its message finished): nothing left to serve.
            Err(BlobError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        // Both directories changed: without these a crash could bring the corrupt blob
        // back under its name, or lose the evidence.
        self.sync_dir(&self.inner.blobs).await?;
        self.sync_dir(dir).await?;
        self.inner.metrics.corrupt.inc();
        warn!(digest = %digest, quarantined = %dest.display(), "body_corrupt");
        Ok(Some(dest))
    }

    /// Number of fdatasync/fsync calls made so far by this store and its clones.
    pub fn fsync_count(&self) -> u64 {
        self.inner.fsyncs.load(Ordering::Relaxed)
    }

    /// This store's metrics (bodies stored, missing, repaired).
    pub fn metrics(&self) -> &BlobMetrics {
        &self.inner.metrics
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), BlobError> {
        self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        let handle = File::open(dir).await.context("open dir", dir)?;
        handle.sync_all().await.context("fsync dir", dir)
    }
}

/// The SHA-256 of everything from `file`'s current position to its end.
async fn hash_file(file: &mut File, path: &Path) -> Result<BodyDigest, BlobError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf).await.context("read blob", path)?;
        if n == 0 {
            return Ok(BodyDigest(hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
    }
}

/// An unfinished blob: bytes go to a tmp file as they arrive. Call
/// [`BlobWriter::finish`] to publish it; dropping it instead removes the tmp file.
pub struct BlobWriter {
    store: BlobStore,
    tmp: PathBuf,
    /// The open tmp file. Taken out for the duration of each write and put back on
    /// success, so a failed write, or one whose future was dropped half-way, leaves
    /// `None` and poisons the writer: the hash would no longer match the bytes on disk.
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    size: u64,
    max_size: u64,
    /// True while `tmp` may exist and is ours to delete; cleared once it has been
    /// renamed into `blobs/` or removed. Drop removes the file while this is set.
    owns_tmp: bool,
}

impl BlobWriter {
    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a chunk. Fails with `TooLarge` (and removes the tmp file) as soon as
    /// the total would exceed the limit; after any error the writer is unusable.
    pub async fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let mut file = self.file.take().ok_or_else(|| self.poisoned())?;
        let size = self.size.saturating_add(chunk.len() as u64);
        let res = if size > self.max_size {
            Err(BlobError::TooLarge {
                limit: self.max_size,
            })
        } else {
            file.write_all(chunk).await.context("write tmp", &self.tmp)
        };
        if res.is_err() {
            drop(file);
            self.discard().await;
            return res;
        }
        self.hasher.update(chunk);
        self.size = size;
        self.file = Some(file);
        Ok(())
    }

    /// Makes the blob durable under its digest (see the module docs). Every error
    /// path returns through Drop, which removes the tmp file.
    pub async fn finish(mut self, expected: Option<BodyDigest>) -> Result<StoredBlob, BlobError> {
        let mut file = self.file.take().ok_or_else(|| self.poisoned())?;
        // Tokio reports a failed background write only on a later operation: flush so
        // that it surfaces here, before anything is published.
        file.flush().await.context("write tmp", &self.tmp)?;
        let file = file.into_inner();
        let digest = BodyDigest(std::mem::take(&mut self.hasher).finalize().into());
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(BlobError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        let stored = StoredBlob {
            digest,
            size: self.size,
        };
        // A handle of our own: `self` is borrowed mutably by discard() below.
        let store = self.store.clone();
        let dest = store.path(&digest);
        // An existing blob of the same name holds the same bytes; we still rename over
        // it, so that its mtime says "just written": the garbage collector never
        // deletes a body younger than a few minutes, which covers a resubmission of a
        // body whose earlier message just finished.
        store.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        file.sync_data().await.context("fdatasync tmp", &self.tmp)?;
        drop(file);
        fs::rename(&self.tmp, &dest)
            .await
            .context("rename tmp", &dest)?;
        self.owns_tmp = false;
        store.sync_dir(&store.inner.blobs).await?;
        store.inner.metrics.stored.inc();
        store.inner.metrics.stored_bytes.inc_by(stored.size);
        Ok(stored)
    }

    fn poisoned(&self) -> BlobError {
        let source = io::Error::other("blob writer already failed or was cancelled");
        BlobError::io("use failed writer", &self.tmp, source)
    }

    /// Removes the tmp file now; on failure Drop (and the next open) will try again.
    async fn discard(&mut self) {
        match fs::remove_file(&self.tmp).await {
            Ok(()) => self.owns_tmp = false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.owns_tmp = false,
            Err(e) => warn!(path = %self.tmp.display(), cause = %e, "blob_tmp_remove_failed"),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.owns_tmp {
            // Synchronous because Drop cannot await; a leftover is also cleaned by open().
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests;
