//! Images: the whole state copied at one log position for a snapshot or a reshard, and the
//! records that rebuild it.

use super::agents::{time, Agent};
use super::record::{self, DeliveryState, Record};
use super::replay::ReplayError;
use super::send::PendingSend;
use super::ShardState;
use crate::envelope::SharedEnvelope;
use crate::leases::{Lease, ProjectLeases, ReserveKey};
use crate::protocol::AgentProfile;
use uuid::Uuid;

/// An agent's whole state, as a snapshot holds it or a reshard moves it.
#[derive(Debug, Clone)]
pub struct AgentImage {
    pub profile: AgentProfile,
    pub last_active_ms: i64,
    pub next_seq: u64,
    pub deliveries: Vec<(DeliveryState, SharedEnvelope)>,
    pub sent: Vec<SharedEnvelope>,
}

/// Pointers to a shard's whole state at one log position, copied in one synchronous step so a
/// snapshot can be written in the background while requests go on.
#[derive(Debug)]
pub struct StateImage {
    /// Every record below this position is reflected here.
    pub position: u64,
    pub agents: Vec<AgentImage>,
    pub pending: Vec<PendingSend>,
    /// Multi-owner messages made visible here since the previous image: kept as markers, so
    /// another owner whose `Visible` record was not yet durable still learns the send went
    /// through (see recovery).
    pub recent_visible: Vec<Uuid>,
    /// The file reservations of the projects this shard owns.
    pub projects: Vec<ProjectImage>,
}

/// One project's reservations, as a snapshot holds them or a reshard moves them.
#[derive(Debug, Clone)]
pub struct ProjectImage {
    pub project_id: Uuid,
    pub next_id: u64,
    pub leases: Vec<Lease>,
    /// Keyed reservation requests' answers, oldest first.
    pub keys: Vec<ReserveKey>,
}

impl ShardState {
    /// Ids of multi-owner messages made visible here (markers kept for recovery).
    pub fn recent_visible(&self) -> &[Uuid] {
        &self.recent_visible
    }

    /// Copies pointers to the whole state, at the current log position, recent visible
    /// markers included (they are dropped only once a snapshot holding them is written:
    /// [`ShardState::forget_recent_visible`]).
    pub fn image(&mut self) -> StateImage {
        let agents = self.agents.values().map(agent_image).collect();
        StateImage {
            position: self.log.end(),
            agents,
            pending: self.pending.values().cloned().collect(),
            recent_visible: self.recent_visible.clone(),
            projects: self
                .projects
                .iter()
                .filter(|(_, leases)| !leases.is_empty())
                .map(|(id, leases)| project_image(*id, leases))
                .collect(),
        }
    }

    /// A snapshot holding the first `count` recent visible markers is durable: they go.
    pub fn forget_recent_visible(&mut self, count: usize) {
        self.recent_visible
            .drain(..count.min(self.recent_visible.len()));
    }

    /// Takes every agent out (for moving them to other owners after a reshard). Pending
    /// sends must have been settled first.
    pub fn into_agents(self) -> Vec<AgentImage> {
        assert!(
            self.pending.is_empty(),
            "settle pending sends before moving agents"
        );
        self.agents.values().map(agent_image).collect()
    }

    /// Places an agent moved from another shard (not logged: the caller snapshots the result).
    pub fn restore_agent(&mut self, image: AgentImage) -> Result<(), ReplayError> {
        self.assert_owned(&image.profile.name);
        let mut records = Vec::new();
        agent_records(&image, |record| records.push(record));
        for record in records {
            self.replay(record)?;
        }
        Ok(())
    }
}

pub(super) fn agent_image(agent: &Agent) -> AgentImage {
    AgentImage {
        profile: agent.profile.clone(),
        last_active_ms: agent.last_active_ms,
        next_seq: agent.next_seq(),
        deliveries: agent
            .deliveries
            .iter()
            .enumerate()
            .map(|(index, d)| {
                (
                    DeliveryState {
                        seq: agent.first_seq + index as u64,
                        read_at: time(d.read_at),
                        acked_at: time(d.acked_at),
                        drained: d.drained,
                    },
                    SharedEnvelope::clone(&d.envelope),
                )
            })
            .collect(),
        sent: agent.sent.iter().cloned().collect(),
    }
}

