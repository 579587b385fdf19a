//! Who we accept mail for within one relay domain: [`RecipientRule`], and the recipient
//! list format that [`parse_recipient_list`] and [`load_recipient_file`] read.
//!
//! Format, one entry per line (a subset of a Postfix `relay_recipient_maps` source):
//!
//! ```text
//! # comment lines start with '#'; blank lines are ignored
//! alice@example.org
//! "john doe"@example.org   # a comment after the entry needs a space before '#'
//! @example.org             # catch-all: any local part
//! ```
//!
//! `#` inside an entry is part of it (`foo#bar@example.org` is a valid address). Postfix
//! map values (`alice@example.org OK`) are refused, not ignored, so that a line holding
//! two addresses can never silently drop the second one.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::address::{AddressError, parse_path};

/// Which local parts of one relay domain we accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientRule {
    /// Any local part (`@domain`). Cheaper to run, but every message to a user the
    /// primary does not have is accepted here and bounced later, and that bounce goes to
    /// a sender that spam forges: backscatter. Prefer `Listed` when the user list is
    /// available.
    CatchAll,
    /// These local parts, lower-cased, compared case-insensitively. Postfix lower-cases
    /// `relay_recipient_maps` lookup keys, so a primary fed from the same list accepts
    /// `Alice@` as `alice@`; a backup MX that compared exactly would `550` mail the
    /// primary takes, and the sender would never retry it.
    Listed(HashSet<String>),
}

impl RecipientRule {
    /// Whether this rule accepts the local part `local` (as in [`super::Mailbox`]).
    pub fn accepts(&self, local: &str) -> bool {
        match self {
            RecipientRule::CatchAll => true,
            RecipientRule::Listed(users) => users.contains(&local.to_lowercase()),
        }
    }

    /// The same rule with every listed local part lower-cased, for rules built by hand.
    pub(crate) fn normalized(self) -> Self {
        match self {
            RecipientRule::CatchAll => RecipientRule::CatchAll,
            RecipientRule::Listed(users) => {
                RecipientRule::Listed(users.into_iter().map(|u| u.to_lowercase()).collect())
            }
        }
    }

    /// Accepts everything either rule accepts.
    pub(crate) fn union(self, other: Self) -> Self {
        match (self, other) {
            (RecipientRule::Listed(mut a), RecipientRule::Listed(b)) => {
                a.extend(b);
                RecipientRule::Listed(a)
            }
            _ => RecipientRule::CatchAll,
        }
    }
}

/// Why a recipient list was refused. `path` is `None` for a list given inline; `line`
/// counts from 1.
#[derive(Debug, Error)]
pub enum RecipientListError {
    #[error("{}: cannot read recipient list: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {entry:?}: {source}", at(path, *line))]
    Entry {
        path: Option<PathBuf>,
        line: usize,
        entry: String,
        source: AddressError,
    },
    #[error("{}: {entry:?} is not in domain {domain}", at(path, *line))]
    WrongDomain {
        path: Option<PathBuf>,
        line: usize,
        entry: String,
        domain: String,
    },
    #[error("{}: unexpected {rest:?} after {entry:?}: one address per line", at(path, *line))]
    TrailingText {
        path: Option<PathBuf>,
        line: usize,
        entry: String,
        rest: String,
    },
    /// An empty list would answer `550` to every recipient of the domain, which is
    /// never what an operator means (a truncated file, more likely).
    #[error(
        "{}: no recipients listed for {domain}; add `@{domain}` to accept every recipient",
        origin(path)
    )]
    NoEntries {
        path: Option<PathBuf>,
        domain: String,
    },
}

impl RecipientListError {
    /// The file the error is in, if the list came from one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            RecipientListError::Read { path, .. } => Some(path),
            RecipientListError::Entry { path, .. }
            | RecipientListError::WrongDomain { path, .. }
            | RecipientListError::TrailingText { path, .. }
            | RecipientListError::NoEntries { path, .. } => path.as_deref(),
        }
    }

    /// The line the error is on.
    pub fn line(&self) -> Option<usize> {
        match self {
            RecipientListError::Entry { line, .. }
            | RecipientListError::WrongDomain { line, .. }
            | RecipientListError::TrailingText { line, .. } => Some(*line),
            RecipientListError::Read { .. } | RecipientListError::NoEntries { .. } => None,
        }
    }

    fn in_file(mut self, file: &Path) -> Self {
        match &mut self {
            RecipientListError::Entry { path, .. }
            | RecipientListError::WrongDomain { path, .. }
            | RecipientListError::TrailingText { path, .. }
            | RecipientListError::NoEntries { path, .. } => *path = Some(file.to_owned()),
            RecipientListError::Read { .. } => {}
        }
        self
    }
}

/// `file:line`, or `line N` for an inline list.
fn at(path: &Option<PathBuf>, line: usize) -> String {
    match path {
        Some(path) => format!("{}:{line}", path.display()),
        None => format!("line {line}"),
    }
}

fn origin(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "recipient list".to_owned(),
    }
}

/// Parses a recipient list for `domain` (see the module docs for the format). Entries
/// go through the same [`parse_path`] as RCPT TO, so an entry that could never match
/// (a relay trick, bad syntax) is an error here rather than a dead line. The first error
/// is returned. A `@domain` line anywhere makes the whole list a catch-all.
pub fn parse_recipient_list(text: &str, domain: &str) -> Result<RecipientRule, RecipientListError> {
    let domain = domain.to_lowercase();
    let mut users = HashSet::new();
    let mut catch_all = false;
    // Editors on Windows may start the file with a byte-order mark.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (entry, rest) = split_entry(line);
        let rest = rest.trim_start();
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err(RecipientListError::TrailingText {
                path: None,
                line: line_no,
                entry: entry.to_owned(),
                rest: rest.to_owned(),
            });
        }
        let wrong_domain = || RecipientListError::WrongDomain {
            path: None,
            line: line_no,
            entry: entry.to_owned(),
            domain: domain.clone(),
        };
        if let Some(catch_all_domain) = entry.strip_prefix('@') {
            if catch_all_domain.to_lowercase() != domain {
                return Err(wrong_domain());
            }
            catch_all = true;
            continue;
        }
        let mailbox = parse_path(entry).map_err(|source| RecipientListError::Entry {
            path: None,
            line: line_no,
            entry: entry.to_owned(),
            source,
        })?;
        if mailbox.domain != domain {
            return Err(wrong_domain());
        }
        users.insert(mailbox.local.to_lowercase());
    }
    if catch_all {
        Ok(RecipientRule::CatchAll)
    } else if users.is_empty() {
        Err(RecipientListError::NoEntries { path: None, domain })
    } else {
        Ok(RecipientRule::Listed(users))
    }
}

/// Reads and parses a recipient list file. Blocking: call it while loading config, or
/// from `spawn_blocking` on reload.
pub fn load_recipient_file(path: &Path, domain: &str) -> Result<RecipientRule, RecipientListError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecipientListError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_recipient_list(&text, domain).map_err(|e| e.in_file(path))
}

/// Splits a line at the first whitespace outside quotes: the entry, and what follows.
fn split_entry(line: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            return line.split_at(at);
        }
    }
    (line, "")
}

#[cfg(test)]
mod tests;
