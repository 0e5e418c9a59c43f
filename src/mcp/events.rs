//! Event streams that tell a client about new mail, in both eras: a 2025 session's
//! `GET /mcp` stream and a 2026-07-28 `subscriptions/listen` stream. Each watches up to
//! [`MAX_SUBSCRIPTIONS`] inboxes through the same long poll as `wait_for_mail`, so an event
//! leaves only once the mail it announces is durable, and one event covers every message
//! that arrived since the last: a client that reads slowly gets fewer, fuller events, and
//! while its socket is full nothing waits for it on any shard.
//!
//! Per watched inbox a stream sends `notifications/resources/updated` (when it subscribed to
//! the inbox's resource) and, on a 2025 session's stream whose client bound itself to that
//! agent with the `Allman-Agent` header, a Claude Code channel message
//! (`notifications/claude/channel`: `content` text and string-valued `meta`, as
//! code.claude.com/docs/en/channels-reference gives it). Claude Code registers a channel
//! only on a connection that negotiated a 2025 revision.

use super::listen::Listeners;
use super::resources::write_inbox_uri;
use super::sessions::{Change, SessionId, Sessions, Subscription, MAX_SUBSCRIPTIONS};
use crate::http::StreamStep;
use crate::json::write_str;
use crate::tools::inbox::{InboxNews, News};
use crate::tools::Toolbox;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Between events an idle stream sends an SSE comment this often, so that a client whose
/// network vanished without a FIN is found by a failed write and its slot freed.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// Each inbox's long poll outlasts the heartbeat, so a quiet stream's polls are renewed once
/// per heartbeat rather than timing out on their own.
const WAIT_MS: u64 = HEARTBEAT.as_millis() as u64 + 5_000;
/// Claude Code's channel notification (the server declares `experimental["claude/channel"]`).
const CHANNEL_METHOD: &str = "notifications/claude/channel";

/// One inbox a stream watches, and what it sends for its mail.
#[derive(Debug, Clone)]
struct Watched {
    inbox: Subscription,
    resource_updates: bool,
    channel: bool,
}

/// Which era's stream this is.
#[derive(Debug)]
enum Era {
    /// `subscriptions/listen`: the request's id (JSON) tags every event and the final result.
    Listen { id: Box<str> },
    /// A 2025 session's `GET /mcp` stream (`stream` is its number in the session).
    Session {
        id: SessionId,
        stream: u64,
        seen: Option<u64>,
    },
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    era: Era,
    watched: Vec<Watched>,
}

/// What woke a stream.
enum Woke {
    Stopping,
    Changed(Change),
    Inbox(usize, InboxNews),
    Heartbeat,
}

impl EventStream {
    /// A `subscriptions/listen` stream (`id` is the request's id as JSON) watching
    /// `resources` for resource updates.
    pub fn listen(id: &str, resources: Vec<Subscription>) -> Self {
        EventStream {
            era: Era::Listen { id: id.into() },
            watched: resources
                .into_iter()
                .map(|inbox| Watched {
                    inbox,
                    resource_updates: true,
                    channel: false,
                })
                .collect(),
        }
    }

    /// A session's `GET /mcp` stream; its resource subscriptions come from the session.
    pub fn session(id: SessionId, stream: u64, channel: Option<Subscription>) -> Self {
        let mut events = EventStream {
            era: Era::Session {
                id,
                stream,
                seen: None,
            },
            watched: Vec::new(),
        };
        if let Some(channel) = channel {
            events.bind_channel(channel);
        }
        events
    }

    fn bind_channel(&mut self, inbox: Subscription) {
        match self
            .watched
            .iter_mut()
            .find(|w| w.inbox.agent == inbox.agent)
        {
            Some(watched) => watched.channel = true,
            None => self.watched.push(Watched {
                inbox,
                resource_updates: false,
                channel: true,
            }),
        }
    }

    /// The session this stream belongs to, for detaching it at its end.
    pub fn session_stream(&self) -> Option<(SessionId, u64)> {
        match self.era {
            Era::Session { id, stream, .. } => Some((id, stream)),
            Era::Listen { .. } => None,
        }
    }

    /// Writes the next events (or a keep-alive comment) into `out` once there are any.
    pub async fn next(
        &mut self,
        tools: &Toolbox,
        listeners: &Listeners,
        sessions: &Sessions,
        out: &mut Vec<u8>,
    ) -> StreamStep {
        loop {
            match self.wait(tools, listeners, sessions).await {
                Woke::Stopping => {
                    self.write_final(out);
                    return StreamStep::End;
                }
                Woke::Heartbeat | Woke::Inbox(_, InboxNews::Quiet) => {
                    out.extend_from_slice(b": keep-alive\n\n");
                    return StreamStep::More;
                }
                Woke::Changed(Change::Detached) => return StreamStep::End,
                Woke::Changed(Change::Subscriptions(version, list)) => {
                    self.resubscribe(version, list);
                }
                Woke::Inbox(index, InboxNews::Mail(news)) => {
                    self.write_news(index, &news, out);
                    self.watched[index].inbox.cursor = news.newest;
                    if let Era::Session { id, .. } = self.era {
                        sessions.advance(id, &self.watched[index].inbox.agent, news.newest);
                    }
                    return StreamStep::More;
                }
                Woke::Inbox(index, InboxNews::Rewound(newest)) => {
                    self.watched[index].inbox.cursor = newest;
                }
                // The agent is gone or its token changed: stop watching it.
                Woke::Inbox(index, InboxNews::Gone) => {
                    self.watched.remove(index);
                }
                Woke::Inbox(_, InboxNews::Busy(error)) => {
                    tracing::debug!(%error, "event stream ends: waiting is full");
                    self.write_final(out);
                    return StreamStep::End;
                }
                Woke::Inbox(_, InboxNews::Stopping) => {
                    self.write_final(out);
                    return StreamStep::End;
                }
            }
        }
    }

