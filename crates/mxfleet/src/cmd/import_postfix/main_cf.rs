//! Postfix `main.cf` as Postfix reads it: logical lines, `$name` expansion, and the
//! value syntaxes the importer needs (times with units, counts, lists).
//!
//! The syntax, after postconf(5):
//! - `name = value`; blank lines and lines whose first non-blank character is `#` are
//!   ignored, also inside a continued value. A `#` after a value is part of the value.
//! - A line that starts with white space continues the previous logical line.
//! - The last setting of a name wins.
//! - `$name`, `${name}` and `$(name)` expand to another parameter's value;
//!   `${name?value}` / `${name:value}` expand to `value` when `name` is non-empty /
//!   empty, and `${name?{a}:{b}}` chooses between the two. `$$` is a literal `$`.
//!
//! Only what `main.cf` itself sets can be expanded, plus the few built-ins the stock
//! file refers to (`config_directory`, and `stress`, which is empty on a server that is
//! not overloaded). Anything else is an [`ExpandError::Unset`]: the importer reports it
//! rather than guess Postfix's compiled-in default.
//!
//! Layout: [`MainCf`] (the parser and [`MainCf::expand`]), then the value parsers
//! [`parse_time`] ([`PostfixTime`]), [`parse_count`] and [`split_list`]; tests at the end.

use std::fmt;

/// One `name = value` setting, as written (continuations joined with one space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: String,
    /// 1-based line where the setting starts.
    pub line: usize,
}

/// A line that is neither a setting, a continuation, a comment nor blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub line: usize,
    pub text: String,
}

/// A parsed `main.cf`: the settings in file order, and the lines that made no sense.
#[derive(Debug, Clone, Default)]
pub struct MainCf {
    params: Vec<Param>,
    pub problems: Vec<SyntaxProblem>,
}

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(
        "refers to ${name}, which main.cf does not set (Postfix would use its built-in default)"
    )]
    Unset { name: String },
    #[error("refers to ${name} in a loop")]
    Loop { name: String },
    #[error("has an unterminated ${{...}} in {text:?}")]
    Unterminated { text: String },
    #[error(
        "has {text:?}, which is not ${{name}}, ${{name?value}}, ${{name:value}} or \
         ${{name?{{a}}:{{b}}}}"
    )]
    Malformed { text: String },
}

/// Built-ins the stock `main.cf` refers to, with their usual values.
const BUILT_INS: &[(&str, &str)] = &[("config_directory", "/etc/postfix"), ("stress", "")];

/// Expansion depth after which a reference is taken to be a loop.
const MAX_DEPTH: usize = 20;

