//! The state on its own: no executor, no I/O.

use super::outbox::Emitted;
use super::record::Record;
use super::*;
use crate::envelope::{Envelope, Importance, Message, SharedEnvelope};
use crate::protocol::{
    Counts, FetchPage, FetchQuery, Kind, LeaseOp, LeaseRequest, RegisterMode, Registration,
    ThreadQuery, Undeliverable, UnknownCursor,
};
use std::sync::Arc;
use uuid::Uuid;

fn registration(name: &str, project: u128, mode: RegisterMode) -> Registration {
    Registration {
        name: name.into(),
        mode,
        new_id: Uuid::from_u128(1000 + project),
        project_id: Uuid::from_u128(project),
        project_key: format!("key-{project}").into(),
        program: Some("prog".into()),
        model: None,
        task_description: None,
        now_ms: 5,
        new_token_hash: None,
        token: None,
    }
}

const LIMITS: InboxLimits = InboxLimits {
    messages: 100,
    bytes: usize::MAX,
    retained_messages: 1000,
    retained_bytes: usize::MAX,
};

fn register(state: &mut ShardState, name: &str, project: u128, mode: RegisterMode) -> Reply {
    state.handle(Request::Register(registration(name, project, mode)))
}

fn names(list: &[&str]) -> Vec<Box<str>> {
    list.iter().map(|n| Box::<str>::from(*n)).collect()
}

/// Message `n` from `from` to `to` (6 bytes of text when `from` is "from").
fn message(n: u128, from: &str, to: &[&str], cc: &[&str]) -> SharedEnvelope {
    Arc::new(Envelope::compose(Message {
        id: Uuid::from_u128(n),
        project_id: Uuid::nil(),
        timestamp_ms: n as i64,
        from,
        subject: "s",
        body: "b",
        thread_id: None,
        reply_to: None,
        importance: Importance::Normal,
        ack_required: false,
        to: names(to),
        cc: names(cc),
    }))
}

fn envelope(n: u128, to: &[&str]) -> SharedEnvelope {
    message(n, "from", to, &[])
}

fn deliver(state: &mut ShardState, envelope: SharedEnvelope) -> Reply {
    state.handle(Request::Deliver { envelope })
}

fn actor(name: &str) -> Actor {
    Actor {
        name: name.into(),
        token: None,
        now_ms: 50,
    }
}

fn drain(state: &mut ShardState, name: &str, max_weight: usize, at_least_one: bool) -> Reply {
    state.handle(Request::Drain {
        actor: actor(name),
        max_weight,
        at_least_one,
    })
}

fn drained_ids(reply: Reply) -> (Vec<u128>, usize) {
    match reply {
        Reply::Drained(page) => (
            page.messages
                .iter()
                .map(|m| m.envelope.id.as_u128())
                .collect(),
            page.left,
        ),
        other => panic!("drain answered {other:?}"),
    }
}

fn drain_all(state: &mut ShardState, name: &str) -> (Vec<u128>, usize) {
    drained_ids(drain(state, name, usize::MAX, true))
}

fn fetch(state: &mut ShardState, name: &str, after: u64, limit: usize) -> FetchPage {
    let query = FetchQuery {
        after,
        limit,
        unread_only: false,
        urgent_only: false,
        thread_id: None,
        max_weight: usize::MAX,
        at_least_one: true,
    };
    match state.handle(Request::Fetch {
        actor: actor(name),
        query,
    }) {
        Reply::Fetched(Ok(page)) => page,
        other => panic!("fetch answered {other:?}"),
    }
}

fn seqs(page: &FetchPage) -> Vec<(u64, u128)> {
    page.messages
        .iter()
        .map(|m| (m.seq, m.envelope.id.as_u128()))
        .collect()
}

#[test]
fn drains_page_by_weight_not_text_length() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    for (n, weight) in [(0u128, 50usize), (1, 10), (2, 10)] {
        let envelope = Envelope::new(Uuid::from_u128(n), Uuid::nil(), 0, "f", "", "");
        let mut envelope = Envelope::compose(Message {
            to: names(&["a"]),
            ..message_of(&envelope)
        });
        envelope = envelope.with_weight(weight);
        deliver(&mut state, Arc::new(envelope));
    }
    assert_eq!(
        drained_ids(drain(&mut state, "a", 60, true)),
        (vec![0, 1], 1)
    );
    assert_eq!(drain_all(&mut state, "a"), (vec![2], 0));
    assert_eq!(state.queued_messages(), 0);
}

fn message_of(envelope: &Envelope) -> Message<'_> {
    Message {
        project_id: envelope.project_id,
        timestamp_ms: envelope.timestamp_ms,
        subject: envelope.subject(),
        body: envelope.body(),
        ..Message::plain(envelope.id, envelope.from())
    }
}

