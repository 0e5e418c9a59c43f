//! Reads for the web view ([`View`]): they change nothing, not even `last_active`, and each
//! does bounded work: at most [`MAX_VIEW_ITEMS`] items of an ordered range, or at most
//! [`MAX_VIEW_STEPS`] history entries read while searching for a message.

use super::agents::Agent;
use super::ShardState;
use crate::directory::TRAFFIC_MINUTES;
use crate::envelope::SharedEnvelope;
use crate::protocol::{AgentPage, AgentRow, Receipt, RosterPart, ThreadRef, View, ViewReply};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Items one view request returns at most, whatever the caller asks: a page of the view is
/// a few dozen rows, and this keeps one request's work small on the shard that answers it.
pub const MAX_VIEW_ITEMS: usize = 500;
/// History entries one request reads at most while looking for messages (a few hundred
/// microseconds): past it the search stops and reports what it did not finish.
pub const MAX_VIEW_STEPS: usize = 65_536;
/// The newest deliveries, and the newest sent messages, read to list an agent's threads.
pub const THREAD_SCAN: usize = 500;
/// Threads listed for one agent.
pub const MAX_THREADS_LISTED: usize = 50;
/// How long after its timestamp a message may become visible on a shard. A shard makes
/// messages visible in the order it keeps them, each within this long of its timestamp
/// (a send that took longer has long timed out), so a message is found by a binary search
/// on time and a scan of this window either side (see [`find_by_time`]). A wall clock
/// stepped back by more than this can hide a message from the view (never from the tools).
pub const VISIBLE_SLACK_MS: i64 = 10 * 60_000;

/// What a search of histories may still read.
struct Budget(usize);

impl Budget {
    fn full() -> Self {
        Budget(MAX_VIEW_STEPS)
    }

    /// Takes one step; false once the budget is spent.
    fn step(&mut self) -> bool {
        if self.0 == 0 {
            return false;
        }
        self.0 -= 1;
        true
    }

    fn spent(&self) -> bool {
        self.0 == 0
    }
}

impl ShardState {
    pub(super) fn view(&self, view: View) -> ViewReply {
        match view {
            View::Projects {
                after,
                limit,
                now_ms,
            } => {
                let (projects, has_more) =
                    self.directory
                        .list(after.as_deref(), limit.min(MAX_VIEW_ITEMS), now_ms);
                ViewReply::Projects { projects, has_more }
            }
            View::Roster {
                project_id,
                after,
                limit,
                now_ms,
            } => ViewReply::Roster(Box::new(self.roster(
                &project_id,
                after.as_deref(),
                limit.min(MAX_VIEW_ITEMS),
                now_ms,
            ))),
            View::Agent {
                name,
                before,
                limit,
            } => ViewReply::Agent(
                self.agent_page(&name, before, limit.min(MAX_VIEW_ITEMS))
                    .map(Box::new),
            ),
            View::Message {
                id,
                from,
                project_id,
            } => {
                let mut budget = Budget::full();
                let found = self.find_sent(&id, from.as_deref(), project_id, &mut budget);
                ViewReply::Message {
                    unfinished: found.is_none() && budget.spent(),
                    found,
                }
            }
            View::Receipts {
                id,
                timestamp_ms,
                names,
            } => {
                let mut budget = Budget::full();
                ViewReply::Receipts(
                    names
                        .into_iter()
                        .take(MAX_VIEW_ITEMS)
                        .map(|name| {
                            let receipt = self.receipt(&name, &id, timestamp_ms, &mut budget);
                            (name, receipt)
                        })
                        .collect(),
                )
            }
        }
    }

