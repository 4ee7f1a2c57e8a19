//! What the fake answers, request by request, as Elasticsearch 8 answers: the statuses, shapes
//! and texts the writer (and other crates' tests) rely on. With `ES_URL` set the very same
//! assertions run against the real server, which is how the fake is kept honest. Where
//! Elasticsearch 7 or OpenSearch name something differently, both names are accepted.

#[path = "support/target.rs"]
mod target;

use std::io::Write as _;

use reqwest::Method;
use serde_json::{Value, json};

use target::Target;

fn bulk_body(lines: &[Value]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn item<'a>(answer: &'a Value, position: usize, action: &str) -> &'a Value {
    &answer["items"][position][action]
}

fn assert_error_shape(answer: &Value, status: u16, types: &[&str]) -> String {
    assert_eq!(answer["status"], status, "{answer}");
    let kind = answer["error"]["type"].as_str().expect("error.type");
    assert!(types.contains(&kind), "{answer}");
    assert_eq!(answer["error"]["root_cause"][0]["type"], kind, "{answer}");
    answer["error"]["reason"]
        .as_str()
        .expect("error.reason")
        .to_owned()
}

#[tokio::test]
async fn the_root_answers_cluster_info() {
    let target = Target::start().await;
    let (status, info) = target.request(Method::GET, "", None).await;
    assert_eq!(status, 200);
    assert!(info["version"]["number"].is_string(), "{info}");
    assert!(info["cluster_name"].is_string(), "{info}");
    if !target.is_real() {
        assert!(
            info["version"]["number"]
                .as_str()
                .is_some_and(|number| number.starts_with("8.")),
            "{info}"
        );
        let response = reqwest::get(target.url()).await.expect("answers");
        assert_eq!(
            response
                .headers()
                .get("x-elastic-product")
                .and_then(|value| value.to_str().ok()),
            Some("Elasticsearch")
        );
    }
}

#[tokio::test]
async fn bulk_items_have_elasticsearchs_shapes_and_statuses() {
    let target = Target::start().await;
    let index = target.index("items");
    let body = bulk_body(&[
        json!({"create": {"_index": index, "_id": "1"}}),
        json!({"n": 1}),
        json!({"create": {"_index": index, "_id": "1"}}),
        json!({"n": 1}),
        json!({"index": {"_index": index, "_id": "1"}}),
        json!({"n": 2}),
        json!({"delete": {"_index": index, "_id": "missing"}}),
        json!({"update": {"_index": index, "_id": "9"}}),
        json!({"doc": {"n": 3}}),
        json!({"create": {"_index": index}}),
        json!({"n": 4}),
    ]);

    let (status, answer) = target.bulk_raw(&body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], true);
    assert!(answer["took"].is_u64(), "{answer}");
    assert_eq!(answer["items"].as_array().map(Vec::len), Some(6));

    let created = item(&answer, 0, "create");
    assert_eq!(created["status"], 201, "{answer}");
    assert_eq!(created["result"], "created");
    assert_eq!(created["_version"], 1);
    assert_eq!(created["_index"], index.as_str());
    assert_eq!(created["_id"], "1");
    assert!(created["_seq_no"].is_u64() && created["_primary_term"].is_u64());
    assert!(created["_shards"]["successful"].is_u64());

    let conflict = item(&answer, 1, "create");
    assert_eq!(conflict["status"], 409, "{answer}");
    assert_eq!(
        conflict["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(
        conflict["error"]["reason"],
        "[1]: version conflict, document already exists (current version [1])"
    );
    assert_eq!(conflict["error"]["index"], index.as_str());

    let overwritten = item(&answer, 2, "index");
    assert_eq!(overwritten["status"], 200, "{answer}");
    assert_eq!(overwritten["result"], "updated");
    assert_eq!(overwritten["_version"], 2);

    let not_found = item(&answer, 3, "delete");
    assert_eq!(not_found["status"], 404, "{answer}");
    assert_eq!(not_found["result"], "not_found");
    assert!(not_found.get("error").is_none(), "{answer}");

    let missing = item(&answer, 4, "update");
    assert_eq!(missing["status"], 404, "{answer}");
    assert_eq!(missing["error"]["type"], "document_missing_exception");
    assert_eq!(missing["error"]["reason"], "[9]: document missing");

    let generated = item(&answer, 5, "create");
    assert_eq!(generated["status"], 201, "{answer}");
    assert_eq!(
        generated["_id"].as_str().map(str::len),
        Some(20),
        "{answer}"
    );

    assert_eq!(target.count(&index).await, 2);
}