#[test]
fn reregister_same_project_keeps_id_and_updates_program_and_task() {
    let mut state = ShardState::new(0, 1, LIMITS);
    let first = register(&mut state, "a", 1, RegisterMode::Upsert);
    let mut again = registration("a", 1, RegisterMode::Upsert);
    again.new_id = Uuid::from_u128(99);
    again.program = Some("new".into());
    again.task_description = Some("build".into());
    again.now_ms = 9;
    let second = state.handle(Request::Register(again));
    let (
        Reply::Registered {
            profile: p1,
            created: true,
            ..
        },
        Reply::Registered {
            profile: p2,
            created: false,
            ..
        },
    ) = (first, second)
    else {
        panic!("expected a creation then an update");
    };
    assert_eq!(p1.id, p2.id);
    assert_eq!(&*p2.program, "new");
    assert_eq!(&*p2.task_description, "build");
    assert_eq!((p2.created_ms, p2.updated_ms), (5, 9));
    assert_eq!((p1.version, p2.version), (1, 2));
    assert_eq!(state.agent_count(), 1);
}

#[test]
fn same_name_in_another_project_or_create_only_is_taken() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    let taken = Reply::NameTaken {
        project_id: Uuid::from_u128(1),
    };
    assert_eq!(register(&mut state, "a", 2, RegisterMode::Upsert), taken);
    assert_eq!(
        register(&mut state, "a", 1, RegisterMode::CreateOnly),
        taken
    );
}

#[test]
fn unknown_recipient_delivers_nothing() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    assert_eq!(
        deliver(&mut state, envelope(1, &["a", "ghost"])),
        Reply::Delivered(Err(Undeliverable::UnknownRecipients(names(&["ghost"]))))
    );
    assert_eq!(state.queued_messages(), 0);
    assert_eq!(drain_all(&mut state, "a"), (vec![], 0));
    assert_eq!(fetch(&mut state, "a", 0, 10).messages, vec![]);
}

#[test]
fn drain_returns_each_message_once_and_leaves_it_readable() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    for n in 1..=3 {
        deliver(&mut state, envelope(n, &["a"]));
    }
    assert_eq!(state.queued_messages(), 3);
    assert_eq!(drain_all(&mut state, "a"), (vec![1, 2, 3], 0));
    assert_eq!(drain_all(&mut state, "a"), (vec![], 0));
    assert_eq!(state.queued_messages(), 0);
    let page = fetch(&mut state, "a", 0, 10);
    assert_eq!(seqs(&page), vec![(1, 1), (2, 2), (3, 3)]);
    assert!(page
        .messages
        .iter()
        .all(|m| m.drained && m.read_at == Some(50) && m.acked_at.is_none()));
    assert_eq!(page.counts.unread, 0);
}

#[test]
fn acting_as_an_unknown_agent_is_refused() {
    let mut state = ShardState::new(0, 1, LIMITS);
    assert_eq!(drain(&mut state, "nobody", 1, true), Reply::NoAgent);
    let query = FetchQuery {
        after: 0,
        limit: 1,
        unread_only: false,
        urgent_only: false,
        thread_id: None,
        max_weight: 10,
        at_least_one: true,
    };
    assert_eq!(
        state.handle(Request::Fetch {
            actor: actor("nobody"),
            query
        }),
        Reply::NoAgent
    );
}

#[test]
fn a_full_inbox_refuses_and_reservations_count_against_the_cap() {
    let mut state = ShardState::new(
        0,
        1,
        InboxLimits {
            messages: 2,
            ..LIMITS
        },
    );
    register(&mut state, "a", 1, RegisterMode::Upsert);
    register(&mut state, "b", 1, RegisterMode::Upsert);
    let send = |state: &mut ShardState, n: u128| deliver(state, envelope(n, &["a", "b"]));
    assert_eq!(send(&mut state, 1), Reply::Delivered(Ok(2)));
    // One place left each; a prepared message takes b's.
    assert_eq!(prepare(&mut state, 10, &["b"]), Reply::Prepared(Ok(1)));
    assert_eq!(
        send(&mut state, 2),
        Reply::Delivered(Err(Undeliverable::InboxFull(names(&["b"])))),
        "all or nothing: a gets nothing either"
    );
    assert_eq!(state.queued_messages(), 2);
    state.handle(Request::Abort {
        id: Uuid::from_u128(10),
    });
    assert_eq!(send(&mut state, 3), Reply::Delivered(Ok(2)));
    assert_eq!(
        send(&mut state, 4),
        Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a", "b"]))))
    );
    // Draining makes room again, though the drained mail is still retained.
    drain_all(&mut state, "a");
    drain_all(&mut state, "b");
    assert_eq!(send(&mut state, 5), Reply::Delivered(Ok(2)));
    assert_eq!(fetch(&mut state, "a", 0, 10).messages.len(), 3);
}

fn prepare(state: &mut ShardState, n: u128, recipients: &[&str]) -> Reply {
    state.handle(Request::Prepare {
        envelope: envelope(n, recipients),
        owners: 2,
    })
}

