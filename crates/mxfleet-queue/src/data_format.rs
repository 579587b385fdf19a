//! The data directory's format marker: `<data_dir>/FORMAT`, checked before anything
//! opens sled, the Raft log, the vote file or the snapshots.
//!
//! Why a file of its own, at the root: the check must come before any store is opened,
//! because opening one can already change it (raft-log truncates a torn tail, sled
//! recovers and rewrites its segments, the log recovery moves directories aside). A key
//! inside sled would be read only after sled had opened the directory, and would say
//! nothing about the log beside it. The root also stays put when a damaged log is set
//! aside (`quarantine/`), and an operator can read it with `cat`.
//!
//! The file (written `tmp → fsync → rename → fsync dir`, and valid TOML):
//!
//! ```text
//! # mxfleet data directory. Written by mxfleet at every start; do not edit.
//! storage_format = 1
//! last_opened_by = "0.1.0"
//! ```
//!
//! `storage_format` covers everything under the directory: the layout (`raft-log/`,
//! `state/`, `snapshots/`, `bodies/`, `raft-vote`), sled's key families, and the
//! encodings inside them. The Raft log holds entries in the wire encoding, so a release
//! that starts *writing* a new [`WIRE_FORMAT`](crate::types::WIRE_FORMAT) bumps
//! [`STORAGE_FORMAT`] as well. Unknown keys are ignored, so that a later release can add
//! some.
//!
//! What opening does ([`check_data_dir`]; the one place that decides):
//! - no marker, nothing of mxfleet's in the directory: a new node; the marker is written.
//! - no marker, but stores present: made by a build from before markers existed, whose
//!   layout is format 1 ([`LEGACY_FORMAT`]); the marker is written and logged
//!   (`data_format_marker_added`).
//! - a format in [`OLDEST_READABLE`]`..=`[`NEWEST_READABLE`]: opened. The marker is
//!   raised to [`STORAGE_FORMAT`] when it was older (`data_format_upgraded`: from now
//!   on this binary writes its own format there, so older binaries must refuse it), and
//!   never lowered; `last_opened_by` is updated.
//! - anything else, or a marker that cannot be parsed: refused with a
//!   [`DataFormatError`] that names the file, the format found, who wrote it and the
//!   range this binary reads. Nothing in the directory is changed.
//!
//! Rolling upgrades follow the same two-step rule as the wire format (see `types`): a
//! release that reads a new storage format ships (and runs everywhere) before the
//! release that writes it, so that a node can always go back one release.

use std::fs;
use std::io;
use std::path::Path;

use tracing::{info, warn};

use crate::error::DataFormatError;
use crate::log_recovery::{LOG_DIR, QUARANTINE_DIR, VOTE_FILE};
use crate::snapshot_file::write_durably;
use crate::state_machine::{SLED_DIR, SNAPSHOT_DIR};

/// The marker's file name under the data directory.
pub(crate) const MARKER_FILE: &str = "FORMAT";
/// The storage format this binary writes.
pub(crate) const STORAGE_FORMAT: u32 = 1;
/// The oldest storage format this binary opens (migrating it if needed).
pub(crate) const OLDEST_READABLE: u32 = 1;
/// The newest storage format this binary opens. Above [`STORAGE_FORMAT`] only in the
/// release that prepares a format change (the two-step rule).
pub(crate) const NEWEST_READABLE: u32 = STORAGE_FORMAT;
/// The format of a data directory made before markers existed.
pub(crate) const LEGACY_FORMAT: u32 = 1;
/// The version of this binary, as the marker records it (every crate of the workspace
/// shares one version).
pub(crate) const BINARY_VERSION: &str = env!("CARGO_PKG_VERSION");

const _: () = assert!(OLDEST_READABLE <= STORAGE_FORMAT && STORAGE_FORMAT <= NEWEST_READABLE);
const _: () = assert!(OLDEST_READABLE <= LEGACY_FORMAT);

/// Entries a data directory of any mxfleet build holds once it has started.
const KNOWN_ENTRIES: [&str; 6] = [
    LOG_DIR,
    SLED_DIR,
    SNAPSHOT_DIR,
    VOTE_FILE,
    QUARANTINE_DIR,
    "bodies",
];

/// What the marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub storage_format: u32,
    pub last_opened_by: String,
}

impl Marker {
    fn render(&self) -> String {
        format!(
            "# mxfleet data directory. Written by mxfleet at every start; do not edit.\n\
             storage_format = {}\nlast_opened_by = \"{}\"\n",
            self.storage_format, self.last_opened_by
        )
    }