#[tokio::test]
async fn malformed_bodies_are_refused_as_a_whole() {
    let target = Target::start().await;
    let index = target.index("malformed");
    let cases: [(String, &[&str], &str); 5] = [
        (
            format!("{{\"upsert\":{{\"_index\":\"{index}\"}}}}\n{{}}\n"),
            &["illegal_argument_exception"],
            "Malformed action/metadata line [1], expected field [create], [delete], [index] or \
             [update] but found [upsert]",
        ),
        (
            "{\"create\":{\"_id\":\"1\"}}\n{}\n".to_owned(),
            &["action_request_validation_exception"],
            "Validation Failed: 1: index is missing;",
        ),
        (
            format!("{{\"create\":{{\"_index\":\"{index}\",\"_type\":\"_doc\"}}}}\n{{}}\n"),
            &["illegal_argument_exception"],
            "Action/metadata line [1] contains an unknown parameter [_type]",
        ),
        (
            format!("{{\"create\":{{\"_index\":\"{index}\"}}}}\n{{}}"),
            &["illegal_argument_exception"],
            "The bulk request must be terminated by a newline [\\n]",
        ),
        (
            "{not json\n{}\n".to_owned(),
            &["x_content_parse_exception", "json_parse_exception"],
            "[1:",
        ),
    ];
    for (body, types, reason) in cases {
        let (status, answer) = target.bulk_raw(&body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let actual = assert_error_shape(&answer, 400, types);
        assert!(actual.starts_with(reason), "{body}: {actual}");
    }
    let (status, _) = target
        .request(Method::GET, &format!("{index}/_count"), None)
        .await;
    assert_eq!(status, 404, "nothing was written, not even the index");
}

#[tokio::test]
async fn the_first_value_of_a_field_fixes_its_type_and_conflicts_are_refused_per_document() {
    let target = Target::start().await;
    let index = target.index("mapping");
    let body = bulk_body(&[
        json!({"create": {"_index": index, "_id": "1"}}),
        json!({"n": 1, "f": 1.5, "b": true, "s": "x", "d": "2016-06-15T10:13:20.123Z",
               "cloudify": "2016-06-15 10:13:20.123+0000", "o": {"a": 1}, "dotted.key": "v"}),
        json!({"create": {"_index": index, "_id": "2"}}),
        json!({"n": "abc", "added": 1}),
        json!({"create": {"_index": index, "_id": "3"}}),
        json!({"d": "2016-06-15 10:13:20.123+0000"}),
        json!({"create": {"_index": index, "_id": "4"}}),
        json!({"o": "flat"}),
        json!({"create": {"_index": index, "_id": "5"}}),
        json!({"n": "42", "s": 7, "b": "false", "cloudify": "any text"}),
    ]);

    let (status, answer) = target.bulk_raw(&body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(item(&answer, 0, "create")["status"], 201, "{answer}");
    let parse_errors = ["document_parsing_exception", "mapper_parsing_exception"];
    for (position, id, field, field_type) in [(1, "2", "n", "long"), (2, "3", "d", "date")] {
        let refused = item(&answer, position, "create");
        assert_eq!(refused["status"], 400, "{answer}");
        let kind = refused["error"]["type"].as_str().expect("type");
        assert!(parse_errors.contains(&kind), "{answer}");
        let reason = refused["error"]["reason"].as_str().expect("reason");
        assert!(
            reason.contains(&format!(
                "failed to parse field [{field}] of type [{field_type}] in document with id '{id}'"
            )),
            "{reason}"
        );
    }
    let object = item(&answer, 3, "create");
    assert_eq!(object["status"], 400, "{answer}");
    assert!(
        object["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains(
                "object mapping for [o] tried to parse field [o] as object, but found a concrete value"
            )),
        "{answer}"
    );
    assert_eq!(
        item(&answer, 4, "create")["status"],
        201,
        "coerced: {answer}"
    );

    let mapping = target.mapping(&index).await;
    let properties = &mapping["properties"];
    assert_eq!(properties["n"]["type"], "long", "{mapping}");
    assert_eq!(properties["f"]["type"], "float", "{mapping}");
    assert_eq!(properties["b"]["type"], "boolean", "{mapping}");
    assert_eq!(properties["d"]["type"], "date", "{mapping}");
    assert_eq!(properties["s"]["type"], "text", "{mapping}");
    assert_eq!(
        properties["s"]["fields"]["keyword"],
        json!({"type": "keyword", "ignore_above": 256}),
        "{mapping}"
    );
    // Cloudify's own timestamp shape is no date format Elasticsearch detects.
    assert_eq!(properties["cloudify"]["type"], "text", "{mapping}");
    assert_eq!(
        properties["o"]["properties"]["a"]["type"], "long",
        "{mapping}"
    );
    assert_eq!(
        properties["dotted"]["properties"]["key"]["type"], "text",
        "{mapping}"
    );
    assert!(
        properties.get("added").is_none(),
        "a refused document adds no field: {mapping}"
    );
    assert_eq!(target.count(&index).await, 2);
}

#[tokio::test]
async fn search_and_count_resolve_index_patterns_terms_and_sorting() {
    let target = Target::start().await;
    let first = target.index("events-2016.06.15");
    let second = target.also_delete(first.replace("2016.06.15", "2016.06.16"));
    // The two indices share their unique prefix: the pattern names both, and nothing else.
    let pattern = first.replace("2016.06.15", "*");
    let mut lines = Vec::new();
    for (index, day) in [(&first, 15), (&second, 16)] {
        for hour in 0..3 {
            lines.push(json!({"create": {"_index": index, "_id": format!("{day}-{hour}")}}));
            lines.push(json!({
                "@timestamp": format!("2016-06-{day}T{hour:02}:00:00Z"),
                "type": if hour == 1 { "cloudify_log" } else { "cloudify_event" },
                "level": "info",
                "context": {"execution_id": format!("exec-{hour}")},
                "sequence": day * 10 + hour,
            }));
        }
    }
    let (status, answer) = target.bulk_raw(&bulk_body(&lines)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["errors"], false, "{answer}");
    target.refresh(&pattern).await;

    let (status, counted) = target
        .request(Method::GET, &format!("{pattern}/_count"), None)
        .await;
    assert_eq!((status, &counted["count"]), (200, &json!(6)), "{counted}");
    let (status, counted) = target
        .request(
            Method::POST,
            &format!("{pattern}/_count"),
            Some(&json!({"query": {"term": {"type.keyword": "cloudify_log"}}})),
        )
        .await;
    assert_eq!((status, &counted["count"]), (200, &json!(2)), "{counted}");

    let newest_first = target
        .search_ids(
            &pattern,
            json!({"query": {"match_all": {}}, "sort": [{"@timestamp": {"order": "desc"}}], "size": 4}),
        )
        .await;
    assert_eq!(newest_first, ["16-2", "16-1", "16-0", "15-2"]);
    let page = target
        .search_ids(
            &pattern,
            json!({"sort": ["sequence"], "from": 2, "size": 2}),
        )
        .await;
    assert_eq!(page, ["15-2", "16-0"]);
    let filtered = target
        .search(
            &pattern,
            json!({"query": {"bool": {
                "filter": [{"term": {"context.execution_id.keyword": "exec-2"}}],
                "must_not": [{"term": {"_id": "15-2"}}]
            }}}),
        )
        .await;
    assert_eq!(
        filtered["hits"]["total"],
        json!({"value": 1, "relation": "eq"})
    );
    assert_eq!(filtered["hits"]["hits"][0]["_id"], "16-2");
    assert_eq!(filtered["hits"]["hits"][0]["_source"]["sequence"], 162);
    // A term on a text field matches one lower-cased token; numbers and dates compare as such.
    for (query, expected) in [
        (json!({"term": {"type": "cloudify_log"}}), 2),
        (json!({"term": {"type": "Cloudify_log"}}), 0),
        (json!({"term": {"sequence": 151}}), 1),
        (
            json!({"term": {"@timestamp": "2016-06-16T01:00:00.000Z"}}),
            1,
        ),
        (
            json!({"terms": {"context.execution_id.keyword": ["exec-0", "exec-1"]}}),
            4,
        ),
        (json!({"exists": {"field": "level"}}), 6),
    ] {
        let answer = target.search(&pattern, json!({"query": query})).await;
        assert_eq!(
            answer["hits"]["total"]["value"], expected,
            "{query}: {answer}"
        );
    }

    let missing = format!("{first}-missing");
    let (status, answer) = target
        .request(Method::GET, &format!("{missing}/_count"), None)
        .await;
    assert_eq!(status, 404);
    let reason = assert_error_shape(&answer, 404, &["index_not_found_exception"]);
    assert_eq!(reason, format!("no such index [{missing}]"));
    let (status, answer) = target
        .request(Method::GET, &format!("{missing}-*/_count"), None)
        .await;
    assert_eq!((status, &answer["count"]), (200, &json!(0)), "{answer}");
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_unknown_content_types_refused() {
    let target = Target::start().await;
    let index = target.index("encoding");
    let body = bulk_body(&[
        json!({"create": {"_index": index, "_id": "1"}}),
        json!({"n": 1}),
    ]);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).expect("gzip");
    let compressed = encoder.finish().expect("gzip");
    let client = reqwest::Client::new();
    let with_auth = |request: reqwest::RequestBuilder| match std::env::var("ES_API_KEY") {
        Ok(key) if target.is_real() => request.header("authorization", format!("ApiKey {key}")),
        _ => match (std::env::var("ES_USERNAME"), target.is_real()) {
            (Ok(username), true) => request.basic_auth(username, std::env::var("ES_PASSWORD").ok()),
            _ => request,
        },
    };
    let url = target.url().join("_bulk").expect("url");

    let response = with_auth(client.post(url.clone()))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["items"][0]["create"]["status"], 201, "{answer}");

    let response = with_auth(client.post(url))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 406);
    let answer: Value = response.json().await.expect("json");
    assert!(
        answer["error"].as_str().is_some_and(
            |error| error.contains("Content-Type header [text/plain] is not supported")
        ),
        "{answer}"
    );
}