#[test]
fn a_prepared_message_is_invisible_until_committed() {
    let mut state = ShardState::new(
        0,
        1,
        InboxLimits {
            messages: 1,
            ..LIMITS
        },
    );
    register(&mut state, "a", 1, RegisterMode::Upsert);
    assert_eq!(prepare(&mut state, 1, &["a"]), Reply::Prepared(Ok(1)));
    assert_eq!(drain_all(&mut state, "a"), (vec![], 0), "not visible yet");
    assert_eq!(fetch(&mut state, "a", 0, 5).messages, vec![]);
    assert_eq!(
        prepare(&mut state, 2, &["a"]),
        Reply::Prepared(Err(Undeliverable::InboxFull(names(&["a"])))),
        "the prepared message holds the only place"
    );
    state.handle(Request::Commit {
        id: Uuid::from_u128(1),
    });
    assert_eq!(drain_all(&mut state, "a"), (vec![1], 0));
}

#[test]
fn sequence_numbers_never_repeat_and_cursors_are_checked() {
    let mut state = ShardState::new(
        0,
        1,
        InboxLimits {
            retained_messages: 3,
            ..LIMITS
        },
    );
    register(&mut state, "a", 1, RegisterMode::Upsert);
    for n in 1..=5 {
        deliver(&mut state, envelope(n, &["a"]));
        drain_all(&mut state, "a");
    }
    let page = fetch(&mut state, "a", 0, 10);
    assert_eq!(seqs(&page), vec![(3, 3), (4, 4), (5, 5)], "two evicted");
    assert_eq!(page.skipped, 2);
    assert_eq!((page.next_after, page.has_more), (5, false));
    let page = fetch(&mut state, "a", 3, 1);
    assert_eq!(seqs(&page), vec![(4, 4)]);
    assert_eq!((page.next_after, page.has_more, page.skipped), (4, true, 0));
    let peek = fetch(&mut state, "a", 0, 0);
    assert_eq!((peek.messages.len(), peek.next_after), (0, 5));
    let beyond = FetchQuery {
        after: 6,
        limit: 1,
        unread_only: false,
        urgent_only: false,
        thread_id: None,
        max_weight: 100,
        at_least_one: true,
    };
    assert_eq!(
        state.handle(Request::Fetch {
            actor: actor("a"),
            query: beyond
        }),
        Reply::Fetched(Err(UnknownCursor { newest: 5 }))
    );
}

#[test]
fn retention_evicts_drained_mail_first_and_never_undrained_mail() {
    let mut state = ShardState::new(
        0,
        1,
        InboxLimits {
            retained_messages: 2,
            ..LIMITS
        },
    );
    register(&mut state, "a", 1, RegisterMode::Upsert);
    register(&mut state, "b", 1, RegisterMode::Upsert);
    for n in 1..=2 {
        deliver(&mut state, envelope(n, &["a"]));
    }
    drain_all(&mut state, "a");
    for n in 3..=6 {
        deliver(&mut state, envelope(n, &["a"]));
    }
    let page = fetch(&mut state, "a", 0, 10);
    assert_eq!(
        seqs(&page).len(),
        6,
        "the bound holds the history (2 drained); undrained mail is the inbox's"
    );
    deliver(&mut state, message(7, "a", &["b"], &[]));
    assert_eq!(
        seqs(&fetch(&mut state, "a", 0, 10)),
        vec![(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)],
        "a sent copy joins the history: the oldest drained delivery goes"
    );
    assert_eq!(drain_all(&mut state, "a"), (vec![3, 4, 5, 6], 0));
    assert_eq!(
        seqs(&fetch(&mut state, "a", 0, 10)),
        vec![(6, 6)],
        "history: the sent copy (7) and the newest drained delivery"
    );
    assert_eq!(
        state.retained_messages(),
        3,
        "a's two, and b's undrained delivery"
    );
}

#[test]
fn marks_are_idempotent_and_counted() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    let mut urgent = Envelope::compose(Message {
        importance: Importance::Urgent,
        ack_required: true,
        ..message_of(&envelope(1, &[]))
    });
    urgent = Envelope::compose(Message {
        to: names(&["a"]),
        importance: Importance::Urgent,
        ack_required: true,
        ..message_of(&urgent)
    });
    deliver(&mut state, Arc::new(urgent));
    deliver(&mut state, envelope(2, &["a"]));
    let counts = fetch(&mut state, "a", 0, 0).counts;
    assert_eq!(
        counts,
        Counts {
            unread: 2,
            urgent_unread: 1,
            ack_pending: 1
        }
    );
    let mark = |state: &mut ShardState, ids: &[u128], ack: bool, now_ms: i64| {
        let ids = ids.iter().map(|n| Uuid::from_u128(*n)).collect();
        let actor = Actor {
            now_ms,
            ..actor("a")
        };
        match state.handle(Request::Mark { actor, ids, ack }) {
            Reply::Marked(marked) => marked,
            other => panic!("{other:?}"),
        }
    };
    let first = mark(&mut state, &[1, 9], true, 60);
    assert_eq!(first.found, vec![(Uuid::from_u128(1), Some(60), Some(60))]);
    assert_eq!(first.not_found, vec![Uuid::from_u128(9)]);
    assert_eq!(first.changed, 1);
    let again = mark(&mut state, &[1], true, 70);
    assert_eq!(again.found, vec![(Uuid::from_u128(1), Some(60), Some(60))]);
    assert_eq!(again.changed, 0, "the first time is kept");
    mark(&mut state, &[2], false, 80);
    assert_eq!(fetch(&mut state, "a", 0, 0).counts, Counts::default());
}

