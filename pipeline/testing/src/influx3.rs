//! [`FakeInfluxDb3`]: the double of an InfluxDB 3 Core server, for the v3 sink's tests (3 Core
//! cannot be installed here). It answers `/api/v3/write_lp`, `/api/v3/configure/database`,
//! `/ping` and `/health` as `influxdb3_server` does:
//!
//! - line protocol is parsed with the `influxdb-line-protocol` crate, the parser 3 Core uses;
//! - each table keeps its columns' types from the first write, so a line whose field has
//!   another type is refused: `invalid column type for column 'v', expected
//!   iox::column_type::field::float, got iox::column_type::field::string`;
//! - `accept_partial=true` (the default) writes the good lines and answers `400` with
//!   `{"error": "partial write of line protocol occurred", "data": [{"original_line",
//!   "line_number", "error_message"}]}`; `accept_partial=false` writes nothing of a request
//!   with a bad line and answers `400` `{"error": "parsing failed for write_lp endpoint",
//!   "data": {..}}` for the first one;
//! - databases are created on the first write (schema on write), or by
//!   `POST /api/v3/configure/database` (`409` when it exists);
//! - with a token configured, a missing or wrong token gets `401` with an empty body, and an
//!   `Authorization` header that is not `Bearer`/`Token`/`Basic <token>` gets `400`;
//! - a body over the request size limit gets `500` `max request size (N bytes) exceeded`, as
//!   3 Core answers it;
//! - without `no_sync=true` the answer waits for the (simulated) write-ahead-log flush.
//!
//! `GET /api/v3/query_sql?db=..&q=..` answers one query only, `SELECT * FROM <table>`, in 3
//! Core's `json` (the default) or `jsonl` format, so that a person can see what landed; any
//! other SQL is refused with `400` and says so.
//!
//! What is stored is kept per table as rows; a row with the series and time of an earlier one
//! replaces it, as in the real store, so a line written twice is stored once. Faults for the
//! tests: [`Fault::Unavailable`] (`503` with `Retry-After`) and [`Fault::Stall`] (no answer).

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use influxdb_line_protocol::{FieldValue, ParsedLine, parse_lines, split_lines};
use serde_json::json;
use url::Url;

/// The column types of 3 Core, as its errors print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Tag,
    Float,
    Integer,
    UInteger,
    String,
    Boolean,
}

impl ColumnType {
    fn of(value: &FieldValue<'_>) -> Self {
        match value {
            FieldValue::F64(_) => ColumnType::Float,
            FieldValue::I64(_) => ColumnType::Integer,
            FieldValue::U64(_) => ColumnType::UInteger,
            FieldValue::String(_) => ColumnType::String,
            FieldValue::Boolean(_) => ColumnType::Boolean,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ColumnType::Tag => "iox::column_type::tag",
            ColumnType::Float => "iox::column_type::field::float",
            ColumnType::Integer => "iox::column_type::field::integer",
            ColumnType::UInteger => "iox::column_type::field::uinteger",
            ColumnType::String => "iox::column_type::field::string",
            ColumnType::Boolean => "iox::column_type::field::boolean",
        }
    }
}

/// A stored field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    String(String),
    Boolean(bool),
}

/// One stored row of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, Stored>,
    /// Nanoseconds since the epoch.
    pub time: i64,
}

/// A fault the double answers every write with until it is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `503` with `Retry-After: <seconds>`.
    Unavailable { retry_after_seconds: u64 },
    /// The request is taken and never answered.
    Stall,
}

/// One write request as the double saw it.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub query: BTreeMap<String, String>,
    pub authorization: Option<String>,
    /// The body, gunzipped.
    pub body: String,
    pub status: u16,
}

impl WriteRequest {
    pub fn line_count(&self) -> usize {
        self.body.lines().filter(|line| !line.is_empty()).count()
    }
}

#[derive(Debug, Default)]
struct Table {
    columns: HashMap<String, ColumnType>,
    rows: Vec<Row>,
    /// Every line written to the table, as received, in order (a line written twice is here
    /// twice, and its row once).
    lines: Vec<String>,
}

#[derive(Debug)]
struct Server {
    token: Option<String>,
    max_request_bytes: usize,
    wal_flush: Duration,
    fault: Option<Fault>,
    databases: HashMap<String, HashMap<String, Table>>,
    writes: Vec<WriteRequest>,
}

