//! The node config the importer writes, as commented TOML, and the check that makes it
//! valid as written.
//!
//! A [`Document`] is a list of [`Table`]s of [`Entry`]s, each entry remembering the
//! Postfix parameter it came from. [`Document::render`] writes it (strings escaped as
//! TOML basic strings, comments above their key) and returns each entry's key path as
//! the config loader names it (`relay_domains[1].next_hop`).
//!
//! [`Document::into_valid_toml`] runs the real loader on the text (without touching the
//! filesystem) and, for every problem it reports, drops the entry (or the whole
//! `[[relay_domains]]` table) the problem is about, recording why in the not-carried
//! list, until the loader accepts the file. A problem that points at no imported entry
//! is a bug in the importer and is returned as it is.
//!
//! Layout: [`Value`], [`Entry`], [`Table`], [`Document`], [`NotCarried`]; TOML string
//! escaping at the end.

use std::fmt::Write as _;

use mxfleet_node::config::{ConfigErrors, FileChecks, parse_with};

/// Something Postfix was configured to do that the output does not do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCarried {
    /// The `main.cf` parameter (or map) it comes from.
    pub parameter: String,
    pub reason: String,
}

impl NotCarried {
    pub fn new(parameter: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            parameter: parameter.into(),
            reason: reason.into(),
        }
    }
}

/// A TOML value of the shapes a node config uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
    StrList(Vec<String>),
    /// An array of inline tables, one per line (`initial_members`, `tls_certificates`).
    Inline(Vec<Vec<(&'static str, Value)>>),
}

/// One `key = value` line, with the comment lines above it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: &'static str,
    pub value: Value,
    pub comments: Vec<String>,
    /// The Postfix parameter it came from; `None` for the importer's own defaults.
    pub source: Option<String>,
    /// The table means nothing without it (a relay domain's `domain`): if the loader
    /// refuses it, the whole table is dropped.
    pub essential: bool,
}

impl Entry {
    pub fn new(key: &'static str, value: Value) -> Self {
        Self {
            key,
            value,
            comments: Vec::new(),
            source: None,
            essential: false,
        }
    }

    pub fn from_param(key: &'static str, value: Value, parameter: &str) -> Self {
        Self {
            source: Some(parameter.to_owned()),
            ..Self::new(key, value)
        }
    }

    pub fn essential(mut self) -> Self {
        self.essential = true;
        self
    }

    pub fn comment(mut self, line: impl Into<String>) -> Self {
        self.comments.push(line.into());
        self
    }
}

/// `[name]`, or one `[[name]]` element when `array` is set.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: &'static str,
    pub array: bool,
    pub comments: Vec<String>,
    pub entries: Vec<Entry>,
    /// What a problem with the whole table (a `[[relay_domains]]` element) is reported
    /// under.
    pub source: Option<String>,
}

impl Table {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            array: false,
            comments: Vec::new(),
            entries: Vec::new(),
            source: None,
        }
    }

    pub fn array_element(name: &'static str, source: &str) -> Self {
        Self {
            array: true,
            source: Some(source.to_owned()),
            ..Self::new(name)
        }
    }

    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }
}

/// The whole output file.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// Comment lines at the top, without the `# `.
    pub header: Vec<String>,
    pub tables: Vec<Table>,
}

/// Where an entry or table sits in [`Document::tables`], by rendered key path.
struct Located {
    path: String,
    table: usize,
    entry: Option<usize>,
}

/// How many times a problem may be dropped before giving up: every round removes at
/// least one entry, so this only bounds a file with very many bad values.
const MAX_ROUNDS: usize = 256;