impl MainCf {
    pub fn parse(text: &str) -> MainCf {
        let mut parsed = MainCf::default();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                match parsed.params.last_mut() {
                    Some(last) => {
                        if !last.value.is_empty() {
                            last.value.push(' ');
                        }
                        last.value.push_str(trimmed);
                    }
                    None => parsed.problems.push(SyntaxProblem {
                        line: number,
                        text: trimmed.to_owned(),
                    }),
                }
                continue;
            }
            match trimmed.split_once('=') {
                Some((name, value)) if is_param_name(name.trim()) => parsed.params.push(Param {
                    name: name.trim().to_owned(),
                    value: value.trim().to_owned(),
                    line: number,
                }),
                _ => parsed.problems.push(SyntaxProblem {
                    line: number,
                    text: trimmed.to_owned(),
                }),
            }
        }
        parsed
    }

    /// The last setting of `name`, unexpanded.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().rev().find(|param| param.name == name)
    }

    /// Every name set, once, in the order of its first setting.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for param in &self.params {
            if !names.contains(&param.name.as_str()) {
                names.push(&param.name);
            }
        }
        names
    }

    /// The expanded value of `name`, with the names it referred to; `None` when
    /// `main.cf` does not set it.
    pub fn expand(&self, name: &str) -> Option<Result<Expanded, ExpandError>> {
        let param = self.param(name)?;
        let mut expanded = Expanded::default();
        Some(
            self.expand_into(&param.value, 0, &mut expanded)
                .map(|()| expanded),
        )
    }

    /// `text` expanded as if it were a value in `main.cf` (for Postfix's defaults of
    /// parameters `main.cf` does not set).
    pub fn expand_text(&self, text: &str) -> Result<Expanded, ExpandError> {
        let mut expanded = Expanded::default();
        self.expand_into(text, 0, &mut expanded)?;
        Ok(expanded)
    }

    fn lookup(&self, name: &str, depth: usize, refs: &mut Vec<String>) -> LookupResult {
        if !refs.iter().any(|seen| seen == name) {
            refs.push(name.to_owned());
        }
        if depth >= MAX_DEPTH {
            return Err(ExpandError::Loop {
                name: name.to_owned(),
            });
        }
        match self.param(name) {
            Some(param) => {
                let mut inner = Expanded::default();
                self.expand_into(&param.value, depth + 1, &mut inner)?;
                for seen in inner.refs {
                    if !refs.contains(&seen) {
                        refs.push(seen);
                    }
                }
                Ok(Some(inner.value))
            }
            None => Ok(BUILT_INS
                .iter()
                .find(|(built_in, _)| *built_in == name)
                .map(|(_, value)| (*value).to_owned())),
        }
    }

    fn expand_into(&self, text: &str, depth: usize, out: &mut Expanded) -> Result<(), ExpandError> {
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.value.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let Some(next) = after.chars().next() else {
                out.value.push('$');
                return Ok(());
            };
            if next == '$' {
                out.value.push('$');
                rest = &after[1..];
            } else if next == '{' || next == '(' {
                let close = if next == '{' { '}' } else { ')' };
                let end = matching_close(after, next, close).ok_or_else(|| {
                    ExpandError::Unterminated {
                        text: text.to_owned(),
                    }
                })?;
                self.expand_braced(&after[1..end], depth, out)?;
                rest = &after[end + 1..];
            } else if is_name_char(next) {
                let end = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let name = &after[..end];
                let value = self.lookup(name, depth, &mut out.refs)?;
                out.value.push_str(&value.ok_or_else(|| ExpandError::Unset {
                    name: name.to_owned(),
                })?);
                rest = &after[end..];
            } else {
                out.value.push('$');
                rest = after;
            }
        }
        out.value.push_str(rest);
        Ok(())
    }

    /// The inside of `${...}`: `name`, `name?value`, `name:value` or `name?{a}:{b}`.
    fn expand_braced(
        &self,
        inner: &str,
        depth: usize,
        out: &mut Expanded,
    ) -> Result<(), ExpandError> {
        let end = inner
            .find(|c: char| !is_name_char(c))
            .unwrap_or(inner.len());
        let (name, operator) = inner.split_at(end);
        if operator.is_empty() {
            let value = self.lookup(name, depth, &mut out.refs)?;
            out.value.push_str(&value.ok_or_else(|| ExpandError::Unset {
                name: name.to_owned(),
            })?);
            return Ok(());
        }
        // In a condition an unset name counts as empty, as in Postfix.
        let is_set = self
            .lookup(name, depth, &mut out.refs)?
            .is_some_and(|value| !value.is_empty());
        // Split after the operator's first character, not its first byte: the
        // character after the name may be any UTF-8 character.
        let Some(first) = operator.chars().next() else {
            return Ok(());
        };
        let rest = &operator[first.len_utf8()..];
        let chosen = match (first, rest) {
            ('?', branches) if branches.starts_with('{') => {
                let (when_set, when_empty) = two_branches(branches);
                if is_set { when_set } else { when_empty }
            }
            ('?', value) if is_set => strip_braces(value),
            (':', value) if !is_set => strip_braces(value),
            ('?' | ':', _) => "",
            _ => {
                return Err(ExpandError::Malformed {
                    text: format!("${{{inner}}}"),
                });
            }
        };
        self.expand_into(chosen, depth + 1, out)
    }
}