type Shared = Arc<Mutex<Server>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Server> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The InfluxDB 3 Core double, on 127.0.0.1 and a port of its own; stopped when dropped.
pub struct FakeInfluxDb3 {
    pub url: Url,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

/// 3 Core's default `--max-http-request-size`: 10 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

impl FakeInfluxDb3 {
    /// A server that takes every request (started `--without-auth`).
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that requires `token` on every request but `/ping` and `/health`.
    pub async fn with_token(token: &str) -> Self {
        Self::start_with(Some(token.to_owned())).await
    }

    /// A server that takes every request, on `address` (for the `fake-influxdb3` binary,
    /// which stands in for 3 Core on its usual port); fails when the address is taken.
    pub async fn start_on(address: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        Ok(Self::serve(listener, None))
    }

    async fn start_with(token: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, token)
    }

    fn serve(listener: tokio::net::TcpListener, token: Option<String>) -> Self {
        let shared = Arc::new(Mutex::new(Server {
            token,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            wal_flush: Duration::ZERO,
            fault: None,
            databases: HashMap::new(),
            writes: Vec::new(),
        }));
        let address = listener.local_addr().expect("local address");
        let app = Router::new()
            .route("/api/v3/write_lp", post(write_lp))
            .route("/api/v3/query_sql", get(query_sql))
            .route("/api/v3/configure/database", post(create_database))
            .route("/ping", get(ping))
            .route("/health", get(|| async { "OK" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the influxdb 3 double serves");
        });
        Self {
            url: format!("http://{address}/").parse().expect("url"),
            shared,
            server,
        }
    }

    /// Answers every write with `fault` (or normally again, with `None`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        lock(&self.shared).fault = fault;
    }

    /// Bodies (after gunzip) longer than this are answered as 3 Core answers them.
    pub fn set_max_request_bytes(&self, bytes: usize) {
        lock(&self.shared).max_request_bytes = bytes;
    }

    /// How long a write waits for the write-ahead log unless it asked `no_sync=true`
    /// (3 Core flushes every second by default; zero here unless a test sets it).
    pub fn set_wal_flush(&self, flush: Duration) {
        lock(&self.shared).wal_flush = flush;
    }

    /// The rows of `table` in `database`, in the order first written.
    pub fn rows(&self, database: &str, table: &str) -> Vec<Row> {
        lock(&self.shared)
            .databases
            .get(database)
            .and_then(|tables| tables.get(table))
            .map(|table| table.rows.clone())
            .unwrap_or_default()
    }

    /// Every line `table` of `database` was written, as received, in order.
    pub fn lines(&self, database: &str, table: &str) -> Vec<String> {
        lock(&self.shared)
            .databases
            .get(database)
            .and_then(|tables| tables.get(table))
            .map(|table| table.lines.clone())
            .unwrap_or_default()
    }

    /// The tables of `database` with their row counts.
    pub fn tables(&self, database: &str) -> BTreeMap<String, usize> {
        lock(&self.shared)
            .databases
            .get(database)
            .into_iter()
            .flatten()
            .map(|(name, table)| (name.clone(), table.rows.len()))
            .collect()
    }

    pub fn databases(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.shared).databases.keys().cloned().collect();
        names.sort();
        names
    }

    /// Every write request answered so far, in order.
    pub fn writes(&self) -> Vec<WriteRequest> {
        lock(&self.shared).writes.clone()
    }
}

impl Drop for FakeInfluxDb3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error_body(status: StatusCode, error: &str) -> Response {
    (status, json!({ "error": error, "data": null }).to_string()).into_response()
}

/// The answer to a request that fails authentication, if it does (3 Core's `authenticate`).
fn refuse_authentication(server: &Server, headers: &HeaderMap) -> Option<Response> {
    let expected = server.token.as_deref()?;
    let Some(header) = headers.get(header::AUTHORIZATION) else {
        return Some(StatusCode::UNAUTHORIZED.into_response());
    };
    let mut parts = header.to_str().unwrap_or_default().split(' ');
    let scheme = parts.next().unwrap_or_default();
    let token = parts.next();
    if !matches!(scheme, "Bearer" | "Token" | "Basic") || token.is_none() || parts.next().is_some()
    {
        return Some(
            (
                StatusCode::BAD_REQUEST,
                r#"{"error": "Authorization header was malformed, the request was not in the form of 'Authorization: <auth-scheme> <token>', supported auth-schemes are Bearer, Token and Basic"}"#,
            )
                .into_response(),
        );
    }
    if token != Some(expected) {
        return Some(StatusCode::UNAUTHORIZED.into_response());
    }
    None
}

fn valid_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

