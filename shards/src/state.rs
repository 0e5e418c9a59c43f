//! The state one shard owns: its agents and their inboxes. Plain synchronous code, so it is
//! tested directly (including a model-based property test) without any executor.

use crate::envelope::SharedEnvelope;
use crate::protocol::{
    AgentProfile, DrainedPage, RegisterMode, Registration, Reply, Request, Undeliverable,
};
use crate::routing::owner_of;
use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
struct Agent {
    profile: AgentProfile,
    inbox: VecDeque<SharedEnvelope>,
    /// Text bytes of the queued messages.
    queued_bytes: usize,
    /// Weights of the queued messages (see `Envelope::weight`): a drain that allows this much
    /// takes the whole inbox at once.
    queued_weight: usize,
    /// Places (and their bytes) held by `Reserve` for messages about to arrive; they count
    /// against the caps.
    reserved: usize,
    reserved_bytes: usize,
}

impl Agent {
    fn has_room(&self, limits: &InboxLimits, incoming_bytes: usize) -> bool {
        self.inbox.len() + self.reserved < limits.messages
            && self.queued_bytes + self.reserved_bytes + incoming_bytes <= limits.bytes
    }
}

/// How much one inbox may hold, counting reserved places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    pub messages: usize,
    /// Text bytes (from + subject + body) of the waiting messages.
    pub bytes: usize,
}

#[derive(Debug)]
pub struct ShardState {
    shard_id: usize,
    shard_count: usize,
    agents: HashMap<Box<str>, Agent>,
    queued_messages: usize,
    limits: InboxLimits,
}

