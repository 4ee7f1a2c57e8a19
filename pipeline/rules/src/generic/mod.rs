//! Generic rules for the standalone tier: thresholds, deadman (absence) and state changes over
//! moving windows of any numeric point field, configured in TOML.
//!
//! # Why a second engine
//!
//! The [`crate::Engine`] reproduces the Cloudify manager's Riemann policies bit for bit, and so
//! only knows what a blueprint's `groups` file can say. Without a manager, the rules come from the
//! operator: "average of `value` over one minute above 90 for 30 s", "no point from this node for
//! two minutes", "tell me when it breaks and when it recovers". This module is that engine, with
//! the same purity contract:
//!
//! - **No I/O, no clock.** [`GenericEngine::on_point`] and [`GenericEngine::sweep`] take the
//!   caller's `now_ms` (Unix ms); time in a window is *event time* (the point's timestamp).
//! - **Deterministic.** Rules run in file order, keys live in ordered maps: the same calls in the
//!   same order give the same actions in the same order.
//! - **Bounded.** At most [`GenericLimits::max_keys_per_rule`] keys per rule and
//!   [`GenericLimits::max_samples_per_window`] samples per key; idle keys are forgotten.
//! - **Checkpointable.** [`GenericEngine::checkpoint`] gives a serde [`GenericState`]; a restore
//!   into an engine with the same rules behaves exactly like the original (floats are stored as
//!   their shortest round-trip text, because JSON has no NaN and serde_json's default float parser
//!   may be off by one ulp).
//!
//! # Rules file
//!
//! The full layout (this file is `src/generic/example.toml`, which a test parses):
//!
#![doc = concat!("```toml\n", include_str!("example.toml"), "```")]
//!
//! Every key of every table is checked (`deny_unknown_fields`): a typo is an error, never a
//! silently ignored setting. Durations are humantime text (`"90s"`, `"1m 30s"`, `"250ms"`).
//! Errors name the rule and the field, e.g. ``rule `cpu_high`: field `condition.window`: ...``.
//!
//! # Semantics
//!
//! **Which points count.** A point is an *observation* of a rule when it passes every filter
//! (`measurement`, `service`, `tags`) and its `field` is an integer or a finite float. Any other
//! point (no such field, a boolean or string field, NaN, infinity) is ignored by that rule: it
//! neither feeds a window nor counts as a heartbeat. A `service` filter, like any tag filter, does
//! not match a point without that tag. The key is the values of the `by` tags, a missing tag
//! counting as the empty string.
//!
//! **Windows and stats** (`threshold`, `state_change`). Each key keeps the samples of the last
//! `window` of event time (default `0s`: only the samples at the newest timestamp), at most
//! `max_samples_per_window` of them (the oldest go first, so a busy key's stat may cover less than
//! the window). The stat is computed over the samples with `time >= newest - window`:
//! `avg`, `min`, `max`, `sum`, `count`, `last` (value of the newest sample), `pN` / `p(N)` with
//! N in (0, 100] (nearest rank: the smallest sample with at least N % of the samples at or below
//! it), and `rate`: the per-second increase of the field between the oldest and newest sample, a
//! decrease counting as a counter reset (the new value is the increase since the reset).
//! `rate` needs two samples at different times and a window longer than 0 s. A stat without a
//! value (rate of one sample, or a non-finite result such as a sum that overflows) leaves the
//! key's state unchanged.
//!
//! **Out-of-order points.** The event clock of a key is its newest sample's time and never moves
//! back. An older point still inside the window is merged at its place in time; one older than
//! the window is dropped. The condition is evaluated after each accepted point at the key's
//! newest time, so an old point can change the stat but never makes a `for` elapse early.
//!
//! **threshold.** Each key starts ok. The comparison must hold continuously (at every evaluation)
//! for `for` of event time, then the key is breached and the actions fire once. The key returns
//! to ok when the comparison has been false for `recover_for` (default 0 s: the first false
//! evaluation), and only then can a new breach fire. A blip to the other side restarts the clock.
//!
//! **state_change.** As threshold, but the actions fire on both transitions; `{{state}}` is
//! `breached` or `ok` and `origin.diagnose` is `state_change:breached` or `state_change:ok`.
//!
//! **absence** (deadman). A key exists once it has been observed. [`GenericEngine::sweep`] fires
//! once when `now_ms > last_event_ms + after` (silent exactly `after`: still alive), where
//! `last_event_ms` is the newest event time observed. It fires again only after the key was
//! alive again: an observation with `time + after >= now_ms` (a stale backlog point does not
//! revive it). The templates see the last observed point; `{{value}}` is its field, `{{state}}`
//! is `absent` and `{{time_ms}}` is the sweep's `now_ms`.
//!
//! **min_interval.** When set, a key that fired does not fire again (any transition) until
//! `min_interval` of the caller's clock has passed; the state still changes (so a state_change
//! receiver may get an `ok` whose `breached` was held back). The executor's own restraints and
//! de-duplication apply on top.
//!
//! **Bounds and forgetting.** A new key beyond `max_keys_per_rule` evicts the least recently
//! seen key (caller's clock; ties: the first in key order). `sweep` forgets `threshold` and
//! `state_change` keys not observed for `idle_forget_after` (caller's clock), and `absence` keys
//! that already fired and have not been observed for that long. A forgotten or evicted key
//! starts clean: a breach can fire again, an evicted silent key never fires.
//!
//! # Templates
//!
//! Every string of an action (url, header values, body and parameter values, deployment id,
//! workflow) is a template. Placeholders: `{{rule}}`, `{{key}}` (`by` tags as
//! `name=value,name=value`; empty when `by = []`), `{{value}}` (the stat's value),
//! `{{state}}` (`breached`, `ok`, `absent`), `{{measurement}}`, `{{tags.NAME}}`,
//! `{{fields.NAME}}`, `{{time_ms}}` (evaluation event time, Unix ms). Inside `body` and
//! `parameters`, a string that is exactly one placeholder whose value is a number becomes a JSON
//! number; everything else is text. An unknown placeholder or an unclosed `{{` is a config error;
//! a missing tag or field renders as the empty string. There is no escape for a literal `{{`.
//!
//! # Actions
//!
//! Each firing yields one [`sluice_core::action::Action`] per `[[rule.action]]`, in order, with
//! `origin.group` the rule set's group name (`rules` unless [`RuleSet::with_group_name`]),
//! `origin.policy` the rule name, `origin.trigger` the action's `name` (or its index), `node_id`
//! and `node_name` from the point's tags of those names, `diagnose` `threshold`, `absence`,
//! `state_change:breached` or `state_change:ok`, and `origin.event` an object with the point
//! (`point`), `rule`, `key`, `state`, `stat` and `value`.
//!
//! # Modules
//!
//! - `config`: the TOML layout, parsed and validated into [`RuleSet`].
//! - `window`: the per-key samples and the [`Stat`]s over them.
//! - `action_template`: the `{{...}}` templates of actions.
//! - `rules_engine`: [`GenericEngine`]: points and sweeps through the rules, restore.
//! - `key_state`: the per-rule, per-key state and its checkpoint form, [`GenericState`].
//! - `firing`: a firing rendered into its actions.

mod action_template;
mod config;
mod firing;
mod key_state;
mod rules_engine;
mod window;

pub use config::{
    CompareOp, Comparison, Condition, DEFAULT_GROUP_NAME, Rule, RuleAction, RuleConfigError,
    RuleSet, TagMatcher,
};
pub use key_state::{
    GENERIC_STATE_FORMAT_VERSION, GenericRestoreError, GenericState, RestoreOutcome,
};
pub use rules_engine::{
    DIAGNOSE_ABSENCE, DIAGNOSE_STATE_CHANGE_BREACHED, DIAGNOSE_STATE_CHANGE_OK, DIAGNOSE_THRESHOLD,
    GenericEngine, GenericLimits,
};
pub use window::{Sample, Stat};

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
