//! What a round saw, whether it passed, and the table of a run.

use std::path::PathBuf;

use serde::Serialize;

use super::Fault;
use super::rules::RulesOutcome;

/// What one round saw.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub fault: Fault,
    pub round: u32,
    pub seed: u64,
    /// The fault was injected after this many publishes...
    pub fault_after: u64,
    /// ...and was over after this many (`rabbitmqctl` takes a second or two, a stall longer).
    pub fault_effect_after: u64,
    pub published: u64,
    /// Publishes the broker confirmed, good and malformed.
    pub confirmed: u64,
    /// Of them, malformed bodies.
    pub malformed: u64,
    /// Distinct good ids in InfluxDB.
    pub stored: u64,
    /// Confirmed good ids with no point.
    pub missing: u64,
    /// Rows beyond one per id (see the module's note on what this can see).
    pub duplicates: u64,
    /// Messages in the dead-letter queue.
    pub dead_lettered: u64,
    /// Confirmed malformed ids with no dead letter.
    pub malformed_missing: u64,
    /// Dead letters of malformed ids whose reason is not the one their kind must give.
    pub wrong_reasons: u64,
    /// Events the broker confirmed (they are in `confirmed` too).
    pub events: u64,
    /// Distinct events with a document in the Elasticsearch double.
    pub events_stored: u64,
    /// Confirmed events with no document.
    pub events_missing: u64,
    /// Events with more than one document.
    pub events_stored_twice: u64,
    /// Items the Elasticsearch double answered 429 (the `es_429` fault).
    pub es_items_rejected_429: u64,
    /// Messages in sluice's queues once it stopped cleanly (ready; nothing can stay unacked
    /// without a consumer, which `consumers_left` checks).
    pub left_in_queue: u64,
    pub consumers_left: u32,
    /// From the fault's end to the first point of a message published after it, in seconds.
    pub recovery_seconds: Option<f64>,
    /// For a stall: sluice's peak RSS by its end, and the most it may be.
    pub peak_rss_mib: Option<f64>,
    pub max_rss_mib: Option<f64>,
    /// Times one of the run's secrets appears in what sluice printed.
    pub secrets_leaked: u64,
    /// How often the load's publisher had to reconnect (a broker restart).
    pub publisher_reconnects: u32,
    /// What reached the manager double, in the rounds with the [rules probe](super::rules).
    pub rules: Option<RulesOutcome>,
    pub log: PathBuf,
}

impl RoundReport {
    pub fn passed(&self) -> bool {
        let memory_bounded = match (self.peak_rss_mib, self.max_rss_mib) {
            (Some(peak), Some(max)) => peak <= max,
            _ => true,
        };
        self.missing == 0
            && self.events_missing == 0
            && self.events_stored_twice == 0
            && self.malformed_missing == 0
            && self.wrong_reasons == 0
            && self.left_in_queue == 0
            && self.consumers_left == 0
            && self.recovery_seconds.is_some()
            && self.secrets_leaked == 0
            && memory_bounded
            && self.rules.as_ref().is_none_or(RulesOutcome::passed)
    }

    pub fn line(&self) -> String {
        let recovery = self
            .recovery_seconds
            .map_or_else(|| "never".to_owned(), |seconds| format!("{seconds:.2}s"));
        let memory = self
            .peak_rss_mib
            .map(|peak| format!(", peak RSS {peak:.1} MiB"))
            .unwrap_or_default();
        let rules = self
            .rules
            .as_ref()
            .map(|rules| format!(", {}", rules.summary()))
            .unwrap_or_default();
        format!(
            "{} round {} seed {}: fault after {} (over after {})/{}, confirmed {} ({} malformed, {} events), stored {}, missing {}, duplicates {}, events stored {} (missing {}, twice {}, 429s {}), dead-lettered {} (malformed missing {}, wrong reasons {}), left in queues {}, recovery {recovery}{memory}{rules}, secrets leaked {}: {}",
            self.fault.name(),
            self.round,
            self.seed,
            self.fault_after,
            self.fault_effect_after,
            self.published,
            self.confirmed,
            self.malformed,
            self.events,
            self.stored,
            self.missing,
            self.duplicates,
            self.events_stored,
            self.events_missing,
            self.events_stored_twice,
            self.es_items_rejected_429,
            self.dead_lettered,
            self.malformed_missing,
            self.wrong_reasons,
            self.left_in_queue,
            self.secrets_leaked,
            if self.passed() { "pass" } else { "FAIL" },
        )
    }
}

/// The rounds of one fault, summed.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSummary {
    pub fault: Fault,
    pub rounds: usize,
    pub passed: usize,
    pub messages: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub events: u64,
    pub events_missing: u64,
    pub events_stored_twice: u64,
    pub malformed: u64,
    pub dead_lettered: u64,
    pub malformed_missing: u64,
    pub left_in_queue: u64,
    pub secrets_leaked: u64,
    /// Rounds whose rule stage did not do what the rules probe expects (a trigger lost or
    /// repeated, a host not healed or healed wrongly, a checkpoint failure unseen).
    pub rules_wrong: u64,
    /// The worst recovery; `None` when a round never recovered.
    pub worst_recovery_seconds: Option<f64>,
    /// The highest peak RSS, where it was measured (stalls).
    pub peak_rss_mib: Option<f64>,
}

