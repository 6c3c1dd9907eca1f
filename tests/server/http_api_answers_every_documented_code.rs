//! The HTTP API v1 against the real binary: every endpoint and every
//! documented status and error code, idempotent replay (status, body and
//! `Idempotent-Replayed`), `/v1/batch`, the auth matrix, size limits,
//! request ids, metrics, and an OpenAPI document whose paths are exactly
//! the routed ones.

mod support;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use stockd_server::client::{Answer, Connection};
use support::Server;

fn code(answer: &Answer) -> String {
    answer.json().map(|body| body["error"].as_str().unwrap_or("").to_owned()).unwrap_or_default()
}

async fn put_stock(connection: &mut Connection, sku: &str, body: Value) -> Answer {
    connection.json(Method::PUT, &format!("/v1/skus/{sku}"), &body).await.unwrap()
}

async fn reserve(connection: &mut Connection, body: Value) -> Answer {
    connection.json(Method::POST, "/v1/reservations", &body).await.unwrap()
}

async fn post(connection: &mut Connection, path: &str) -> Answer {
    connection.send(Method::POST, path, None).await.unwrap()
}

async fn get(connection: &mut Connection, path: &str) -> Answer {
    connection.send(Method::GET, path, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_its_documented_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "3"]);
    let mut c = server.connect(None).await;

    // PUT /v1/skus/{sku}
    let answer = put_stock(&mut c, "sneaker-42", json!({"on_hand": 10})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json().unwrap(),
        json!({"sku": "sneaker-42", "on_hand": 10, "reserved": 0, "available": 10, "version": 1})
    );
    let answer = put_stock(&mut c, "sneaker-42", json!({"on_hand": 12, "expected_version": 7})).await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::CONFLICT, "version_mismatch".into()));
    assert_eq!(answer.json().unwrap()["current_version"], 1);
    let answer = put_stock(&mut c, "sneaker-42", json!({"on_hand": 12, "expected_version": 1})).await;
    assert_eq!((answer.status, answer.json().unwrap()["version"].clone()), (StatusCode::OK, json!(2)));
    let answer = put_stock(&mut c, "sneaker-42", json!({"on_hand": 1u64 << 41})).await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "on_hand_too_large".into()));
    let answer = put_stock(&mut c, "bad%20sku", json!({"on_hand": 1})).await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "sku_invalid".into()));

    // POST /v1/reservations: hold, replay, reuse, refusals.
    let hold = json!({"id": "order 1001/a", "lines": [{"sku": "sneaker-42", "qty": 2}], "ttl_ms": 60000});
    let first = reserve(&mut c, hold.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let body = first.json().unwrap();
    assert_eq!(
        (body["id"].clone(), body["state"].clone(), body["lines"].clone()),
        (json!("order 1001/a"), json!("held"), hold["lines"].clone())
    );
    assert!(first.headers.get("idempotent-replayed").is_none());
    let replay = reserve(&mut c, hold.clone()).await;
    assert_eq!(
        (replay.status, replay.json().unwrap()),
        (StatusCode::CREATED, body.clone()),
        "a replay answers as the original did"
    );
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let reused = reserve(&mut c, json!({"id": "order 1001/a", "lines": [{"sku": "sneaker-42", "qty": 3}]})).await;
    assert_eq!((reused.status, code(&reused)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused".into()));
    let short = reserve(&mut c, json!({"id": "greedy", "lines": [{"sku": "sneaker-42", "qty": 11}]})).await;
    assert_eq!((short.status, code(&short)), (StatusCode::CONFLICT, "insufficient_stock".into()));
    let short = short.json().unwrap();
    assert_eq!(
        (short["sku"].clone(), short["requested"].clone(), short["available"].clone()),
        (json!("sneaker-42"), json!(11), json!(10))
    );
    let unknown = reserve(&mut c, json!({"id": "ghost", "lines": [{"sku": "no-such-sku", "qty": 1}]})).await;
    assert_eq!((unknown.status, code(&unknown)), (StatusCode::NOT_FOUND, "unknown_sku".into()));
    assert_eq!(get(&mut c, "/v1/reservations/greedy").await.status, StatusCode::NOT_FOUND, "a refusal leaves nothing");

    // GET /v1/skus/{sku}
    let answer = get(&mut c, "/v1/skus/sneaker-42").await;
    assert_eq!(
        answer.json().unwrap(),
        json!({"sku": "sneaker-42", "on_hand": 12, "reserved": 2, "available": 10, "version": 2})
    );
    let answer = get(&mut c, "/v1/skus/nothing-here").await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::NOT_FOUND, "unknown_sku".into()));

    // POST /v1/skus/{sku}/adjust
    let adjust = |delta: i64| json!({ "delta": delta });
    let answer = c.json(Method::POST, "/v1/skus/sneaker-42/adjust", &adjust(-11)).await.unwrap();
    assert_eq!((answer.status, code(&answer)), (StatusCode::CONFLICT, "below_reserved".into()));
    assert_eq!(answer.json().unwrap()["reserved"], 2);
    let answer = c.json(Method::POST, "/v1/skus/sneaker-42/adjust", &adjust(3)).await.unwrap();
    assert_eq!((answer.status, answer.json().unwrap()["on_hand"].clone()), (StatusCode::OK, json!(15)));
    let answer = c.json(Method::POST, "/v1/skus/nothing-here/adjust", &adjust(1)).await.unwrap();
    assert_eq!((answer.status, code(&answer)), (StatusCode::NOT_FOUND, "unknown_sku".into()));

    // GET /v1/reservations/{id} (percent-encoded id), commit, release.
    let answer = get(&mut c, "/v1/reservations/order%201001%2Fa").await;
    assert_eq!((answer.status, answer.json().unwrap()["state"].clone()), (StatusCode::OK, json!("held")));
    let answer = c
        .json(Method::POST, "/v1/reservations/order%201001%2Fa/commit", &json!({"order": {"customer": 7}}))
        .await
        .unwrap();
    assert_eq!((answer.status, answer.json().unwrap()), (StatusCode::OK, json!({"state": "committed"})));
    let answer = post(&mut c, "/v1/reservations/order%201001%2Fa/commit").await;
    assert_eq!(answer.status, StatusCode::OK, "commit is idempotent");
    let answer = post(&mut c, "/v1/reservations/order%201001%2Fa/release").await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::CONFLICT, "reservation_committed".into()));
    reserve(&mut c, json!({"id": "to-release", "lines": [{"sku": "sneaker-42", "qty": 1}]})).await;
    for _ in 0..2 {
        let answer = post(&mut c, "/v1/reservations/to-release/release").await;
        assert_eq!(
            (answer.status, answer.json().unwrap()),
            (StatusCode::OK, json!({"state": "released"})),
            "again on a repeat"
        );
    }
    let answer = post(&mut c, "/v1/reservations/to-release/commit").await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::CONFLICT, "reservation_released".into()));
    for path in ["/v1/reservations/nobody/commit", "/v1/reservations/nobody/release", "/v1/reservations/nobody"] {
        let answer = if path.ends_with("nobody") { get(&mut c, path).await } else { post(&mut c, path).await };
        assert_eq!((answer.status, code(&answer)), (StatusCode::NOT_FOUND, "unknown_reservation".into()), "{path}");
    }
    let answer = get(&mut c, "/v1/skus/sneaker-42").await.json().unwrap();
    assert_eq!((answer["on_hand"].clone(), answer["reserved"].clone()), (json!(13), json!(0)), "2 sold, nothing held");

    // Expiry: a 1 s hold. The test asks until the server's tick has
    // expired it (bounded by a deadline).
    reserve(&mut c, json!({"id": "brief", "lines": [{"sku": "sneaker-42", "qty": 1}], "ttl_ms": 1000})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&mut c, "/v1/reservations/brief").await.json().unwrap()["state"] != "expired" {
        assert!(Instant::now() < deadline, "the hold never expired");
    }
    let answer = post(&mut c, "/v1/reservations/brief/commit").await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::CONFLICT, "reservation_expired".into()));
    let answer = post(&mut c, "/v1/reservations/brief/release").await;
    assert_eq!((answer.status, code(&answer)), (StatusCode::CONFLICT, "reservation_expired".into()));

    // Operations endpoints, request ids, metrics.
    assert_eq!(get(&mut c, "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(&mut c, "/readyz").await.status, StatusCode::OK);
    let answer = c.send_with(Method::GET, "/healthz", None, &[("x-request-id", "trace-me-7")]).await.unwrap();
    assert_eq!(answer.headers["x-request-id"], "trace-me-7");
    assert!(!get(&mut c, "/healthz").await.headers["x-request-id"].is_empty(), "an id is made up when none is given");
    let metrics = String::from_utf8(get(&mut c, "/metrics").await.body.to_vec()).unwrap();
    for name in [
        "stockd_http_requests_total{route=\"/v1/reservations\",method=\"POST\",status=\"201\"}",
        "stockd_http_request_duration_seconds_bucket",
        "stockd_shard_queue_depth{shard=\"2\"}",
        "stockd_shard_batch_ops_bucket",
        "stockd_wal_fsync_seconds_bucket",
        "stockd_holds_active",
        "stockd_holds_expired_total",
        "stockd_wal_bytes_total",
        "stockd_wal_segments_recycled_total{shard=\"0\"}",
        "stockd_recovery_seconds",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    // And they count: the expired hold, the holds made, the log written.
    assert!(metric_sum(&metrics, "stockd_holds_expired_total") >= 1.0, "{metrics}");
    let created = "stockd_http_requests_total{route=\"/v1/reservations\",method=\"POST\",status=\"201\"}";
    assert!(metric_sum(&metrics, created) >= 2.0, "{metrics}");
    assert!(metric_sum(&metrics, "stockd_wal_bytes_total") > 0.0, "{metrics}");
}

/// The sum of the samples of `series` (a metric name, or a name with its
/// labels) over every label set.
fn metric_sum(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        .map(|rest| rest.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_one_result_per_op_as_its_endpoint_would() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2", "--batch-ops-max", "50"]);
    let mut c = server.connect(None).await;
    let ops = json!({"ops": [
        {"op": "set_stock", "sku": "a", "on_hand": 5},
        {"op": "set_stock", "sku": "b", "on_hand": 5},
        {"op": "adjust", "sku": "missing", "delta": 1},
        {"op": "no_such_op"},
        {"op": "reserve", "id": "r", "lines": [{"sku": "x", "qty": 0}]},
        {"op": "get_sku", "sku": "a"},
        {"op": "get_sku", "sku": "a", "delta": 1},
        {"op": "commit"},
        {"op": "set_stock", "sku": "a", "on_hand": -1},
    ]});
    let answer = c.json(Method::POST, "/v1/batch", &ops).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let results = answer.json().unwrap()["results"].clone();
    let statuses: Vec<u64> = results.as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 200, 404, 422, 422, 200, 422, 422, 422]);
    assert_eq!(results[4]["body"]["error"], "qty_out_of_range");
    assert_eq!(results[5]["body"]["on_hand"], 5);
    let message = |i: usize| results[i]["body"]["message"].as_str().unwrap().to_owned();
    assert!(message(6).contains("unknown field `delta`"), "another op's field is refused: {}", message(6));
    assert!(message(7).contains("missing field `id`"), "{}", message(7));
    assert_eq!(results[8]["body"]["error"], "invalid_body", "a negative on_hand");

    let cart = json!({"op": "reserve", "id": "cart-1", "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 1}]});
    let ops = json!({"ops": [cart.clone(), {"op": "commit", "id": "unknown"}, {"op": "release", "id": "unknown"}]});
    let results = c.json(Method::POST, "/v1/batch", &ops).await.unwrap().json().unwrap()["results"].clone();
    assert_eq!(results[0]["status"], 201);
    assert_eq!((results[1]["status"].clone(), results[2]["status"].clone()), (json!(404), json!(404)));
    let ops = json!({"ops": [cart, {"op": "get_reservation", "id": "cart-1"}]});
    let results = c.json(Method::POST, "/v1/batch", &ops).await.unwrap().json().unwrap()["results"].clone();
    assert_eq!((results[0]["status"].clone(), results[0]["replayed"].clone()), (json!(201), json!(true)));
    assert_eq!(results[1]["body"]["lines"].as_array().unwrap().len(), 2, "the whole cart");
    let ops = json!({"ops": [{"op": "commit", "id": "cart-1"}, {"op": "get_sku", "sku": "a"}]});
    let results = c.json(Method::POST, "/v1/batch", &ops).await.unwrap().json().unwrap()["results"].clone();
    assert_eq!(results[0]["body"], json!({"state": "committed"}));

    let too_many: Vec<Value> = (0..51).map(|i| json!({"op": "get_sku", "sku": format!("s{i}")})).collect();
    let answer = c.json(Method::POST, "/v1/batch", &json!({ "ops": too_many })).await.unwrap();
    assert_eq!((answer.status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "batch_too_large".into()));
    let answer = c.json(Method::POST, "/v1/batch", &json!({"ops": [], "extra": 1})).await.unwrap();
    assert_eq!((answer.status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_guard_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--token", "admin:root-secret", "--token", "checkout:shop-secret", "--token", "read:look-secret"],
    );
    let mut admin = server.connect(Some("root-secret")).await;
    assert_eq!(put_stock(&mut admin, "tee", json!({"on_hand": 100})).await.status, StatusCode::OK);
    let kept = json!({"id": "kept", "lines": [{"sku": "tee", "qty": 1}]});
    assert_eq!(reserve(&mut admin, kept).await.status, StatusCode::CREATED, "admin may do what checkout does");

    // (method, path, body, least role): the matrix of every guarded endpoint.
    let mut n = 0;
    let cases = |n: &mut u32| -> Vec<(Method, String, Option<Value>, &'static str)> {
        *n += 1;
        vec![
            (Method::PUT, "/v1/skus/tee".into(), Some(json!({"on_hand": 100})), "admin"),
            (Method::POST, "/v1/skus/tee/adjust".into(), Some(json!({"delta": 0})), "admin"),
            (
                Method::POST,
                "/v1/reservations".into(),
                Some(json!({"id": format!("auth-{n}"), "lines": [{"sku": "tee", "qty": 1}]})),
                "checkout",
            ),
            (Method::POST, format!("/v1/reservations/auth-{n}/release"), None, "checkout"),
            (Method::POST, format!("/v1/reservations/auth-{n}/commit"), None, "checkout"),
            (Method::GET, "/v1/skus/tee".into(), None, "read"),
            (Method::GET, "/v1/reservations/kept".into(), None, "read"),
            (Method::GET, "/metrics".into(), None, "read"),
            (Method::POST, "/v1/batch".into(), Some(json!({"ops": []})), "read"),
        ]
    };
    let rank = |role: &str| ["read", "checkout", "admin"].iter().position(|r| *r == role).unwrap();
    for (token, role) in [("root-secret", "admin"), ("shop-secret", "checkout"), ("look-secret", "read")] {
        let mut caller = server.connect(Some(token)).await;
        for (method, path, body, needed) in cases(&mut n) {
            let answer = match &body {
                Some(body) => caller.json(method.clone(), &path, body).await.unwrap(),
                None => caller.send(method.clone(), &path, None).await.unwrap(),
            };
            if rank(role) >= rank(needed) {
                // Served: a success, or the 409 of committing a released cart.
                let served = answer.status.is_success() || answer.status == StatusCode::CONFLICT;
                assert!(served, "{role} may {method} {path}: {} {:?}", answer.status, answer.json());
            } else {
                assert_eq!(
                    (answer.status, code(&answer)),
                    (StatusCode::FORBIDDEN, "forbidden".into()),
                    "{role} may not {method} {path}"
                );
            }
        }
    }
    for token in [None, Some("wrong-secret")] {
        let mut stranger = server.connect(token).await;
        for public in ["/healthz", "/readyz", "/openapi.json"] {
            assert_eq!(get(&mut stranger, public).await.status, StatusCode::OK, "{public} needs no token");
        }
        // Every guarded endpoint, before its body is looked at (here the
        // matrix's bodies, and an empty object); a 401 names the scheme it
        // wants.
        for (method, path, body, _) in cases(&mut n) {
            for body in [body, Some(json!({}))] {
                let answer = match &body {
                    Some(body) => stranger.json(method.clone(), &path, body).await.unwrap(),
                    None => stranger.send(method.clone(), &path, None).await.unwrap(),
                };
                let what = format!("{token:?} {method} {path} {body:?}");
                assert_eq!((answer.status, code(&answer)), (StatusCode::UNAUTHORIZED, "unauthorized".into()), "{what}");
                let scheme = answer.headers.get("www-authenticate").map(|value| value.to_str().unwrap());
                assert_eq!(scheme, Some("Bearer"), "{what}");
            }
        }
    }
    // The scheme's name is case-insensitive (RFC 9110).
    let mut lower = server.connect(None).await;
    let answer =
        lower.send_with(Method::GET, "/v1/skus/tee", None, &[("authorization", "bearer look-secret")]).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    // Batch ops are authorised one by one, each by its op alone: a caller
    // who may not run an op learns 403, however malformed the rest of it is.
    for (token, role) in [("root-secret", "admin"), ("shop-secret", "checkout"), ("look-secret", "read")] {
        let mut caller = server.connect(Some(token)).await;
        let ops = json!({"ops": [
            {"op": "get_sku", "sku": "tee"},
            {"op": "reserve", "id": format!("batch-{role}"), "lines": [{"sku": "tee", "qty": 1}]},
            {"op": "release", "id": format!("batch-{role}")},
            {"op": "adjust", "sku": "tee", "delta": 0},
            {"op": "set_stock", "sku": "tee", "on_hand": "not a number"},
        ]});
        let answer = caller.json(Method::POST, "/v1/batch", &ops).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let statuses: Vec<u64> = answer.json().unwrap()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        let expected: &[u64] = match role {
            "admin" => &[200, 201, 200, 200, 422],
            "checkout" => &[200, 201, 200, 403, 403],
            _ => &[200, 403, 403, 403, 403],
        };
        assert_eq!(statuses, expected, "{role}'s batch");
    }
    let tee = get(&mut admin, "/v1/skus/tee").await.json().unwrap();
    // Each cart was released before its commit, every batch hold was
    // released, refused ops changed nothing: only "kept" holds a unit.
    assert_eq!((tee["on_hand"].clone(), tee["reserved"].clone()), (json!(100), json!(1)));
}

/// Scripts read the port from the `listening on` line: it is logged
/// whatever the log filter says.
#[test]
fn the_listening_line_is_logged_whatever_the_log_filter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(dir.path(), &[], "error");
    assert_ne!(server.address.port(), 0, "the line names the port the OS picked");
}

#[test]
fn a_public_address_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = support::stockd();
    serve.args(["serve", "--listen", "0.0.0.0:0", "--data-dir"]).arg(dir.path());
    let output = support::output_within(&mut serve, Duration::from_secs(60));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--insecure-no-auth"),
        "the refusal says how to override it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routed_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.connect(None).await;
    let document = get(&mut c, "/openapi.json").await.json().unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = [
        ("PUT", "/v1/skus/{sku}"),
        ("GET", "/v1/skus/{sku}"),
        ("POST", "/v1/skus/{sku}/adjust"),
        ("POST", "/v1/reservations"),
        ("GET", "/v1/reservations/{id}"),
        ("POST", "/v1/reservations/{id}/commit"),
        ("POST", "/v1/reservations/{id}/release"),
        ("POST", "/v1/batch"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    ]
    .iter()
    .map(|(method, path)| (method.to_string(), path.to_string()))
    .collect();
    expected.sort();
    assert_eq!(documented, expected, "the document lists the contract's endpoints");
    // Every documented route is routed: it never reaches the router's own 404/405.
    for (method, path) in &documented {
        let path = path.replace("{sku}", "probe").replace("{id}", "probe");
        let answer = c.send(method.parse().unwrap(), &path, Some(bytes::Bytes::from_static(b"{}"))).await.unwrap();
        assert!(
            !["not_found", "method_not_allowed"].contains(&code(&answer).as_str()),
            "{method} {path} is not routed"
        );
    }
    // And nothing else is: an undocumented path or method is the router's.
    assert_eq!(code(&get(&mut c, "/v1/orders").await), "not_found");
    assert_eq!(code(&c.send(Method::DELETE, "/v1/skus/probe", None).await.unwrap()), "method_not_allowed");
}

/// A request whose body stops arriving runs out of time as the client's
/// fault: 408 `request_timeout` (nothing was applied), not a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--request-timeout-ms", "300"]);
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let head = "POST /v1/reservations HTTP/1.1\r\nhost: stockd\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    stream.write_all(format!("{head}{{\"id\": \"slow\", ").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("request_timeout") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    });
    read.await.expect("an answer within 30 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut c = server.connect(None).await;
    assert_eq!(c.send(Method::GET, "/v1/reservations/slow", None).await.unwrap().status, StatusCode::NOT_FOUND);
}

/// A full shard queue answers at once: 503 `busy` with `Retry-After` (here
/// a queue of one message, and 32 callers at once on one shard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shard_queue_answers_503_busy_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "1", "--queue-len-max", "1"]);
    let mut admin = server.connect(None).await;
    assert_eq!(put_stock(&mut admin, "tee", json!({"on_hand": 1_000_000})).await.status, StatusCode::OK);
    let busy: std::sync::Arc<std::sync::Mutex<Option<Answer>>> = Default::default();
    let callers: Vec<_> = (0..32)
        .map(|caller| {
            let (address, busy) = (server.address, busy.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(address, None).await.unwrap();
                // Bounded: until some caller met a full queue.
                for i in 0..1_000 {
                    if busy.lock().unwrap().is_some() {
                        return;
                    }
                    let body = json!({"id": format!("c{caller}-{i}"), "lines": [{"sku": "tee", "qty": 1}]});
                    let answer = reserve(&mut connection, body).await;
                    match answer.status {
                        // A 503 of another kind (a request timeout on a slow
                        // machine) is not the one looked for.
                        StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE if code(&answer) != "busy" => {}
                        StatusCode::SERVICE_UNAVAILABLE => {
                            busy.lock().unwrap().get_or_insert(answer);
                        }
                        other => panic!("{other} {:?}", answer.json()),
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let answer = busy.lock().unwrap().take().expect("32 callers at once filled a queue of one message");
    let retry_after = answer.headers.get("retry-after").map(|value| value.to_str().unwrap().to_owned());
    assert!(retry_after.is_some_and(|seconds| seconds.parse::<u64>().is_ok()), "Retry-After in seconds");
}
