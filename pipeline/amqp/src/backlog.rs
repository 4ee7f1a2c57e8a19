//! Knowing, from the broker, when what queued up before a start has all been processed.
//!
//! The rule stage holds its host-failure sweeps while metrics that queued up while sluice was
//! down are still arriving: judged half-way through that backlog, a host that kept reporting
//! would look silent. To end that hold as soon as it can, it needs to know when the backlog is
//! drained, and that must come from the broker, not from guesses on the agents' clocks:
//!
//! - **How much.** The first declaration of the queue answers its ready message count: what
//!   queued up before this process started consuming (the deliveries a previous process left
//!   unacked are requeued, and counted, by then). Later messages are live.
//! - **Which.** The queue hands messages out in order, so the backlog is the first that many
//!   deliveries. Each takes a ticket; the tickets run out with the last of them.
//! - **When.** A delivery's report reaches its acker only once everything it became has an
//!   outcome, which is after the path handed it to the rule stage. So once every ticketed
//!   delivery has reported, all of the backlog is already in the rule stage's input, and a
//!   notice sent then through the same input arrives after it.
//!
//! `redelivered` flags and timestamps cannot say this: `redelivered` marks only what a previous
//! consumer had taken and not acked, and Diamond bodies carry the agents' clocks, no broker time.
//!
//! What makes the count unreliable gives up instead ([`Backlog::give_up`]): a lost connection
//! or a ticketed delivery returned to the queue (it would come back after the others, untracked).
//! The backlog is then never reported drained, and the rule stage's `startup_grace` ends the
//! hold, as it always did. The count assumes this process is the queue's only consumer, as the
//! rule stage's instance is (its own `metrics.queue`); with several consumers in this process,
//! the tickets may go to a few live deliveries ahead of the last backlog ones (at most their
//! prefetch), which only shortens the hold by that much.

use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

/// The backlog of one queue at this process's start; shared by every source consuming it.
#[derive(Debug)]
pub struct Backlog {
    state: Mutex<State>,
    drained: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct State {
    /// None until the queue's first declaration answered its message count.
    tickets_left: Option<u64>,
    /// Ticketed deliveries that have not reported yet.
    outstanding: u64,
    given_up: bool,
}

impl Default for Backlog {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            drained: watch::Sender::new(false),
        }
    }
}

impl Backlog {
    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = change(&mut state);
        if !state.given_up && state.tickets_left == Some(0) && state.outstanding == 0 {
            self.drained.send_replace(true);
        }
        answer
    }

    /// The queue's message count at a declaration. Only the first counts: a later one (another
    /// consumer, a reconnect) already includes live messages.
    pub fn measured(&self, message_count: u32) {
        self.update(|state| {
            if state.tickets_left.is_none() {
                state.tickets_left = Some(u64::from(message_count));
            }
        });
    }

    /// A delivery arrived: true when it is part of the backlog (it took a ticket), and its
    /// report must then be given to [`Backlog::finished`].
    pub fn take_ticket(&self) -> bool {
        self.update(|state| match &mut state.tickets_left {
            Some(left) if *left > 0 && !state.given_up => {
                *left -= 1;
                state.outstanding += 1;
                true
            }
            _ => false,
        })
    }

    /// A ticketed delivery reported: `completed` when acked, false when returned to the queue.
    pub fn finished(&self, completed: bool) {
        self.update(|state| {
            state.outstanding = state.outstanding.saturating_sub(1);
            if !completed {
                state.given_up = true;
            }
        });
    }

    /// The count can no longer be trusted (see the module docs): never report drained.
    /// Nothing changes once drained.
    pub fn give_up(&self) {
        self.update(|state| {
            if !(state.tickets_left == Some(0) && state.outstanding == 0) {
                state.given_up = true;
            }
        });
    }

    pub fn is_drained(&self) -> bool {
        *self.drained.borrow()
    }

    /// Waits until every delivery of the backlog has reported; forever after [`give_up`].
    ///
    /// [`give_up`]: Backlog::give_up
    pub async fn drained(&self) {
        let mut drained = self.drained.subscribe();
        // The sender lives in `self`, which outlives this borrow: the wait cannot fail.
        let _ = drained.wait_for(|drained| *drained).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_is_drained_at_its_first_declaration() {
        let backlog = Backlog::default();
        assert!(!backlog.is_drained(), "unknown before the broker answered");
        backlog.measured(0);
        assert!(backlog.is_drained());
        assert!(!backlog.take_ticket(), "what comes now is live");
    }

    #[test]
    fn drained_once_every_ticketed_delivery_reported_and_only_the_first_count_counts() {
        let backlog = Backlog::default();
        backlog.measured(2);
        backlog.measured(50);
        assert!(backlog.take_ticket());
        assert!(backlog.take_ticket());
        assert!(!backlog.take_ticket(), "the third delivery is live");
        backlog.finished(true);
        assert!(
            !backlog.is_drained(),
            "one backlog delivery still in the pipeline"
        );
        backlog.finished(true);
        assert!(backlog.is_drained());
        backlog.give_up();
        assert!(backlog.is_drained(), "drained stays drained");
    }

    #[test]
    fn a_requeued_backlog_delivery_or_a_lost_connection_gives_up() {
        let requeued = Backlog::default();
        requeued.measured(1);
        assert!(requeued.take_ticket());
        requeued.finished(false);
        assert!(!requeued.is_drained());

        let lost = Backlog::default();
        lost.measured(3);
        assert!(lost.take_ticket());
        lost.give_up();
        assert!(!lost.take_ticket(), "no tickets after giving up");
        lost.finished(true);
        assert!(!lost.is_drained());
    }
}
