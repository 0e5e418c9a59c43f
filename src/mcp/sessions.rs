//! MCP 2025 sessions: the one piece of MCP state that outlives a request. `initialize` mints a
//! session id (`Mcp-Session-Id`); `resources/subscribe` and `resources/unsubscribe` change
//! the session's inbox subscriptions; a `GET /mcp` event stream carries their notifications.
//!
//! The three arrive on any connection, so on any shard: the registry is shared by every shard
//! behind one mutex. It is touched only by those control requests (and by a stream when it
//! sends a notification), never by mail itself: sends, reads and waits do not look at it.
//! A session holds no mail, only names and cursors; mail stays with the shard that owns it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use uuid::Uuid;

/// Sessions kept at once. Each costs its entry and up to [`MAX_SUBSCRIPTIONS`] names (about
/// 2 KiB at most): 16,384 of them stay under ~32 MiB. When full, `initialize` evicts the
/// session unused longest that has no open stream; its client gets 404 on its next
/// subscription request or stream and starts a new session, as the transport asks.
pub const MAX_SESSIONS: usize = 16_384;
/// Inboxes one session (or one `subscriptions/listen` stream) watches: each costs a parked
/// long poll on the inbox's owner while the stream is open.
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// `Mcp-Session-Id` is 32 lowercase hex digits (128 random bits).
pub const SESSION_ID_LEN: usize = 32;

pub type SessionId = u128;

/// A session id as sent in `Mcp-Session-Id`.
pub fn format_id(id: SessionId) -> String {
    format!("{id:032x}")
}

/// The session id in an `Mcp-Session-Id` header; `None` if it is not one this server mints.
pub fn parse_id(header: &[u8]) -> Option<SessionId> {
    if header.len() != SESSION_ID_LEN
        || !header
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(header).ok()?, 16).ok()
}

/// One watched inbox: whose, the token hash that was checked when it was added (with agent
/// tokens on), and the newest delivery already announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub agent: Box<str>,
    pub token: Option<Uuid>,
    pub cursor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Never minted here, ended by `DELETE`, evicted, or minted before a restart: 404.
    Unknown,
    /// The session watches [`MAX_SUBSCRIPTIONS`] inboxes already.
    TooManySubscriptions,
}

/// What changed for a session's open stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// The subscriptions are now these (at this version).
    Subscriptions(u64, Vec<Subscription>),
    /// The session ended, or a newer stream took it over: this stream ends.
    Detached,
}

#[derive(Debug)]
struct Session {
    subscriptions: Vec<Subscription>,
    /// Raised by every subscribe or unsubscribe that changed something.
    version: u64,
    /// The stream attached now (its number), and its waker while it waits.
    stream: Option<u64>,
    waker: Option<Waker>,
    /// For eviction: the registry's tick when the session was last used.
    last_used: u64,
}

impl Session {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, Session>,
    tick: u64,
    next_stream: u64,
}

#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<Inner>,
    limit: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(MAX_SESSIONS)
    }
}

