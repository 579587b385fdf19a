//! The message filters `queue list` and the bulk actions share (`--domain`, `--state`,
//! `--sender`, `--recipient`, `--older-than`, `--newer-than`), and how they become the
//! API's `Selector`.
//!
//! Sans-IO: [`SelectorArgs::to_selector`] and [`SelectorArgs::describe`] only read the
//! flags, so they are tested without a server.

use std::time::Duration;

use clap::{Args, ValueEnum};
use mxfleet_proto::admin::v1::{MessageState, Selector};

use super::error::CliError;

/// A message state as `--state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Queued,
    Deferred,
    Held,
    InFlight,
    Delivered,
    Bounced,
    Deleted,
}

impl StateArg {
    fn to_proto(self) -> MessageState {
        match self {
            StateArg::Queued => MessageState::Queued,
            StateArg::Deferred => MessageState::Deferred,
            StateArg::Held => MessageState::Held,
            StateArg::InFlight => MessageState::InFlight,
            StateArg::Delivered => MessageState::Delivered,
            StateArg::Bounced => MessageState::Bounced,
            StateArg::Deleted => MessageState::Deleted,
        }
    }
}

/// Filters on the queue; all given filters must match. None given: the server's default,
/// every live message (queued, deferred, held, in flight).
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorArgs {
    /// Recipient domain, e.g. example.org.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Message state; repeat it or separate with commas (default: the live states).
    #[arg(
        long = "state",
        value_enum,
        value_delimiter = ',',
        value_name = "STATE"
    )]
    pub states: Vec<StateArg>,
    /// Envelope sender: an exact address (case-insensitive) or @domain.
    #[arg(long, value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// Envelope recipient: an exact address (case-insensitive) or @domain.
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
    /// Only messages received at least this long ago, e.g. 1h.
    #[arg(long, value_parser = parse_age, value_name = "DURATION")]
    pub older_than: Option<Duration>,
    /// Only messages received at most this long ago, e.g. 10m.
    #[arg(long, value_parser = parse_age, value_name = "DURATION")]
    pub newer_than: Option<Duration>,
}

/// The flag ids of [`SelectorArgs`], for `conflicts_with_all` on queue ids.
pub const SELECTOR_FLAGS: [&str; 6] = [
    "domain",
    "states",
    "sender",
    "recipient",
    "older_than",
    "newer_than",
];

fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e}; write it like 10m, 1h or 2days"))
}

