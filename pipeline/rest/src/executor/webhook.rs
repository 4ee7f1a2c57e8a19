//! Webhooks: the duplicate-pending restraint only, then a POST of the body with its headers
//! (marked sensitive); URLs are reported without credentials.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sluice_core::action::{ActionOrigin, Webhook};
use tokio::time::Instant;
use url::Url;

use super::Executor;
use super::calls::{Attempt, CallFailure, call};
use super::outcome::{Execution, Outcome, call_failed, clock, failed, skipped};
use super::restraints::PendingKey;
use crate::outcome_events::{EventContext, OutcomeEventKind, outcome_event};

impl Executor {
    pub(super) async fn execute_webhook(&self, webhook: &Webhook, now_ms: i64) -> Execution {
        let started = Instant::now();
        let deadline = started + self.retry_deadline;
        let context = webhook_context(&webhook.origin, &webhook.body);
        let body = webhook.body.to_string();
        let Some(_pending) = self.claim(PendingKey::Webhook {
            url: webhook.url.clone(),
            body: body.clone(),
        }) else {
            return skipped(Outcome::SkippedDuplicatePending);
        };
        let request_parts = Url::parse(&webhook.url)
            .map_err(|error| format!("url: {error}"))
            .and_then(|url| webhook_headers(&webhook.headers).map(|headers| (url, headers)));
        let (url, headers) = match request_parts {
            Ok(parts) => parts,
            Err(detail) => return failed(&context, detail, true, 0, now_ms),
        };
        let target = webhook_target(&webhook.url);
        let mut events = vec![outcome_event(
            OutcomeEventKind::ProcessingTrigger,
            &context,
            &format!(
                "Processing trigger '{}' of policy '{}' in group '{}': webhook {target}",
                webhook.origin.trigger, webhook.origin.policy, webhook.origin.group
            ),
            json!({"webhook": target, "diagnose": webhook.origin.diagnose}),
            clock(now_ms, started),
        )];
        let client = self.client(webhook.timeout);
        let result = self
            .with_retries("webhook", &target, deadline, || {
                let request = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .timeout(webhook.timeout)
                    .body(body.clone());
                async move {
                    match call(request).await.and_then(|answer| answer.classify()) {
                        Ok(answer) => Attempt::Done(answer),
                        Err(transient) => transient,
                    }
                }
            })
            .await;
        let time_ms = clock(now_ms, started);
        let attempts = match result.and_then(|(answer, attempts)| {
            answer
                .map(|()| attempts)
                .map_err(|detail| CallFailure::permanent(detail, attempts))
        }) {
            Ok(attempts) => attempts,
            Err(failure) => return call_failed(&context, events, failure, time_ms),
        };
        events.push(outcome_event(
            OutcomeEventKind::TriggerSucceeded,
            &context,
            &format!("Webhook {target} called"),
            json!({"webhook": target, "attempts": attempts}),
            time_ms,
        ));
        let outcome = Outcome::Succeeded {
            execution_id: String::new(),
        };
        Execution { outcome, events }
    }
}

/// Webhook headers; values are marked sensitive (they often carry credentials).
fn webhook_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: '{name}' is not a header name"))?;
        let mut header_value = HeaderValue::from_str(value)
            .map_err(|_| format!("headers: the value of '{name}' cannot be sent"))?;
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// A webhook URL fit for logs and events: scheme, host, port and path; no user
/// information, query or fragment (where credentials hide).
pub(super) fn webhook_target(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => {
            format!(
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default()
            ) + url.path()
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

fn webhook_context<'a>(origin: &'a ActionOrigin, body: &'a Value) -> EventContext<'a> {
    EventContext {
        deployment_id: None,
        workflow_id: None,
        trigger_parameters: body,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_targets_drop_credentials_and_queries() {
        assert_eq!(
            webhook_target("https://user:pass@hooks.example:8443/a/b?token=x#f"),
            "https://hooks.example:8443/a/b"
        );
        assert_eq!(webhook_target("not a url"), "<invalid url>");
    }
}
