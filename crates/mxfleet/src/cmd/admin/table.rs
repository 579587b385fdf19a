//! Aligned text tables for people: a header row in capitals, columns two spaces apart,
//! numbers right-aligned, no trailing spaces.
//!
//! [`Table`] collects rows of already formatted cells and renders them at once, because
//! every column is as wide as its widest cell. Cells are made terminal-safe (control
//! characters escaped) and may be capped to a width, so one long SMTP reply cannot push
//! every other column off the screen. [`key_values`] aligns one record's `key  value`
//! lines.

use super::format::{terminal_safe, truncate};

/// One column: its heading, which side it aligns to, and an optional width cap.
#[derive(Debug, Clone)]
struct Column {
    heading: &'static str,
    right: bool,
    max: Option<usize>,
}

/// A table being filled; [`Table::render`] lays it out.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headings, every column left-aligned and uncapped.
    pub fn new(headings: &[&'static str]) -> Self {
        Table {
            columns: headings
                .iter()
                .map(|&heading| Column {
                    heading,
                    right: false,
                    max: None,
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at these positions (counts, sizes).
    pub fn right(mut self, positions: &[usize]) -> Self {
        for &i in positions {
            self.columns[i].right = true;
        }
        self
    }

    /// Caps the column at `position` to `max` characters (cut cells end in `…`).
    pub fn cap(mut self, position: usize, max: usize) -> Self {
        self.columns[position].max = Some(max);
        self
    }

    /// Adds a row; missing cells are blank and extra cells are dropped.
    pub fn push(&mut self, cells: Vec<String>) {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.columns.len())
            .zip(&self.columns)
            .map(|(cell, column)| {
                let safe = terminal_safe(&cell);
                match column.max {
                    Some(max) => truncate(&safe, max),
                    None => safe,
                }
            })
            .collect();
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line and one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.heading.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let headings: Vec<String> = self.columns.iter().map(|c| c.heading.to_owned()).collect();
        let mut out = String::new();
        for row in std::iter::once(&headings).chain(&self.rows) {
            let mut line = String::new();
            for (i, ((cell, column), width)) in
                row.iter().zip(&self.columns).zip(&widths).enumerate()
            {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width - cell.chars().count();
                if column.right {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the values aligned, for one-record reports (`queue show`).
/// Values are made terminal-safe; keys are ours.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let line = format!("{key:<width$}  {}", terminal_safe(value));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_numbers_align_right() {
        let mut table = Table::new(&["ID", "STATE", "SIZE", "SENDER"]).right(&[0, 2]);
        table.push(vec![
            "7".into(),
            "deferred".into(),
            "1.5 KiB".into(),
            "a@example.org".into(),
        ]);
        table.push(vec![
            "1234".into(),
            "held".into(),
            "12 KiB".into(),
            "<>".into(),
        ]);
        assert_eq!(
            table.render(),
            "  ID  STATE        SIZE  SENDER\n\
             \x20  7  deferred  1.5 KiB  a@example.org\n\
             1234  held       12 KiB  <>\n"
        );
    }

    #[test]
    fn no_line_ends_in_spaces_and_short_rows_are_padded() {
        let mut table = Table::new(&["A", "B", "C"]);
        table.push(vec!["x".into()]);
        table.push(vec!["y".into(), "wide cell".into(), String::new()]);
        let text = table.render();
        assert!(text.lines().all(|line| !line.ends_with(' ')), "{text:?}");
        assert_eq!(text.lines().nth(1), Some("x"));
    }

    #[test]
    fn capped_cells_are_cut_and_control_characters_escaped() {
        let mut table = Table::new(&["REPLY", "N"]).cap(0, 10).right(&[1]);
        table.push(vec!["451 4.7.1 greylisted, try later".into(), "1".into()]);
        table.push(vec!["a\u{1b}b".into(), "22".into()]);
        assert_eq!(
            table.render(),
            "REPLY        N\n451 4.7.1…   1\na\\u{1b}b    22\n"
        );
    }

    #[test]
    fn key_values_align_their_values() {
        let text = key_values(&[
            ("id", "42".into()),
            ("state", "held".into()),
            ("lease", String::new()),
        ]);
        assert_eq!(text, "id     42\nstate  held\nlease\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut table = Table::new(&["RCPT", "X"]);
        table.push(vec!["jörg@exämple.org".into(), "1".into()]);
        table.push(vec!["a@b".into(), "2".into()]);
        let text = table.render();
        let columns: Vec<usize> = text.lines().map(|l| l.chars().count() - 1).collect();
        assert_eq!(columns, vec![18, 18, 18]);
    }
}
