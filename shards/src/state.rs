//! The state one shard owns: its agents and their inboxes. Plain synchronous code, so it is
//! tested directly (including a model-based property test) without any executor.

use crate::envelope::SharedEnvelope;
use crate::protocol::{AgentProfile, Delivery, RegisterMode, Registration, Reply, Request};
use crate::routing::owner_of;
use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
struct Agent {
    profile: AgentProfile,
    inbox: VecDeque<SharedEnvelope>,
    /// Places held by `Reserve` for messages about to arrive; they count against the cap.
    reserved: usize,
}

#[derive(Debug)]
pub struct ShardState {
    shard_id: usize,
    shard_count: usize,
    agents: HashMap<Box<str>, Agent>,
    queued_messages: usize,
    /// Messages one inbox may hold (queued plus reserved).
    max_inbox_messages: usize,
}

impl ShardState {
    pub fn new(shard_id: usize, shard_count: usize, max_inbox_messages: usize) -> Self {
        assert!(shard_id < shard_count, "shard id out of range");
        assert!(
            max_inbox_messages > 0,
            "an inbox holds at least one message"
        );
        ShardState {
            shard_id,
            shard_count,
            agents: HashMap::new(),
            queued_messages: 0,
            max_inbox_messages,
        }
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
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
            Request::Reserve { names } => Reply::Delivered(self.reserve(&names)),
            Request::Release { names } => {
                self.release(&names);
                Reply::Released
            }
            Request::Deliver {
                names,
                envelope,
                reserved,
            } => Reply::Delivered(self.deliver(&names, envelope, reserved)),
            Request::Drain { name } => Reply::Drained(self.drain(&name)),
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
                reserved: 0,
            },
        );
        reply
    }

    /// Why `names` cannot all take one more message now, if they cannot. Collected only when
    /// something is wrong, so the common path allocates nothing.
    fn refusal(&self, names: &[Box<str>]) -> Option<Delivery> {
        for name in names {
            self.assert_owned(name);
        }
        let unknown: Vec<Box<str>> = names
            .iter()
            .filter(|name| !self.agents.contains_key(&***name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Some(Delivery::UnknownRecipients(unknown));
        }
        let full: Vec<Box<str>> = names
            .iter()
            .filter(|name| {
                self.agents
                    .get(&***name)
                    .is_some_and(|a| a.inbox.len() + a.reserved >= self.max_inbox_messages)
            })
            .cloned()
            .collect();
        (!full.is_empty()).then_some(Delivery::InboxFull(full))
    }

    fn reserve(&mut self, names: &[Box<str>]) -> Delivery {
        if let Some(refusal) = self.refusal(names) {
            return refusal;
        }
        for name in names {
            if let Some(agent) = self.agents.get_mut(name) {
                agent.reserved += 1;
            }
        }
        Delivery::Enqueued { count: names.len() }
    }

    fn release(&mut self, names: &[Box<str>]) {
        for name in names {
            if let Some(agent) = self.agents.get_mut(name) {
                assert!(
                    agent.reserved > 0,
                    "release of {name} without a reservation"
                );
                agent.reserved -= 1;
            }
        }
    }

    fn deliver(
        &mut self,
        names: &[Box<str>],
        envelope: SharedEnvelope,
        reserved: bool,
    ) -> Delivery {
        if reserved {
            // Agents are never deleted, so a reserved name still exists.
            self.release(names);
        } else if let Some(refusal) = self.refusal(names) {
            return refusal;
        }
        let mut count = 0;
        for (index, name) in names.iter().enumerate() {
            // Callers dedupe, but a duplicate here must still not produce a second copy.
            if names[..index].contains(name) {
                continue;
            }
            if let Some(agent) = self.agents.get_mut(name) {
                agent.inbox.push_back(SharedEnvelope::clone(&envelope));
                count += 1;
            }
        }
        self.queued_messages += count;
        Delivery::Enqueued { count }
    }

    fn drain(&mut self, name: &str) -> Option<Vec<SharedEnvelope>> {
        self.assert_owned(name);
        let agent = self.agents.get_mut(name)?;
        // Taking the deque hands back its memory too, so an idle agent holds no buffer.
        let drained: Vec<SharedEnvelope> = std::mem::take(&mut agent.inbox).into();
        assert!(
            drained.len() <= self.queued_messages,
            "queued-message count out of step with the inboxes"
        );
        self.queued_messages -= drained.len();
        Some(drained)
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

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::<str>::from(*n)).collect()
    }

    #[test]
    fn reregister_same_project_keeps_id_and_updates_program() {
        let mut state = ShardState::new(0, 1, 100);
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
        assert_eq!(state.agent_count(), 1);
    }

    #[test]
    fn same_name_in_another_project_is_taken() {
        let mut state = ShardState::new(0, 1, 100);
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
        let mut state = ShardState::new(0, 1, 100);
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
        let mut state = ShardState::new(0, 1, 100);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = state.handle(Request::Deliver {
            names: names(&["a", "ghost"]),
            envelope: envelope(1),
            reserved: false,
        });
        assert_eq!(
            reply,
            Reply::Delivered(Delivery::UnknownRecipients(names(&["ghost"])))
        );
        assert_eq!(state.queued_messages(), 0);
        assert_eq!(
            state.handle(Request::Drain { name: "a".into() }),
            Reply::Drained(Some(vec![]))
        );
    }

    #[test]
    fn drain_returns_each_message_exactly_once_oldest_first() {
        let mut state = ShardState::new(0, 1, 100);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for n in 0..3 {
            state.handle(Request::Deliver {
                names: names(&["a", "a"]),
                envelope: envelope(n),
                reserved: false,
            });
        }
        assert_eq!(state.queued_messages(), 3);
        let Reply::Drained(Some(first)) = state.handle(Request::Drain { name: "a".into() }) else {
            panic!("drain of a known agent");
        };
        let ids: Vec<u128> = first.iter().map(|e| e.id.as_u128()).collect();
        assert_eq!(ids, vec![0, 1, 2]);
        assert_eq!(
            state.handle(Request::Drain { name: "a".into() }),
            Reply::Drained(Some(vec![]))
        );
        assert_eq!(state.queued_messages(), 0);
    }

    #[test]
    fn drain_of_unknown_agent_is_none() {
        let mut state = ShardState::new(0, 1, 100);
        assert_eq!(
            state.handle(Request::Drain {
                name: "nobody".into()
            }),
            Reply::Drained(None)
        );
    }

    #[test]
    fn a_full_inbox_refuses_and_reservations_count_against_the_cap() {
        let mut state = ShardState::new(0, 1, 2);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        register(&mut state, "b", 1, RegisterMode::Upsert);
        let deliver = |state: &mut ShardState, n: u128| {
            state.handle(Request::Deliver {
                names: names(&["a", "b"]),
                envelope: envelope(n),
                reserved: false,
            })
        };
        assert_eq!(
            deliver(&mut state, 1),
            Reply::Delivered(Delivery::Enqueued { count: 2 })
        );
        // One place left each; a reservation takes b's.
        assert_eq!(
            state.handle(Request::Reserve {
                names: names(&["b"])
            }),
            Reply::Delivered(Delivery::Enqueued { count: 1 })
        );
        assert_eq!(
            deliver(&mut state, 2),
            Reply::Delivered(Delivery::InboxFull(names(&["b"]))),
            "all or nothing: a gets nothing either"
        );
        assert_eq!(state.queued_messages(), 2);
        state.handle(Request::Release {
            names: names(&["b"]),
        });
        assert_eq!(
            deliver(&mut state, 3),
            Reply::Delivered(Delivery::Enqueued { count: 2 })
        );
        assert_eq!(
            deliver(&mut state, 4),
            Reply::Delivered(Delivery::InboxFull(names(&["a", "b"])))
        );
        // Draining makes room again.
        state.handle(Request::Drain { name: "a".into() });
        state.handle(Request::Drain { name: "b".into() });
        assert_eq!(
            deliver(&mut state, 5),
            Reply::Delivered(Delivery::Enqueued { count: 2 })
        );
    }

    #[test]
    fn a_reserved_delivery_consumes_its_reservation() {
        let mut state = ShardState::new(0, 1, 1);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        state.handle(Request::Reserve {
            names: names(&["a"]),
        });
        let reply = state.handle(Request::Deliver {
            names: names(&["a"]),
            envelope: envelope(1),
            reserved: true,
        });
        assert_eq!(reply, Reply::Delivered(Delivery::Enqueued { count: 1 }));
        assert_eq!(
            state.handle(Request::Reserve {
                names: names(&["a"])
            }),
            Reply::Delivered(Delivery::InboxFull(names(&["a"]))),
            "the delivered message now fills the inbox"
        );
    }
}
