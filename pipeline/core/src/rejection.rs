//! The one vocabulary for refused items: which [`Stage`] refused it, for which [`Reason`], and
//! the [`Rejection`] trait every error that can refuse an item implements.
//!
//! A refusal is counted (`sluice_rejected_total{stage, reason}`), dead-lettered with the routing
//! key `<stage>.<reason>` and headers naming both, and documented for users, so both halves are
//! closed sets: a new reason is added here, once, and every label, routing key and header that
//! carries it is spelled by [`Reason::as_str`].

use std::fmt;

/// The stage that refused an item: the first half of a dead letter's routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The metrics path's decoder: Diamond JSON to points.
    Normalise,
    /// The events path's decoder: the manager's events and logs to documents.
    Events,
    /// The InfluxDB sink, encoding or writing.
    Influx,
    /// The Elasticsearch sink, encoding or writing.
    Elasticsearch,
    /// The rule stage, loading a deployment's policies.
    Rules,
    /// A configured pipeline's transform, whose result no sink could carry.
    Transform,
}

impl Stage {
    /// The label in metrics, dead-letter headers and routing keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Normalise => "normalise",
            Stage::Events => "events",
            Stage::Influx => "influx",
            Stage::Elasticsearch => "elasticsearch",
            Stage::Rules => "rules",
            Stage::Transform => "transform",
        }
    }
}

/// Why an item was refused: the second half of a dead letter's routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    // A body that cannot be read.
    InvalidUtf8,
    InvalidJson,
    WrongType,
    MissingField,
    NotFinite,
    BadTimestamp,
    // A point that line protocol cannot carry (see `point::InvalidPoint`).
    EmptyName,
    NameTooLong,
    UnsafeName,
    TooManyKeys,
    // A document that would spoil a bulk request for the others.
    InvalidDocument,
    // What a store refused.
    FieldTypeConflict,
    BeyondRetention,
    BadLine,
    MappingConflict,
    IllegalArgument,
    TooLarge,
    /// Refused by a store for a reason it did not name more precisely.
    Rejected,
    // A deployment's policies that cannot be loaded.
    GroupsUnreadable,
    InvalidGroups,
    /// The policies were loaded, but the `ok` file the manager waits for could not be written.
    OkFileUnwritable,
}

impl Reason {
    /// The label in metrics, dead-letter headers and routing keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::WrongType => "wrong_type",
            Reason::MissingField => "missing_field",
            Reason::NotFinite => "not_finite",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::EmptyName => "empty_name",
            Reason::NameTooLong => "name_too_long",
            Reason::UnsafeName => "unsafe_name",
            Reason::TooManyKeys => "too_many_keys",
            Reason::InvalidDocument => "invalid_document",
            Reason::FieldTypeConflict => "field_type_conflict",
            Reason::BeyondRetention => "beyond_retention",
            Reason::BadLine => "bad_line",
            Reason::MappingConflict => "mapping_conflict",
            Reason::IllegalArgument => "illegal_argument",
            Reason::TooLarge => "too_large",
            Reason::Rejected => "rejected",
            Reason::GroupsUnreadable => "groups_unreadable",
            Reason::InvalidGroups => "invalid_groups",
            Reason::OkFileUnwritable => "ok_file_unwritable",
        }
    }
}

macro_rules! label_traits {
    ($label:ty) => {
        impl fmt::Display for $label {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        /// Labels compare with the text they are published as, so tests and tools can name them
        /// as users see them.
        impl PartialEq<&str> for $label {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl From<$label> for metrics::SharedString {
            fn from(label: $label) -> Self {
                metrics::SharedString::const_str(label.as_str())
            }
        }
    };
}

label_traits!(Stage);
label_traits!(Reason);

/// An error that refuses an item for good: it says under which [`Reason`] the item is counted
/// and dead-lettered. Its `Display` is the detail a human reads in the dead letter.
pub trait Rejection: std::error::Error {
    fn reason(&self) -> Reason;
}

/// A refusal on its way to becoming an outcome or a dead letter: the reason and the error text.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    /// The error text for a human. Never contains secrets.
    pub detail: String,
    /// The part of a body that was refused, when a body carries many items (a line of a
    /// Graphite or line-protocol body): the dead letter holds this part, not the whole body,
    /// so replaying it does not send the good items again.
    pub part: Option<bytes::Bytes>,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            part: None,
        }
    }

    /// The refusal of one `part` of a body that carries many items.
    pub fn of_part(mut self, part: bytes::Bytes) -> Self {
        self.part = Some(part);
        self
    }

    /// The refusal an error stands for.
    pub fn of(error: &(impl Rejection + ?Sized)) -> Self {
        Self::new(error.reason(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_published_as_their_text() {
        assert_eq!(Stage::Elasticsearch.to_string(), "elasticsearch");
        assert_eq!(Reason::FieldTypeConflict.to_string(), "field_type_conflict");
        assert_eq!(Reason::GroupsUnreadable, "groups_unreadable");
        assert!(Stage::Influx != "normalise");
    }
}
