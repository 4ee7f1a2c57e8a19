//! [`RetryClass`]: what an HTTP answer that is not a success asks the caller to do, decided
//! once for every HTTP client of sluice (the InfluxDB and Elasticsearch sinks, the action
//! executor). Each client maps the class onto its own outcomes; none reads statuses itself.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::retry_after;

/// What to do about an answer that is not a 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// It may pass (408, 429, 5xx, and what a client does not read as a refusal): try again,
    /// no sooner than the server's `Retry-After`, if it gave one.
    Retry { after: Option<Duration> },
    /// 413: the request is too large. Split it and send the halves; one item alone is refused.
    Split,
    /// The server refused what was sent and will refuse it again: dead-letter it (for a request
    /// of several items that the server refused in part, split it first to find which).
    DeadLetter,
    /// 401, 403: the credentials are wrong. Nothing sent will pass until an operator mends the
    /// configuration, so hold what was to be sent (a sink retries it, and shouts), do not drop it.
    Hold,
}

/// Which of the answers that are neither a success, nor about credentials or size, nor
/// transient (408, 429, 5xx) a caller reads as a refusal of what it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusals {
    /// Every one of them (the REST API: a refused execution fails for good).
    AnyOther,
    /// Only these statuses (InfluxDB's partial writes: 400, 422). Any other answer is about the
    /// request rather than the items (a proxy, a version mismatch) and is retried.
    Only(&'static [u16]),
}

impl Refusals {
    fn refuse(self, status: u16) -> bool {
        match self {
            Refusals::AnyOther => true,
            Refusals::Only(statuses) => statuses.contains(&status),
        }
    }
}

/// 408, 429 and 5xx: the server was slow, overloaded or failing, and the same request may pass
/// later without anyone changing anything.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The class of an answer's status; `None` for a success.
pub fn classify(status: StatusCode, headers: &HeaderMap, refusals: Refusals) -> Option<RetryClass> {
    if status.is_success() {
        return None;
    }
    let class = match status.as_u16() {
        401 | 403 => RetryClass::Hold,
        413 => RetryClass::Split,
        status if is_transient(status) => RetryClass::Retry {
            after: retry_after(headers),
        },
        status if refusals.refuse(status) => RetryClass::DeadLetter,
        _ => RetryClass::Retry {
            after: retry_after(headers),
        },
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn class(status: u16, refusals: Refusals) -> Option<RetryClass> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        classify(
            StatusCode::from_u16(status).expect("status"),
            &headers,
            refusals,
        )
    }

    #[test]
    fn statuses_map_to_one_class_each() {
        let influx = Refusals::Only(&[400, 422]);
        let later = Some(RetryClass::Retry {
            after: Some(Duration::from_secs(3)),
        });
        assert_eq!(class(204, influx), None);
        assert_eq!(class(400, influx), Some(RetryClass::DeadLetter));
        assert_eq!(class(422, influx), Some(RetryClass::DeadLetter));
        assert_eq!(class(404, influx), later, "not a refusal of the lines");
        assert_eq!(class(413, influx), Some(RetryClass::Split));
        assert_eq!(class(401, influx), Some(RetryClass::Hold));
        assert_eq!(class(403, Refusals::AnyOther), Some(RetryClass::Hold));
        assert_eq!(class(404, Refusals::AnyOther), Some(RetryClass::DeadLetter));
        for status in [408, 429, 500, 503] {
            assert_eq!(class(status, Refusals::AnyOther), later, "{status}");
        }
        assert_eq!(class(302, influx), later);
        assert_eq!(class(302, Refusals::AnyOther), Some(RetryClass::DeadLetter));
    }
}