#[tokio::test]
async fn index_templates_shape_new_indices_and_same_priority_overlaps_are_refused() {
    let target = Target::start().await;
    let index = target.index("templated-2016.06.15");
    let pattern = format!("{}*", index.trim_end_matches("2016.06.15"));
    let name = target.template_name("keyword-context");
    let template = json!({
        "index_patterns": [pattern],
        "priority": 300,
        "template": {"mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "context": {"properties": {"execution_id": {"type": "keyword"}}}
        }}}
    });
    let (status, answer) = target
        .request(
            Method::PUT,
            &format!("_index_template/{name}"),
            Some(&template),
        )
        .await;
    assert_eq!((status, &answer), (200, &json!({"acknowledged": true})));

    let other = target.template_name("overlapping");
    let (status, answer) = target
        .request(
            Method::PUT,
            &format!("_index_template/{other}"),
            Some(&template),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let reason = assert_error_shape(&answer, 400, &["illegal_argument_exception"]);
    assert!(
        reason.contains("that have the same priority [300]"),
        "{reason}"
    );

    let body = bulk_body(&[
        json!({"create": {"_index": index, "_id": "1"}}),
        json!({"@timestamp": "2016-06-15T10:13:20.123Z", "context": {"execution_id": "5e1c0d2a"}}),
    ]);
    let (status, answer) = target.bulk_raw(&body).await;
    assert_eq!(
        (status, &answer["errors"]),
        (200, &json!(false)),
        "{answer}"
    );
    let mapping = target.mapping(&index).await;
    assert_eq!(
        mapping["properties"]["context"]["properties"]["execution_id"]["type"], "keyword",
        "{mapping}"
    );
    assert_eq!(
        mapping["properties"]["@timestamp"]["type"], "date",
        "{mapping}"
    );

    let (status, answer) = target
        .request(Method::GET, &format!("_index_template/{name}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["index_templates"][0]["name"],
        name.as_str(),
        "{answer}"
    );
}