impl ShardState {
    pub fn new(shard_id: usize, shard_count: usize, limits: InboxLimits) -> Self {
        assert!(shard_id < shard_count, "shard id out of range");
        assert!(limits.messages > 0, "an inbox holds at least one message");
        ShardState {
            shard_id,
            shard_count,
            agents: HashMap::new(),
            queued_messages: 0,
            limits,
        }
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    pub fn limits(&self) -> InboxLimits {
        self.limits
    }

    /// Messages waiting in all inboxes of this shard.
    pub fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    /// Answers one request. Never blocks and never calls another shard.
    pub fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Register(registration) => self.register(registration),
            Request::Lookup { name } => {
                self.assert_owned(&name);
                Reply::Agent(self.agents.get(&name).map(|a| a.profile.project_id))
            }
            Request::Reserve { names, bytes } => Reply::Reserved(self.reserve(&names, bytes)),
            Request::Release { names, bytes } => {
                self.release(&names, bytes);
                Reply::Released
            }
            Request::Deliver {
                names,
                envelope,
                reserved,
            } => Reply::Delivered(self.deliver(&names, envelope, reserved)),
            Request::Drain {
                name,
                max_weight,
                at_least_one,
            } => Reply::Drained(self.drain(&name, max_weight, at_least_one)),
        }
    }

    fn assert_owned(&self, name: &str) {
        debug_assert_eq!(
            owner_of(name, self.shard_count),
            self.shard_id,
            "agent {name} asked of a shard that does not own it"
        );
    }

    fn register(&mut self, r: Registration) -> Reply {
        self.assert_owned(&r.name);
        if let Some(agent) = self.agents.get_mut(&r.name) {
            let profile = &mut agent.profile;
            if r.mode == RegisterMode::CreateOnly || profile.project_id != r.project_id {
                return Reply::NameTaken {
                    project_id: profile.project_id,
                };
            }
            if let Some(program) = r.program {
                profile.program = program;
            }
            if let Some(model) = r.model {
                profile.model = model;
            }
            profile.updated_ms = r.now_ms;
            profile.version += 1;
            return Reply::Registered {
                profile: profile.clone(),
                created: false,
            };
        }
        let profile = AgentProfile {
            id: r.new_id,
            name: r.name.clone(),
            project_id: r.project_id,
            project_key: r.project_key,
            program: r.program.unwrap_or_default(),
            model: r.model.unwrap_or_default(),
            created_ms: r.now_ms,
            updated_ms: r.now_ms,
            version: 1,
        };
        let reply = Reply::Registered {
            profile: profile.clone(),
            created: true,
        };
        self.agents.insert(
            r.name,
            Agent {
                profile,
                inbox: VecDeque::new(),
                queued_bytes: 0,
                queued_weight: 0,
                reserved: 0,
                reserved_bytes: 0,
            },
        );
        reply
    }

    /// Why `names` cannot all take one more message of `bytes` now, if they cannot. Collected
    /// only when something is wrong, so the common path allocates nothing.
    fn refusal(&self, names: &[Box<str>], bytes: usize) -> Option<Undeliverable> {
        for name in names {
            self.assert_owned(name);
        }
        let unknown: Vec<Box<str>> = names
            .iter()
            .filter(|name| !self.agents.contains_key(&***name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Some(Undeliverable::UnknownRecipients(unknown));
        }
        let full: Vec<Box<str>> = names
            .iter()
            .filter(|name| {
                self.agents
                    .get(&***name)
                    .is_some_and(|a| !a.has_room(&self.limits, bytes))
            })
            .cloned()
            .collect();
        (!full.is_empty()).then_some(Undeliverable::InboxFull(full))
    }

    fn reserve(&mut self, names: &[Box<str>], bytes: usize) -> Result<usize, Undeliverable> {
        if let Some(refusal) = self.refusal(names, bytes) {
            return Err(refusal);
        }
        for name in names {
            if let Some(agent) = self.agents.get_mut(name) {
                agent.reserved += 1;
                agent.reserved_bytes += bytes;
            }
        }
        Ok(names.len())
    }

    fn release(&mut self, names: &[Box<str>], bytes: usize) {
        for name in names {
            if let Some(agent) = self.agents.get_mut(name) {
                assert!(
                    agent.reserved > 0 && agent.reserved_bytes >= bytes,
                    "release of {name} without a reservation"
                );
                agent.reserved -= 1;
                agent.reserved_bytes -= bytes;
            }
        }
    }

    fn deliver(
        &mut self,
        names: &[Box<str>],
        envelope: SharedEnvelope,
        reserved: bool,
    ) -> Result<usize, Undeliverable> {
        let bytes = envelope.payload_len();
        debug_assert!(
            names
                .iter()
                .enumerate()
                .all(|(i, n)| !names[..i].contains(n)),
            "callers send each recipient once"
        );
        if reserved {
            // Agents are never deleted, so a reserved name still exists.
            self.release(names, bytes);
        } else if let Some(refusal) = self.refusal(names, bytes) {
            return Err(refusal);
        }
        let mut count = 0;
        for name in names {
            if let Some(agent) = self.agents.get_mut(name) {
                agent.inbox.push_back(SharedEnvelope::clone(&envelope));
                agent.queued_bytes += bytes;
                agent.queued_weight = agent.queued_weight.saturating_add(envelope.weight());
                count += 1;
            }
        }
        self.queued_messages += count;
        Ok(count)
    }

    /// The oldest messages of `name` while their weights add up to at most `max_weight`
    /// (with `at_least_one`, the oldest one whatever its weight), removed.
    fn drain(&mut self, name: &str, max_weight: usize, at_least_one: bool) -> Option<DrainedPage> {
        self.assert_owned(name);
        let agent = self.agents.get_mut(name)?;
        let messages: Vec<SharedEnvelope> = if agent.queued_weight <= max_weight {
            // Taking the deque hands back its memory too, so an idle agent holds no buffer.
            agent.queued_bytes = 0;
            agent.queued_weight = 0;
            std::mem::take(&mut agent.inbox).into()
        } else {
            let mut taken = Vec::new();
            let (mut weight, mut bytes) = (0usize, 0usize);
            while let Some(next) = agent.inbox.front() {
                let may_exceed = at_least_one && taken.is_empty();
                if !may_exceed && weight.saturating_add(next.weight()) > max_weight {
                    break;
                }
                weight = weight.saturating_add(next.weight());
                bytes += next.payload_len();
                taken.extend(agent.inbox.pop_front());
            }
            agent.queued_bytes -= bytes;
            agent.queued_weight = agent.queued_weight.saturating_sub(weight);
            taken
        };
        assert!(
            messages.len() <= self.queued_messages,
            "queued-message count out of step with the inboxes"
        );
        self.queued_messages -= messages.len();
        Some(DrainedPage {
            messages,
            left: agent.inbox.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
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
            now_ms: 5,
        }
    }

    const LIMITS: InboxLimits = InboxLimits {
        messages: 100,
        bytes: usize::MAX,
    };

    fn register(state: &mut ShardState, name: &str, project: u128, mode: RegisterMode) -> Reply {
        state.handle(Request::Register(registration(name, project, mode)))
    }

    fn envelope(n: u128) -> SharedEnvelope {
        Arc::new(Envelope::new(
            Uuid::from_u128(n),
            Uuid::nil(),
            0,
            "from",
            "s",
            "b",
        ))
    }

    fn drain_all(state: &mut ShardState, name: &str) -> Reply {
        state.handle(Request::Drain {
            name: name.into(),
            max_weight: usize::MAX,
            at_least_one: true,
        })
    }

    #[test]
    fn drains_page_by_weight_not_text_length() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for (n, weight) in [(0u128, 50usize), (1, 10), (2, 10)] {
            let envelope =
                Envelope::new(Uuid::from_u128(n), Uuid::nil(), 0, "f", "", "").with_weight(weight);
            state.handle(Request::Deliver {
                names: names(&["a"]),
                envelope: Arc::new(envelope),
                reserved: false,
            });
        }
        let Reply::Drained(Some(page)) = state.handle(Request::Drain {
            name: "a".into(),
            max_weight: 60,
            at_least_one: true,
        }) else {
            panic!("drain");
        };
        assert_eq!(
            page.messages.len(),
            2,
            "50 + 10 fit in 60, the third does not"
        );
        assert_eq!(page.left, 1);
        let Reply::Drained(Some(page)) = drain_all(&mut state, "a") else {
            panic!("drain");
        };
        assert_eq!(page.messages.len(), 1);
        assert_eq!(state.queued_messages(), 0);
    }

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::<str>::from(*n)).collect()
    }

    #[test]
    fn reregister_same_project_keeps_id_and_updates_program() {
        let mut state = ShardState::new(0, 1, LIMITS);
        let first = register(&mut state, "a", 1, RegisterMode::Upsert);
        let mut again = registration("a", 1, RegisterMode::Upsert);
        again.new_id = Uuid::from_u128(99);
        again.program = Some("new".into());
        again.now_ms = 9;
        let second = state.handle(Request::Register(again));
        let (
            Reply::Registered {
                profile: p1,
                created: true,
            },
            Reply::Registered {
                profile: p2,
                created: false,
            },
        ) = (first, second)
        else {
            panic!("expected a creation then an update");
        };
        assert_eq!(p1.id, p2.id);
        assert_eq!(&*p2.program, "new");
        assert_eq!(p2.created_ms, 5);
        assert_eq!(p2.updated_ms, 9);
        assert_eq!(
            (p1.version, p2.version),
            (1, 2),
            "each update is a newer version"
        );
        assert_eq!(state.agent_count(), 1);
    }

    #[test]
    fn same_name_in_another_project_is_taken() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = register(&mut state, "a", 2, RegisterMode::Upsert);
        assert_eq!(
            reply,
            Reply::NameTaken {
                project_id: Uuid::from_u128(1)
            }
        );
    }

    #[test]
    fn create_only_refuses_an_existing_name_even_in_the_same_project() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = register(&mut state, "a", 1, RegisterMode::CreateOnly);
        assert_eq!(
            reply,
            Reply::NameTaken {
                project_id: Uuid::from_u128(1)
            }
        );
    }

    #[test]
    fn unknown_recipient_delivers_nothing() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = state.handle(Request::Deliver {
            names: names(&["a", "ghost"]),
            envelope: envelope(1),
            reserved: false,
        });
        assert_eq!(
            reply,
            Reply::Delivered(Err(Undeliverable::UnknownRecipients(names(&["ghost"]))))
        );
        assert_eq!(state.queued_messages(), 0);
        assert_eq!(
            drain_all(&mut state, "a"),
            Reply::Drained(Some(DrainedPage {
                messages: vec![],
                left: 0
            }))
        );
    }

    #[test]
    fn drain_returns_each_message_exactly_once_oldest_first() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for n in 0..3 {
            state.handle(Request::Deliver {
                names: names(&["a"]),
                envelope: envelope(n),
                reserved: false,
            });
        }
        assert_eq!(state.queued_messages(), 3);
        let Reply::Drained(Some(first)) = drain_all(&mut state, "a") else {
            panic!("drain of a known agent");
        };
        let ids: Vec<u128> = first.messages.iter().map(|e| e.id.as_u128()).collect();
        assert_eq!(ids, vec![0, 1, 2]);
        assert_eq!(
            drain_all(&mut state, "a"),
            Reply::Drained(Some(DrainedPage {
                messages: vec![],
                left: 0
            }))
        );
        assert_eq!(state.queued_messages(), 0);
    }

    #[test]
    fn drain_of_unknown_agent_is_none() {
        let mut state = ShardState::new(0, 1, LIMITS);
        assert_eq!(drain_all(&mut state, "nobody"), Reply::Drained(None));
    }

    #[test]
    fn a_full_inbox_refuses_and_reservations_count_against_the_cap() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                messages: 2,
                bytes: usize::MAX,
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        register(&mut state, "b", 1, RegisterMode::Upsert);
        let deliver = |state: &mut ShardState, n: u128| {
            state.handle(Request::Deliver {
                names: names(&["a", "b"]),
                envelope: envelope(n),
                reserved: false,
            })
        };
        assert_eq!(deliver(&mut state, 1), Reply::Delivered(Ok(2)));
        // One place left each; a reservation takes b's.
        assert_eq!(
            state.handle(Request::Reserve {
                names: names(&["b"]),
                bytes: 6
            }),
            Reply::Reserved(Ok(1))
        );
        assert_eq!(
            deliver(&mut state, 2),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["b"])))),
            "all or nothing: a gets nothing either"
        );
        assert_eq!(state.queued_messages(), 2);
        state.handle(Request::Release {
            names: names(&["b"]),
            bytes: 6,
        });
        assert_eq!(deliver(&mut state, 3), Reply::Delivered(Ok(2)));
        assert_eq!(
            deliver(&mut state, 4),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a", "b"]))))
        );
        // Draining makes room again.
        drain_all(&mut state, "a");
        drain_all(&mut state, "b");
        assert_eq!(deliver(&mut state, 5), Reply::Delivered(Ok(2)));
    }

    #[test]
    fn a_reserved_delivery_consumes_its_reservation() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                messages: 1,
                bytes: usize::MAX,
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        state.handle(Request::Reserve {
            names: names(&["a"]),
            bytes: 6,
        });
        let reply = state.handle(Request::Deliver {
            names: names(&["a"]),
            envelope: envelope(1),
            reserved: true,
        });
        assert_eq!(reply, Reply::Delivered(Ok(1)));
        assert_eq!(
            state.handle(Request::Reserve {
                names: names(&["a"]),
                bytes: 6
            }),
            Reply::Reserved(Err(Undeliverable::InboxFull(names(&["a"])))),
            "the delivered message now fills the inbox"
        );
    }

    #[test]
    fn the_byte_cap_refuses_and_a_drain_pages_by_bytes() {
        // Each test envelope carries 6 bytes of text.
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                messages: 100,
                bytes: 18,
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let deliver = |state: &mut ShardState, n: u128| {
            state.handle(Request::Deliver {
                names: names(&["a"]),
                envelope: envelope(n),
                reserved: false,
            })
        };
        for n in 0..3 {
            assert_eq!(deliver(&mut state, n), Reply::Delivered(Ok(1)));
        }
        assert_eq!(
            deliver(&mut state, 3),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a"]))))
        );
        // Weighed by text length (the default), a page of at most 13 holds two messages; the
        // third stays queued, in order.
        let drain = |state: &mut ShardState, max_weight: usize, at_least_one: bool| match state
            .handle(Request::Drain {
                name: "a".into(),
                max_weight,
                at_least_one,
            }) {
            Reply::Drained(Some(page)) => (
                page.messages
                    .iter()
                    .map(|m| m.id.as_u128())
                    .collect::<Vec<_>>(),
                page.left,
            ),
            other => panic!("drain answered {other:?}"),
        };
        assert_eq!(drain(&mut state, 13, true), (vec![0, 1], 1));
        assert_eq!(state.queued_messages(), 1);
        // A page smaller than one message is empty unless at least one is asked for.
        assert_eq!(drain(&mut state, 1, false), (vec![], 1));
        assert_eq!(drain(&mut state, 1, true), (vec![2], 0));
        assert_eq!(deliver(&mut state, 4), Reply::Delivered(Ok(1)));
    }
}