async fn ping() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"version": "3.0.0-double", "revision": "double", "process_id": "00000000-0000-0000-0000-000000000000"})
            .to_string(),
    )
        .into_response()
}

async fn create_database(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut server = lock(&shared);
    if let Some(refusal) = refuse_authentication(&server, &headers) {
        return refusal;
    }
    let Some(name) = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|request| request.get("db")?.as_str().map(str::to_owned))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "serde json error: missing field `db`",
        )
            .into_response();
    };
    if !valid_database_name(&name) {
        return error_body(
            StatusCode::BAD_REQUEST,
            "invalid character in database name: must be ASCII, containing only letters, \
             numbers, underscores, or hyphens",
        );
    }
    if server.databases.contains_key(&name) {
        return (
            StatusCode::CONFLICT,
            "attempted to create resource that already exists",
        )
            .into_response();
    }
    server.databases.insert(name, HashMap::new());
    StatusCode::OK.into_response()
}

/// The write parameters, with 3 Core's defaults.
struct Params {
    database: String,
    precision_nanos: Option<i64>,
    accept_partial: bool,
    no_sync: bool,
}

/// A refusal before any line is read: the status and the body.
type Refused = (StatusCode, String);

fn read_params(query: &BTreeMap<String, String>) -> Result<Params, Refused> {
    let Some(database) = query.get("db").cloned() else {
        return Err((
            StatusCode::BAD_REQUEST,
            "missing query parameter 'db'".to_owned(),
        ));
    };
    let flag = |name: &str| -> Result<Option<bool>, Refused> {
        match query.get(name).map(String::as_str) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err((
                StatusCode::BAD_REQUEST,
                format!("serde error: invalid value {other:?} for {name}"),
            )),
        }
    };
    // `None` is `auto`: the unit is guessed from the magnitude.
    let precision_nanos = match query.get("precision").map(String::as_str) {
        None | Some("auto") => None,
        Some("nanosecond") => Some(1),
        Some("microsecond") => Some(1_000),
        Some("millisecond") => Some(1_000_000),
        Some("second") => Some(1_000_000_000),
        Some(other) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("serde error: unknown variant `{other}`"),
            ));
        }
    };
    Ok(Params {
        database,
        precision_nanos,
        accept_partial: flag("accept_partial")?.unwrap_or(true),
        no_sync: flag("no_sync")?.unwrap_or(false),
    })
}

fn auto_precision(timestamp: i64) -> i64 {
    match timestamp.unsigned_abs() {
        magnitude if magnitude < 5_000_000_000 => 1_000_000_000,
        magnitude if magnitude < 5_000_000_000_000 => 1_000_000,
        magnitude if magnitude < 5_000_000_000_000_000 => 1_000,
        _ => 1,
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or_default()
}

/// One line refused, as 3 Core lists it.
struct LineError {
    original_line: String,
    line_number: usize,
    error_message: String,
}

impl LineError {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "original_line": self.original_line,
            "line_number": self.line_number,
            "error_message": self.error_message,
        })
    }
}

/// Checks a parsed line against the table's columns (and those earlier lines of the request
/// added), and makes its row.
fn qualify(
    tables: &mut HashMap<String, HashMap<String, ColumnType>>,
    line: &ParsedLine<'_>,
    precision_nanos: Option<i64>,
    ingest_time: i64,
) -> Result<(String, Row), String> {
    let table = line.series.measurement.as_str().to_owned();
    let columns = tables.entry(table.clone()).or_default();
    let mut added: Vec<(String, ColumnType)> = Vec::new();
    let mut check = |name: &str, kind: ColumnType| -> Result<(), String> {
        let known = columns.get(name).copied().or_else(|| {
            added
                .iter()
                .find(|(added, _)| added == name)
                .map(|(_, kind)| *kind)
        });
        match known {
            Some(existing) if existing != kind => Err(format!(
                "invalid column type for column '{name}', expected {}, got {}",
                existing.name(),
                kind.name()
            )),
            Some(_) => Ok(()),
            None => {
                added.push((name.to_owned(), kind));
                Ok(())
            }
        }
    };
    let mut tags = BTreeMap::new();
    for (key, value) in line.series.tag_set.iter().flatten() {
        check(key.as_str(), ColumnType::Tag)?;
        tags.insert(key.as_str().to_owned(), value.as_str().to_owned());
    }
    let mut fields = BTreeMap::new();
    for (key, value) in &line.field_set {
        check(key.as_str(), ColumnType::of(value))?;
        let stored = match value {
            FieldValue::F64(number) => Stored::Float(*number),
            FieldValue::I64(number) => Stored::Integer(*number),
            FieldValue::U64(number) => Stored::UInteger(*number),
            FieldValue::String(text) => Stored::String(text.as_str().to_owned()),
            FieldValue::Boolean(flag) => Stored::Boolean(*flag),
        };
        fields.insert(key.as_str().to_owned(), stored);
    }
    let time = match line.timestamp {
        Some(timestamp) => {
            let unit = precision_nanos.unwrap_or_else(|| auto_precision(timestamp));
            timestamp
                .checked_mul(unit)
                .ok_or_else(|| "timestamp out of range".to_owned())?
        }
        None => ingest_time,
    };
    columns.extend(added);
    Ok((table, Row { tags, fields, time }))
}