#[test]
fn the_sender_keeps_a_copy_and_a_thread_joins_both_sides() {
    let mut state = ShardState::new(0, 1, LIMITS);
    for name in ["a", "b", "c"] {
        register(&mut state, name, 1, RegisterMode::Upsert);
    }
    let opener = message(1, "a", &["b"], &["c"]);
    let thread = opener.thread_id().to_string();
    deliver(&mut state, Arc::clone(&opener));
    let reply = Arc::new(Envelope::compose(Message {
        thread_id: Some(&thread),
        reply_to: Some(opener.id),
        to: names(&["a"]),
        ..message_of(&message(2, "b", &[], &[]))
    }));
    deliver(&mut state, reply);
    let query = ThreadQuery {
        thread_id: thread.as_str().into(),
        after: None,
        limit: 10,
        max_weight: usize::MAX,
        at_least_one: true,
    };
    let Reply::Thread(Some(page)) = state.handle(Request::Thread {
        actor: actor("a"),
        query: query.clone(),
    }) else {
        panic!("thread");
    };
    let ids: Vec<(u128, bool)> = page
        .messages
        .iter()
        .map(|i| (i.envelope.id.as_u128(), i.delivery.is_some()))
        .collect();
    assert_eq!(ids, vec![(1, false), (2, true)], "sent, then received");
    assert_eq!(page.participants, names(&["a", "b", "c"]));
    let Reply::Thread(Some(cc_view)) = state.handle(Request::Thread {
        actor: actor("c"),
        query: query.clone(),
    }) else {
        panic!("thread");
    };
    assert_eq!(cc_view.messages.len(), 1);
    assert_eq!(
        cc_view.messages[0].delivery.as_ref().map(|d| d.kind),
        Some(Kind::Cc)
    );
    let unknown = ThreadQuery {
        thread_id: "nope".into(),
        ..query
    };
    assert_eq!(
        state.handle(Request::Thread {
            actor: actor("a"),
            query: unknown
        }),
        Reply::Thread(None)
    );
    let find = |state: &mut ShardState, who: &str, n: u128| match state.handle(Request::Find {
        actor: actor(who),
        id: Uuid::from_u128(n),
    }) {
        Reply::Found(found) => found.map(|(e, sent)| (e.id.as_u128(), sent)),
        other => panic!("{other:?}"),
    };
    assert_eq!(find(&mut state, "a", 1), Some((1, true)));
    assert_eq!(find(&mut state, "b", 1), Some((1, false)));
    assert_eq!(find(&mut state, "c", 2), None, "c never saw the reply");
}

#[test]
fn agent_tokens_guard_every_act_and_do_not_say_who_exists() {
    let mut state = ShardState::new(0, 1, LIMITS);
    state.set_agent_auth(true);
    let mut r = registration("a", 1, RegisterMode::Upsert);
    r.new_token_hash = Some(Uuid::from_u128(77));
    let Reply::Registered { token_issued, .. } = state.handle(Request::Register(r)) else {
        panic!("register");
    };
    assert!(token_issued);
    let with = |token: Option<u128>| Actor {
        token: token.map(Uuid::from_u128),
        ..actor("a")
    };
    let drain_as = |state: &mut ShardState, actor: Actor| {
        state.handle(Request::Drain {
            actor,
            max_weight: 10,
            at_least_one: true,
        })
    };
    assert_eq!(drain_as(&mut state, with(None)), Reply::NoAgent);
    assert_eq!(drain_as(&mut state, with(Some(1))), Reply::NoAgent);
    assert!(matches!(
        drain_as(&mut state, with(Some(77))),
        Reply::Drained(_)
    ));
    let mut update = registration("a", 1, RegisterMode::Upsert);
    update.token = Some(Uuid::from_u128(1));
    assert_eq!(state.handle(Request::Register(update)), Reply::NoAgent);
    assert_eq!(
        state.handle(Request::Lookup {
            name: "a".into(),
            token: None
        }),
        Reply::Agent(None)
    );
}

#[test]
fn new_mail_is_noted_only_for_watched_agents() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    register(&mut state, "b", 1, RegisterMode::Upsert);
    deliver(&mut state, envelope(1, &["a", "b"]));
    assert!(!state.has_new_mail());
    state.watch("b", true);
    deliver(&mut state, envelope(2, &["a", "b"]));
    let mut out = Vec::new();
    state.take_new_mail(&mut out);
    assert_eq!(out, vec![(0, "b".into())]);
    state.watch("b", false);
    deliver(&mut state, envelope(3, &["b"]));
    assert!(!state.has_new_mail());
}

