//! `mxfleet queue list`: the messages the filters match, one per row, and a mailq-like
//! summary line: `-- 3 messages, 12 KiB (2 deferred, 1 held)`.
//!
//! The server answers in pages; [`collect_pages`] asks for 500 at a time (fewer near
//! `--limit`) and follows `next_page_token` until the last page or the limit, so the whole
//! queue (100k+ messages) lists with bounded requests. It is generic over the page
//! fetcher so the paging is tested without a server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;

use clap::Args;
use mxfleet_proto::admin::v1::{ListReply, ListRequest, MessageSummary, Selector};

use super::LIST;
use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::format::{age, bytes, messages, next_attempt, sender, state_name};
use crate::cmd::admin::json::{ListJson, MessageJson};
use crate::cmd::admin::selector::SelectorArgs;
use crate::cmd::admin::table::Table;
use crate::cmd::admin::{now_ms, print_json, print_text};

/// Messages asked for per page (the server allows up to 1000).
pub const PAGE_SIZE: u32 = 500;

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    selector: SelectorArgs,
    /// List at most N messages (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Have the node confirm with the leader that it is up to date before answering.
    #[arg(long)]
    linearizable: bool,
}

impl ListArgs {
    pub fn check(&self) -> Result<(), CliError> {
        self.selector.to_selector(Vec::new()).map(drop)
    }
}

/// What the pages added up to.
#[derive(Debug, Default)]
pub struct Listing {
    pub messages: Vec<MessageSummary>,
    /// Across all pages, as the server counted them (may exceed `messages` with a limit).
    pub total_matched: u64,
    pub total_bytes: u64,
}

pub async fn run(admin: &Admin, args: ListArgs, json: bool) -> Result<u8, CliError> {
    let selector = args.selector.to_selector(Vec::new())?;
    let listing = fetch(admin, &selector, args.limit, args.linearizable).await?;
    if json {
        print_json(&ListJson {
            messages: listing.messages.iter().map(MessageJson::from).collect(),
            total_matched: listing.total_matched,
            total_bytes: listing.total_bytes,
            truncated: (listing.messages.len() as u64) < listing.total_matched,
            by_state: by_state(&listing.messages)
                .into_iter()
                .map(|(state, count)| (state_name(state), count))
                .collect(),
        })?;
    } else {
        print_text(&render(&listing, args.selector.is_empty(), now_ms()))?;
    }
    Ok(0)
}

/// Every message `selector` matches, up to `limit`, from the node's `List` pages.
pub async fn fetch(
    admin: &Admin,
    selector: &Selector,
    limit: Option<u64>,
    linearizable: bool,
) -> Result<Listing, CliError> {
    collect_pages(limit, |page_size, page_token| {
        let request = ListRequest {
            selector: Some(selector.clone()),
            page_size,
            page_token,
            linearizable,
        };
        async move {
            let mut queue = admin.queue();
            admin.call(LIST, queue.list(admin.request(request))).await
        }
    })
    .await
}

/// Follows the pages `fetch(page_size, page_token)` returns until the last one or
/// `limit` messages.
pub async fn collect_pages<F, Fut>(limit: Option<u64>, mut fetch: F) -> Result<Listing, CliError>
where
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<ListReply, CliError>>,
{
    let mut listing = Listing::default();
    let mut token = String::new();
    loop {
        let wanted = limit.map_or(u64::MAX, |l| l - listing.messages.len() as u64);
        let page_size = u32::try_from(wanted.min(u64::from(PAGE_SIZE))).unwrap_or(PAGE_SIZE);
        let reply = fetch(page_size, token.clone()).await?;
        listing.total_matched = reply.total_matched;
        listing.total_bytes = reply.total_bytes;
        let take = usize::try_from(wanted).unwrap_or(usize::MAX);
        listing
            .messages
            .extend(reply.messages.into_iter().take(take));
        let full = limit.is_some_and(|l| listing.messages.len() as u64 >= l);
        if full || reply.next_page_token.is_empty() {
            return Ok(listing);
        }
        if reply.next_page_token == token {
            return Err(CliError::Failed(format!(
                "the server returned the same page token twice ({token:?}) after {} \
                 messages; the listing stops here to avoid looping",
                listing.messages.len()
            )));
        }
        token = reply.next_page_token;
    }
}

/// Listed messages per state, in the API's state order.
fn by_state(messages: &[MessageSummary]) -> BTreeMap<i32, u64> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts.entry(m.state).or_insert(0) += 1;
    }
    counts
}