async fn write_lp(
    State(shared): State<Shared>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| value == "gzip");
    let stalled = lock(&shared).fault == Some(Fault::Stall);
    if stalled {
        std::future::pending::<()>().await;
    }
    let (response, wait) = {
        let mut server = lock(&shared);
        let text = match read_body(&body, gzipped, server.max_request_bytes) {
            Ok(text) => text,
            Err(refused) => return refused.into_response(),
        };
        let (response, wait) = match server.fault {
            Some(Fault::Unavailable {
                retry_after_seconds,
            }) => (
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, retry_after_seconds.to_string())],
                    "service unavailable",
                )
                    .into_response(),
                Duration::ZERO,
            ),
            _ => match refuse_authentication(&server, &headers) {
                Some(refusal) => (refusal, Duration::ZERO),
                None => match read_params(&query) {
                    Err(refused) => (refused.into_response(), Duration::ZERO),
                    Ok(params) => {
                        let wait = if params.no_sync {
                            Duration::ZERO
                        } else {
                            server.wal_flush
                        };
                        (write(&mut server, &params, &text), wait)
                    }
                },
            },
        };
        server.writes.push(WriteRequest {
            query,
            authorization,
            body: text,
            status: response.status().as_u16(),
        });
        (response, wait)
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    response
}

fn read_body(body: &[u8], gzipped: bool, max_bytes: usize) -> Result<String, Refused> {
    let too_large = || {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("max request size ({max_bytes} bytes) exceeded"),
        )
    };
    if body.len() > max_bytes {
        return Err(too_large());
    }
    let bytes = if gzipped {
        let mut decoded = Vec::new();
        let read = flate2::read::GzDecoder::new(body)
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut decoded);
        if let Err(error) = read {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("error decoding gzip stream: {error}"),
            ));
        }
        if decoded.len() > max_bytes {
            return Err(too_large());
        }
        decoded
    } else {
        body.to_vec()
    };
    String::from_utf8(bytes).map_err(|error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("body content is not valid utf8: {}", error.utf8_error()),
        )
    })
}

/// Validates every line, then writes the good ones (or, with `accept_partial=false` and a bad
/// line, none), as 3 Core's write validator does.
fn write(server: &mut Server, params: &Params, text: &str) -> Response {
    if !valid_database_name(&params.database) {
        return error_body(
            StatusCode::BAD_REQUEST,
            "invalid character in database name: must be ASCII, containing only letters, \
             numbers, underscores, or hyphens",
        );
    }
    let ingest_time = now_nanos();
    let mut schema: HashMap<String, HashMap<String, ColumnType>> = server
        .databases
        .get(&params.database)
        .into_iter()
        .flatten()
        .map(|(name, table)| (name.clone(), table.columns.clone()))
        .collect();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    // The lines the parser reads: blank lines and comments are skipped and not counted.
    let lines = split_lines(text).filter(|line| {
        let trimmed = line.trim_start();
        !trimmed.is_empty() && !trimmed.starts_with('#')
    });
    for (index, line) in lines.enumerate() {
        let parsed = parse_lines(line)
            .next()
            .unwrap_or_else(|| unreachable!("a non-blank line parses to one result"));
        let qualified = parsed
            .map_err(|error| error.to_string())
            .and_then(|parsed| qualify(&mut schema, &parsed, params.precision_nanos, ingest_time));
        match qualified {
            Ok((table, row)) => rows.push((table, row, line)),
            Err(error_message) => {
                let error = LineError {
                    original_line: line.to_owned(),
                    line_number: index + 1,
                    error_message,
                };
                if !params.accept_partial {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({"error": "parsing failed for write_lp endpoint", "data": error.to_json()})
                            .to_string(),
                    )
                        .into_response();
                }
                errors.push(error);
            }
        }
    }
    if rows.is_empty() && errors.is_empty() {
        return (StatusCode::BAD_REQUEST, "write buffer error: empty write").into_response();
    }
    let database = server.databases.entry(params.database.clone()).or_default();
    for (name, columns) in schema {
        database.entry(name).or_default().columns = columns;
    }
    for (table_name, row, line) in rows {
        let table = database.entry(table_name).or_default();
        table.lines.push(line.to_owned());
        match table
            .rows
            .iter_mut()
            .find(|stored| stored.tags == row.tags && stored.time == row.time)
        {
            // The same series and time: the new fields overwrite, the others stay.
            Some(stored) => stored.fields.extend(row.fields),
            None => table.rows.push(row),
        }
    }
    if errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let data: Vec<serde_json::Value> = errors.iter().map(LineError::to_json).collect();
    (
        StatusCode::BAD_REQUEST,
        json!({"error": "partial write of line protocol occurred", "data": data}).to_string(),
    )
        .into_response()
}