#[test]
fn agents_are_listed_most_recently_active_first() {
    let mut state = ShardState::new(0, 1, LIMITS);
    for name in ["a", "b", "c"] {
        register(&mut state, name, 1, RegisterMode::Upsert);
    }
    register(&mut state, "other", 2, RegisterMode::Upsert);
    let later = Actor {
        now_ms: 5_000,
        ..actor("b")
    };
    state.handle(Request::Drain {
        actor: later,
        max_weight: 1,
        at_least_one: false,
    });
    let Reply::Agents(list) = state.handle(Request::ListAgents {
        project_id: Uuid::from_u128(1),
        active_since_ms: None,
        limit: 2,
    }) else {
        panic!("list");
    };
    let got: Vec<(&str, i64)> = list
        .iter()
        .map(|a| (&*a.profile.name, a.last_active_ms))
        .collect();
    assert_eq!(got, vec![("b", 5_000), ("a", 5)]);
    let Reply::Agents(recent) = state.handle(Request::ListAgents {
        project_id: Uuid::from_u128(1),
        active_since_ms: Some(1_000),
        limit: 10,
    }) else {
        panic!("list");
    };
    assert_eq!(recent.len(), 1);
}

/// A state with its log on, and the records it wrote, read back.
fn logged_state(limits: InboxLimits) -> ShardState {
    ShardState::with_log(0, 1, limits, LogBuffer::new(true, 0))
}

fn records_of(state: &mut ShardState) -> Vec<Record> {
    let (bytes, _) = state.log_mut().take_batch(Vec::new());
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match crate::state::record::decode(&bytes[at..]) {
            Ok(crate::state::record::Decoded::Record(record, len)) => {
                records.push(record);
                at += len;
            }
            other => panic!("bad log at {at}: {other:?}"),
        }
    }
    records
}

/// Everything observable about every agent, sorted.
fn dump(state: &ShardState) -> Vec<String> {
    let mut all: Vec<String> = state
        .agents
        .iter()
        .map(|(name, agent)| {
            let deliveries: Vec<String> = (0..agent.deliveries.len())
                .map(|i| {
                    let v = agent.view(i);
                    format!(
                        "{}:{}:{:?}:{:?}:{:?}:{}",
                        v.seq,
                        v.envelope.id.as_u128(),
                        v.kind,
                        v.read_at,
                        v.acked_at,
                        v.drained
                    )
                })
                .collect();
            let sent: Vec<u128> = agent.sent.iter().map(|e| e.id.as_u128()).collect();
            format!(
                "{name} v{} active={} next={} {:?} sent={:?} {:?} reserved={}",
                agent.profile.version,
                agent.last_active_ms / ACTIVITY_LOG_INTERVAL_MS,
                agent.next_seq(),
                deliveries,
                sent,
                agent.counts,
                agent.reserved
            )
        })
        .collect();
    all.sort();
    all
}

/// The web view's directory: per project, (key, agents, queued, messages counted, recent).
fn directory_dump(state: &ShardState) -> Vec<(String, usize, usize, u32, Vec<u128>)> {
    let (projects, _) = state.directory.list(None, usize::MAX, 0);
    projects
        .iter()
        .map(|p| {
            let entry = state.directory.project(&p.id).expect("listed");
            let recent = entry.recent.iter().map(|e| e.id.as_u128()).collect();
            let counted = entry.traffic.last_hour(60_000).iter().sum();
            (p.key.to_string(), p.agents, p.queued, counted, recent)
        })
        .collect()
}

fn busy_state(limits: InboxLimits) -> ShardState {
    let mut live = logged_state(limits);
    register(&mut live, "a", 1, RegisterMode::Upsert);
    register(&mut live, "b", 1, RegisterMode::Upsert);
    for n in 1..=4 {
        deliver(&mut live, message(n, "a", &["b"], &["a"]));
    }
    prepare(&mut live, 10, &["a"]);
    prepare(&mut live, 11, &["b"]);
    prepare(&mut live, 12, &["a", "b"]);
    live.handle(Request::Commit {
        id: Uuid::from_u128(10),
    });
    live.handle(Request::Abort {
        id: Uuid::from_u128(11),
    });
    drain(&mut live, "a", 12, true);
    drain(&mut live, "b", usize::MAX, true);
    live.handle(Request::Mark {
        actor: Actor {
            now_ms: 4_000,
            ..actor("b")
        },
        ids: vec![Uuid::from_u128(3), Uuid::from_u128(4)],
        ack: true,
    });
    // Acting a while later logs the agent's activity.
    live.handle(Request::Whois {
        actor: Actor {
            now_ms: 9_000,
            ..actor("a")
        },
    });
    let reserved = live.handle(Request::Leases(LeaseRequest {
        project_id: Uuid::from_u128(1),
        agent: "a".into(),
        now_ms: 9_000,
        op: keyed_reserve("src/a.rs", "r-1", 5),
    }));
    assert!(
        matches!(reserved, Reply::Reserved(Ok((ref granted, ref conflicts))) if granted.len() == 1 && conflicts.is_empty()),
        "{reserved:?}"
    );
    live
}