type LookupResult = Result<Option<String>, ExpandError>;

/// An expanded value and every parameter name it referred to, directly or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    pub refs: Vec<String>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

/// The index in `text` (which starts with `open`) of the bracket closing it.
fn matching_close(text: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(at);
            }
        }
    }
    None
}

/// `{a}:{b}` into `a` and `b` (a missing `:{b}` is empty).
fn two_branches(text: &str) -> (&str, &str) {
    let Some(end) = matching_close(text, '{', '}') else {
        return (text, "");
    };
    let when_set = &text[1..end];
    let when_empty = text[end + 1..]
        .strip_prefix(':')
        .map(strip_braces)
        .unwrap_or("");
    (when_set, when_empty)
}

fn strip_braces(text: &str) -> &str {
    text.strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or(text)
}

/// A Postfix time value: a whole number and one unit letter, e.g. `28d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostfixTime {
    pub amount: u64,
    /// One of `s`, `m`, `h`, `d`, `w`.
    pub unit: char,
}

impl fmt::Display for PostfixTime {
    /// The same value as an mxfleet duration (`humantime` reads all five units).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit)
    }
}

/// Parses `28d`, `300s` or a bare `300`, which takes the parameter's `default_unit`.
pub fn parse_time(text: &str, default_unit: char) -> Result<PostfixTime, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => (&text[..at], unit),
        _ => (text, default_unit),
    };
    if !"smhdw".contains(unit) {
        return Err(format!(
            "{text:?} has the unit {unit:?}; Postfix times take s, m, h, d or w"
        ));
    }
    match digits.parse::<u64>() {
        Ok(amount) if !digits.starts_with('+') => Ok(PostfixTime { amount, unit }),
        _ => Err(format!(
            "{text:?} is not a Postfix time (a whole number with an optional unit s, m, h, d or w)"
        )),
    }
}

/// A non-negative whole number, such as `message_size_limit = 10240000`.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a whole number"));
    }
    text.parse::<u64>()
        .map_err(|_| format!("{text:?} is too large"))
}