impl Sessions {
    pub fn new(limit: usize) -> Self {
        Sessions {
            inner: Mutex::new(Inner::default()),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below is a single map or vector operation: a panic cannot leave an
        // entry half-made.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new session, or `None` when every session kept has an open stream (the client then
    /// works without one: tools need no session).
    pub fn create(&self) -> Option<SessionId> {
        let mut bytes = [0u8; 16];
        crate::tools::random_bytes(&mut bytes);
        let id = u128::from_le_bytes(bytes);
        let mut inner = self.lock();
        if inner.sessions.len() >= self.limit {
            let oldest = inner
                .sessions
                .iter()
                .filter(|(_, session)| session.stream.is_none())
                .min_by_key(|(_, session)| session.last_used)
                .map(|(id, _)| *id)?;
            inner.sessions.remove(&oldest);
        }
        inner.tick += 1;
        let last_used = inner.tick;
        inner.sessions.insert(
            id,
            Session {
                subscriptions: Vec::new(),
                version: 0,
                stream: None,
                waker: None,
                last_used,
            },
        );
        Some(id)
    }

    fn with<R>(&self, id: SessionId, f: impl FnOnce(&mut Session) -> R) -> Result<R, SessionError> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let session = inner.sessions.get_mut(&id).ok_or(SessionError::Unknown)?;
        session.last_used = tick;
        Ok(f(session))
    }

    pub fn contains(&self, id: SessionId) -> bool {
        self.lock().sessions.contains_key(&id)
    }

    /// Watches `subscription.agent`'s inbox from `subscription.cursor` on. Subscribing again
    /// keeps the cursor it had (nothing is announced twice) and takes the newer token.
    pub fn subscribe(&self, id: SessionId, subscription: Subscription) -> Result<(), SessionError> {
        self.with(id, |session| {
            if let Some(existing) = session
                .subscriptions
                .iter_mut()
                .find(|s| s.agent == subscription.agent)
            {
                existing.token = subscription.token;
                return Ok(());
            }
            if session.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                return Err(SessionError::TooManySubscriptions);
            }
            session.subscriptions.push(subscription);
            session.version += 1;
            session.wake();
            Ok(())
        })?
    }

    /// Stops watching `agent`'s inbox; whether it was watched.
    pub fn unsubscribe(&self, id: SessionId, agent: &str) -> Result<bool, SessionError> {
        self.with(id, |session| {
            let before = session.subscriptions.len();
            session.subscriptions.retain(|s| &*s.agent != agent);
            let removed = session.subscriptions.len() != before;
            if removed {
                session.version += 1;
                session.wake();
            }
            removed
        })
    }

    /// The session's subscribed inbox names (for `resources/list`).
    pub fn agents(&self, id: SessionId) -> Result<Vec<Box<str>>, SessionError> {
        self.with(id, |session| {
            session
                .subscriptions
                .iter()
                .map(|s| s.agent.clone())
                .collect()
        })
    }

    /// Attaches a new stream, which takes over from any stream attached before (that one
    /// ends). Returns the stream's number.
    pub fn attach(&self, id: SessionId) -> Result<u64, SessionError> {
        let mut inner = self.lock();
        inner.next_stream += 1;
        let stream = inner.next_stream;
        inner.tick += 1;
        let tick = inner.tick;
        let session = inner.sessions.get_mut(&id).ok_or(SessionError::Unknown)?;
        session.last_used = tick;
        session.stream = Some(stream);
        // The stream taken over wakes to find itself detached.
        session.wake();
        Ok(stream)
    }

    /// The stream `stream` ended.
    pub fn detach(&self, id: SessionId, stream: u64) {
        let _ = self.with(id, |session| {
            if session.stream == Some(stream) {
                session.stream = None;
                session.waker = None;
            }
        });
    }