impl Document {
    /// The TOML text, and the key path of every table element and entry.
    fn render_located(&self) -> (String, Vec<Located>) {
        let mut out = String::new();
        let mut located = Vec::new();
        for line in &self.header {
            push_comment(&mut out, line);
        }
        let mut array_index: Vec<(&str, usize)> = Vec::new();
        for (table_index, table) in self.tables.iter().enumerate() {
            if table.entries.is_empty() && !table.array {
                continue;
            }
            out.push('\n');
            for line in &table.comments {
                push_comment(&mut out, line);
            }
            let prefix = if table.array {
                let next = match array_index.iter_mut().find(|(name, _)| *name == table.name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        array_index.push((table.name, 0));
                        0
                    }
                };
                let _ = writeln!(out, "[[{}]]", table.name);
                format!("{}[{next}]", table.name)
            } else {
                let _ = writeln!(out, "[{}]", table.name);
                table.name.to_owned()
            };
            located.push(Located {
                path: prefix.clone(),
                table: table_index,
                entry: None,
            });
            for (entry_index, entry) in table.entries.iter().enumerate() {
                for line in &entry.comments {
                    push_comment(&mut out, line);
                }
                let _ = writeln!(out, "{} = {}", entry.key, render_value(&entry.value));
                located.push(Located {
                    path: format!("{prefix}.{}", entry.key),
                    table: table_index,
                    entry: Some(entry_index),
                });
            }
        }
        (out, located)
    }

    pub fn render(&self) -> String {
        self.render_located().0
    }

    /// Drops whatever the config loader refuses (recording each in `not_carried`) and
    /// returns the text it accepts; the loader's errors if a problem points at nothing
    /// the importer wrote.
    pub fn into_valid_toml(
        mut self,
        not_carried: &mut Vec<NotCarried>,
    ) -> Result<(Document, String), ConfigErrors> {
        for _ in 0..MAX_ROUNDS {
            let (text, located) = self.render_located();
            let errors = match parse_with(&text, "<imported>", FileChecks::Skip) {
                Ok(_) => return Ok((self, text)),
                Err(errors) => errors,
            };
            let mut drops: Vec<(usize, Option<usize>)> = Vec::new();
            for error in &errors.0 {
                let Some((table, entry)) = self.culprit(&located, &error.key, &error.message)
                else {
                    return Err(errors);
                };
                let source = match entry {
                    Some(entry) => self.tables[table].entries[entry].source.clone(),
                    None => self.tables[table].source.clone(),
                };
                let Some(source) = source else {
                    return Err(errors);
                };
                let key = if error.key.is_empty() {
                    "the file"
                } else {
                    &error.key
                };
                not_carried.push(NotCarried::new(
                    source,
                    format!("mxfleet refuses it ({key}: {})", error.message),
                ));
                let entry = entry.filter(|&entry| !self.tables[table].entries[entry].essential);
                drops.push((table, entry));
            }
            drops.sort_unstable();
            drops.dedup();
            for (table, entry) in drops.into_iter().rev() {
                match entry {
                    Some(entry) => {
                        self.tables[table].entries.remove(entry);
                    }
                    None => {
                        self.tables.remove(table);
                    }
                }
            }
        }
        match parse_with(&self.render(), "<imported>", FileChecks::Skip) {
            Ok(_) => {
                let text = self.render();
                Ok((self, text))
            }
            Err(errors) => Err(errors),
        }
    }
}

impl Document {
    /// The entry (or array table) a loader problem at `key` is about: the deepest one
    /// the key path lies in. A problem with a key that is no longer written (a rule
    /// broken by a default, e.g. `maximal_backoff_time` below the written
    /// `minimal_backoff_time`) is put on the written entry of that table that
    /// `message` names.
    fn culprit(
        &self,
        located: &[Located],
        key: &str,
        message: &str,
    ) -> Option<(usize, Option<usize>)> {
        let target = located
            .iter()
            .filter(|at| is_within(key, &at.path))
            .max_by_key(|at| at.path.len())?;
        let table = &self.tables[target.table];
        if target.entry.is_some() || table.array {
            return Some((target.table, target.entry));
        }
        let named = table
            .entries
            .iter()
            .position(|entry| names_key(message, entry.key) && entry.source.is_some())?;
        Some((target.table, Some(named)))
    }
}