/// The table and the summary line.
pub fn render(listing: &Listing, unfiltered: bool, now_ms: u64) -> String {
    let mut table = Table::new(&[
        "ID",
        "STATE",
        "SIZE",
        "AGE",
        "TRIES",
        "NEXT",
        "SENDER",
        "RECIPIENTS",
        "LAST REPLY",
    ])
    .right(&[0, 2, 3, 4])
    .cap(6, 40)
    .cap(7, 50)
    .cap(8, 60);
    for m in &listing.messages {
        let recipients = match m.recipients.as_slice() {
            [] => "-".to_owned(),
            [only] => only.address.clone(),
            [first, rest @ ..] => format!("{} +{}", first.address, rest.len()),
        };
        table.push(vec![
            m.id.clone(),
            state_name(m.state).to_owned(),
            bytes(m.size),
            if m.received_at == 0 {
                "-".to_owned()
            } else {
                age(now_ms.saturating_sub(m.received_at) / 1000)
            },
            m.attempts.to_string(),
            next_attempt(m.state, m.next_attempt_at, now_ms),
            sender(&m.sender),
            recipients,
            m.last_reply.clone(),
        ]);
    }
    let mut out = if table.is_empty() {
        String::new()
    } else {
        table.render()
    };
    let listed = listing.messages.len() as u64;
    if listing.total_matched == 0 && listed == 0 {
        out.push_str(if unfiltered {
            "-- the queue is empty\n"
        } else {
            "-- no messages match\n"
        });
        return out;
    }
    let states: Vec<String> = by_state(&listing.messages)
        .into_iter()
        .map(|(state, n)| format!("{n} {}", state_name(state)))
        .collect();
    let total = listing.total_matched.max(listed);
    if listed < total {
        let _ = writeln!(
            out,
            "-- {listed} of {} shown (--limit), {} in all (shown: {})",
            messages(total),
            bytes(listing.total_bytes),
            states.join(", ")
        );
    } else {
        let _ = writeln!(
            out,
            "-- {}, {} ({})",
            messages(total),
            bytes(listing.total_bytes),
            states.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use mxfleet_proto::admin::v1::{MessageState, RecipientStatus};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn message(id: u64, state: MessageState) -> MessageSummary {
        MessageSummary {
            id: id.to_string(),
            state: state as i32,
            size: 4096,
            received_at: NOW - 3_900_000,
            sender: "alice@example.net".into(),
            recipients: vec![RecipientStatus {
                address: "bob@example.org".into(),
                state: "pending".into(),
                last_reply: String::new(),
            }],
            attempts: 2,
            next_attempt_at: NOW + 300_000,
            ..Default::default()
        }
    }

    /// A server holding `total` messages, answering pages like the real one.
    fn fake_server(
        total: u64,
    ) -> impl FnMut(u32, String) -> std::future::Ready<Result<ListReply, CliError>> {
        move |page_size, token| {
            assert!(
                (1..=PAGE_SIZE).contains(&page_size),
                "page size {page_size}"
            );
            let start: u64 = if token.is_empty() {
                0
            } else {
                token.parse().unwrap()
            };
            let end = (start + u64::from(page_size)).min(total);
            std::future::ready(Ok(ListReply {
                messages: (start..end)
                    .map(|i| message(i + 1, MessageState::Deferred))
                    .collect(),
                next_page_token: if end < total {
                    end.to_string()
                } else {
                    String::new()
                },
                total_matched: total,
                total_bytes: total * 4096,
            }))
        }
    }

    #[tokio::test]
    async fn paging_collects_a_large_queue_500_at_a_time() {
        let mut pages = 0;
        let mut server = fake_server(100_123);
        let listing = collect_pages(None, |size, token| {
            pages += 1;
            server(size, token)
        })
        .await
        .unwrap();
        assert_eq!(listing.messages.len(), 100_123);
        assert_eq!(pages, 201);
        assert_eq!(listing.messages.last().unwrap().id, "100123");
    }

    #[tokio::test]
    async fn the_limit_shrinks_the_last_page_and_stops_early() {
        let mut sizes = Vec::new();
        let mut server = fake_server(5_000);
        let listing = collect_pages(Some(1_200), |size, token| {
            sizes.push(size);
            server(size, token)
        })
        .await
        .unwrap();
        assert_eq!(sizes, vec![500, 500, 200]);
        assert_eq!(listing.messages.len(), 1_200);
        assert_eq!(listing.total_matched, 5_000);
    }

    #[tokio::test]
    async fn a_repeated_page_token_stops_the_loop() {
        let error = collect_pages(None, |_, _| {
            std::future::ready(Ok(ListReply {
                messages: vec![message(1, MessageState::Held)],
                next_page_token: "same".into(),
                ..Default::default()
            }))
        })
        .await
        .unwrap_err();
        assert!(error.to_string().contains("same page token"), "{error}");
    }

    #[test]
    fn the_summary_counts_messages_size_and_states_like_mailq() {
        let listing = Listing {
            messages: vec![
                message(7, MessageState::Deferred),
                message(8, MessageState::Held),
                message(9, MessageState::Deferred),
            ],
            total_matched: 3,
            total_bytes: 12 * 1024,
        };
        let text = render(&listing, true, NOW);
        assert_eq!(
            text.lines().last(),
            Some("-- 3 messages, 12 KiB (2 deferred, 1 held)")
        );
        assert_eq!(
            text.lines().next(),
            Some(
                "ID  STATE        SIZE    AGE  TRIES  NEXT   SENDER             RECIPIENTS       LAST REPLY"
            )
        );
        assert_eq!(
            text.lines().nth(1),
            Some(" 7  deferred  4.0 KiB  1h 5m      2  in 5m  alice@example.net  bob@example.org")
        );
    }

    #[test]
    fn a_limited_listing_says_how_much_it_left_out() {
        let listing = Listing {
            messages: vec![message(1, MessageState::Held)],
            total_matched: 40,
            total_bytes: 3 * 1024 * 1024,
        };
        let text = render(&listing, false, NOW);
        assert_eq!(
            text.lines().last(),
            Some("-- 1 of 40 messages shown (--limit), 3.0 MiB in all (shown: 1 held)")
        );
        let empty = Listing::default();
        assert_eq!(render(&empty, true, NOW), "-- the queue is empty\n");
        assert_eq!(render(&empty, false, NOW), "-- no messages match\n");
    }
}
