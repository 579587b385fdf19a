//! `mxfleet queue hold|release|delete|requeue|bounce`: one action on messages named by
//! id, or on every message some filters match (a bulk action).
//!
//! A bulk action goes in three steps: `Act` with `dry_run` counts the matches; the
//! operator confirms `Delete 1234 messages matching …? [y/N]` on the terminal (or gave
//! `--yes`; off a terminal without `--yes` the command refuses with exit 2); then `Act`
//! with `confirmed` streams progress (`deleted 500/1234` on stderr) and a final count.
//! The confirmed stream has no overall timeout: only its opening is bounded.
//!
//! With ids the action runs at once (no count, no question), and the command exits 1 if
//! any id was not acted on (skipped, or matched no live message).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use mxfleet_proto::admin::v1::{ActProgress, ActRequest};
use tonic::Request;

use super::{ACT, Verb};
use crate::cmd::EXIT_FAILED;
use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::format::{messages, terminal_safe};
use crate::cmd::admin::json::ActJson;
use crate::cmd::admin::selector::{SELECTOR_FLAGS, SelectorArgs, parse_queue_id};
use crate::cmd::admin::{print_json, print_text};

#[derive(Args, Debug)]
pub struct ActArgs {
    /// Queue ids, as `queue list` prints them; or give filters instead (a bulk action).
    #[arg(value_parser = parse_queue_id, value_name = "ID", conflicts_with_all = SELECTOR_FLAGS, conflicts_with = "all")]
    ids: Vec<String>,
    #[command(flatten)]
    selector: SelectorArgs,
    /// Act on every live message (a bulk action without filters).
    #[arg(long, conflicts_with_all = SELECTOR_FLAGS)]
    all: bool,
    /// Do not ask before a bulk action (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Only count the messages the action would apply to; change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl ActArgs {
    /// Refuses a bulk action with no filter unless `--all` says so: one slip of the
    /// keyboard must not delete the whole queue.
    pub fn check(&self) -> Result<(), CliError> {
        if self.ids.is_empty() && self.selector.is_empty() && !self.all {
            return Err(CliError::Usage(
                "give queue ids, or filters (--domain, --state, --sender, --recipient, \
                 --older-than, --newer-than), or --all for every live message"
                    .to_owned(),
            ));
        }
        self.selector.to_selector(Vec::new()).map(drop)
    }
}

pub async fn run(admin: &Admin, verb: Verb, args: ActArgs, json: bool) -> Result<u8, CliError> {
    args.check()?;
    if !args.ids.is_empty() {
        return by_ids(admin, verb, args, json).await;
    }
    let selector = args.selector.to_selector(Vec::new())?;
    let count = ActRequest {
        action: verb.action as i32,
        selector: Some(selector.clone()),
        dry_run: true,
        confirmed: false,
    };
    let counted = act_stream(admin, count, true, |_| {}).await?;
    let matching = format!("matching {}", args.selector.describe());
    if args.dry_run || counted.matched == 0 {
        if json {
            print_json(&result_json(verb, args.dry_run, &counted))?;
        } else {
            let n = messages(counted.matched);
            print_text(&format!("{n} {matching}; nothing was {}\n", verb.past))?;
        }
        return Ok(0);
    }
    let what = format!("{} {} {matching}", verb.name, messages(counted.matched));
    confirm_on_terminal(what, args.yes).await?;
    let act = ActRequest {
        action: verb.action as i32,
        selector: Some(selector),
        dry_run: false,
        confirmed: true,
    };
    let mut progress = ProgressLine::new(verb, std::io::stderr().is_terminal());
    let done = act_stream(admin, act, false, |p| progress.show(p)).await;
    progress.end();
    report(verb, &done?, json)?;
    Ok(0)
}

async fn by_ids(admin: &Admin, verb: Verb, args: ActArgs, json: bool) -> Result<u8, CliError> {
    let mut ids = args.ids;
    ids.sort_unstable();
    ids.dedup();
    let wanted = ids.len() as u64;
    let request = ActRequest {
        action: verb.action as i32,
        selector: Some(args.selector.to_selector(ids)?),
        dry_run: args.dry_run,
        confirmed: false,
    };
    let result = act_stream(admin, request, true, |_| {}).await?;
    if args.dry_run {
        if json {
            print_json(&result_json(verb, true, &result))?;
        } else {
            print_text(&format!(
                "{} of {} can be {}; nothing was changed\n",
                result.matched,
                messages(wanted),
                verb.past
            ))?;
        }
        return Ok(if result.matched < wanted {
            EXIT_FAILED
        } else {
            0
        });
    }
    report(verb, &result, json)?;
    Ok(if result.done < wanted { EXIT_FAILED } else { 0 })
}

/// Runs one `Act` stream to its final message. `bounded`: the whole exchange answers
/// within `--timeout` per message (counts, ids); otherwise only the opening is bounded.
async fn act_stream(
    admin: &Admin,
    request: ActRequest,
    bounded: bool,
    mut on_progress: impl FnMut(&ActProgress),
) -> Result<ActProgress, CliError> {
    let request = if bounded {
        admin.request(request)
    } else {
        Request::new(request)
    };
    let mut queue = admin.queue();
    let mut stream = admin.open(ACT, queue.act(request)).await?;
    let idle = bounded.then(|| admin.timeout());
    while let Some(progress) = admin.next(ACT, &mut stream, idle).await? {
        if progress.finished {
            return Ok(progress);
        }
        on_progress(&progress);
    }
    Err(CliError::Failed(
        "the server ended the action without its final count; some messages may have \
         changed: check with `mxfleet queue list`"
            .to_owned(),
    ))
}