    fn roster(
        &self,
        project_id: &Uuid,
        after: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> RosterPart {
        use std::ops::Bound;
        let Some(entry) = self.directory.project(project_id) else {
            return RosterPart {
                key: None,
                agent_count: 0,
                queued: 0,
                traffic: [0; TRAFFIC_MINUTES],
                agents: Vec::new(),
                has_more: false,
                recent: Vec::new(),
            };
        };
        let start = match after {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        let mut names = entry.agents.range::<str, _>((start, Bound::Unbounded));
        let agents = names
            .by_ref()
            .take(limit)
            .filter_map(|name| self.agents.get(name).map(agent_row))
            .collect();
        // Each remembered message from its sender's history (skipped once evicted there).
        let mut budget = Budget::full();
        let recent = entry
            .recent
            .iter()
            .rev()
            .filter_map(|r| {
                let sender = self.agents.get(&r.from)?;
                let at = find_by_time(&sender.sent, &r.id, r.timestamp_ms, |e| e, &mut budget)?;
                Some(SharedEnvelope::clone(&sender.sent[at]))
            })
            .collect();
        RosterPart {
            key: Some(entry.key.clone()),
            agent_count: entry.agents.len(),
            queued: entry.queued,
            traffic: entry.traffic.last_hour(now_ms),
            agents,
            has_more: names.next().is_some(),
            recent,
        }
    }

    fn agent_page(&self, name: &str, before: Option<u64>, limit: usize) -> Option<AgentPage> {
        let agent = self.agents.get(name)?;
        let len = agent.deliveries.len();
        let end = match before {
            None => len,
            Some(seq) => (seq.saturating_sub(agent.first_seq) as usize).min(len),
        };
        let start = end.saturating_sub(limit);
        Some(AgentPage {
            row: agent_row(agent),
            deliveries: (start..end).rev().map(|index| agent.view(index)).collect(),
            older: (start > 0).then(|| agent.first_seq + start as u64),
            newest_seq: agent.next_seq() - 1,
            threads: threads_of(agent),
        })
    }

    /// Message `id` from the sent copies of `from`, or of the agents here of `project_id`
    /// (in name order, while the budget lasts). Neither: nothing is searched.
    fn find_sent(
        &self,
        id: &Uuid,
        from: Option<&str>,
        project_id: Option<Uuid>,
        budget: &mut Budget,
    ) -> Option<SharedEnvelope> {
        let at_ms = sent_at_ms(id);
        let find = |agent: &Agent, budget: &mut Budget| {
            let at = match at_ms {
                Some(at_ms) => find_by_time(&agent.sent, id, at_ms, |e| e, budget),
                None => None,
            };
            at.map(|at| SharedEnvelope::clone(&agent.sent[at]))
        };
        if let Some(name) = from {
            let agent = self.agents.get(name)?;
            // A miss by time (a clock stepped back, or an id not made here): one linear pass
            // over this sender's history, within the budget.
            return find(agent, budget).or_else(|| {
                agent
                    .sent
                    .iter()
                    .take_while(|_| budget.step())
                    .find(|e| e.id == *id)
                    .cloned()
            });
        }
        at_ms?;
        let project = self.directory.project(&project_id?)?;
        project.agents.iter().find_map(|name| {
            if budget.spent() {
                return None;
            }
            find(self.agents.get(name)?, budget)
        })
    }

    fn receipt(
        &self,
        name: &str,
        id: &Uuid,
        timestamp_ms: i64,
        budget: &mut Budget,
    ) -> Option<Receipt> {
        let agent = self.agents.get(name)?;
        let at = find_by_time(&agent.deliveries, id, timestamp_ms, |d| &d.envelope, budget)?;
        let view = agent.view(at);
        Some(Receipt {
            seq: view.seq,
            kind: view.kind,
            read_at: view.read_at,
            acked_at: view.acked_at,
            drained: view.drained,
        })
    }
}

fn agent_row(agent: &Agent) -> AgentRow {
    AgentRow {
        profile: agent.profile.clone(),
        last_active_ms: agent.last_active_ms,
        queued: agent.undrained(),
        counts: agent.counts,
        sent: agent.sent.len(),
    }
}

/// When message `id` was sent, from its UUID v7 time (every message id this server makes).
fn sent_at_ms(id: &Uuid) -> Option<i64> {
    let (seconds, nanos) = id.get_timestamp()?.to_unix();
    i64::try_from(seconds)
        .ok()?
        .checked_mul(1000)?
        .checked_add(i64::from(nanos / 1_000_000))
}

/// The index of message `id`, sent at `at_ms`, in `items` (kept in the order this shard made
/// them visible, each within [`VISIBLE_SLACK_MS`] of its timestamp); each entry read costs
/// one step of `budget`, and a spent budget ends the search.
///
/// Why a binary search finds it although times are only nearly sorted: every item at or
/// after the message became visible after it was sent, so its time is at least
/// `at_ms - VISIBLE_SLACK_MS`; the search for the first item below that time therefore
/// stops at or before the message, and every item from there to the message became visible
/// within the slack around it. Every item before the message became visible before it, so
/// its time is at most `at_ms + VISIBLE_SLACK_MS`: a later time means the message was passed.
fn find_by_time<T>(
    items: &VecDeque<T>,
    id: &Uuid,
    at_ms: i64,
    envelope: impl Fn(&T) -> &SharedEnvelope,
    budget: &mut Budget,
) -> Option<usize> {
    let earliest = at_ms.saturating_sub(VISIBLE_SLACK_MS);
    let latest = at_ms.saturating_add(VISIBLE_SLACK_MS);
    let start = items.partition_point(|item| {
        budget.step();
        envelope(item).timestamp_ms < earliest
    });
    for (offset, item) in items.range(start..).enumerate() {
        if !budget.step() {
            return None;
        }
        let e = envelope(item);
        if e.id == *id {
            return Some(start + offset);
        }
        if e.timestamp_ms > latest {
            return None;
        }
    }
    None
}

/// The threads in the newest part of an agent's history that are conversations: named
/// threads, and messages with replies. Newest first.
fn threads_of(agent: &Agent) -> Vec<ThreadRef> {
    let received = agent.deliveries.iter().rev().take(THREAD_SCAN);
    let sent = agent.sent.iter().rev().take(THREAD_SCAN);
    // Per thread: its latest message, how many were seen, and whether one named it.
    let mut threads: HashMap<std::borrow::Cow<'_, str>, (&SharedEnvelope, usize, bool)> =
        HashMap::new();
    for envelope in received.map(|d| &d.envelope).chain(sent) {
        let entry = threads
            .entry(envelope.thread_id())
            .or_insert((envelope, 0, false));
        entry.1 += 1;
        entry.2 |= envelope.named_thread().is_some();
        if (envelope.timestamp_ms, envelope.id) > (entry.0.timestamp_ms, entry.0.id) {
            entry.0 = envelope;
        }
    }
    let mut listed: Vec<ThreadRef> = threads
        .into_iter()
        .filter(|(_, (_, messages, named))| *named || *messages > 1)
        .map(|(thread_id, (latest, messages, _))| ThreadRef {
            thread_id: thread_id.into(),
            latest: SharedEnvelope::clone(latest),
            messages,
        })
        .collect();
    listed.sort_by(|a, b| {
        (b.latest.timestamp_ms, b.latest.id).cmp(&(a.latest.timestamp_ms, a.latest.id))
    });
    listed.truncate(MAX_THREADS_LISTED);
    listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, Importance, Message};
    use crate::log::LogBuffer;
    use crate::protocol::{Actor, RegisterMode, Registration, Reply, Request};
    use crate::state::InboxLimits;
    use std::sync::Arc;

    const LIMITS: InboxLimits = InboxLimits {
        messages: 100,
        bytes: usize::MAX,
        retained_messages: 1000,
        retained_bytes: usize::MAX,
    };

    fn register(state: &mut ShardState, name: &str, project: u128) {
        let reply = state.handle(Request::Register(Registration {
            name: name.into(),
            mode: RegisterMode::Upsert,
            new_id: Uuid::from_u128(9000 + project),
            project_id: Uuid::from_u128(project),
            project_key: format!("key-{project}").into(),
            program: None,
            model: None,
            task_description: None,
            now_ms: 5,
            new_token_hash: None,
            token: None,
        }));
        assert!(matches!(reply, Reply::Registered { .. }), "{reply:?}");
    }

    /// A message id as the server makes them: UUID v7 of the send time.
    fn id_at(at_ms: i64, n: u16) -> Uuid {
        let mut random = [0u8; 10];
        random[..2].copy_from_slice(&n.to_le_bytes());
        uuid::Builder::from_unix_timestamp_millis(at_ms as u64, &random).into_uuid()
    }

    fn message(
        at_ms: i64,
        n: u16,
        from: &str,
        to: &[&str],
        thread: Option<&str>,
    ) -> SharedEnvelope {
        Arc::new(Envelope::compose(Message {
            id: id_at(at_ms, n),
            project_id: Uuid::from_u128(1),
            timestamp_ms: at_ms,
            from,
            subject: "s",
            body: "b",
            thread_id: thread,
            reply_to: None,
            importance: Importance::Normal,
            ack_required: true,
            to: to.iter().map(|n| Box::from(*n)).collect(),
            cc: Vec::new(),
        }))
    }

    fn view(state: &mut ShardState, view: View) -> ViewReply {
        match state.handle(Request::View(view)) {
            Reply::View(reply) => reply,
            other => panic!("{other:?}"),
        }
    }

    fn agent_page(state: &mut ShardState, name: &str, before: Option<u64>) -> AgentPage {
        match view(
            state,
            View::Agent {
                name: name.into(),
                before,
                limit: 2,
            },
        ) {
            ViewReply::Agent(Some(page)) => *page,
            other => panic!("{other:?}"),
        }
    }

    /// Two projects; `b` got five messages from `a`, drained two and acknowledged one.
    fn mailbox() -> (ShardState, Vec<SharedEnvelope>) {
        let mut state = ShardState::with_log(0, 1, LIMITS, LogBuffer::new(true, 0));
        register(&mut state, "a", 1);
        register(&mut state, "b", 1);
        register(&mut state, "c", 2);
        let sent: Vec<SharedEnvelope> = (0..5)
            .map(|n| message(60_000 + n * 1000, n as u16, "a", &["b"], None))
            .collect();
        for envelope in &sent {
            let reply = state.handle(Request::Deliver {
                envelope: SharedEnvelope::clone(envelope),
            });
            assert_eq!(reply, Reply::Delivered(Ok(1)));
        }
        let actor = Actor {
            name: "b".into(),
            token: None,
            now_ms: 70_000,
        };
        state.handle(Request::Drain {
            actor: actor.clone(),
            max_weight: 2 * sent[0].weight(),
            at_least_one: true,
        });
        state.handle(Request::Mark {
            actor,
            ids: vec![sent[4].id],
            ack: true,
        });
        (state, sent)
    }

    #[test]
    fn views_change_nothing() {
        let (mut state, sent) = mailbox();
        let log_end = state.log().end();
        let active = |s: &ShardState| s.agents["b"].last_active_ms;
        let before = active(&state);
        let counts = state.agents["b"].counts;
        view(
            &mut state,
            View::Agent {
                name: "b".into(),
                before: None,
                limit: 50,
            },
        );
        view(
            &mut state,
            View::Message {
                id: sent[0].id,
                from: None,
                project_id: Some(Uuid::from_u128(1)),
            },
        );
        view(
            &mut state,
            View::Receipts {
                id: sent[0].id,
                timestamp_ms: sent[0].timestamp_ms,
                names: vec!["b".into()],
            },
        );
        view(
            &mut state,
            View::Roster {
                project_id: Uuid::from_u128(1),
                after: None,
                limit: 9,
                now_ms: 0,
            },
        );
        view(
            &mut state,
            View::Projects {
                after: None,
                limit: 9,
                now_ms: 0,
            },
        );
        assert_eq!(state.log().end(), log_end, "a view writes no record");
        assert_eq!(active(&state), before, "nor moves last_active");
        assert_eq!(state.agents["b"].counts, counts, "nor marks anything");
        assert_eq!(state.agents["b"].undrained(), 3, "nor drains");
    }

    #[test]
    fn projects_and_roster_count_agents_queued_mail_and_traffic() {
        let (mut state, sent) = mailbox();
        let now_ms = 64_500;
        let ViewReply::Projects { projects, has_more } = view(
            &mut state,
            View::Projects {
                after: None,
                limit: 1,
                now_ms,
            },
        ) else {
            panic!("projects")
        };
        assert!(has_more);
        assert_eq!(&*projects[0].key, "key-1");
        assert_eq!((projects[0].agents, projects[0].queued), (2, 3));
        // Sent at minute 1: the last minute of the hour ending at minute 1.
        assert_eq!(projects[0].traffic[TRAFFIC_MINUTES - 1], 5);
        let ViewReply::Projects { projects, has_more } = view(
            &mut state,
            View::Projects {
                after: Some("key-1".into()),
                limit: 5,
                now_ms,
            },
        ) else {
            panic!("projects")
        };
        assert!(!has_more);
        assert_eq!(
            (&*projects[0].key, projects[0].agents, projects[0].queued),
            ("key-2", 1, 0)
        );

        let ViewReply::Roster(part) = view(
            &mut state,
            View::Roster {
                project_id: Uuid::from_u128(1),
                after: None,
                limit: 1,
                now_ms,
            },
        ) else {
            panic!("roster")
        };
        assert_eq!(part.key.as_deref(), Some("key-1"));
        assert_eq!((part.agent_count, part.queued, part.has_more), (2, 3, true));
        assert_eq!(&*part.agents[0].profile.name, "a");
        assert_eq!(part.agents[0].sent, 5);
        let recent: Vec<Uuid> = part.recent.iter().map(|e| e.id).collect();
        let newest_first: Vec<Uuid> = sent.iter().rev().map(|e| e.id).collect();
        assert_eq!(recent, newest_first);
        let ViewReply::Roster(rest) = view(
            &mut state,
            View::Roster {
                project_id: Uuid::from_u128(1),
                after: Some("a".into()),
                limit: 5,
                now_ms,
            },
        ) else {
            panic!("roster")
        };
        assert!(!rest.has_more);
        let b = &rest.agents[0];
        assert_eq!(&*b.profile.name, "b");
        assert_eq!((b.queued, b.counts.unread, b.counts.ack_pending), (3, 2, 4));
        let ViewReply::Roster(none) = view(
            &mut state,
            View::Roster {
                project_id: Uuid::from_u128(3),
                after: None,
                limit: 5,
                now_ms,
            },
        ) else {
            panic!("roster")
        };
        assert_eq!(none.key, None);
    }

    #[test]
    fn an_agent_page_lists_deliveries_newest_first_in_pages() {
        let (mut state, _) = mailbox();
        let first = agent_page(&mut state, "b", None);
        let seqs = |page: &AgentPage| page.deliveries.iter().map(|d| d.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&first), [5, 4]);
        assert_eq!(first.newest_seq, 5);
        assert!(first.deliveries[0].acked_at.is_some());
        assert_eq!(first.older, Some(4));
        let second = agent_page(&mut state, "b", first.older);
        assert_eq!(seqs(&second), [3, 2]);
        assert!(second.deliveries[1].drained && !second.deliveries[0].drained);
        let last = agent_page(&mut state, "b", second.older);
        assert_eq!(seqs(&last), [1]);
        assert_eq!(last.older, None);
        assert_eq!(
            view(
                &mut state,
                View::Agent {
                    name: "zed".into(),
                    before: None,
                    limit: 5
                }
            ),
            ViewReply::Agent(None)
        );
    }