/// The records that rebuild one agent on replay: profile, activity, deliveries, sent.
pub fn agent_records(agent: &AgentImage, mut write: impl FnMut(Record)) {
    let name = &agent.profile.name;
    write(Record::Agent(agent.profile.clone()));
    write(Record::Activity {
        name: name.clone(),
        last_active_ms: agent.last_active_ms,
        next_seq: agent.next_seq,
    });
    for (state, envelope) in &agent.deliveries {
        write(Record::Delivery {
            name: name.clone(),
            state: *state,
            envelope: SharedEnvelope::clone(envelope),
        });
    }
    for envelope in &agent.sent {
        write(Record::Sent {
            name: name.clone(),
            envelope: SharedEnvelope::clone(envelope),
        });
    }
}

/// Writes the records that rebuild `image` on replay: each agent, pending sends, recent
/// visible markers. Messages shared by several local agents are written once per agent.
pub fn image_records(image: &StateImage, mut write: impl FnMut(Record)) {
    for agent in &image.agents {
        agent_records(agent, &mut write);
    }
    for send in &image.pending {
        write(Record::Prepared {
            envelope: SharedEnvelope::clone(&send.envelope),
            owners: send.owners,
        });
    }
    for id in &image.recent_visible {
        write(Record::Visible { id: *id });
    }
    for project in &image.projects {
        write(Record::LeaseIds {
            project: project.project_id,
            next_id: project.next_id,
        });
        for lease in &project.leases {
            write(Record::Lease {
                project: project.project_id,
                lease: lease.clone(),
            });
        }
        for key in &project.keys {
            write(Record::LeaseKey {
                project: project.project_id,
                key: key.clone(),
            });
        }
    }
}

/// Encodes an image's records (the same as [`image_records`], in the same order) a piece at a
/// time, straight from the image with nothing built per message: a snapshot writer writes
/// each piece and may yield between them. Both snapshot writers (compaction's on a shard,
/// start-up's blocking one) encode through it.
pub struct ImageEncoder<'a> {
    image: &'a StateImage,
    /// The agent being encoded, and how far into its deliveries and sent messages.
    agent: usize,
    delivery: usize,
    sent: usize,
    profile_written: bool,
    done: bool,
}

impl<'a> ImageEncoder<'a> {
    pub fn new(image: &'a StateImage) -> Self {
        ImageEncoder {
            image,
            agent: 0,
            delivery: 0,
            sent: 0,
            profile_written: false,
            done: false,
        }
    }

    /// Appends records to `out` until it holds at least `piece_bytes` or the whole image is
    /// encoded; returns whether it is.
    pub fn fill(&mut self, out: &mut Vec<u8>, piece_bytes: usize) -> bool {
        while let Some(agent) = self.image.agents.get(self.agent) {
            let name = &agent.profile.name;
            if !self.profile_written {
                record::encode_agent(out, &agent.profile);
                record::encode_activity(out, name, agent.last_active_ms, agent.next_seq);
                self.profile_written = true;
            }
            while let Some((state, envelope)) = agent.deliveries.get(self.delivery) {
                if out.len() >= piece_bytes {
                    return false;
                }
                record::encode_delivery(out, name, state, envelope);
                self.delivery += 1;
            }
            while let Some(envelope) = agent.sent.get(self.sent) {
                if out.len() >= piece_bytes {
                    return false;
                }
                record::encode_sent(out, name, envelope);
                self.sent += 1;
            }
            (self.agent, self.delivery, self.sent) = (self.agent + 1, 0, 0);
            self.profile_written = false;
            if out.len() >= piece_bytes {
                return false;
            }
        }
        if !self.done {
            // The rest is small: pending sends, markers, reservations.
            let rest = StateImage {
                position: self.image.position,
                agents: Vec::new(),
                pending: self.image.pending.clone(),
                recent_visible: self.image.recent_visible.clone(),
                projects: self.image.projects.clone(),
            };
            image_records(&rest, |record| record::encode(out, &record));
            self.done = true;
        }
        true
    }
}

pub(super) fn project_image(project_id: Uuid, leases: &ProjectLeases) -> ProjectImage {
    ProjectImage {
        project_id,
        next_id: leases.next_id(),
        leases: leases.all().cloned().collect(),
        keys: leases.keys().cloned().collect(),
    }
}