pub fn summarise(rounds: &[RoundReport]) -> Vec<FaultSummary> {
    let mut faults: Vec<Fault> = rounds.iter().map(|round| round.fault).collect();
    faults.sort();
    faults.dedup();
    faults
        .into_iter()
        .map(|fault| {
            let of_fault: Vec<&RoundReport> =
                rounds.iter().filter(|round| round.fault == fault).collect();
            let sum = |field: fn(&RoundReport) -> u64| of_fault.iter().map(|r| field(r)).sum();
            let never = of_fault
                .iter()
                .any(|round| round.recovery_seconds.is_none());
            FaultSummary {
                fault,
                rounds: of_fault.len(),
                passed: of_fault.iter().filter(|round| round.passed()).count(),
                messages: sum(|round| round.confirmed),
                missing: sum(|round| round.missing),
                duplicates: sum(|round| round.duplicates),
                events: sum(|round| round.events),
                events_missing: sum(|round| round.events_missing),
                events_stored_twice: sum(|round| round.events_stored_twice),
                malformed: sum(|round| round.malformed),
                dead_lettered: sum(|round| round.dead_lettered),
                malformed_missing: sum(|round| round.malformed_missing),
                left_in_queue: sum(|round| round.left_in_queue),
                secrets_leaked: sum(|round| round.secrets_leaked),
                rules_wrong: sum(|round| {
                    u64::from(round.rules.as_ref().is_some_and(|rules| !rules.passed()))
                }),
                worst_recovery_seconds: (!never).then(|| {
                    of_fault
                        .iter()
                        .filter_map(|round| round.recovery_seconds)
                        .fold(0.0, f64::max)
                }),
                peak_rss_mib: of_fault
                    .iter()
                    .filter_map(|round| round.peak_rss_mib)
                    .reduce(f64::max),
            }
        })
        .collect()
}

/// The table printed after a run.
pub fn table(summaries: &[FaultSummary]) -> String {
    let widths = [21, 6, 6, 9, 8, 10, 7, 10, 12, 9, 13, 9, 8, 6, 11, 15, 9];
    let row = |cells: [&str; 17]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index == 0 {
                line.push_str(&format!("{cell:<width$}"));
            } else {
                line.push_str(&format!(" {cell:>width$}"));
            }
        }
        line.push('\n');
        line
    };
    let mut text = row([
        "fault",
        "rounds",
        "passed",
        "messages",
        "missing",
        "duplicates",
        "events",
        "ev missing",
        "ev stored 2x",
        "malformed",
        "dead-lettered",
        "bad lost",
        "in queue",
        "leaks",
        "rules wrong",
        "worst recovery",
        "peak RSS",
    ]);
    for summary in summaries {
        let recovery = summary
            .worst_recovery_seconds
            .map_or_else(|| "never".to_owned(), |seconds| format!("{seconds:.2}s"));
        let memory = summary
            .peak_rss_mib
            .map_or_else(|| "-".to_owned(), |peak| format!("{peak:.1} MiB"));
        text.push_str(&row([
            summary.fault.name(),
            &summary.rounds.to_string(),
            &summary.passed.to_string(),
            &summary.messages.to_string(),
            &summary.missing.to_string(),
            &summary.duplicates.to_string(),
            &summary.events.to_string(),
            &summary.events_missing.to_string(),
            &summary.events_stored_twice.to_string(),
            &summary.malformed.to_string(),
            &summary.dead_lettered.to_string(),
            &summary.malformed_missing.to_string(),
            &summary.left_in_queue.to_string(),
            &summary.secrets_leaked.to_string(),
            &summary.rules_wrong.to_string(),
            &recovery,
            &memory,
        ]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> RoundReport {
        RoundReport {
            fault: Fault::Kill9,
            round: 0,
            seed: 1,
            fault_after: 5,
            fault_effect_after: 6,
            published: 10,
            confirmed: 10,
            malformed: 1,
            stored: 9,
            missing: 0,
            duplicates: 0,
            events: 2,
            events_stored: 2,
            events_missing: 0,
            events_stored_twice: 0,
            es_items_rejected_429: 0,
            dead_lettered: 1,
            malformed_missing: 0,
            wrong_reasons: 0,
            left_in_queue: 0,
            consumers_left: 0,
            recovery_seconds: Some(1.0),
            peak_rss_mib: None,
            max_rss_mib: None,
            secrets_leaked: 0,
            publisher_reconnects: 0,
            rules: None,
            log: PathBuf::new(),
        }
    }

    #[test]
    fn a_round_fails_on_any_loss_leak_or_memory_overrun() {
        assert!(passing().passed());
        let failures: [fn(&mut RoundReport); 10] = [
            |round| round.missing = 1,
            |round| round.events_missing = 1,
            |round| round.events_stored_twice = 1,
            |round| round.malformed_missing = 1,
            |round| round.wrong_reasons = 1,
            |round| round.left_in_queue = 1,
            |round| round.consumers_left = 1,
            |round| round.recovery_seconds = None,
            |round| round.secrets_leaked = 1,
            |round| {
                round.peak_rss_mib = Some(65.0);
                round.max_rss_mib = Some(64.0);
            },
        ];
        for fail in failures {
            let mut round = passing();
            fail(&mut round);
            assert!(!round.passed(), "{round:?}");
        }
        let mut never = passing();
        never.recovery_seconds = None;
        assert_eq!(summarise(&[never])[0].worst_recovery_seconds, None);
    }
}