fn result_json(verb: Verb, dry_run: bool, p: &ActProgress) -> ActJson {
    ActJson {
        action: verb.name,
        dry_run,
        matched: p.matched,
        done: p.done,
        skipped: p.skipped,
        notes: p.notes.clone(),
    }
}

/// The final line (`deleted 1230 of 1234 messages; 4 skipped`) and the notes.
fn report(verb: Verb, p: &ActProgress, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(&result_json(verb, false, p));
    }
    let mut text = format!("{} {} of {}", verb.past, p.done, messages(p.matched));
    if p.skipped > 0 {
        text.push_str(&format!("; {} skipped", p.skipped));
    }
    text.push('\n');
    for note in &p.notes {
        text.push_str(&format!("  note: {}\n", terminal_safe(note)));
    }
    print_text(&text)
}

/// Progress on stderr: rewritten in place on a terminal, one line per update otherwise.
struct ProgressLine {
    verb: Verb,
    terminal: bool,
    shown: bool,
}

impl ProgressLine {
    fn new(verb: Verb, terminal: bool) -> Self {
        ProgressLine {
            verb,
            terminal,
            shown: false,
        }
    }

    fn show(&mut self, p: &ActProgress) {
        let line = format!("{} {}/{}", self.verb.past, p.done + p.skipped, p.matched);
        if self.terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
        self.shown = true;
    }

    fn end(&mut self) {
        if self.terminal && self.shown {
            eprintln!();
        }
    }
}

/// Asks the operator on the terminal, reading stdin off the runtime's threads.
async fn confirm_on_terminal(what: String, yes: bool) -> Result<(), CliError> {
    tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        confirm(
            &what,
            yes,
            interactive,
            &mut stdin.lock(),
            &mut std::io::stderr(),
        )
    })
    .await
    .map_err(|e| CliError::Failed(format!("the confirmation prompt failed: {e}")))?
}

/// The confirmation rule: `--yes` goes ahead; off a terminal, refuse (exit 2) rather
/// than guess; on a terminal, only `y` or `yes` goes ahead.
pub fn confirm(
    what: &str,
    yes: bool,
    interactive: bool,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !interactive {
        return Err(CliError::Usage(format!(
            "refusing to {what} without confirmation: stdin is not a terminal; add --yes to \
             go ahead (or --dry-run to only count)"
        )));
    }
    let mut question = what.to_owned();
    if let Some(first) = question.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    write!(prompt, "{question}? [y/N] ")
        .and_then(|()| prompt.flush())
        .map_err(|e| CliError::Failed(format!("cannot ask for confirmation: {e}")))?;
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Declined),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cmd::EXIT_USAGE;

    const WHAT: &str = "delete 1234 messages matching domain=example.org";

    fn ask(yes: bool, interactive: bool, answer: &str) -> (Result<(), CliError>, String) {
        let mut prompt = Vec::new();
        let result = confirm(WHAT, yes, interactive, &mut answer.as_bytes(), &mut prompt);
        (result, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn off_a_terminal_without_yes_the_action_is_refused_with_exit_2() {
        let (result, prompt) = ask(false, false, "y\n");
        let error = result.unwrap_err();
        assert_eq!(error.exit_code(), EXIT_USAGE);
        assert!(error.to_string().contains("add --yes"), "{error}");
        assert!(prompt.is_empty(), "asked anyway: {prompt}");
    }

    #[test]
    fn yes_skips_the_question_anywhere() {
        assert!(ask(true, false, "").0.is_ok());
        let (result, prompt) = ask(true, true, "");
        assert!(result.is_ok());
        assert!(prompt.is_empty());
    }

    #[test]
    fn on_a_terminal_only_y_or_yes_goes_ahead() {
        let (result, prompt) = ask(false, true, "y\n");
        assert!(result.is_ok());
        assert_eq!(
            prompt,
            "Delete 1234 messages matching domain=example.org? [y/N] "
        );
        assert!(ask(false, true, "YES\n").0.is_ok());
        for answer in ["\n", "n\n", "no\n", "yep\n", ""] {
            let error = ask(false, true, answer).0.unwrap_err();
            assert!(matches!(error, CliError::Declined), "{answer:?}");
            assert_eq!(error.exit_code(), 1);
        }
    }

    #[derive(Parser, Debug)]
    struct Flags {
        #[command(flatten)]
        act: ActArgs,
    }

    fn parse(args: &[&str]) -> Result<ActArgs, clap::Error> {
        Flags::try_parse_from(std::iter::once("delete").chain(args.iter().copied())).map(|f| f.act)
    }

    #[test]
    fn ids_or_filters_or_all_but_never_nothing() {
        assert!(parse(&["12", "13"]).unwrap().check().is_ok());
        assert!(parse(&["--domain", "example.org"]).unwrap().check().is_ok());
        assert!(parse(&["--all", "--yes"]).unwrap().check().is_ok());
        assert_eq!(
            parse(&[]).unwrap().check().unwrap_err().exit_code(),
            EXIT_USAGE
        );
        assert!(parse(&["12", "--domain", "example.org"]).is_err());
        assert!(parse(&["12", "--all"]).is_err());
        assert!(parse(&["--all", "--state", "held"]).is_err());
        assert!(parse(&["no/such"]).is_err());
    }
}
