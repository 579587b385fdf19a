//! Configuration errors: every problem found in one file, each with its key path.
//!
//! Both loading stages push into one [`ErrorReport`], so an operator sees every problem
//! of a file in one run instead of fixing them one restart at a time. The report turns
//! into [`ConfigErrors`], which prints one greppable line per problem:
//!
//! ```text
//! /etc/mxfleet/node.toml: raft.election_timeout: must be at least 3 × heartbeat_interval ...
//! /etc/mxfleet/node.toml: cluster.initial_members[2].id: id 3 is already used by ...
//! ```

use std::fmt;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {}{message}", KeyLabel(key))]
pub struct ConfigError {
    /// Where the configuration came from: a file path, or a label such as `"<dev>"`.
    pub origin: String,
    /// Dotted key path, e.g. `cluster.initial_members[2].addr`. Empty when the problem
    /// concerns the whole file (it cannot be read, or it is not valid TOML).
    pub key: String,
    /// What is wrong, and when it helps, how to fix it.
    pub message: String,
}

/// Every problem found in one configuration file; never empty.
///
/// `Display` prints one line per problem as `<origin>: <key>: <message>`, section by
/// section in schema order, ready for stderr before exiting with
/// [`EXIT_CONFIG`](super::EXIT_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", OnePerLine(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The key paths of all problems, in report order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|error| error.key.as_str())
    }

    /// The problem reported for `key`, if any.
    pub fn find(&self, key: &str) -> Option<&ConfigError> {
        self.0.iter().find(|error| error.key == key)
    }
}

/// Prints `key: ` before the message, or nothing for whole-file problems.
struct KeyLabel<'a>(&'a str);

impl fmt::Display for KeyLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

struct OnePerLine<'a>(&'a [ConfigError]);

impl fmt::Display for OnePerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects the problems of one file while both stages run.
///
/// Created by `parse_with` for one origin and consumed by [`ErrorReport::finish`]; the
/// stages only ever append.
#[derive(Debug)]
pub(crate) struct ErrorReport {
    origin: String,
    errors: Vec<ConfigError>,
}

impl ErrorReport {
    pub(crate) fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.clone(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// `value` if nothing was reported, otherwise every reported problem.
    ///
    /// A stage that found problems returns `None`; reaching `finish` with `None` and no
    /// problem reported would be a bug, reported as such rather than as a panic.
    pub(crate) fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => {
                if self.errors.is_empty() {
                    self.push(
                        "",
                        "configuration rejected without a reason (this is a bug)",
                    );
                }
                Err(ConfigErrors(self.errors))
            }
        }
    }
}
