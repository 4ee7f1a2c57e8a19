//! [`EsWriter`]: the Elasticsearch [`Sink`]. Each document becomes its two NDJSON lines in the
//! path's encode stage; batches of them are written with `_bulk`, one outcome per document.
//!
//! # From answers to outcomes
//!
//! | answer to the request               | outcome                                               |
//! |-------------------------------------|-------------------------------------------------------|
//! | 2xx                                 | per item, see the `response` module                   |
//! | 2xx that cannot be read item by item | `Retry` for all, logged as an error                  |
//! | 413, several documents              | split in halves, each half written again              |
//! | 413, one document                   | `Reject { reason: "too_large" }`                      |
//! | 401, 403                            | `Retry`: misconfiguration holds deliveries, logged as an error |
//! | 429, 5xx, no answer, timeout        | `Retry`, with the server's `Retry-After`              |
//! | any other status                    | `Retry`, logged as an error (the request itself was refused) |
//!
//! A document that would break the request for the others (a raw newline in its source, a
//! source that is not a JSON object, an empty or over-long id) is refused as
//! `invalid_document` when it is encoded, and never sent: see [`validate_document`].
//!
//! The statuses are classed by [`sluice_http::classify`]; the split of a request that is too
//! large, and the retry of what waits behind a failed request, are
//! [`sluice_http::write_batch`]'s. Sending a document twice is harmless: the second `create`
//! answers 409, which counts as delivered.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use reqwest::{RequestBuilder, Response};
use secrecy::ExposeSecret;
use sluice_core::batch::ByteSize;
use sluice_core::document::Document;
use sluice_core::outcome::ItemOutcome;
use sluice_core::path::{Encode, Sink};
use sluice_core::rejection::{Reason, Refusal, Stage};
use url::Url;

use crate::api::{Endpoints, EsAuth, EsSettings};
use crate::encode::{encode_document, validate_document};
use crate::error::EsError;
use crate::response::read_bulk_response;
use crate::telemetry;
use sluice_http::{
    BatchAnswer, BatchEndpoint, BufferPool, Refusals, RetryClass, classify, endpoint_name,
    error_chain, gzip, read_capped, store_client, truncate_detail, write_batch,
};

/// Encoding buffers kept for reuse: about the number of writes in flight at once.
const MAX_POOLED_BUFFERS: usize = 8;
/// The priority of the template [`EsWriter::install_index_template`] puts: above the built-in
/// templates of Elasticsearch 8 (100), so that it wins where patterns overlap.
const TEMPLATE_PRIORITY: u64 = 200;

/// What the index template adds beyond its mappings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateOptions {
    /// The ILM policy the indices are managed by (`index.lifecycle.name`): rollover and
    /// retention (the manager kept 7 days), defined in Elasticsearch. The policy need not exist
    /// when the template is put.
    pub ilm_policy: Option<String>,
    /// The pattern names data streams (`data_stream: {}`): a document sent with `create` to a
    /// name of the pattern goes into that data stream, whose backing indices Elasticsearch
    /// creates and rolls over (`.ds-<name>-<date>-000001`).
    pub data_stream: bool,
}

/// The Elasticsearch sink's write half. Cheap to share: one per sink, behind an `Arc` if several
/// tasks write concurrently.
pub struct EsWriter {
    client: reqwest::Client,
    endpoints: Endpoints,
    auth: EsAuth,
    /// `ApiKey <key>`, marked sensitive so that it is never logged by the HTTP stack.
    api_key_header: Option<HeaderValue>,
    gzip: bool,
    buffers: BufferPool,
    /// The template to install before the first write, see [`EsWriter::with_index_template`].
    template: Option<ManagedTemplate>,
    /// Set once `template` has been put since this writer was made.
    template_installed: AtomicBool,
}

/// The index template a writer installs before it writes.
#[derive(Debug, Clone)]
struct ManagedTemplate {
    name: String,
    index_patterns: Vec<String>,
    options: TemplateOptions,
}

impl fmt::Debug for EsWriter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EsWriter")
            .field("bulk", &self.endpoints.bulk.as_str())
            .field("auth", &self.auth)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// A whole-request 4xx is never about the documents (their refusals come item by item in a
/// 2xx answer): it is retried, and logged, because the request itself was refused.
const REFUSED_DOCUMENTS: Refusals = Refusals::Only(&[]);