    /// Parses the marker's text: `key = value` lines, `#` comments, unknown keys
    /// ignored.
    fn parse(text: &str) -> Result<Marker, String> {
        let mut storage_format = None;
        let mut last_opened_by = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {}: expected `key = value`", number + 1));
            };
            let value = value.trim();
            match key.trim() {
                "storage_format" => {
                    let parsed = value.parse::<u32>().map_err(|_| {
                        format!(
                            "line {}: storage_format is not a number: {value}",
                            number + 1
                        )
                    })?;
                    storage_format = Some(parsed);
                }
                "last_opened_by" => {
                    last_opened_by = Some(value.trim_matches('"').to_string());
                }
                _ => {}
            }
        }
        Ok(Marker {
            storage_format: storage_format.ok_or("no storage_format line")?,
            last_opened_by: last_opened_by.unwrap_or_else(|| "an unknown version".into()),
        })
    }
}

/// What [`check_data_dir`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirFormat {
    /// A new directory: the marker was written.
    Created,
    /// A directory from before markers: taken as [`LEGACY_FORMAT`], marker written.
    MarkerAdded,
    /// A marker this binary reads; `from` is the format it had, now `to`.
    Opened { from: u32, to: u32 },
}

/// Checks (and records) the format of `data_dir` before any store opens it. Blocking.
/// On an error nothing under `data_dir` has changed.
pub(crate) fn check_data_dir(data_dir: &Path) -> Result<DirFormat, DataFormatError> {
    check_with(
        data_dir,
        OLDEST_READABLE..=NEWEST_READABLE,
        STORAGE_FORMAT,
        BINARY_VERSION,
    )
}

/// [`check_data_dir`] with the supported range, the written format and the version as
/// parameters, so that tests can play an older or newer binary.
pub(crate) fn check_with(
    data_dir: &Path,
    readable: std::ops::RangeInclusive<u32>,
    writes: u32,
    version: &str,
) -> Result<DirFormat, DataFormatError> {
    let path = data_dir.join(MARKER_FILE);
    let io_error = |source| DataFormatError::Io {
        path: path.clone(),
        source,
    };
    let found = match fs::read_to_string(&path) {
        Ok(text) => Some(
            Marker::parse(&text).map_err(|reason| DataFormatError::Unreadable {
                marker: path.clone(),
                reason,
            })?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(e)),
    };
    let (outcome, format) = match found {
        Some(marker) => {
            if !readable.contains(&marker.storage_format) {
                let refused = if marker.storage_format > *readable.end() {
                    DataFormatError::TooNew {
                        marker: path.clone(),
                        found: marker.storage_format,
                        written_by: marker.last_opened_by,
                        oldest: *readable.start(),
                        newest: *readable.end(),
                        this_version: version.to_string(),
                    }
                } else {
                    DataFormatError::TooOld {
                        marker: path.clone(),
                        found: marker.storage_format,
                        written_by: marker.last_opened_by,
                        oldest: *readable.start(),
                        newest: *readable.end(),
                        this_version: version.to_string(),
                    }
                };
                return Err(refused);
            }
            // Raised to what this binary writes, never lowered (a node that went back
            // one release keeps the newer format it cannot write but reads).
            let to = marker.storage_format.max(writes);
            if marker.storage_format == to && marker.last_opened_by == version {
                return Ok(DirFormat::Opened { from: to, to });
            }
            (
                DirFormat::Opened {
                    from: marker.storage_format,
                    to,
                },
                to,
            )
        }
        None if holds_stores(data_dir).map_err(io_error)? => {
            if !readable.contains(&LEGACY_FORMAT) {
                return Err(DataFormatError::TooOld {
                    marker: path.clone(),
                    found: LEGACY_FORMAT,
                    written_by: "a build from before format markers".into(),
                    oldest: *readable.start(),
                    newest: *readable.end(),
                    this_version: version.to_string(),
                });
            }
            (DirFormat::MarkerAdded, LEGACY_FORMAT.max(writes))
        }
        None => (DirFormat::Created, writes),
    };
    let marker = Marker {
        storage_format: format,
        last_opened_by: version.to_string(),
    };
    write_durably(data_dir, MARKER_FILE, marker.render().as_bytes()).map_err(io_error)?;
    match &outcome {
        DirFormat::Created => info!(
            path = %path.display(),
            storage_format = format,
            "data_format_initialized"
        ),
        DirFormat::MarkerAdded => warn!(
            path = %path.display(),
            storage_format = format,
            assumed_from = LEGACY_FORMAT,
            "data_format_marker_added"
        ),
        DirFormat::Opened { from, to } if from != to => warn!(
            path = %path.display(),
            from_format = from,
            to_format = to,
            "data_format_upgraded"
        ),
        DirFormat::Opened { .. } => {}
    }
    Ok(outcome)
}

/// Whether `data_dir` holds anything an mxfleet node keeps there.
fn holds_stores(data_dir: &Path) -> io::Result<bool> {
    for name in KNOWN_ENTRIES {
        match fs::symlink_metadata(data_dir.join(name)) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
