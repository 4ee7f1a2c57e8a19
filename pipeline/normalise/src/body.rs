//! [`BodyError`]: what makes a body unreadable as a message, in the same words and under the same
//! reasons whichever decoder reads it. [`NormaliseError`](crate::NormaliseError) (metrics and
//! control messages) and [`EventError`](crate::EventError) (events and logs) each hold it and
//! add what only they refuse.

use simd_json::ErrorType;
use sluice_core::rejection::{Reason, Rejection};

/// Messages name the field and quote at most a short part of what was found, never the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("body is not JSON: {detail}")]
    InvalidJson { detail: String },
    #[error("body is {found}, expected a JSON object")]
    NotAnObject { found: &'static str },
    #[error("{message} has no {field:?} field")]
    MissingField {
        message: &'static str,
        field: &'static str,
    },
    #[error("field {field:?} is {found}, expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
}

impl BodyError {
    /// simd-json's refusal of a body, read as a body that is not UTF-8 or not JSON.
    pub(crate) fn syntax(error: &simd_json::Error) -> Self {
        match error.error() {
            ErrorType::InvalidUtf8 => BodyError::InvalidUtf8 {
                offset: error.index(),
            },
            _ => BodyError::InvalidJson {
                detail: error.to_string(),
            },
        }
    }
}

impl Rejection for BodyError {
    fn reason(&self) -> Reason {
        match self {
            BodyError::InvalidUtf8 { .. } => Reason::InvalidUtf8,
            BodyError::InvalidJson { .. } => Reason::InvalidJson,
            BodyError::NotAnObject { .. } | BodyError::WrongType { .. } => Reason::WrongType,
            BodyError::MissingField { .. } => Reason::MissingField,
        }
    }
}