    #[test]
    fn a_message_is_found_by_id_and_its_receipts_read() {
        let (mut state, sent) = mailbox();
        let found = |envelope: Option<&SharedEnvelope>| ViewReply::Message {
            found: envelope.cloned(),
            unfinished: false,
        };
        let project = Some(Uuid::from_u128(1));
        for (from, project_id) in [(None, project), (Some("a".into()), None)] {
            let request = View::Message {
                id: sent[3].id,
                from,
                project_id,
            };
            assert_eq!(view(&mut state, request), found(Some(&sent[3])));
        }
        let by = |from: Option<&str>, project: u128| View::Message {
            id: sent[3].id,
            from: from.map(Box::from),
            project_id: Some(Uuid::from_u128(project)),
        };
        assert_eq!(
            view(&mut state, by(Some("b"), 1)),
            found(None),
            "b did not send it"
        );
        assert_eq!(
            view(&mut state, by(None, 2)),
            found(None),
            "not in project 2"
        );
        let unscoped = View::Message {
            id: sent[3].id,
            from: None,
            project_id: None,
        };
        assert_eq!(view(&mut state, unscoped), found(None), "nothing searched");
        let absent = View::Message {
            id: id_at(60_000, 77),
            from: None,
            project_id: project,
        };
        assert_eq!(view(&mut state, absent), found(None));
        let ViewReply::Receipts(receipts) = view(
            &mut state,
            View::Receipts {
                id: sent[0].id,
                timestamp_ms: sent[0].timestamp_ms,
                names: vec!["b".into(), "nobody".into()],
            },
        ) else {
            panic!("receipts")
        };
        let b = receipts[0].1.expect("b holds it");
        assert_eq!(
            (b.seq, b.drained, b.read_at, b.acked_at),
            (1, true, Some(70_000), None)
        );
        assert_eq!(receipts[1], ("nobody".into(), None));
    }