/// `query_sql`'s parameters (`q` and `db` are required by 3 Core too).
#[derive(serde::Deserialize)]
struct SqlQuery {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
}

/// The table of `SELECT * FROM <table>` (the name bare or double-quoted, a `;` allowed), the
/// only SQL the double answers.
fn select_all_table(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    match words.as_slice() {
        [select, "*", from, table]
            if select.eq_ignore_ascii_case("select") && from.eq_ignore_ascii_case("from") =>
        {
            let table = table
                .strip_prefix('"')
                .and_then(|quoted| quoted.strip_suffix('"'))
                .unwrap_or(table);
            (!table.is_empty()).then(|| table.to_owned())
        }
        _ => None,
    }
}

/// A row as 3 Core's JSON output has it: tags and fields by column name, and `time` as a UTC
/// date-time without a zone (Arrow's rendering of a timestamp column).
fn row_json(row: &Row) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (key, value) in &row.tags {
        object.insert(key.clone(), json!(value));
    }
    for (key, value) in &row.fields {
        let value = match value {
            Stored::Float(number) => json!(number),
            Stored::Integer(number) => json!(number),
            Stored::UInteger(number) => json!(number),
            Stored::String(text) => json!(text),
            Stored::Boolean(flag) => json!(flag),
        };
        object.insert(key.clone(), value);
    }
    let time = jiff::Timestamp::from_nanosecond(i128::from(row.time))
        .map(|time| jiff::tz::Offset::UTC.to_datetime(time).to_string())
        .unwrap_or_else(|_| row.time.to_string());
    object.insert("time".to_owned(), json!(time));
    serde_json::Value::Object(object)
}

async fn query_sql(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<SqlQuery>,
) -> Response {
    let server = lock(&shared);
    if let Some(refusal) = refuse_authentication(&server, &headers) {
        return refusal;
    }
    let (Some(database), Some(sql)) = (query.db, query.q) else {
        return (
            StatusCode::BAD_REQUEST,
            "query parameters 'db' and 'q' are required",
        )
            .into_response();
    };
    let Some(table) = select_all_table(&sql) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "the InfluxDB 3 double (sluice-testing) answers only `SELECT * FROM <table>`",
        );
    };
    let Some(tables) = server.databases.get(&database) else {
        return error_body(
            StatusCode::NOT_FOUND,
            &format!("database not found: {database}"),
        );
    };
    let Some(stored) = tables.get(&table) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            &format!("error while planning query: table '{table}' not found"),
        );
    };
    let rows: Vec<serde_json::Value> = stored.rows.iter().map(row_json).collect();
    match query.format.as_deref().unwrap_or("json") {
        "json" => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::Value::Array(rows).to_string(),
        )
            .into_response(),
        "jsonl" => {
            let mut body = String::new();
            for row in rows {
                body.push_str(&row.to_string());
                body.push('\n');
            }
            ([(header::CONTENT_TYPE, "application/jsonl")], body).into_response()
        }
        other => error_body(
            StatusCode::BAD_REQUEST,
            &format!("the InfluxDB 3 double answers format json or jsonl, not {other:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::select_all_table;

    #[test]
    fn only_select_star_from_a_table_is_understood() {
        assert_eq!(
            select_all_table("SELECT * FROM cpu").as_deref(),
            Some("cpu")
        );
        assert_eq!(
            select_all_table("select *  from \"cpu.load\";").as_deref(),
            Some("cpu.load")
        );
        assert_eq!(select_all_table("SELECT v FROM cpu"), None);
        assert_eq!(select_all_table("SELECT * FROM cpu WHERE v > 1"), None);
    }
}
