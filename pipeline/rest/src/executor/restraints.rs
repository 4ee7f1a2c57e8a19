//! The executor's restraints state: the interval restraint's last trigger per (deployment,
//! node) ([`TriggerTime`] in checkpoints), and the actions in flight (duplicate pending).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::action::ExecuteWorkflow;

use super::{Executor, lock};

/// Trigger records kept before expired ones are pruned (the threshold then doubles with the
/// live records, so pruning costs O(1) per trigger on average).
const TRIGGER_RECORDS_PRUNE_AT: usize = 1024;

/// One record of the interval restraint, as kept in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerTime {
    pub deployment_id: String,
    pub node_id: Option<String>,
    /// When the trigger passed its restraints (the caller's clock, Unix ms).
    pub at_ms: i64,
    /// The interval it was checked with; the record restrains nothing once that has passed.
    pub interval_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct TriggerRecord {
    at_ms: i64,
    interval_ms: i64,
}

/// The last trigger per (deployment, node), forgetting records whose interval has passed.
#[derive(Debug)]
pub(super) struct TriggerRecords {
    by_node: HashMap<(String, Option<String>), TriggerRecord>,
    prune_at: usize,
}

impl Default for TriggerRecords {
    fn default() -> Self {
        Self {
            by_node: HashMap::new(),
            prune_at: TRIGGER_RECORDS_PRUNE_AT,
        }
    }
}

impl TriggerRecords {
    fn record(&mut self, key: (String, Option<String>), at_ms: i64, interval_ms: i64) {
        self.by_node
            .insert(key, TriggerRecord { at_ms, interval_ms });
        if self.by_node.len() >= self.prune_at {
            // Expired against the newest time known: the records' own clock.
            self.by_node
                .retain(|_, record| at_ms.saturating_sub(record.at_ms) < record.interval_ms);
            self.prune_at = (self.by_node.len() * 2).max(TRIGGER_RECORDS_PRUNE_AT);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum PendingKey {
    Workflow {
        deployment_id: String,
        workflow_id: String,
        /// The parameters re-serialised, so that key order does not matter.
        parameters: String,
    },
    Webhook {
        url: String,
        body: String,
    },
}

/// Removes its key from the pending set when the action ends (or its future is dropped).
pub(super) struct PendingGuard<'a> {
    pending: &'a Mutex<HashSet<PendingKey>>,
    key: PendingKey,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.key);
    }
}

impl Executor {
    pub(super) fn claim(&self, key: PendingKey) -> Option<PendingGuard<'_>> {
        // Not `then_some`: its eagerly built guard would be dropped (removing the key and
        // locking again) while the lock is held.
        let inserted = lock(&self.pending).insert(key.clone());
        if !inserted {
            return None;
        }
        Some(PendingGuard {
            pending: &self.pending,
            key,
        })
    }

    pub(super) fn pass_interval(
        &self,
        workflow: &ExecuteWorkflow,
        interval: Duration,
        now_ms: i64,
    ) -> bool {
        let key = (
            workflow.deployment_id.clone(),
            workflow.origin.node_id.clone(),
        );
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let mut records = lock(&self.last_triggers);
        if interval_ms > 0
            && let Some(last) = records.by_node.get(&key)
            && now_ms.saturating_sub(last.at_ms) < interval_ms
        {
            return false;
        }
        records.record(key, now_ms, interval_ms);
        true
    }

    pub fn trigger_times(&self) -> Vec<TriggerTime> {
        lock(&self.last_triggers)
            .by_node
            .iter()
            .map(|((deployment_id, node_id), record)| TriggerTime {
                deployment_id: deployment_id.clone(),
                node_id: node_id.clone(),
                at_ms: record.at_ms,
                interval_ms: record.interval_ms,
            })
            .collect()
    }

    pub fn restore_trigger_times(&self, times: Vec<TriggerTime>) {
        let mut records = lock(&self.last_triggers);
        for time in times {
            let key = (time.deployment_id, time.node_id);
            let newer_here = records
                .by_node
                .get(&key)
                .is_some_and(|existing| existing.at_ms >= time.at_ms);
            if !newer_here {
                records.record(key, time.at_ms, time.interval_ms);
            }
        }
    }
}
