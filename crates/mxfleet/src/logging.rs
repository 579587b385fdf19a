//! Log setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or
//! one JSON object per line.
//!
//! Which format: `--log-format` when given, else `[log] format` for `serve` (which
//! therefore installs its subscriber only once its configuration is loaded), else
//! text. `main` decides for every other subcommand.
//!
//! Which node: `serve` runs one node per process, so every line it writes carries that
//! node's name and site: `node=mx1 site=fra` at the end of a text line, `"node"` and
//! `"site"` keys in a JSON object. `dev` runs all its nodes in one process and stamps
//! `node=dev site=local`. The stamp is added by [`Stamped`], a `FormatEvent` around the
//! stock formatters, so it is on every line, whichever task or crate (openraft
//! included) logs it; a root span would not reach tasks spawned outside it.

use std::fmt::{self, Write as _};

use mxfleet_node::config::LogFormat;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Who writes the log lines of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogIdentity {
    pub node: String,
    pub site: String,
}

impl LogIdentity {
    /// `mxfleet dev`: several nodes in one process, so one name for all of them.
    pub fn dev() -> Self {
        LogIdentity {
            node: "dev".into(),
            site: "local".into(),
        }
    }
}

/// The `--log-format` flag's value.
pub fn parse_format(flag: &str) -> LogFormat {
    match flag {
        "json" => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Installs the global subscriber; lines carry `identity` when given.
pub fn init(format: LogFormat, identity: Option<LogIdentity>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,openraft=warn,sled=warn,chunked_wal=warn,raft_log=warn,h2=warn,tower=warn,hyper=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match (format, identity) {
        (LogFormat::Json, Some(identity)) => builder
            .event_format(Stamped::new(
                format::format().json(),
                identity,
                LogFormat::Json,
            ))
            .fmt_fields(format::JsonFields::new())
            .init(),
        (LogFormat::Json, None) => builder.json().init(),
        (LogFormat::Text, Some(identity)) => builder
            .event_format(Stamped::new(format::format(), identity, LogFormat::Text))
            .init(),
        (LogFormat::Text, None) => builder.init(),
    }
}

/// Wraps a stock event formatter and adds the node's name and site to each line: the
/// inner formatter writes the line into a buffer, and the stamp goes in before the
/// final newline (text) or as the first keys of the object (JSON). The buffer has no
/// terminal colours: a stamped text line is plain.
pub struct Stamped<F> {
    inner: F,
    /// ` node=… site=…` (text) or `"node":"…","site":"…",` (JSON), built once.
    stamp: String,
    format: LogFormat,
}

impl<F> Stamped<F> {
    pub fn new(inner: F, identity: LogIdentity, format: LogFormat) -> Self {
        let stamp = match format {
            LogFormat::Text => format!(
                " node={} site={}",
                text_value(&identity.node),
                text_value(&identity.site)
            ),
            LogFormat::Json => format!(
                "\"node\":{},\"site\":{},",
                json_string(&identity.node),
                json_string(&identity.site)
            ),
        };
        Stamped {
            inner,
            stamp,
            format,
        }
    }

    /// Adds the stamp to one formatted line.
    fn stamp(&self, line: &str) -> String {
        let mut out = String::with_capacity(line.len() + self.stamp.len());
        match self.format {
            LogFormat::Json => match line.strip_prefix('{') {
                Some(rest) => {
                    out.push('{');
                    out.push_str(&self.stamp);
                    out.push_str(rest);
                }
                None => out.push_str(line),
            },
            LogFormat::Text => {
                let body = line.strip_suffix('\n').unwrap_or(line);
                out.push_str(body);
                out.push_str(&self.stamp);
                out.push('\n');
            }
        }
        out
    }
}

impl<S, N, F> FormatEvent<S, N> for Stamped<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&self.stamp(&line))
    }
}

/// A text field value: bare when it is one plain word, else quoted like `Debug`.
fn text_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

/// A JSON string literal.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    fn identity() -> LogIdentity {
        LogIdentity {
            node: "mx1".into(),
            site: "fra 2".into(),
        }
    }

    /// Logs two events (one from inside a span) with a stamped subscriber.
    fn log_with(format: LogFormat) -> Vec<String> {
        let captured = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false);
        let dispatch = match format {
            LogFormat::Json => tracing::Dispatch::new(
                builder
                    .event_format(Stamped::new(format::format().json(), identity(), format))
                    .fmt_fields(format::JsonFields::new())
                    .finish(),
            ),
            LogFormat::Text => tracing::Dispatch::new(
                builder
                    .event_format(Stamped::new(format::format(), identity(), format))
                    .finish(),
            ),
        };
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(queue_id = "00000000000A", "smtp_message_accepted");
            let span = tracing::info_span!("session", client = "192.0.2.1");
            let _entered = span.enter();
            tracing::warn!(cause = "x", "delivery_attempt");
        });
        captured.lines()
    }

    #[test]
    fn text_lines_end_with_node_and_site() {
        let lines = log_with(LogFormat::Text);
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert!(
                line.ends_with(r#" node=mx1 site="fra 2""#),
                "no stamp at the end of {line:?}"
            );
        }
        assert!(lines[0].contains("smtp_message_accepted queue_id=\"00000000000A\""));
        assert!(lines[1].contains("session{client=\"192.0.2.1\"}"));
    }

    #[test]
    fn json_lines_carry_node_and_site_keys() {
        let lines = log_with(LogFormat::Json);
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert!(
                line.starts_with(r#"{"node":"mx1","site":"fra 2","#),
                "no stamp in {line:?}"
            );
            let object: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
            assert_eq!(object["node"], "mx1");
            assert_eq!(object["site"], "fra 2");
        }
        assert!(lines[0].contains(r#""message":"smtp_message_accepted""#));
        assert!(lines[1].contains(r#""client":"192.0.2.1""#));
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(text_value("mx-1.example"), "mx-1.example");
        assert_eq!(text_value("two words"), r#""two words""#);
        assert_eq!(text_value(""), r#""""#);
    }
}