    #[test]
    fn find_by_time_finds_every_item_of_a_nearly_sorted_history() {
        // Items become visible in order; each was sent up to the slack before that.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut items = VecDeque::new();
        let mut visible_ms = 1_000_000_000i64;
        for n in 0..3_000u16 {
            visible_ms += (next() % 2_000) as i64;
            let sent_ms = visible_ms - (next() % VISIBLE_SLACK_MS as u64) as i64;
            items.push_back(message(sent_ms, n, "a", &["b"], None));
        }
        let mut most_steps = 0;
        for (at, item) in items.iter().enumerate() {
            let mut budget = Budget::full();
            let found = find_by_time(&items, &item.id, item.timestamp_ms, |e| e, &mut budget);
            assert_eq!(found, Some(at));
            most_steps = most_steps.max(MAX_VIEW_STEPS - budget.0);
        }
        // A window either side of ~600 items of 20 minutes, not the whole history.
        assert!(most_steps < 1_500, "{most_steps} steps");
        let absent = id_at(items[1500].timestamp_ms, 60_000);
        let mut budget = Budget::full();
        let at_ms = items[1500].timestamp_ms;
        assert_eq!(
            find_by_time(&items, &absent, at_ms, |e| e, &mut budget),
            None
        );
        // A spent budget stops the search, even where the message is.
        let mut spent = Budget(3);
        let target = &items[2000];
        assert_eq!(
            find_by_time(&items, &target.id, target.timestamp_ms, |e| e, &mut spent),
            None
        );
        assert!(spent.spent());
    }

    #[test]
    fn threads_are_named_threads_and_messages_with_replies() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1);
        register(&mut state, "b", 1);
        let root = message(1_000, 1, "a", &["b"], None);
        let root_thread = root.id.hyphenated().to_string();
        let lone = message(2_000, 2, "a", &["b"], None);
        let reply = message(3_000, 3, "b", &["a"], Some(&root_thread));
        let named = message(4_000, 4, "a", &["b"], Some("plan-7"));
        for envelope in [&root, &lone, &reply, &named] {
            state.handle(Request::Deliver {
                envelope: SharedEnvelope::clone(envelope),
            });
        }
        let page = agent_page(&mut state, "a", None);
        let threads: Vec<(&str, usize)> = page
            .threads
            .iter()
            .map(|t| (&*t.thread_id, t.messages))
            .collect();
        assert_eq!(threads, [("plan-7", 1), (root_thread.as_str(), 2)]);
        assert_eq!(page.threads[1].latest.id, reply.id);
    }
}
