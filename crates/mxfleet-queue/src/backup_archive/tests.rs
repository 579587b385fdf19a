//! The archive round-trips whatever way its bytes are cut, and refuses damage, a cut
//! end, a wrong order and a body whose bytes do not match its name.

use super::*;

fn header(metadata_bytes: u64) -> ArchiveHeader {
    ArchiveHeader {
        cluster_name: "mxfleet".into(),
        source_node: 2,
        term: 7,
        last_applied_term: 7,
        last_applied_node: 1,
        last_applied_index: 42,
        linearizable: true,
        created_at_ms: 1_700_000_000_000,
        members: vec![ArchiveMember {
            id: 1,
            addr: "127.0.0.1:7401".into(),
            site: "a".into(),
            voter: true,
        }],
        entries: 3,
        live_entries: 2,
        bodies: 2,
        body_bytes: 0,
        metadata_bytes,
    }
}

/// An archive with a metadata section of `metadata` and the given bodies.
fn archive(metadata: &[u8], bodies: &[&[u8]]) -> Vec<u8> {
    let (mut writer, mut bytes) = ArchiveWriter::start(&header(metadata.len() as u64));
    bytes.extend(writer.metadata(metadata));
    for body in bodies {
        bytes.extend(writer.blob(&BodyDigest::of(body), body.len() as u64));
        bytes.extend(writer.data(body));
    }
    bytes.extend(writer.finish(&ArchiveTrailer {
        bodies_written: bodies.len() as u64,
        body_bytes_written: bodies.iter().map(|b| b.len() as u64).sum(),
        missing: vec![MissingBody {
            digest: BodyDigest::of(b"gone"),
            queue_ids: vec![QueueId(9)],
            reason: "not found".into(),
        }],
    }));
    bytes
}

/// Feeds `bytes` in pieces of `step`; returns every event, or the first error.
fn read(bytes: &[u8], step: usize) -> Result<Vec<ArchiveEvent>, ArchiveError> {
    let mut reader = ArchiveReader::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        reader.push(piece);
        while let Some(event) = reader.next_event()? {
            events.push(event);
        }
    }
    reader.finish()?;
    Ok(events)
}

#[test]
fn an_archive_reads_back_in_pieces_of_any_size() {
    let big = vec![7u8; ARCHIVE_PIECE_BYTES + 10];
    let metadata = vec![3u8; ARCHIVE_PIECE_BYTES * 2 + 1];
    let bytes = archive(&metadata, &[b"hello\r\n", &[], &big]);
    for step in [1usize, 2, 5, 13, 4096, usize::MAX] {
        if step == 1 && bytes.len() > 100_000 {
            // One byte at a time over 3 MiB is slow in a debug build; the small archive
            // below covers it.
            continue;
        }
        let events = read(&bytes, step).expect("valid");
        let metadata_back: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                ArchiveEvent::Metadata(piece) => Some(piece.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(metadata_back, metadata);
        let ends = events
            .iter()
            .filter(|e| matches!(e, ArchiveEvent::BlobEnd { .. }))
            .count();
        assert_eq!(ends, 3);
        assert!(matches!(events.first(), Some(ArchiveEvent::Header(h)) if h.source_node == 2));
        assert_eq!(events.last(), Some(&ArchiveEvent::End));
        let Some(ArchiveEvent::Trailer(trailer)) = events.iter().rev().nth(1) else {
            panic!("no trailer before the end");
        };
        assert_eq!(trailer.missing[0].queue_ids, vec![QueueId(9)]);
    }
    let small = archive(b"meta", &[b"a", b"bc"]);
    assert!(read(&small, 1).is_ok());
}

#[test]
fn any_flipped_byte_is_refused() {
    let bytes = archive(b"metadata", &[b"body one", b"body two"]);
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        assert!(read(&damaged, 7).is_err(), "a flip at byte {at} passed");
    }
}

#[test]
fn a_cut_archive_or_bytes_after_its_end_are_refused() {
    let bytes = archive(b"metadata", &[b"body"]);
    for len in 0..bytes.len() {
        let error = read(&bytes[..len], 3).expect_err("cut archive");
        assert!(
            matches!(error, ArchiveError::Truncated(_) | ArchiveError::BadMagic),
            "cut at {len}: {error}"
        );
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"x");
    assert_eq!(read(&longer, 64), Err(ArchiveError::TrailingBytes(1)));
}

#[test]
fn a_body_that_does_not_match_its_name_is_refused_even_with_a_good_checksum() {
    let (mut writer, mut bytes) = ArchiveWriter::start(&header(0));
    bytes.extend(writer.blob(&BodyDigest::of(b"expected"), 8));
    bytes.extend(writer.data(b"tampered"));
    bytes.extend(writer.finish(&ArchiveTrailer::default()));
    assert!(matches!(
        read(&bytes, 100),
        Err(ArchiveError::BodyDigest { .. })
    ));

    let (mut writer, mut bytes) = ArchiveWriter::start(&header(0));
    bytes.extend(writer.blob(&BodyDigest::of(b"abc"), 2));
    bytes.extend(writer.data(b"abc"));
    assert!(matches!(
        read(&bytes, 100),
        Err(ArchiveError::BodyLength { .. })
    ));
}

#[test]
fn records_out_of_order_and_huge_lengths_are_refused_before_allocating() {
    let (mut writer, mut bytes) = ArchiveWriter::start(&header(4));
    // A body before the metadata is complete.
    bytes.extend(writer.blob(&BodyDigest::of(b""), 0));
    assert!(matches!(
        read(&bytes, 100),
        Err(ArchiveError::OutOfOrder { .. })
    ));

    let mut bytes = ARCHIVE_MAGIC.to_vec();
    bytes.extend_from_slice(&ARCHIVE_FORMAT.to_le_bytes());
    bytes.push(KIND_HEADER);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        read(&bytes, 100),
        Err(ArchiveError::RecordTooLarge { .. })
    ));

    let mut other_format = ARCHIVE_MAGIC.to_vec();
    other_format.extend_from_slice(&99u32.to_le_bytes());
    assert_eq!(
        read(&other_format, 100),
        Err(ArchiveError::UnsupportedFormat { found: 99 })
    );
    assert_eq!(read(b"MXFSNAP1....", 100), Err(ArchiveError::BadMagic));
}
