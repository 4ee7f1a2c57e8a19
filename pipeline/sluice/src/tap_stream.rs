//! The admin endpoint's taps: `GET /tap` lists them, `GET /tap/{name}` streams a sample of what
//! passes that stage as JSON lines (`?rate=` samples a second, default 10; `?limit=` lines, then
//! the response ends). `sluice tap` reads it. The tap closes when the client goes away.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use sluice_core::tap::{self, MAX_SAMPLES_PER_SECOND};
use tokio::time::Instant;

const DEFAULT_RATE: u64 = 10;

pub fn routes<State: Clone + Send + Sync + 'static>() -> Router<State> {
    Router::new()
        .route("/tap", get(list))
        .route("/tap/{name}", get(stream))
}

async fn list() -> axum::Json<Vec<&'static str>> {
    axum::Json(tap::names())
}

#[derive(Deserialize)]
struct TapQuery {
    rate: Option<u64>,
    limit: Option<u64>,
}

async fn stream(Path(name): Path<String>, Query(query): Query<TapQuery>) -> Response {
    let Some(listener) = tap::listen(&name) else {
        let known = tap::names().join(", ");
        return (
            StatusCode::NOT_FOUND,
            format!("no tap called {name:?}; the running stages have: {known}\n"),
        )
            .into_response();
    };
    let rate = query
        .rate
        .unwrap_or(DEFAULT_RATE)
        .clamp(1, MAX_SAMPLES_PER_SECOND);
    let gap = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(1);
    let state = (listener, query.limit, None::<Instant>);
    let lines = futures::stream::unfold(state, move |(mut listener, left, last_sent)| async move {
        if left == Some(0) {
            return None;
        }
        loop {
            let sample = listener.next().await;
            let now = Instant::now();
            // The tap samples for its fastest listener; this one keeps its own rate.
            if last_sent.is_some_and(|sent| now.duration_since(sent) < gap) {
                continue;
            }
            let line = Bytes::from(format!("{sample}\n"));
            let left = left.map(|left| left - 1);
            return Some((
                Ok::<_, std::convert::Infallible>(line),
                (listener, left, Some(now)),
            ));
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