/// A reservation of `path` with idempotency key `key`, for a request whose hash is `hash`.
fn keyed_reserve(path: &str, key: &str, hash: u64) -> LeaseOp {
    LeaseOp::Reserve {
        paths: vec![path.into()],
        ttl_ms: 60_000,
        exclusive: true,
        reason: "edit".into(),
        idempotency: Some(crate::envelope::Idempotency {
            key: key.into(),
            request_hash: hash,
        }),
    }
}

#[test]
fn a_keyed_reservation_repeated_gets_its_first_leases_and_changes_nothing() {
    use crate::leases::LeaseError;
    let reserve = |state: &mut ShardState, agent: &str, op: LeaseOp| {
        state.handle(Request::Leases(LeaseRequest {
            project_id: Uuid::from_u128(1),
            agent: agent.into(),
            now_ms: 9_000,
            op,
        }))
    };
    let mut live = busy_state(LIMITS);
    let _ = records_of(&mut live);
    let granted_ids = |reply: &Reply| match reply {
        Reply::Reserved(Ok((granted, _))) => granted.iter().map(|l| l.id).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let first = reserve(&mut live, "a", keyed_reserve("src/a.rs", "r-1", 5));
    assert_eq!(granted_ids(&first), vec![1], "the lease busy_state granted");
    assert!(records_of(&mut live).is_empty(), "a repeat logs nothing");
    // Another agent's same key is its own; another request under a's key is refused.
    let other = reserve(&mut live, "b", keyed_reserve("src/b.rs", "r-1", 5));
    assert_eq!(granted_ids(&other), vec![2]);
    let refused = reserve(&mut live, "a", keyed_reserve("src/c.rs", "r-1", 6));
    assert!(
        matches!(&refused, Reply::Reserved(Err(LeaseError::KeyReused { key })) if &**key == "r-1"),
        "{refused:?}"
    );
    // The keys are in the log, in a snapshot image and in a moved project.
    let image = live.image();
    let mut restored = ShardState::new(0, 1, LIMITS);
    image_records(&image, |record| restored.replay(record).expect("replays"));
    let mut moved = ShardState::new(0, 1, LIMITS);
    for project in image.projects {
        moved.restore_project(project);
    }
    for state in [&mut restored, &mut moved] {
        let again = reserve(state, "a", keyed_reserve("src/a.rs", "r-1", 5));
        assert_eq!(granted_ids(&again), vec![1]);
        let again = reserve(state, "b", keyed_reserve("src/b.rs", "r-1", 5));
        assert_eq!(granted_ids(&again), vec![2]);
    }
}

/// Every record kind, named, so that a new kind cannot be left out of the replay tests.
fn kind(record: &Record) -> &'static str {
    match record {
        Record::Agent(_) => "agent",
        Record::Enqueued { .. } => "enqueued",
        Record::Prepared { .. } => "prepared",
        Record::Visible { .. } => "visible",
        Record::Aborted { .. } => "aborted",
        Record::Drained { .. } => "drained",
        Record::Marked { .. } => "marked",
        Record::Activity { .. } => "activity",
        Record::Lease { .. } => "lease",
        Record::Delivery { .. } => "delivery",
        Record::Sent { .. } => "sent",
        Record::LeaseIds { .. } => "lease ids",
        Record::LeaseKey { .. } => "lease key",
    }
}

