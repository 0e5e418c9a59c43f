//! An inbox seen from outside the tools: its summary (the `allman://inbox/{agent}` resource),
//! where it stands now (a subscription's starting cursor) and waiting for its next mail (an
//! event stream's notifications). None of them drains or marks anything.

use super::mail::{write_counts, write_entry, write_u64, Clock, Entry};
use super::{unreachable_reply, ToolError, Toolbox};
use crate::json::{write_array, write_str};
use shards::{Actor, DeliveryView, FetchQuery, Reply, Request};
use uuid::Uuid;

/// Headers a summary lists: the newest few, enough to decide whether to read now.
pub const SUMMARY_HEADERS: usize = 5;
/// Messages a notification names; the rest are counted.
pub const NOTICE_HEADERS: usize = 3;
/// Subjects in a notification are cut to this many bytes: it is a nudge, not the mail.
const NOTICE_SUBJECT_BYTES: usize = 120;

fn peek(after: u64, limit: usize) -> FetchQuery {
    FetchQuery {
        after,
        limit,
        unread_only: false,
        urgent_only: false,
        thread_id: None,
        // Headers only are written; any one message may be listed.
        max_weight: usize::MAX,
        at_least_one: true,
    }
}

impl Toolbox {
    /// The actor for an inbox, with a token hash already made.
    pub fn inbox_actor(&self, agent: &str, token: Option<Uuid>) -> Actor {
        Actor {
            name: agent.into(),
            token,
            now_ms: crate::clock::now_ms(),
        }
    }

    async fn peek_inbox(
        &self,
        actor: Actor,
        query: FetchQuery,
    ) -> Result<shards::FetchPage, ToolError> {
        let owner = self.shard().owner_of(&actor.name);
        let name = actor.name.clone();
        match self
            .shard()
            .call(owner, Request::Fetch { actor, query })
            .await?
        {
            Reply::Fetched(Ok(page)) => Ok(page),
            Reply::Fetched(Err(unknown)) => Err(ToolError::UnknownCursor {
                after: 0,
                newest: unknown.newest,
            }),
            Reply::NoAgent => Err(self.no_agent(&name)),
            other => unreachable_reply("Fetch", &other),
        }
    }

    /// The `seq` of `agent`'s newest delivery (0: none yet), checking it exists and, with
    /// agent tokens on, that `token` is its.
    pub async fn inbox_cursor(&self, agent: &str, token: Option<Uuid>) -> Result<u64, ToolError> {
        let page = self
            .peek_inbox(self.inbox_actor(agent, token), peek(0, 0))
            .await?;
        Ok(page.next_after)
    }

    /// The inbox summary as JSON: counts, the newest delivery's cursor and the newest
    /// [`SUMMARY_HEADERS`] messages without their bodies.
    pub async fn write_inbox_summary(
        &self,
        agent: &str,
        token: Option<Uuid>,
        out: &mut Vec<u8>,
    ) -> Result<(), ToolError> {
        let now = self
            .peek_inbox(self.inbox_actor(agent, token), peek(0, 0))
            .await?;
        let newest = now.next_after;
        let start = newest.saturating_sub(SUMMARY_HEADERS as u64);
        let recent = if newest > 0 {
            let actor = self.inbox_actor(agent, token);
            self.peek_inbox(actor, peek(start, SUMMARY_HEADERS))
                .await?
                .messages
        } else {
            Vec::new()
        };
        out.extend_from_slice(b"{\"agent\":");
        write_str(out, agent);
        out.extend_from_slice(b",\"counts\":");
        write_counts(out, &now.counts);
        out.extend_from_slice(b",\"newest_seq\":");
        write_u64(out, newest);
        out.extend_from_slice(b",\"newest\":");
        let mut clock = Clock::new();
        write_array(out, recent.iter().rev(), |out, delivery| {
            let entry = Entry {
                envelope: &delivery.envelope,
                delivery: Some(delivery),
                include_body: false,
            };
            write_entry(out, &entry, &mut clock);
        });
        out.extend_from_slice(
            b",\"read_with\":\"fetch_inbox (reads, drains nothing) or get_inbox (drains)\"}",
        );
        Ok(())
    }