    /// Ready with the subscriptions once they differ from version `seen`, or `Detached`;
    /// else parks `cx`'s waker until they change.
    pub fn poll_change(
        &self,
        id: SessionId,
        stream: u64,
        seen: Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Change> {
        let result = self.with(id, |session| {
            if session.stream != Some(stream) {
                return Poll::Ready(Change::Detached);
            }
            if seen != Some(session.version) {
                return Poll::Ready(Change::Subscriptions(
                    session.version,
                    session.subscriptions.clone(),
                ));
            }
            if !session
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                session.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        });
        result.unwrap_or(Poll::Ready(Change::Detached))
    }

    /// `agent`'s mail up to `cursor` was announced on the session's stream.
    pub fn advance(&self, id: SessionId, agent: &str, cursor: u64) {
        let _ = self.with(id, |session| {
            if let Some(s) = session
                .subscriptions
                .iter_mut()
                .find(|s| &*s.agent == agent)
            {
                s.cursor = s.cursor.max(cursor);
            }
        });
    }

    /// `DELETE /mcp`: the session ends (its stream too). Whether it existed.
    pub fn end(&self, id: SessionId) -> bool {
        let removed = self.lock().sessions.remove(&id);
        match removed {
            Some(mut session) => {
                session.wake();
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn watch(agent: &str, cursor: u64) -> Subscription {
        Subscription {
            agent: agent.into(),
            token: None,
            cursor,
        }
    }

    #[test]
    fn ids_round_trip_and_strangers_are_refused() {
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128;
        assert_eq!(parse_id(format_id(id).as_bytes()), Some(id));
        assert_eq!(parse_id(b"0123"), None);
        assert_eq!(parse_id(format_id(id).to_uppercase().as_bytes()), None);
        assert_eq!(parse_id(&[b'g'; 32]), None);
    }

    #[test]
    fn subscriptions_wake_the_stream_and_keep_their_cursor() {
        let sessions = Sessions::new(4);
        let id = sessions.create().expect("room");
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let stream = sessions.attach(id).expect("known");
        let Poll::Ready(Change::Subscriptions(v0, list)) =
            sessions.poll_change(id, stream, None, &mut cx)
        else {
            panic!("first poll reports the list");
        };
        assert!(list.is_empty());
        assert_eq!(
            sessions.poll_change(id, stream, Some(v0), &mut cx),
            Poll::Pending
        );
        sessions
            .subscribe(id, watch("Blue", 7))
            .expect("subscribed");
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken");
        sessions.advance(id, "Blue", 9);
        sessions.subscribe(id, watch("Blue", 0)).expect("again");
        let Poll::Ready(Change::Subscriptions(v1, list)) =
            sessions.poll_change(id, stream, Some(v0), &mut cx)
        else {
            panic!("changed");
        };
        assert_eq!(list, vec![watch("Blue", 9)], "the cursor is kept");
        assert_eq!(sessions.unsubscribe(id, "Blue"), Ok(true));
        assert_eq!(sessions.unsubscribe(id, "Blue"), Ok(false));
        assert!(matches!(
            sessions.poll_change(id, stream, Some(v1), &mut cx),
            Poll::Ready(Change::Subscriptions(_, ref l)) if l.is_empty()
        ));
        for n in 0..MAX_SUBSCRIPTIONS {
            sessions
                .subscribe(id, watch(&format!("a{n}"), 0))
                .expect("room");
        }
        assert_eq!(
            sessions.subscribe(id, watch("one-more", 0)),
            Err(SessionError::TooManySubscriptions)
        );
    }

    #[test]
    fn a_new_stream_takes_over_and_delete_ends_the_session() {
        let sessions = Sessions::new(4);
        let id = sessions.create().expect("room");
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let first = sessions.attach(id).expect("known");
        let second = sessions.attach(id).expect("known");
        assert_eq!(
            sessions.poll_change(id, first, Some(0), &mut cx),
            Poll::Ready(Change::Detached)
        );
        assert_eq!(
            sessions.poll_change(id, second, Some(0), &mut cx),
            Poll::Pending
        );
        assert!(sessions.end(id));
        assert_eq!(
            sessions.poll_change(id, second, Some(0), &mut cx),
            Poll::Ready(Change::Detached)
        );
        assert_eq!(sessions.attach(id), Err(SessionError::Unknown));
        assert!(!sessions.end(id));
    }

    #[test]
    fn when_full_the_longest_unused_session_without_a_stream_goes() {
        let sessions = Sessions::new(2);
        let streaming = sessions.create().expect("room");
        let idle = sessions.create().expect("room");
        let stream = sessions.attach(streaming).expect("known");
        let third = sessions.create().expect("the idle one is evicted");
        assert!(sessions.contains(streaming) && sessions.contains(third));
        assert!(!sessions.contains(idle));
        let _ = sessions.attach(third).expect("known");
        assert_eq!(sessions.create(), None, "every session streams");
        sessions.detach(streaming, stream);
        assert!(sessions.create().is_some());
        assert_eq!(sessions.len(), 2);
    }
}