/// The leases of every project, as text (a lease has no equality of its own).
fn leases_dump(state: &mut ShardState) -> Vec<String> {
    let mut all: Vec<String> = state
        .take_projects()
        .into_iter()
        .map(|p| {
            format!(
                "{} next={} {:?} {:?}",
                p.project_id, p.next_id, p.leases, p.keys
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn replaying_the_log_gives_the_live_state() {
    let limits = InboxLimits {
        retained_messages: 4,
        ..LIMITS
    };
    let mut live = busy_state(limits);
    let records = records_of(&mut live);
    assert_eq!(live.log().end(), records.len() as u64);
    let mut kinds: Vec<&str> = records.iter().map(kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    // Every kind a live change writes (the rest are a snapshot's: see the image test).
    assert_eq!(
        kinds,
        [
            "aborted",
            "activity",
            "agent",
            "drained",
            "enqueued",
            "lease",
            "lease key",
            "marked",
            "prepared",
            "visible"
        ]
    );
    let mut replayed = ShardState::new(0, 1, limits);
    for record in records {
        replayed.replay(record).expect("replays");
    }
    assert_eq!(dump(&replayed), dump(&live));
    assert_eq!(directory_dump(&replayed), directory_dump(&live));
    let (key, agents, queued, counted, _) = &directory_dump(&live)[0];
    assert_eq!(
        (key.as_str(), *agents, *queued, *counted),
        ("key-1", 2, live.queued_messages(), 4)
    );
    assert_eq!(replayed.queued_messages(), live.queued_messages());
    assert_eq!(replayed.retained_messages(), live.retained_messages());
    assert_eq!(replayed.live_bytes(), live.live_bytes());
    let pending = |s: &ShardState| s.pending().map(|p| p.envelope.id).collect::<Vec<_>>();
    assert_eq!(pending(&replayed), pending(&live));
    assert_eq!(leases_dump(&mut replayed), leases_dump(&mut live));
    assert_eq!(leases_dump(&mut live).len(), 0, "taken out above");
}

#[test]
fn an_image_replays_to_the_same_state() {
    let limits = InboxLimits {
        retained_messages: 4,
        ..LIMITS
    };
    let mut live = busy_state(limits);
    let image = live.image();
    let mut restored = ShardState::new(0, 1, limits);
    let mut kinds = Vec::new();
    image_records(&image, |record| {
        kinds.push(kind(&record));
        restored.replay(record).expect("replays")
    });
    kinds.sort_unstable();
    kinds.dedup();
    // A snapshot's own kinds, beside profiles, prepares and markers.
    for snapshot_kind in ["delivery", "sent", "lease", "lease ids", "activity"] {
        assert!(
            kinds.contains(&snapshot_kind),
            "{snapshot_kind} not in {kinds:?}"
        );
    }
    assert_eq!(dump(&restored), dump(&live));
    assert_eq!(leases_dump(&mut restored), leases_dump(&mut live));
    // An image keeps only retained sent copies: the traffic counted may be less.
    let counts = |s: &ShardState| -> Vec<(String, usize, usize)> {
        directory_dump(s)
            .into_iter()
            .map(|(key, agents, queued, _, _)| (key, agents, queued))
            .collect()
    };
    assert_eq!(counts(&restored), counts(&live));
    assert_eq!(restored.queued_messages(), live.queued_messages());
    // And moving agents one by one (a reshard) gives the same.
    let mut moved = ShardState::new(0, 1, limits);
    for agent in image.agents {
        moved.restore_agent(agent).expect("restores");
    }
    // Pending sends do not move (they are settled first): compare without their holds.
    let unheld = |dump: Vec<String>| -> Vec<String> {
        dump.into_iter()
            .map(|line| line.split(" reserved=").next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(unheld(dump(&moved)), unheld(dump(&live)));
}

#[test]
fn emissions_wait_for_their_records_to_be_durable() {
    let mut state = logged_state(LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    deliver(&mut state, envelope(1, &["a"]));
    let mut out = Vec::new();
    state.outbox_mut().take_events(1, &mut out);
    assert!(
        matches!(
            &out[..],
            [Emitted::Profile {
                created: true,
                seq: 0,
                ..
            }]
        ),
        "{out:?}"
    );
    out.clear();
    state.outbox_mut().take_events(1, &mut out);
    assert!(out.is_empty(), "the message's record is not durable yet");
    state.outbox_mut().take_events(2, &mut out);
    assert!(
        matches!(&out[..], [Emitted::Message { seq: 1, .. }]),
        "{out:?}"
    );
}

#[test]
fn a_drain_that_does_not_match_the_inbox_is_refused() {
    let mut state = ShardState::new(0, 1, LIMITS);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    let wrong = Record::Drained {
        name: "a".into(),
        count: 1,
        last_id: Uuid::from_u128(5),
        at_ms: None,
    };
    assert!(state.replay(wrong).is_err());
}

#[test]
fn the_byte_cap_refuses_and_a_drain_pages_by_bytes() {
    // Each test envelope carries 6 bytes of text.
    let mut state = ShardState::new(
        0,
        1,
        InboxLimits {
            bytes: 18,
            ..LIMITS
        },
    );
    register(&mut state, "a", 1, RegisterMode::Upsert);
    for n in 0..3 {
        assert_eq!(
            deliver(&mut state, envelope(n, &["a"])),
            Reply::Delivered(Ok(1))
        );
    }
    assert_eq!(
        deliver(&mut state, envelope(3, &["a"])),
        Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a"]))))
    );
    assert_eq!(
        drained_ids(drain(&mut state, "a", 13, true)),
        (vec![0, 1], 1)
    );
    assert_eq!(drained_ids(drain(&mut state, "a", 1, false)), (vec![], 1));
    assert_eq!(drained_ids(drain(&mut state, "a", 1, true)), (vec![2], 0));
    assert_eq!(
        deliver(&mut state, envelope(4, &["a"])),
        Reply::Delivered(Ok(1))
    );
}

#[test]
fn the_image_encoder_writes_the_image_records_in_pieces() {
    let mut live = busy_state(LIMITS);
    let image = live.image();
    let mut whole = Vec::new();
    image_records(&image, |record| {
        crate::state::record::encode(&mut whole, &record)
    });
    for piece_bytes in [1, 200, usize::MAX] {
        let mut encoder = ImageEncoder::new(&image);
        let (mut all, mut pieces) = (Vec::new(), 0);
        loop {
            let mut piece = Vec::new();
            let done = encoder.fill(&mut piece, piece_bytes);
            all.extend_from_slice(&piece);
            pieces += 1;
            assert!(pieces <= 1_000, "the encoder never finishes");
            if done {
                break;
            }
        }
        assert_eq!(all, whole, "pieces of {piece_bytes} bytes");
        match piece_bytes {
            usize::MAX => assert_eq!(pieces, 1),
            _ => assert!(pieces > 4, "{pieces} pieces of {piece_bytes} bytes"),
        }
    }
}

/// Message `n` from `a` to `b` with idempotency key `key`, for a request whose hash is `hash`.
fn keyed(n: u128, key: &str, hash: u64) -> SharedEnvelope {
    let envelope = Envelope::compose(Message {
        to: names(&["b"]),
        timestamp_ms: n as i64,
        ..Message::plain(Uuid::from_u128(n), "a")
    });
    Arc::new(
        envelope.with_idempotency(Some(crate::envelope::Idempotency {
            key: key.into(),
            request_hash: hash,
        })),
    )
}

fn key_state(limits: InboxLimits) -> ShardState {
    let mut state = logged_state(limits);
    register(&mut state, "a", 1, RegisterMode::Upsert);
    register(&mut state, "b", 1, RegisterMode::Upsert);
    state
}

#[test]
fn a_repeat_with_the_same_key_gets_the_first_message_and_delivers_nothing() {
    use crate::protocol::KeyUse;
    let mut state = key_state(LIMITS);
    assert_eq!(
        deliver(&mut state, keyed(1, "k", 7)),
        Reply::Delivered(Ok(1))
    );
    let Reply::Delivered(Err(Undeliverable::KeyUsed(KeyUse::Sent(first)))) =
        deliver(&mut state, keyed(2, "k", 7))
    else {
        panic!("a repeat is told the first message");
    };
    assert_eq!(first.id, Uuid::from_u128(1));
    assert_eq!(
        deliver(&mut state, keyed(3, "k", 8)),
        Reply::Delivered(Err(Undeliverable::KeyUsed(KeyUse::OtherRequest))),
        "the same key for another message"
    );
    assert_eq!(drain_all(&mut state, "b"), (vec![1], 0), "delivered once");
    // Another sender's key space is its own.
    let from_b = Envelope::compose(Message {
        to: names(&["a"]),
        ..Message::plain(Uuid::from_u128(4), "b")
    });
    let from_b = from_b.with_idempotency(keyed(0, "k", 7).idempotency().cloned());
    assert_eq!(
        deliver(&mut state, Arc::new(from_b)),
        Reply::Delivered(Ok(1))
    );
}

#[test]
fn a_key_under_way_is_told_in_flight_and_an_aborted_one_is_free_again() {
    use crate::protocol::KeyUse;
    let mut state = key_state(LIMITS);
    let prepare = |state: &mut ShardState, n| {
        state.handle(Request::Prepare {
            envelope: keyed(n, "k", 7),
            owners: 2,
        })
    };
    assert_eq!(prepare(&mut state, 1), Reply::Prepared(Ok(1)));
    assert_eq!(
        prepare(&mut state, 2),
        Reply::Prepared(Err(Undeliverable::KeyUsed(KeyUse::InFlight)))
    );
    state.handle(Request::Abort {
        id: Uuid::from_u128(1),
    });
    assert_eq!(prepare(&mut state, 3), Reply::Prepared(Ok(1)));
    state.handle(Request::Commit {
        id: Uuid::from_u128(3),
    });
    let repeat = deliver(&mut state, keyed(4, "k", 7));
    assert!(
        matches!(&repeat, Reply::Delivered(Err(Undeliverable::KeyUsed(KeyUse::Sent(e)))) if e.id == Uuid::from_u128(3)),
        "{repeat:?}"
    );
}

#[test]
fn keys_last_as_long_as_their_message_in_the_history_and_survive_replay_and_moves() {
    use crate::protocol::KeyUse;
    let limits = InboxLimits {
        retained_messages: 2,
        ..LIMITS
    };
    let mut live = key_state(limits);
    for n in 1..=3 {
        deliver(&mut live, keyed(n, &format!("k{n}"), n as u64));
    }
    let repeat_of = |state: &mut ShardState, n: u128| match deliver(
        state,
        keyed(100 + n, &format!("k{n}"), n as u64),
    ) {
        Reply::Delivered(Err(Undeliverable::KeyUsed(KeyUse::Sent(first)))) => {
            Some(first.id.as_u128())
        }
        Reply::Delivered(Ok(_)) => None,
        other => panic!("{other:?}"),
    };
    // From the log, from a snapshot image, and moved agent by agent (a reshard).
    let mut replayed = logged_state(limits);
    for record in records_of(&mut live) {
        replayed.replay(record).expect("replays");
    }
    let image = live.image();
    let mut restored = ShardState::new(0, 1, limits);
    image_records(&image, |record| restored.replay(record).expect("replays"));
    let mut moved = ShardState::new(0, 1, limits);
    for agent in image.agents {
        moved.restore_agent(agent).expect("restores");
    }
    for state in [&mut live, &mut replayed, &mut restored, &mut moved] {
        assert_eq!(repeat_of(state, 3), Some(3));
        assert_eq!(repeat_of(state, 2), Some(2));
        // Message 1 left the sender's history (2 retained): its key is forgotten.
        assert_eq!(repeat_of(state, 1), None);
    }
}
