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

use mxfleet_core::BodyDigest;
use sha2::{Digest, Sha256};
use tokio::fs::{self, File};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tracing::warn;

use crate::metrics::BlobMetrics;

/// Write-through buffer: big enough to turn small SMTP/gRPC chunks into few syscalls.
const WRITE_BUFFER: usize = 256 * 1024;
/// Read size for `put_stream` and `verify`.
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
        let path = self.path(digest);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = file.read(&mut buf).await.context("read blob", &path)?;
            if n == 0 {
                return Ok(BodyDigest(hasher.finalize().into()) == *digest);
            }
            hasher.update(&buf[..n]);
        }
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
mod tests {
    use super::*;
    use tempfile::TempDir;

    async fn new_store() -> anyhow::Result<(TempDir, BlobStore)> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path().join("store")).await?;
        Ok((dir, store))
    }

    /// Sorted file names in `<dir>/store/<sub>`.
    fn names(dir: &TempDir, sub: &str) -> Vec<String> {
        let entries = std::fs::read_dir(dir.path().join("store").join(sub)).expect("read_dir");
        let mut names: Vec<String> = entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        names.sort();
        names
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn round_trip() -> anyhow::Result<()> {
        let (_dir, store) = new_store().await?;
        let data = body(5000);
        let stored = store
            .put_stream(&data[..], Some(BodyDigest::of(&data)), 5000)
            .await?;
        assert_eq!(
            stored,
            StoredBlob {
                digest: BodyDigest::of(&data),
                size: 5000
            }
        );
        assert!(store.contains(&stored.digest).await);
        assert_eq!(store.read_all(&stored.digest).await?, data);
        assert_eq!(store.open_blob(&stored.digest).await?.1, 5000);
        assert!(store.verify(&stored.digest).await?);
        assert_eq!(store.list().await?, vec![stored.digest]);
        Ok(())
    }

    #[tokio::test]
    async fn uneven_chunks_hash_like_the_whole_body() -> anyhow::Result<()> {
        let (_dir, store) = new_store().await?;
        let data = body(700_001);
        let mut writer = store.writer(1 << 20).await?;
        let mut rest = &data[..];
        for len in [1usize, 0, 7, 4095, 65_537, 300_000].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            writer.write_chunk(chunk).await?;
            rest = tail;
        }
        let stored = writer.finish(None).await?;
        assert_eq!(
            stored,
            StoredBlob {
                digest: BodyDigest::of(&data),
                size: 700_001
            }
        );
        assert_eq!(store.read_all(&stored.digest).await?, data);
        Ok(())
    }

    #[tokio::test]
    async fn digest_mismatch_leaves_no_file() -> anyhow::Result<()> {
        let (dir, store) = new_store().await?;
        let wrong = BodyDigest::of(b"other");
        let err = store
            .put_stream(&b"hello"[..], Some(wrong), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { expected, actual }
            if expected == wrong && actual == BodyDigest::of(b"hello")));
        assert!(names(&dir, "blobs").is_empty() && names(&dir, "tmp").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn too_large_removes_tmp_and_poisons_writer() -> anyhow::Result<()> {
        let (dir, store) = new_store().await?;
        let mut writer = store.writer(10).await?;
        writer.write_chunk(b"123456").await?;
        writer.write_chunk(b"7890").await?; // exactly at the limit is fine
        let err = writer.write_chunk(b"x").await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 10 }));
        assert!(names(&dir, "tmp").is_empty());
        assert!(writer.write_chunk(b"").await.is_err());
        assert!(writer.finish(None).await.is_err());

        let err = store.put_stream(&body(11)[..], None, 10).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 10 }));
        assert!(names(&dir, "blobs").is_empty() && names(&dir, "tmp").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn dropped_writer_leaves_no_tmp() -> anyhow::Result<()> {
        let (dir, store) = new_store().await?;
        let mut writer = store.writer(100).await?;
        writer.write_chunk(b"partial").await?;
        assert_eq!(names(&dir, "tmp").len(), 1);
        drop(writer);
        assert!(names(&dir, "blobs").is_empty() && names(&dir, "tmp").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn second_put_of_same_content_keeps_one_file() -> anyhow::Result<()> {
        let (dir, store) = new_store().await?;
        let first = store.put_stream(&b"same"[..], None, 100).await?;
        let second = store
            .put_stream(&b"same"[..], Some(first.digest), 100)
            .await?;
        assert_eq!(first, second);
        assert_eq!(names(&dir, "blobs"), vec![first.digest.to_hex()]);
        assert!(names(&dir, "tmp").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn open_removes_stale_tmp_and_keeps_blobs() -> anyhow::Result<()> {
        let (dir, store) = new_store().await?;
        let stored = store.put_stream(&b"kept"[..], None, 100).await?;
        std::fs::write(dir.path().join("store/tmp/999-0.part"), b"crash leftover")?;
        drop(store);
        let store = BlobStore::open(dir.path().join("store")).await?;
        assert!(names(&dir, "tmp").is_empty());
        assert_eq!(store.read_all(&stored.digest).await?, b"kept");
        Ok(())
    }

    #[tokio::test]
    async fn verify_detects_bytes_altered_on_disk() -> anyhow::Result<()> {
        let (_dir, store) = new_store().await?;
        let stored = store.put_stream(&b"original body"[..], None, 100).await?;
        assert!(store.verify(&stored.digest).await?);
        std::fs::write(store.path(&stored.digest), b"original bodY")?;
        assert!(!store.verify(&stored.digest).await?);
        Ok(())
    }

    #[tokio::test]
    async fn delete_reports_whether_the_blob_existed() -> anyhow::Result<()> {
        let (_dir, store) = new_store().await?;
        let digest = store.put_stream(&b"doomed"[..], None, 100).await?.digest;
        assert!(store.delete(&digest).await?);
        assert!(!store.delete(&digest).await?);
        assert!(!store.contains(&digest).await);
        assert!(
            matches!(store.open_blob(&digest).await, Err(BlobError::NotFound(d)) if d == digest)
        );
        assert!(matches!(
            store.read_all(&digest).await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            store.verify(&digest).await,
            Err(BlobError::NotFound(_))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn list_ignores_names_that_are_not_digests() -> anyhow::Result<()> {
        let (_dir, store) = new_store().await?;
        let digest = store.put_stream(&b"listed"[..], None, 100).await?.digest;
        let upper = store
            .path(&digest)
            .with_file_name(digest.to_hex().to_uppercase());
        std::fs::write(upper, b"x")?;
        std::fs::write(store.path(&digest).with_file_name("README"), b"x")?;
        assert_eq!(store.list().await?, vec![digest]);
        Ok(())
    }

    #[tokio::test]
    async fn each_new_blob_costs_a_file_and_a_dir_fsync() -> anyhow::Result<()> {
        let (_dir, store) = new_store().await?;
        let before = store.fsync_count();
        store.put_stream(&b"counted"[..], None, 100).await?;
        assert!(store.fsync_count() >= before + 2);
        Ok(())
    }

    #[tokio::test]
    async fn handles_and_futures_can_cross_tasks() -> anyhow::Result<()> {
        // Callers spawn these on a multi-threaded runtime: a non-Send future fails here.
        fn send<T: Send>(value: T) -> T {
            value
        }
        fn send_sync<T: Send + Sync>(value: T) -> T {
            value
        }
        let (_dir, store) = new_store().await?;
        let store = send_sync(store);
        let mut writer = send(store.writer(10).await?);
        send(writer.write_chunk(b"x")).await?;
        let digest = send(writer.finish(None)).await?.digest;
        send(store.put_stream(&b"x"[..], Some(digest), 10)).await?;
        assert!(send(store.verify(&digest)).await?);
        Ok(())
    }

    #[test]
    fn full_disk_and_quota_are_storage_full() {
        let full = [
            io::Error::from_raw_os_error(ENOSPC),
            io::Error::from_raw_os_error(EDQUOT),
            io::ErrorKind::StorageFull.into(),
        ];
        for e in full {
            assert!(BlobError::io("write tmp", Path::new("/x"), e).is_storage_full());
        }
        let denied = io::ErrorKind::PermissionDenied.into();
        assert!(!BlobError::io("write tmp", Path::new("/x"), denied).is_storage_full());
    }
}