/// A Postfix list: items separated by commas and/or white space.
pub fn split_list(text: &str) -> Vec<&str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(text: &str, name: &str) -> Result<String, ExpandError> {
        MainCf::parse(text)
            .expand(name)
            .expect("the parameter is set")
            .map(|expanded| expanded.value)
    }

    #[test]
    fn logical_lines_comments_and_last_setting_wins() {
        let cf = MainCf::parse(
            "# a comment\n\
             relay_domains = example.org,\n  example.net\n  # a comment inside\n\texample.com\n\
             \n\
             myhostname=mx2.example.net\n\
             myhostname = mx3.example.net   \n\
             smtpd_banner = $myhostname ESMTP # not a comment\n\
             this line is nonsense\n",
        );
        assert_eq!(
            cf.param("relay_domains").map(|p| p.value.as_str()),
            Some("example.org, example.net example.com")
        );
        assert_eq!(cf.param("relay_domains").map(|p| p.line), Some(2));
        assert_eq!(
            cf.param("myhostname").map(|p| p.value.as_str()),
            Some("mx3.example.net")
        );
        assert_eq!(
            cf.param("smtpd_banner").map(|p| p.value.as_str()),
            Some("$myhostname ESMTP # not a comment")
        );
        assert_eq!(cf.names(), ["relay_domains", "myhostname", "smtpd_banner"]);
        assert_eq!(
            cf.problems,
            [SyntaxProblem {
                line: 10,
                text: "this line is nonsense".to_owned()
            }]
        );
    }

    #[test]
    fn a_continuation_before_any_setting_is_a_problem() {
        let cf = MainCf::parse("  stray\nname = v\n");
        assert_eq!(cf.problems.len(), 1);
        assert_eq!(cf.problems[0].line, 1);
    }

    #[test]
    fn expansion_forms() {
        let cf = "mydomain = example.net\n\
                  myhostname = mx2.$mydomain\n\
                  mydestination = $myhostname, localhost.${mydomain}, localhost\n\
                  relay_domains = $(mydestination) example.org\n\
                  empty =\n\
                  set_if = ${mydomain?{yes}:{no}}\n\
                  unset_if = ${empty?{yes}:{no}}\n\
                  short_if = ${mydomain?on}${empty:off}${nowhere?never}\n\
                  stress_timeout = ${stress?{10}:{300}}s\n\
                  dollar = a$$b\n\
                  in_config = ${config_directory}/transport\n";
        let table = [
            ("myhostname", "mx2.example.net"),
            (
                "relay_domains",
                "mx2.example.net, localhost.example.net, localhost example.org",
            ),
            ("set_if", "yes"),
            ("unset_if", "no"),
            ("short_if", "onoff"),
            ("stress_timeout", "300s"),
            ("dollar", "a$b"),
            ("in_config", "/etc/postfix/transport"),
        ];
        for (name, want) in table {
            assert_eq!(expanded(cf, name).as_deref(), Ok(want), "{name}");
        }
        let refs = MainCf::parse(cf)
            .expand("relay_domains")
            .unwrap()
            .unwrap()
            .refs;
        assert_eq!(refs, ["mydestination", "myhostname", "mydomain"]);
    }

    #[test]
    fn expansion_errors() {
        assert_eq!(
            expanded("a = $nowhere\n", "a"),
            Err(ExpandError::Unset {
                name: "nowhere".to_owned()
            })
        );
        assert!(matches!(
            expanded("a = $b\nb = $a\n", "a"),
            Err(ExpandError::Loop { .. })
        ));
        assert!(matches!(
            expanded("a = ${b\n", "a"),
            Err(ExpandError::Unterminated { .. })
        ));
        assert!(MainCf::parse("a = 1\n").expand("b").is_none());
    }

    #[test]
    fn non_ascii_after_a_name_is_an_error_not_a_panic() {
        let table = [
            "a = ${nameé}\n",
            "a = ${b€x}\nb = 1\n",
            "a = ${b🙂}\n",
            "a = $(nameé)\n",
            "a = ${b?é}${bé:x}\nb = 1\n",
            "a = ${é}\n",
        ];
        for text in table {
            let got = MainCf::parse(text).expand("a").expect("a is set");
            assert!(
                matches!(got, Err(ExpandError::Malformed { .. })),
                "{text:?}: {got:?}"
            );
        }
        // Non-ASCII where Postfix allows any text is kept.
        assert_eq!(
            expanded("b = x\na = é$b€ ${b?ü}\n", "a").as_deref(),
            Ok("éx€ ü")
        );
    }

    #[test]
    fn times_take_the_parameters_default_unit() {
        let table = [
            ("28d", 's', Ok((28, 'd'))),
            ("5", 'd', Ok((5, 'd'))),
            ("300", 's', Ok((300, 's'))),
            ("4h", 's', Ok((4, 'h'))),
            ("2w", 'd', Ok((2, 'w'))),
            ("90m", 's', Ok((90, 'm'))),
            (" 7 ", 'h', Ok((7, 'h'))),
            ("", 's', Err(())),
            ("d", 's', Err(())),
            ("1.5h", 's', Err(())),
            ("5y", 's', Err(())),
            ("-5", 's', Err(())),
            ("+5", 's', Err(())),
        ];
        for (text, unit, want) in table {
            let got = parse_time(text, unit)
                .map(|time| (time.amount, time.unit))
                .map_err(|_| ());
            assert_eq!(got, want, "{text:?} with default unit {unit}");
        }
        assert_eq!(parse_time("3", 'd').unwrap().to_string(), "3d");
    }

    #[test]
    fn counts_and_lists() {
        assert_eq!(parse_count("10240000"), Ok(10_240_000));
        assert!(parse_count("10M").is_err());
        assert!(parse_count("").is_err());
        assert_eq!(
            split_list(" a.example, b.example\tc.example,,d "),
            ["a.example", "b.example", "c.example", "d"]
        );
    }
}
