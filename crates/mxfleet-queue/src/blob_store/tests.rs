//! Tests of the blob store on a real directory: the durability protocol's visible
//! effects (no tmp leftovers, one file per body, fsyncs counted), verification, and
//! quarantine of corrupt bodies.

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
    assert!(matches!(store.open_blob(&digest).await, Err(BlobError::NotFound(d)) if d == digest));
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

#[tokio::test]
async fn open_verified_rewinds_an_intact_blob_and_refuses_a_corrupt_one() -> anyhow::Result<()> {
    let (_dir, store) = new_store().await?;
    let stored = store.put_stream(&b"original body"[..], None, 100).await?;
    let (mut file, size) = store.open_verified(&stored.digest).await?;
    let mut read = Vec::new();
    file.read_to_end(&mut read).await?;
    assert_eq!((read.as_slice(), size), (&b"original body"[..], 13));

    std::fs::write(store.path(&stored.digest), b"original bodY")?;
    let err = store.open_verified(&stored.digest).await.unwrap_err();
    assert!(
        matches!(err, BlobError::Corrupt { digest, actual }
            if digest == stored.digest && actual == BodyDigest::of(b"original bodY")),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn quarantine_moves_a_corrupt_blob_aside_and_counts_it() -> anyhow::Result<()> {
    let (dir, store) = new_store().await?;
    let digest = store
        .put_stream(&b"original body"[..], None, 100)
        .await?
        .digest;
    std::fs::write(store.path(&digest), b"original bodY")?;

    let moved = store
        .quarantine(&digest, UnixMillis(1_700_000_000_123))
        .await?;
    let expected = format!("{}.1700000000123", digest.to_hex());
    assert_eq!(
        moved,
        Some(dir.path().join("store/quarantine").join(&expected))
    );
    assert_eq!(names(&dir, "quarantine"), std::slice::from_ref(&expected));
    assert_eq!(
        std::fs::read(dir.path().join("store/quarantine").join(&expected))?,
        b"original bodY",
        "the evidence is kept as it was found"
    );
    assert!(!store.contains(&digest).await);
    assert_eq!(store.metrics().corrupt_count(), 1);

    // Corrupt again within the same millisecond: the first evidence is not replaced.
    store.put_stream(&b"original body"[..], None, 100).await?;
    std::fs::write(store.path(&digest), b"Original body")?;
    store
        .quarantine(&digest, UnixMillis(1_700_000_000_123))
        .await?;
    assert_eq!(
        names(&dir, "quarantine"),
        [expected.clone(), format!("{expected}-1")]
    );
    assert_eq!(store.metrics().corrupt_count(), 2);
    // Listing and reopening ignore quarantine.
    assert!(store.list().await?.is_empty());
    drop(store);
    let store = BlobStore::open(dir.path().join("store")).await?;
    assert_eq!(names(&dir, "quarantine").len(), 2);
    assert!(store.list().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn quarantine_leaves_intact_and_missing_blobs_alone() -> anyhow::Result<()> {
    let (dir, store) = new_store().await?;
    let digest = store.put_stream(&b"intact"[..], None, 100).await?.digest;
    assert_eq!(store.quarantine(&digest, UnixMillis(1)).await?, None);
    assert!(store.verify(&digest).await?);
    let missing = BodyDigest::of(b"never stored");
    assert_eq!(store.quarantine(&missing, UnixMillis(1)).await?, None);
    assert!(!dir.path().join("store/quarantine").exists());
    assert_eq!(store.metrics().corrupt_count(), 0);
    Ok(())
}
