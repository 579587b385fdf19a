//! The marker on real directories: new, current, legacy (no marker), too new, too old,
//! damaged; a refusal must leave every file as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

/// Every file and directory under `dir` with its contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                pending.push(path);
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn marker(dir: &Path) -> Marker {
    Marker::parse(&fs::read_to_string(dir.join(MARKER_FILE)).unwrap()).unwrap()
}

fn write_marker(dir: &Path, format: u32, by: &str) {
    fs::write(
        dir.join(MARKER_FILE),
        format!("storage_format = {format}\nlast_opened_by = \"{by}\"\n"),
    )
    .unwrap();
}

/// A data directory as a node leaves it: a log, sled, snapshots, a vote file.
fn populated(dir: &Path) {
    for sub in [LOG_DIR, SLED_DIR, SNAPSHOT_DIR] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::write(
        dir.join(LOG_DIR).join("r-00000000000000000000.wal"),
        b"records",
    )
    .unwrap();
    fs::write(dir.join(SLED_DIR).join("db"), b"sled").unwrap();
    fs::write(dir.join(VOTE_FILE), b"vote").unwrap();
}

#[test]
fn a_new_directory_gets_the_current_format_and_opens_again_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(check_data_dir(dir.path()).unwrap(), DirFormat::Created);
    assert_eq!(
        marker(dir.path()),
        Marker {
            storage_format: STORAGE_FORMAT,
            last_opened_by: BINARY_VERSION.into(),
        }
    );
    let before = tree(dir.path());
    assert_eq!(
        check_data_dir(dir.path()).unwrap(),
        DirFormat::Opened {
            from: STORAGE_FORMAT,
            to: STORAGE_FORMAT
        }
    );
    assert_eq!(
        tree(dir.path()),
        before,
        "an unchanged marker is not rewritten"
    );
    assert!(!dir.path().join("FORMAT.tmp").exists());
}

#[test]
fn a_directory_holding_only_foreign_files_is_new() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("lost+found")).unwrap();
    assert_eq!(check_data_dir(dir.path()).unwrap(), DirFormat::Created);
}

#[test]
fn the_current_format_opens_and_records_the_binary_that_opened_it() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    write_marker(dir.path(), STORAGE_FORMAT, "0.0.1-old");
    assert_eq!(
        check_data_dir(dir.path()).unwrap(),
        DirFormat::Opened {
            from: STORAGE_FORMAT,
            to: STORAGE_FORMAT
        }
    );
    assert_eq!(marker(dir.path()).last_opened_by, BINARY_VERSION);
}

#[test]
fn a_legacy_directory_without_a_marker_is_format_1_and_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let stores = tree(dir.path());
    assert_eq!(check_data_dir(dir.path()).unwrap(), DirFormat::MarkerAdded);
    assert_eq!(marker(dir.path()).storage_format, LEGACY_FORMAT);
    // Only the marker was added.
    let mut after = tree(dir.path());
    assert!(after.remove(&dir.path().join(MARKER_FILE)).is_some());
    assert_eq!(after, stores);
}

#[test]
fn a_format_newer_than_this_binary_reads_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    write_marker(dir.path(), 7, "9.4.0");
    let before = tree(dir.path());
    let error = check_with(dir.path(), 1..=2, 2, "1.0.0").unwrap_err();
    assert!(
        matches!(
            error,
            DataFormatError::TooNew {
                found: 7,
                oldest: 1,
                newest: 2,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    for part in [
        dir.path().join(MARKER_FILE).display().to_string(),
        "written by mxfleet 9.4.0 with storage format 7".into(),
        "this binary (mxfleet 1.0.0) reads formats 1..=2".into(),
        "run a newer binary, or restore from a snapshot".into(),
    ] {
        assert!(message.contains(&part), "{part:?} not in {message:?}");
    }
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn a_format_older_than_this_binary_reads_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    write_marker(dir.path(), 1, "0.1.0");
    let before = tree(dir.path());
    let error = check_with(dir.path(), 3..=4, 4, "2.0.0").unwrap_err();
    assert!(
        matches!(error, DataFormatError::TooOld { found: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("reads formats 3..=4"), "{error}");
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn a_legacy_directory_is_refused_by_a_binary_that_no_longer_reads_format_1() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let before = tree(dir.path());
    let error = check_with(dir.path(), 2..=2, 2, "2.0.0").unwrap_err();
    assert!(
        matches!(error, DataFormatError::TooOld { found: 1, .. }),
        "{error:?}"
    );
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn a_damaged_marker_is_refused_not_guessed() {
    for text in ["", "storage_format = two\n", "garbage\n"] {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        fs::write(dir.path().join(MARKER_FILE), text).unwrap();
        let before = tree(dir.path());
        let error = check_data_dir(dir.path()).unwrap_err();
        assert!(
            matches!(error, DataFormatError::Unreadable { .. }),
            "{text:?}: {error:?}"
        );
        assert_eq!(tree(dir.path()), before);
    }
}

#[test]
fn an_older_readable_format_is_raised_to_the_written_one() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    write_marker(dir.path(), 1, "0.1.0");
    assert_eq!(
        check_with(dir.path(), 1..=2, 2, "0.2.0").unwrap(),
        DirFormat::Opened { from: 1, to: 2 }
    );
    assert_eq!(
        marker(dir.path()),
        Marker {
            storage_format: 2,
            last_opened_by: "0.2.0".into(),
        }
    );
}

#[test]
fn a_newer_readable_format_is_kept_when_going_back_one_release() {
    // The release that prepares format 2 reads it but still writes 1.
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    write_marker(dir.path(), 2, "0.3.0");
    assert_eq!(
        check_with(dir.path(), 1..=2, 1, "0.2.0").unwrap(),
        DirFormat::Opened { from: 2, to: 2 }
    );
    assert_eq!(marker(dir.path()).storage_format, 2);
}

#[test]
fn unknown_keys_and_comments_are_ignored() {
    let parsed =
        Marker::parse("# hello\nstorage_format = 1\nlast_opened_by = \"0.9\"\nfuture = [1]\n")
            .unwrap();
    assert_eq!(
        parsed,
        Marker {
            storage_format: 1,
            last_opened_by: "0.9".into(),
        }
    );
    let rendered = Marker {
        storage_format: 4,
        last_opened_by: "1.2.3".into(),
    };
    assert_eq!(Marker::parse(&rendered.render()).unwrap(), rendered);
}