/// One document in its wire form: its action line and its source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem(Vec<u8>);

impl BulkItem {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl ByteSize for BulkItem {
    fn byte_size(&self) -> usize {
        self.0.len()
    }
}

impl EsWriter {
    /// Checks the settings and builds the HTTP client; does no I/O.
    pub fn new(settings: EsSettings) -> Result<Self, EsError> {
        let endpoints = Endpoints::from_settings(&settings).map_err(EsError::Settings)?;
        let api_key_header = match &settings.auth {
            EsAuth::ApiKey(key) => {
                let mut value = HeaderValue::from_str(&format!("ApiKey {}", key.expose_secret()))
                    .map_err(|_| {
                    EsError::Settings(
                        "auth.api_key: holds characters an HTTP header cannot carry".to_owned(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            EsAuth::None | EsAuth::Basic { .. } => None,
        };
        let client = store_client(settings.request_timeout, &settings.tls)?;
        Ok(Self {
            client,
            endpoints,
            auth: settings.auth,
            api_key_header,
            gzip: settings.gzip,
            buffers: BufferPool::new(MAX_POOLED_BUFFERS),
            template: None,
            template_installed: AtomicBool::new(false),
        })
    }

    /// Makes the template (see [`EsWriter::install_index_template`]) a precondition of every
    /// write: until it has been put, a write puts it first, and if that fails, every document
    /// of the write is retried. So no index of the pattern is created by a document before the
    /// template exists, also when Elasticsearch comes up after sluice: an index created
    /// without it would keep dynamic mappings (and refuse one of the manager's timestamp
    /// shapes) for good, and a data stream's name would become a plain index.
    pub fn with_index_template(
        mut self,
        name: &str,
        index_patterns: Vec<String>,
        options: TemplateOptions,
    ) -> Self {
        self.template = Some(ManagedTemplate {
            name: name.to_owned(),
            index_patterns,
            options,
        });
        self
    }

    /// Puts the template of [`EsWriter::with_index_template`] unless it was already put by
    /// this writer; Ok when there is none.
    pub async fn ensure_index_template(&self) -> Result<(), EsError> {
        let Some(template) = &self.template else {
            return Ok(());
        };
        if self.template_installed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.install_index_template(&template.name, &template.index_patterns, &template.options)
            .await?;
        // Two writes may both put it before either sets this: harmless, putting it is idempotent.
        if !self.template_installed.swap(true, Ordering::AcqRel) {
            telemetry::index_template_installed(&template.name, &template.index_patterns);
        }
        Ok(())
    }

    /// `GET /`, for the readiness endpoint: Ok when the cluster answers 2xx. With security on,
    /// the credentials need the `monitor` cluster privilege for this (writing needs only
    /// `create_doc` on the indices).
    pub async fn ping(&self) -> Result<(), EsError> {
        let request = self.client.get(self.endpoints.root.clone());
        let response = self
            .send_authenticated(request, &self.endpoints.root)
            .await?;
        expect_success(response, &self.endpoints.root).await
    }

    /// `PUT /_index_template/<name>`: a Logstash-like composable template for `index_patterns`.
    /// String fields are `text` with a `keyword` sub-field (`ignore_above` 256), `@timestamp`
    /// is a `date`, `@version` a `keyword`, and the manager's fields whose shape varies between
    /// its versions are mapped so that no index refuses one of their shapes (see
    /// `index_template` for which and why). Putting the same template again changes nothing, so
    /// this is safe to call at every start. It applies to indices created after it; its
    /// priority is 200, above Elasticsearch's built-in templates. `options` add an ILM policy
    /// and make the patterns name data streams.
    pub async fn install_index_template(
        &self,
        name: &str,
        index_patterns: &[String],
        options: &TemplateOptions,
    ) -> Result<(), EsError> {
        if name.is_empty() {
            return Err(EsError::Settings(
                "index template: the name is empty".into(),
            ));
        }
        if index_patterns.is_empty() {
            return Err(EsError::Settings(
                "index template: no index patterns".into(),
            ));
        }
        if options.ilm_policy.as_deref() == Some("") {
            return Err(EsError::Settings(
                "index template: the ILM policy name is empty".into(),
            ));
        }
        let url = self
            .endpoints
            .index_template(name)
            .map_err(EsError::Settings)?;
        let body = serde_json::to_vec(&index_template(index_patterns, options))
            .map_err(|error| EsError::Settings(format!("index template: {error}")))?;
        let request = self
            .client
            .put(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send_authenticated(request, &url).await?;
        expect_success(response, &url).await
    }

    /// Adds the credentials and sends; a missing answer becomes [`EsError::Transport`].
    async fn send_authenticated(
        &self,
        request: RequestBuilder,
        endpoint: &Url,
    ) -> Result<Response, EsError> {
        let request = request.header(ACCEPT, "application/json");
        let request = match (&self.auth, &self.api_key_header) {
            (EsAuth::Basic { username, password }, _) => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            (_, Some(api_key)) => request.header(AUTHORIZATION, api_key.clone()),
            _ => request,
        };
        request
            .send()
            .await
            .map_err(|error| EsError::transport(endpoint, error))
    }

    /// Reads a 2xx answer item by item.
    async fn read_items(&self, response: Response, documents: usize) -> BatchAnswer {
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => {
                let detail = format!(
                    "could not read the bulk response: {}",
                    truncate_detail(error_chain(&error.without_url()))
                );
                telemetry::bulk_request_failed(&endpoint_name(&self.endpoints.bulk), &detail);
                return BatchAnswer::Failed {
                    retry_after: None,
                    detail,
                };
            }
        };
        match read_bulk_response(&body, documents) {
            Ok(read) => {
                telemetry::items_answered(&read.statuses);
                if let Some(status) = read.unauthorized {
                    telemetry::item_authorization_failed(status);
                }
                BatchAnswer::Items(read.outcomes)
            }
            Err(error) => {
                let detail = error.to_string();
                telemetry::unreadable_bulk_response(&detail);
                BatchAnswer::Failed {
                    retry_after: None,
                    detail,
                }
            }
        }
    }
}

impl BatchEndpoint for EsWriter {
    /// Sends one `_bulk` request of `documents` documents and classifies the answer.
    async fn send(&self, body: &[u8], documents: usize) -> BatchAnswer {
        let endpoint = &self.endpoints.bulk;
        let plain_bytes = body.len();
        let mut request = self
            .client
            .post(endpoint.clone())
            .header(CONTENT_TYPE, "application/x-ndjson");
        let body = match self.gzip.then(|| gzip(body)).transpose() {
            Ok(Some(compressed)) => {
                request = request.header(CONTENT_ENCODING, "gzip");
                compressed
            }
            // Compressing into memory does not fail in practice; if it did, send it plain.
            Ok(None) | Err(_) => body.to_vec(),
        };
        telemetry::bulk_request_sent(body.len());
        let response = match self.send_authenticated(request.body(body), endpoint).await {
            Ok(response) => response,
            Err(error) => {
                let detail = error.to_string();
                telemetry::bulk_request_failed(&endpoint_name(endpoint), &detail);
                return BatchAnswer::Failed {
                    retry_after: None,
                    detail,
                };
            }
        };

        let status = response.status();
        telemetry::bulk_request_answered(status.as_u16());
        let Some(class) = classify(status, response.headers(), REFUSED_DOCUMENTS) else {
            return self.read_items(response, documents).await;
        };
        let status = status.as_u16();
        match class {
            RetryClass::Split | RetryClass::DeadLetter => {
                let message = error_message(&read_capped(response).await);
                if documents > 1 {
                    telemetry::too_large_request_split(documents, &message);
                }
                let detail = truncate_detail(format!(
                    "elasticsearch answered 413 to this document alone ({plain_bytes} bytes): \
                     {message}"
                ));
                BatchAnswer::Split {
                    alone: Refusal::new(Reason::TooLarge, detail),
                }
            }
            RetryClass::Hold => {
                telemetry::authentication_failed(&endpoint_name(endpoint), status);
                BatchAnswer::Failed {
                    retry_after: None,
                    detail: format!("authentication failed (status {status})"),
                }
            }
            RetryClass::Retry { after } => {
                let message = error_message(&read_capped(response).await);
                if status != 429 && !(500..=599).contains(&status) {
                    telemetry::bulk_request_refused(status, &message);
                }
                BatchAnswer::Failed {
                    retry_after: after,
                    detail: truncate_detail(format!("elasticsearch answered {status}: {message}")),
                }
            }
        }
    }
}

impl Sink for EsWriter {
    type Encoded = BulkItem;
    type Encoder = ();

    fn stage(&self) -> Stage {
        Stage::Elasticsearch
    }

    fn encoder(&self) {}

    async fn write(&self, items: &[&BulkItem]) -> Vec<ItemOutcome> {
        if let Err(error) = self.ensure_index_template().await {
            let detail = format!("the index template is not installed yet: {error}");
            telemetry::index_template_failed(&error, items.len());
            return items
                .iter()
                .map(|_| ItemOutcome::Retry {
                    after: None,
                    detail: detail.clone(),
                })
                .collect();
        }
        let items: Vec<&[u8]> = items.iter().map(|item| item.as_bytes()).collect();
        write_batch(self, &self.buffers, &items).await
    }
}

/// A document that would spoil the request for the others is refused here, never sent.
impl Encode<Document> for EsWriter {
    fn encode(&self, _encoder: &mut (), document: &Document) -> Result<BulkItem, Refusal> {
        if let Err(error) = validate_document(document) {
            telemetry::invalid_document(&document.index, &document.id, &error);
            return Err(Refusal::of(&error));
        }
        let mut lines = Vec::with_capacity(document.byte_size());
        encode_document(&mut lines, document);
        Ok(BulkItem(lines))
    }
}

/// The body of the index template: what Logstash's own template does for strings and
/// `@timestamp`, without its geo and message special cases, and explicit mappings for the
/// manager's fields whose shape varies between its versions. A dynamic mapping fixes a field's
/// type from the first value an index sees, and each daily index is new: left to it, the same
/// field can become a different type on different days, or one day's index refuses half of the
/// manager's documents (a 400 per document, dead-lettered). The fields mapped here are the ones
/// where that happens with the manager's own traffic:
///
/// - `timestamp`: ISO 8601 with `Z` (3.5+) passes Elasticsearch's date detection, while the
///   3.x shapes (`2016-06-15 10:13:20.123+0000`, with a space and no colon in the offset; the
///   policy engine's without a zone; the one without seconds) do not; an index that first saw
///   the ISO shape maps a `date` and refuses the others. It is kept as the manager sent it, a
///   `keyword` (exact match and sorting within a shape); the instant to query and sort on is
///   sluice's `@timestamp`, parsed from every shape.
/// - `message.arguments`, `message.args` (the policy engine's) and
///   `context.trigger-parameters`: free-form values (null, lists, objects, numbers or strings
///   from the triggering event), so no single type fits. They are kept in `_source` but not
///   indexed (`enabled: false` accepts any value); no reader of the manager queries them.
///
/// Every other string stays `text` with a `keyword` sub-field, as Logstash leaves it, and date
/// detection stays on as in Elasticsearch's default, so a field the manager does not send is
/// mapped as it would be without the template.
fn index_template(index_patterns: &[String], options: &TemplateOptions) -> serde_json::Value {
    let free_form = serde_json::json!({ "type": "object", "enabled": false });
    let mut template = serde_json::json!({
        "index_patterns": index_patterns,
        "priority": TEMPLATE_PRIORITY,
        "_meta": {
            "managed_by": "sluice",
            "description": "events and logs: strings as text with a keyword sub-field, \
                            the manager's fields of varying shape protected"
        },
        "template": {
            "mappings": {
                "dynamic_templates": [{
                    "strings_as_text_and_keyword": {
                        "match_mapping_type": "string",
                        "mapping": {
                            "type": "text",
                            "norms": false,
                            "fields": {
                                "keyword": { "type": "keyword", "ignore_above": 256 }
                            }
                        }
                    }
                }],
                "properties": {
                    "@timestamp": { "type": "date" },
                    "@version": { "type": "keyword" },
                    "timestamp": { "type": "keyword", "ignore_above": 256 },
                    "message": {
                        "properties": {
                            "arguments": free_form,
                            "args": free_form
                        }
                    },
                    "context": {
                        "properties": {
                            "trigger-parameters": free_form
                        }
                    }
                }
            }
        }
    });
    if let Some(policy) = &options.ilm_policy {
        template["template"]["settings"] = serde_json::json!({ "index.lifecycle.name": policy });
    }
    if options.data_stream {
        template["data_stream"] = serde_json::json!({});
    }
    template
}

/// Ok for a 2xx answer; the error that says what to do otherwise.
async fn expect_success(response: Response, endpoint: &Url) -> Result<(), EsError> {
    if response.status().is_success() {
        return Ok(());
    }
    let error = EsError::answered(response, error_message).await;
    if let EsError::Authentication { status } = error {
        telemetry::authentication_failed(&endpoint_name(endpoint), status);
    }
    Err(error)
}

/// The server's error text: `<type>: <reason>` from Elasticsearch's
/// `{"error":{"type":..,"reason":..},"status":..}`, the string of `{"error":".."}`, or the body.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = &value["error"];
        if let Some(text) = error.as_str() {
            return text.to_owned();
        }
        if let Some(kind) = error["type"].as_str() {
            return match error["reason"].as_str() {
                Some(reason) => format!("{kind}: {reason}"),
                None => kind.to_owned(),
            };
        }
    }
    String::from_utf8_lossy(body).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_comes_from_elasticsearch_bodies_or_the_raw_body() {
        assert_eq!(
            error_message(
                br#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"bad"}],"type":"illegal_argument_exception","reason":"Malformed action/metadata line [1], expected START_OBJECT but found [VALUE_STRING]"},"status":400}"#
            ),
            "illegal_argument_exception: Malformed action/metadata line [1], expected \
             START_OBJECT but found [VALUE_STRING]"
        );
        assert_eq!(
            error_message(
                br#"{"error":"Content-Type header [text/plain] is not supported","status":406}"#
            ),
            "Content-Type header [text/plain] is not supported"
        );
        assert_eq!(
            error_message(b"  <html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "");
    }

    #[test]
    fn the_template_maps_strings_to_text_and_keyword_and_timestamp_to_date() {
        let template = index_template(&["logstash-*".to_owned()], &TemplateOptions::default());
        assert_eq!(
            template["index_patterns"],
            serde_json::json!(["logstash-*"])
        );
        let mappings = &template["template"]["mappings"];
        assert_eq!(mappings["properties"]["@timestamp"]["type"], "date");
        let strings = &mappings["dynamic_templates"][0]["strings_as_text_and_keyword"];
        assert_eq!(strings["match_mapping_type"], "string");
        assert_eq!(strings["mapping"]["type"], "text");
        assert_eq!(
            strings["mapping"]["fields"]["keyword"],
            serde_json::json!({"type": "keyword", "ignore_above": 256})
        );
    }

    #[test]
    fn the_template_protects_the_managers_fields_of_varying_shape() {
        let template = index_template(&["logstash-*".to_owned()], &TemplateOptions::default());
        let properties = &template["template"]["mappings"]["properties"];
        assert_eq!(properties["timestamp"]["type"], "keyword");
        let free_form = serde_json::json!({"type": "object", "enabled": false});
        assert_eq!(properties["message"]["properties"]["arguments"], free_form);
        assert_eq!(properties["message"]["properties"]["args"], free_form);
        assert_eq!(
            properties["context"]["properties"]["trigger-parameters"],
            free_form
        );
        // Date detection is left as Elasticsearch has it: the explicit mappings protect.
        assert!(
            template["template"]["mappings"]
                .get("date_detection")
                .is_none()
        );
        // No options, nothing beyond the mappings.
        assert!(template["template"].get("settings").is_none());
        assert!(template.get("data_stream").is_none());
    }

    #[test]
    fn options_add_the_ilm_policy_and_the_data_stream() {
        let options = TemplateOptions {
            ilm_policy: Some("cloudify-7-days".to_owned()),
            data_stream: true,
        };
        let template = index_template(&["logstash-events".to_owned()], &options);
        assert_eq!(
            template["template"]["settings"],
            serde_json::json!({"index.lifecycle.name": "cloudify-7-days"})
        );
        assert_eq!(template["data_stream"], serde_json::json!({}));
        // A data stream needs `@timestamp` mapped as a date, which the mappings already do.
        assert_eq!(
            template["template"]["mappings"]["properties"]["@timestamp"]["type"],
            "date"
        );
    }

    #[test]
    fn gzip_output_decompresses_to_the_input() {
        use std::io::Read as _;
        let body = b"{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{}\n".repeat(100);
        let compressed = gzip(&body).expect("gzip");
        assert!(compressed.len() < body.len());
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut decoded)
            .expect("gunzip");
        assert_eq!(decoded, body);
    }
}