    /// Waits (at most `timeout_ms`) for `agent`'s first delivery past `cursor`, once it is
    /// durable. Mail that arrived while nobody waited is found at once.
    pub async fn inbox_news(
        &self,
        agent: &str,
        token: Option<Uuid>,
        cursor: u64,
        timeout_ms: u64,
    ) -> InboxNews {
        let actor = self.inbox_actor(agent, token);
        let reply = self
            .shard_handle()
            .wait_for_mail(actor, peek(cursor, NOTICE_HEADERS), timeout_ms)
            .await;
        let page = match reply {
            Ok(Reply::Fetched(Ok(page))) => page,
            // The cursor is past the newest: the inbox was rebuilt smaller (a restored data
            // directory). Start again from where it stands.
            Ok(Reply::Fetched(Err(unknown))) => return InboxNews::Rewound(unknown.newest),
            Ok(Reply::NoAgent) => return InboxNews::Gone,
            Ok(Reply::TooManyWaiters { per_agent, max }) => {
                return InboxNews::Busy(ToolError::TooManyWaiters { per_agent, max })
            }
            Ok(other) => unreachable_reply("Wait", &other),
            Err(_) => return InboxNews::Stopping,
        };
        if page.messages.is_empty() {
            return InboxNews::Quiet;
        }
        let newest = if page.has_more {
            // More arrived than a notice names: count them all, announce them once.
            match self.inbox_cursor(agent, token).await {
                Ok(newest) => newest,
                Err(_) => page.next_after,
            }
        } else {
            page.next_after
        };
        InboxNews::Mail(News {
            count: newest - cursor,
            newest,
            first: page.messages,
        })
    }
}

/// What waiting on an inbox found.
#[derive(Debug)]
pub enum InboxNews {
    /// Nothing before the timeout.
    Quiet,
    Mail(News),
    /// The cursor was past the inbox's newest delivery, which is this.
    Rewound(u64),
    /// The agent does not exist (or its token changed).
    Gone,
    /// A bound on waiting is full.
    Busy(ToolError),
    /// The server is stopping.
    Stopping,
}

/// New mail in one inbox.
#[derive(Debug)]
pub struct News {
    /// Deliveries past the old cursor (some may have been drained or evicted since).
    pub count: u64,
    /// The new cursor: everything up to it is announced.
    pub newest: u64,
    /// The oldest few new deliveries.
    pub first: Vec<DeliveryView>,
}

impl News {
    /// One short line per message named, and a count of the rest, for a person or a model:
    /// `3 new messages for BlueLake: from GreenCastle "Build broke" (urgent, ack required,
    /// id …); … Read them with fetch_inbox.`
    pub fn write_text(&self, agent: &str, out: &mut String) {
        use std::fmt::Write as _;
        let noun = if self.count == 1 {
            "message"
        } else {
            "messages"
        };
        let _ = write!(out, "{} new {noun} for {agent}: ", self.count);
        for (index, delivery) in self.first.iter().enumerate() {
            if index > 0 {
                out.push_str("; ");
            }
            let message = &delivery.envelope;
            let subject = cut(message.subject(), NOTICE_SUBJECT_BYTES);
            let _ = write!(
                out,
                "from {} {subject:?} ({}",
                message.from(),
                message.importance.as_str()
            );
            if message.ack_required {
                out.push_str(", ack required");
            }
            let _ = write!(out, ", id {})", message.id);
        }
        let named = self.first.len() as u64;
        if self.count > named {
            let _ = write!(out, "; and {} more", self.count - named);
        }
        let _ = write!(
            out,
            ". Read with fetch_inbox (agent_name {agent:?}, after {}).",
            self.newest - self.count
        );
    }
}

/// At most `max` bytes of `text`, with `…` when cut.
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match crate::json::prefix_at_char(text, max) {
        whole if whole.len() == text.len() => whole.into(),
        prefix => format!("{prefix}…").into(),
    }
}