    async fn wait(&self, tools: &Toolbox, listeners: &Listeners, sessions: &Sessions) -> Woke {
        let inboxes = FirstOf(
            self.watched
                .iter()
                .enumerate()
                .map(|(index, watched)| {
                    let inbox = &watched.inbox;
                    Box::pin(async move {
                        let news = tools
                            .inbox_news(&inbox.agent, inbox.token, inbox.cursor, WAIT_MS)
                            .await;
                        (index, news)
                    })
                })
                .collect(),
        );
        let changed = std::future::poll_fn(|cx| match self.era {
            Era::Session { id, stream, seen } => sessions.poll_change(id, stream, seen, cx),
            Era::Listen { .. } => Poll::Pending,
        });
        futures_lite::future::or(
            async {
                listeners.closed().await;
                Woke::Stopping
            },
            futures_lite::future::or(
                async { Woke::Changed(changed.await) },
                futures_lite::future::or(
                    async {
                        let (index, news) = inboxes.await;
                        Woke::Inbox(index, news)
                    },
                    async {
                        glommio::timer::sleep(HEARTBEAT).await;
                        Woke::Heartbeat
                    },
                ),
            ),
        )
        .await
    }

    /// The session's subscriptions changed: watch its list (with the cursors it keeps), and
    /// the channel inbox as before.
    fn resubscribe(&mut self, version: u64, list: Vec<Subscription>) {
        if let Era::Session { seen, .. } = &mut self.era {
            *seen = Some(version);
        }
        let channel = self
            .watched
            .iter()
            .find(|w| w.channel)
            .map(|w| w.inbox.clone());
        self.watched = list
            .into_iter()
            .take(MAX_SUBSCRIPTIONS)
            .map(|inbox| Watched {
                inbox,
                resource_updates: true,
                channel: false,
            })
            .collect();
        if let Some(channel) = channel {
            self.bind_channel(channel);
        }
    }

    fn write_news(&self, index: usize, news: &News, out: &mut Vec<u8>) {
        let watched = &self.watched[index];
        let agent = &watched.inbox.agent;
        if watched.resource_updates {
            out.extend_from_slice(
                b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":",
            );
            write_inbox_uri(out, agent);
            self.write_meta(out);
            out.extend_from_slice(b"}}\n\n");
        }
        if watched.channel {
            let mut text = String::with_capacity(256);
            news.write_text(agent, &mut text);
            out.extend_from_slice(b"data: {\"jsonrpc\":\"2.0\",\"method\":\"");
            out.extend_from_slice(CHANNEL_METHOD.as_bytes());
            out.extend_from_slice(b"\",\"params\":{\"content\":");
            write_str(out, &text);
            out.extend_from_slice(b",\"meta\":{\"agent\":");
            write_str(out, agent);
            out.extend_from_slice(b",\"count\":\"");
            crate::json::write_u64(out, news.count);
            out.extend_from_slice(b"\"");
            if let Some(first) = news.first.first() {
                out.extend_from_slice(b",\"from\":");
                write_str(out, first.envelope.from());
                out.extend_from_slice(b",\"message_id\":");
                crate::json::write_uuid(out, &first.envelope.id);
                out.extend_from_slice(b",\"importance\":\"");
                out.extend_from_slice(first.envelope.importance.as_str().as_bytes());
                out.push(b'"');
            }
            out.push(b'}');
            self.write_meta(out);
            out.extend_from_slice(b"}}\n\n");
        }
    }

    /// A listen stream's notifications carry its subscription id.
    fn write_meta(&self, out: &mut Vec<u8>) {
        if let Era::Listen { id } = &self.era {
            out.extend_from_slice(b",\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":");
            out.extend_from_slice(id.as_bytes());
            out.push(b'}');
        }
    }

    /// The last event: a listen stream ends with its request's result; a session stream
    /// just ends (its client reconnects).
    fn write_final(&self, out: &mut Vec<u8>) {
        if let Era::Listen { id } = &self.era {
            write_listen_result(out, id);
        }
    }
}

/// The first of several futures to finish (pending forever when there are none).
struct FirstOf<F>(Vec<Pin<Box<F>>>);

impl<F: Future> Future for FirstOf<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        for future in self.get_mut().0.iter_mut() {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
        }
        Poll::Pending
    }
}

/// The listen request's result, tagged with its subscription id: the event that ends the
/// stream (`id` is the request's id as JSON).
fn write_listen_result(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"data: {\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(
        b",\"result\":{\"resultType\":\"complete\",\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":",
    );
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"}}}\n\n");
}