/// Whether `message` mentions `key` as a whole word.
fn names_key(message: &str, key: &str) -> bool {
    message.match_indices(key).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + key.len()..].chars().next();
        let is_name = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !is_name(before) && !is_name(after)
    })
}

/// Whether the loader's `key` is `path` or lies inside it.
fn is_within(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Comment lines are wrapped at this width; a continuation keeps the line's indent
/// plus two spaces.
const COMMENT_WIDTH: usize = 88;

fn push_comment(out: &mut String, line: &str) {
    if line.is_empty() {
        out.push_str("#\n");
        return;
    }
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut current = format!("# {indent}");
    let mut has_word = false;
    for word in line.split_whitespace() {
        if has_word && current.len() + 1 + word.len() > COMMENT_WIDTH {
            let _ = writeln!(out, "{current}");
            current = format!("# {indent}  ");
            has_word = false;
        }
        if has_word {
            current.push(' ');
        }
        current.push_str(word);
        has_word = true;
    }
    let _ = writeln!(out, "{current}");
}

fn render_value(value: &Value) -> String {
    match value {
        Value::Str(text) => quoted(text),
        Value::Int(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::StrList(items) => {
            let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
            // Long lists get one item per line, so that a diff shows each change.
            if items.iter().map(String::len).sum::<usize>() > 70 {
                let mut out = String::from("[\n");
                for item in items {
                    let _ = writeln!(out, "  {item},");
                }
                out.push(']');
                out
            } else {
                format!("[{}]", items.join(", "))
            }
        }
        Value::Inline(tables) => {
            let mut out = String::from("[\n");
            for table in tables {
                let fields: Vec<String> = table
                    .iter()
                    .map(|(key, value)| format!("{key} = {}", render_value(value)))
                    .collect();
                let _ = writeln!(out, "  {{ {} }},", fields.join(", "));
            }
            out.push(']');
            out
        }
    }
}

/// `text` as a TOML string value (the `toml` crate's own quoting and escaping).
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_toml() {
        for text in [
            r#"a"b\c"#,
            "x\u{1}y",
            "tab\there",
            "it's",
            "line\nbreak",
            "",
        ] {
            let document = format!("value = {}", quoted(text));
            let parsed: toml::Table = toml::from_str(&document)
                .unwrap_or_else(|e| panic!("{document:?} is not TOML: {e}"));
            assert_eq!(parsed["value"].as_str(), Some(text), "{document:?}");
        }
    }

    #[test]
    fn long_comments_are_wrapped_with_their_indent() {
        let mut out = String::new();
        let long = format!("  entry: {}", "word ".repeat(30));
        push_comment(&mut out, &long);
        push_comment(&mut out, "");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 2, "{out}");
        assert!(
            lines.iter().all(|line| line.len() <= COMMENT_WIDTH),
            "{out}"
        );
        assert!(lines[0].starts_with("#   entry: word"));
        assert!(lines[1].starts_with("#     word"));
        assert_eq!(lines.last(), Some(&"#"));
    }

    #[test]
    fn a_message_names_a_key_as_a_whole_word() {
        let message = "must be at least minimal_backoff_time, now 2h; got 10m";
        assert!(names_key(message, "minimal_backoff_time"));
        assert!(!names_key(message, "backoff_time"));
        assert!(!names_key(message, "maximal_backoff_time"));
    }

    #[test]
    fn key_paths_name_array_elements() {
        assert!(is_within("relay_domains[1].next_hop", "relay_domains[1]"));
        assert!(is_within(
            "relay_domains[1].recipients[3]",
            "relay_domains[1].recipients"
        ));
        assert!(!is_within("relay_domains[10].domain", "relay_domains[1]"));
        assert!(!is_within("smtp.timeouts", "smtp.timeout"));
    }
}