impl SelectorArgs {
    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        *self == SelectorArgs::default()
    }

    /// The API selector for these filters and these queue ids.
    pub fn to_selector(&self, ids: Vec<String>) -> Result<Selector, CliError> {
        let min_age_seconds = self.older_than.map(|d| d.as_secs());
        // Rounded up, so `--newer-than 500ms` still means "the last second", not nothing.
        let max_age_seconds = self
            .newer_than
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        if let (Some(min), Some(max)) = (min_age_seconds, max_age_seconds)
            && min > max
        {
            return Err(CliError::Usage(format!(
                "--older-than {} and --newer-than {} match nothing: a message older than \
                 the first is never newer than the second",
                humantime::format_duration(Duration::from_secs(min)),
                humantime::format_duration(Duration::from_secs(max)),
            )));
        }
        Ok(Selector {
            ids,
            domain: nonempty("--domain", &self.domain)?,
            states: self.states.iter().map(|s| s.to_proto() as i32).collect(),
            sender: nonempty("--sender", &self.sender)?,
            recipient: nonempty("--recipient", &self.recipient)?,
            min_age_seconds,
            max_age_seconds,
        })
    }

    /// The filters as the operator gave them, for the confirmation prompt:
    /// `domain=example.org state=deferred,held older-than=1h`, or `all live messages`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(domain) = &self.domain {
            parts.push(format!("domain={domain}"));
        }
        if !self.states.is_empty() {
            let names: Vec<String> = self
                .states
                .iter()
                .filter_map(|s| s.to_possible_value())
                .map(|v| v.get_name().to_owned())
                .collect();
            parts.push(format!("state={}", names.join(",")));
        }
        if let Some(sender) = &self.sender {
            parts.push(format!("sender={sender}"));
        }
        if let Some(recipient) = &self.recipient {
            parts.push(format!("recipient={recipient}"));
        }
        if let Some(age) = self.older_than {
            parts.push(format!("older-than={}", humantime::format_duration(age)));
        }
        if let Some(age) = self.newer_than {
            parts.push(format!("newer-than={}", humantime::format_duration(age)));
        }
        if parts.is_empty() {
            "all live messages".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// A text filter: absent is empty (match all), but an explicit empty value is a mistake.
fn nonempty(flag: &str, value: &Option<String>) -> Result<String, CliError> {
    match value.as_deref().map(str::trim) {
        None => Ok(String::new()),
        Some("") => Err(CliError::Usage(format!("{flag} needs a value"))),
        Some(text) => Ok(text.to_owned()),
    }
}

/// A queue id as `queue list` prints it (e.g. `00000000000B`). Only its shape is
/// checked here, so a typo fails before connecting; the node judges the rest.
pub fn parse_queue_id(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(text.to_owned())
    } else {
        Err(
            "a queue id is what `mxfleet queue list` prints in its ID column, e.g. \
             00000000000B"
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        selector: SelectorArgs,
    }

    fn parse(args: &[&str]) -> SelectorArgs {
        Flags::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap()
            .selector
    }

    #[test]
    fn age_flags_become_age_bounds_in_seconds() {
        let selector = parse(&["--older-than", "1h", "--newer-than", "1day"])
            .to_selector(vec![])
            .unwrap();
        assert_eq!(selector.min_age_seconds, Some(3600));
        assert_eq!(selector.max_age_seconds, Some(86_400));
        let selector = parse(&["--newer-than", "10m"]).to_selector(vec![]).unwrap();
        assert_eq!(
            (selector.min_age_seconds, selector.max_age_seconds),
            (None, Some(600))
        );
        let selector = parse(&["--newer-than", "500ms"])
            .to_selector(vec![])
            .unwrap();
        assert_eq!(selector.max_age_seconds, Some(1));
    }

    #[test]
    fn states_repeat_or_take_commas_and_text_filters_pass_through() {
        let flags = parse(&[
            "--state",
            "held",
            "--state",
            "deferred,in-flight",
            "--domain",
            "example.org",
            "--sender",
            "@spam.example",
            "--recipient",
            "Bob@example.org",
        ]);
        let selector = flags.to_selector(vec!["17".into()]).unwrap();
        assert_eq!(
            selector.states,
            vec![
                MessageState::Held as i32,
                MessageState::Deferred as i32,
                MessageState::InFlight as i32
            ]
        );
        assert_eq!(selector.ids, vec!["17".to_owned()]);
        assert_eq!(selector.domain, "example.org");
        assert_eq!(selector.sender, "@spam.example");
        assert_eq!(selector.recipient, "Bob@example.org");
        assert_eq!(
            flags.describe(),
            "domain=example.org state=held,deferred,in-flight sender=@spam.example \
             recipient=Bob@example.org"
        );
    }

    #[test]
    fn no_flags_select_the_servers_default() {
        let flags = parse(&[]);
        assert!(flags.is_empty());
        assert_eq!(flags.to_selector(vec![]).unwrap(), Selector::default());
        assert_eq!(flags.describe(), "all live messages");
    }

    #[test]
    fn contradictions_and_bad_values_are_usage_errors() {
        let error = parse(&["--older-than", "2h", "--newer-than", "1h"])
            .to_selector(vec![])
            .unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("match nothing"), "{error}");
        assert_eq!(
            parse(&["--domain", " "])
                .to_selector(vec![])
                .unwrap_err()
                .exit_code(),
            2
        );
        for bad in [&["--older-than", "soon"][..], &["--state", "frozen"][..]] {
            let flags = Flags::try_parse_from(std::iter::once("test").chain(bad.iter().copied()));
            assert!(flags.is_err(), "{bad:?}");
        }
        assert!(parse_queue_id("1234").is_ok());
        assert!(parse_queue_id("00000000000B").is_ok());
        assert!(parse_queue_id("12 a").is_err());
        assert!(parse_queue_id("12;").is_err());
        assert!(parse_queue_id("").is_err());
    }
}
