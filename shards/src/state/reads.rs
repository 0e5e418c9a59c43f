//! Reads of an agent's mail: the destructive drain, fetch pages, read and ack marks,
//! threads, and finding one message.

use super::agents::{set_marks, time};
use super::record;
use super::ShardState;
use crate::envelope::SharedEnvelope;
use crate::protocol::{
    Actor, DrainedPage, FetchPage, FetchQuery, Marked, ThreadItem, ThreadPage, ThreadQuery,
    UnknownCursor,
};
use std::collections::HashMap;
use uuid::Uuid;

impl ShardState {
    /// The oldest undrained deliveries of the actor while their weights add up to at most
    /// `max_weight` (with `at_least_one`, the oldest one whatever its weight), drained.
    pub(super) fn drain(
        &mut self,
        actor: &Actor,
        max_weight: usize,
        at_least_one: bool,
    ) -> DrainedPage {
        let Some(agent) = self.agents.get_mut(&actor.name) else {
            return DrainedPage {
                messages: Vec::new(),
                left: 0,
            };
        };
        let count = if agent.queued_weight <= max_weight {
            agent.undrained()
        } else {
            let mut weight = 0usize;
            let mut count = 0;
            for delivery in agent.deliveries.range(agent.drained..) {
                let may_exceed = at_least_one && count == 0;
                if !may_exceed && weight.saturating_add(delivery.envelope.weight()) > max_weight {
                    break;
                }
                weight = weight.saturating_add(delivery.envelope.weight());
                count += 1;
            }
            count
        };
        if count == 0 {
            return DrainedPage {
                messages: Vec::new(),
                left: agent.undrained(),
            };
        }
        let start = agent.drained;
        let last_id = agent.deliveries[start + count - 1].envelope.id;
        let count32 = u32::try_from(count).unwrap_or(u32::MAX);
        self.log.append(|out| {
            record::encode_drained(out, &actor.name, count32, &last_id, actor.now_ms)
        });
        let mut messages = Vec::with_capacity(count);
        let left = self.drain_front(&actor.name, count, actor.now_ms, Some(&mut messages));
        DrainedPage { messages, left }
    }

    pub(super) fn fetch(&self, name: &str, query: &FetchQuery) -> Result<FetchPage, UnknownCursor> {
        let Some(agent) = self.agents.get(name) else {
            return Err(UnknownCursor { newest: 0 });
        };
        let newest = agent.next_seq() - 1;
        if query.after > newest {
            return Err(UnknownCursor { newest });
        }
        let skipped = (agent.first_seq - 1).saturating_sub(query.after);
        let mut page = FetchPage {
            messages: Vec::new(),
            next_after: query.after.max(agent.first_seq - 1),
            has_more: false,
            skipped,
            counts: agent.counts,
        };
        if query.limit == 0 {
            page.next_after = newest;
            return Ok(page);
        }
        let start = (query.after + 1).saturating_sub(agent.first_seq) as usize;
        let mut weight = 0usize;
        for index in start..agent.deliveries.len() {
            let d = &agent.deliveries[index];
            if (query.unread_only && !d.unread())
                || (query.urgent_only && !d.urgent())
                || query
                    .thread_id
                    .as_deref()
                    .is_some_and(|t| !d.envelope.in_thread(t))
            {
                continue;
            }
            let full = page.messages.len() >= query.limit;
            let first = page.messages.is_empty() && query.at_least_one;
            if full || (!first && weight.saturating_add(d.envelope.weight()) > query.max_weight) {
                page.has_more = true;
                break;
            }
            weight = weight.saturating_add(d.envelope.weight());
            page.messages.push(agent.view(index));
            page.next_after = agent.first_seq + index as u64;
        }
        Ok(page)
    }

    pub(super) fn mark(&mut self, actor: &Actor, ids: &[Uuid], ack: bool) -> Marked {
        let mut result = Marked {
            found: Vec::with_capacity(ids.len()),
            changed: 0,
            not_found: Vec::new(),
        };
        let Some(agent) = self.agents.get_mut(&actor.name) else {
            result.not_found = ids.to_vec();
            return result;
        };
        // A map only for long lists: short ones scan the deque.
        let index: Option<HashMap<Uuid, usize>> = (ids.len() > 8).then(|| {
            agent
                .deliveries
                .iter()
                .enumerate()
                .map(|(i, d)| (d.envelope.id, i))
                .collect()
        });
        let mut changed_ids = Vec::new();
        for id in ids {
            let at = match &index {
                Some(map) => map.get(id).copied(),
                None => agent.delivery_index(id),
            };
            let Some(at) = at else {
                result.not_found.push(*id);
                continue;
            };
            if set_marks(agent, at, ack, actor.now_ms) {
                changed_ids.push(*id);
            }
            let d = &agent.deliveries[at];
            result.found.push((*id, time(d.read_at), time(d.acked_at)));
        }
        result.changed = changed_ids.len();
        if !changed_ids.is_empty() {
            self.log.append(|out| {
                record::encode_marked(out, &actor.name, ack, actor.now_ms, &changed_ids)
            });
        }
        result
    }

    pub(super) fn thread(&self, name: &str, query: &ThreadQuery) -> Option<ThreadPage> {
        let agent = self.agents.get(name)?;
        let mut items: Vec<ThreadItem> = Vec::new();
        for (index, d) in agent.deliveries.iter().enumerate() {
            if d.envelope.in_thread(&query.thread_id) {
                items.push(ThreadItem {
                    envelope: SharedEnvelope::clone(&d.envelope),
                    delivery: Some(agent.view(index)),
                });
            }
        }
        for envelope in &agent.sent {
            if envelope.in_thread(&query.thread_id)
                && !items.iter().any(|i| i.envelope.id == envelope.id)
            {
                items.push(ThreadItem {
                    envelope: SharedEnvelope::clone(envelope),
                    delivery: None,
                });
            }
        }
        if items.is_empty() {
            return None;
        }
        items.sort_by_key(|i| (i.envelope.timestamp_ms, i.envelope.id));
        let mut participants: Vec<Box<str>> = items
            .iter()
            .flat_map(|i| std::iter::once(i.envelope.from()).chain(i.envelope.recipients()))
            .map(Box::from)
            .collect();
        participants.sort();
        participants.dedup();
        let start = match query.after {
            None => 0,
            Some(after) => items
                .iter()
                .position(|i| i.envelope.id == after)
                .map_or(items.len(), |at| at + 1),
        };
        let mut page = ThreadPage {
            messages: Vec::new(),
            participants,
            has_more: false,
        };
        let mut weight = 0usize;
        for item in items.into_iter().skip(start) {
            let first = page.messages.is_empty() && query.at_least_one;
            if page.messages.len() >= query.limit
                || (!first && weight.saturating_add(item.envelope.weight()) > query.max_weight)
            {
                page.has_more = true;
                break;
            }
            weight = weight.saturating_add(item.envelope.weight());
            page.messages.push(item);
        }
        Some(page)
    }

    pub(super) fn find(&self, name: &str, id: &Uuid) -> Option<(SharedEnvelope, bool)> {
        let agent = self.agents.get(name)?;
        if let Some(envelope) = agent.sent.iter().find(|e| e.id == *id) {
            return Some((SharedEnvelope::clone(envelope), true));
        }
        let at = agent.delivery_index(id)?;
        Some((SharedEnvelope::clone(&agent.deliveries[at].envelope), false))
    }
}
