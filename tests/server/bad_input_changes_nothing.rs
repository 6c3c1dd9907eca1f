//! Bad input over real HTTP: every malformed, mistyped, out-of-range or
//! oversized request gets the documented 4xx with its specific code, never
//! a 5xx, and changes nothing (the SKU's counts and version are the same
//! afterwards, and no reservation was made).

mod support;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use support::Server;

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        content_type: Some("application/json"),
        body: body.into(),
        status: StatusCode::from_u16(status).unwrap(),
        code,
    }
}

fn reserve(what: &'static str, body: serde_json::Value, status: u16, code: &'static str) -> Case {
    case(what, Method::POST, "/v1/reservations", body.to_string(), status, code)
}

fn line(sku: &str, qty: serde_json::Value) -> serde_json::Value {
    json!({"sku": sku, "qty": qty})
}

fn cases() -> Vec<Case> {
    let ok_line = line("tee", json!(1));
    let many_lines: Vec<_> = (0..101).map(|i| line(&format!("s{i}"), json!(1))).collect();
    let big_batch: Vec<_> = (0..40_000).map(|i| json!({"op": "get_sku", "sku": format!("sku-{i:08}")})).collect();
    vec![
        case("malformed JSON", Method::POST, "/v1/reservations", r#"{"id": "a", "lines": ["#, 400, "malformed_json"),
        case("not UTF-8", Method::POST, "/v1/reservations", vec![b'{', 0xff, 0xfe, b'}'], 400, "malformed_json"),
        reserve("wrong types", json!({"id": 5, "lines": "tee"}), 422, "invalid_body"),
        reserve("an unknown field", json!({"id": "a", "lines": [ok_line], "coupon": "x"}), 422, "invalid_body"),
        reserve(
            "an unknown line field",
            json!({"id": "a", "lines": [{"sku": "tee", "qty": 1, "x": 1}]}),
            422,
            "invalid_body",
        ),
        reserve("a missing field", json!({"lines": [ok_line]}), 422, "invalid_body"),
        reserve("qty 0", json!({"id": "a", "lines": [line("tee", json!(0))]}), 422, "qty_out_of_range"),
        reserve("a negative qty", json!({"id": "a", "lines": [line("tee", json!(-2))]}), 422, "qty_out_of_range"),
        reserve("a huge qty", json!({"id": "a", "lines": [line("tee", json!(1u64 << 40))]}), 422, "qty_out_of_range"),
        reserve("a fractional qty", json!({"id": "a", "lines": [line("tee", json!(1.5))]}), 422, "invalid_body"),
        reserve("no lines", json!({"id": "a", "lines": []}), 422, "lines_out_of_range"),
        reserve("101 lines", json!({"id": "a", "lines": many_lines}), 422, "lines_out_of_range"),
        reserve("a SKU twice", json!({"id": "a", "lines": [ok_line, line("tee", json!(2))]}), 422, "duplicate_sku"),
        reserve("an id too long", json!({"id": "i".repeat(129), "lines": [ok_line]}), 422, "reservation_id_invalid"),
        reserve(
            "an id with a control character",
            json!({"id": "a\u{7}b", "lines": [ok_line]}),
            422,
            "reservation_id_invalid",
        ),
        reserve("an empty id", json!({"id": "", "lines": [ok_line]}), 422, "reservation_id_invalid"),
        reserve("a SKU too long", json!({"id": "a", "lines": [line(&"s".repeat(65), json!(1))]}), 422, "sku_invalid"),
        reserve("a SKU with a space", json!({"id": "a", "lines": [line("t ee", json!(1))]}), 422, "sku_invalid"),
        reserve("a TTL too short", json!({"id": "a", "lines": [ok_line], "ttl_ms": 999}), 422, "ttl_out_of_range"),
        reserve(
            "a TTL too long",
            json!({"id": "a", "lines": [ok_line], "ttl_ms": 86_400_001u64}),
            422,
            "ttl_out_of_range",
        ),
        case("a body past 64 KiB", Method::POST, "/v1/reservations", vec![b' '; 70_000], 413, "payload_too_large"),
        Case {
            content_type: Some("text/plain"),
            ..reserve("text/plain", json!({"id": "a", "lines": [ok_line]}), 415, "unsupported_media_type")
        },
        Case {
            content_type: None,
            ..reserve("no content type", json!({"id": "a", "lines": [ok_line]}), 415, "unsupported_media_type")
        },
        case("a wrong method", Method::DELETE, "/v1/reservations", "", 405, "method_not_allowed"),
        case("an unknown path", Method::GET, "/v1/stock/tee", "", 404, "not_found"),
        case("a negative on_hand", Method::PUT, "/v1/skus/tee", r#"{"on_hand": -1}"#, 422, "invalid_body"),
        case("on_hand as text", Method::PUT, "/v1/skus/tee", r#"{"on_hand": "9"}"#, 422, "invalid_body"),
        case(
            "on_hand past 2^40",
            Method::PUT,
            "/v1/skus/tee",
            json!({"on_hand": (1u64 << 40) + 1}).to_string(),
            422,
            "on_hand_too_large",
        ),
        case(
            "a control character in the SKU path",
            Method::PUT,
            "/v1/skus/te%0Ae",
            r#"{"on_hand": 1}"#,
            422,
            "sku_invalid",
        ),
        case("bad percent-encoding", Method::GET, "/v1/reservations/%FF%FE", "", 400, "invalid_path"),
        case("a malformed escape in an id", Method::POST, "/v1/reservations/held%/release", "", 400, "invalid_path"),
        case("a malformed escape in a SKU", Method::PUT, "/v1/skus/tee%zz", r#"{"on_hand": 1}"#, 400, "invalid_path"),
        // serde would read a struct from an array, field by field.
        case("a SKU body as an array", Method::PUT, "/v1/skus/tee", "[7]", 422, "invalid_body"),
        case("an adjust body as an array", Method::POST, "/v1/skus/tee/adjust", "[-3]", 422, "invalid_body"),
        case(
            "a reserve body as an array",
            Method::POST,
            "/v1/reservations",
            r#"["a", [["tee", 1]]]"#,
            422,
            "invalid_body",
        ),
        reserve("a line as an array", json!({"id": "a", "lines": [["tee", 1]]}), 422, "invalid_body"),
        case("a commit body as an array", Method::POST, "/v1/reservations/held/commit", "[null]", 422, "invalid_body"),
        case("a release body as an array", Method::POST, "/v1/reservations/held/release", "[]", 422, "invalid_body"),
        case(
            "a batch body as an array",
            Method::POST,
            "/v1/batch",
            r#"[[{"op": "adjust", "sku": "tee", "delta": -3}]]"#,
            422,
            "invalid_body",
        ),
        Case {
            content_type: Some("application/merge-patch+json"),
            ..case(
                "a JSON-like content type",
                Method::PUT,
                "/v1/skus/tee",
                r#"{"on_hand": 1}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: Some("application/merge-patch+json"),
            ..case(
                "a JSON-like content type on a batch",
                Method::POST,
                "/v1/batch",
                r#"{"ops": []}"#,
                415,
                "unsupported_media_type",
            )
        },
        case("a fractional delta", Method::POST, "/v1/skus/tee/adjust", r#"{"delta": 0.5}"#, 422, "invalid_body"),
        case(
            "a delta past i64",
            Method::POST,
            "/v1/skus/tee/adjust",
            r#"{"delta": 99999999999999999999}"#,
            422,
            "invalid_body",
        ),
        case(
            "a delta past 2^40",
            Method::POST,
            "/v1/skus/tee/adjust",
            json!({"delta": 1u64 << 41}).to_string(),
            422,
            "on_hand_too_large",
        ),
        case(
            "an order that is not an object",
            Method::POST,
            "/v1/reservations/held/commit",
            r#"{"order": 5}"#,
            422,
            "invalid_body",
        ),
        case(
            "a commit body that is not JSON",
            Method::POST,
            "/v1/reservations/held/commit",
            "commit!",
            400,
            "malformed_json",
        ),
        case(
            "a release body that is not JSON",
            Method::POST,
            "/v1/reservations/held/release",
            "release!",
            400,
            "malformed_json",
        ),
        case(
            "a release body with a field",
            Method::POST,
            "/v1/reservations/held/release",
            r#"{"reason": "x"}"#,
            422,
            "invalid_body",
        ),
        Case {
            content_type: Some("text/plain"),
            ..case(
                "a release body that is not JSON typed",
                Method::POST,
                "/v1/reservations/held/release",
                "{}",
                415,
                "unsupported_media_type",
            )
        },
        case("ops that are not a list", Method::POST, "/v1/batch", r#"{"ops": {}}"#, 422, "invalid_body"),
        case(
            "a batch past 1 MiB",
            Method::POST,
            "/v1/batch",
            json!({ "ops": big_batch }).to_string(),
            413,
            "payload_too_large",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let mut c = server.connect(None).await;
    c.json(Method::PUT, "/v1/skus/tee", &json!({"on_hand": 10})).await.unwrap();
    let held = json!({"id": "held", "lines": [{"sku": "tee", "qty": 3}]});
    assert_eq!(c.json(Method::POST, "/v1/reservations", &held).await.unwrap().status, StatusCode::CREATED);
    let before = c.send(Method::GET, "/v1/skus/tee", None).await.unwrap().json().unwrap();

    for case in cases() {
        let headers = [("content-type", case.content_type.unwrap_or(""))];
        let body = (!case.body.is_empty()).then(|| Bytes::from(case.body.clone()));
        let answer = c.send_with(case.method.clone(), &case.path, body, &headers).await.unwrap();
        let code = answer.json().map(|body| body["error"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
        assert_eq!((answer.status, code.as_str()), (case.status, case.code), "{}", case.what);
        assert!(answer.status.is_client_error(), "{}: never a 5xx", case.what);
        // A body too large may close the connection: start a fresh one.
        if answer.status == StatusCode::PAYLOAD_TOO_LARGE {
            c = server.connect(None).await;
        }
    }

    // The batch limit is its own: a batch past the 64 KiB body limit but
    // within 1 MiB is served.
    let sku = format!("{:x<64}", "tee");
    let ops: Vec<Value> = (0..1_000).map(|_| json!({"op": "get_sku", "sku": sku})).collect();
    let body = json!({ "ops": ops }).to_string();
    let kib = body.len() >> 10;
    assert!((64..1024).contains(&kib), "{kib} KiB");
    let answer = c.send(Method::POST, "/v1/batch", Some(Bytes::from(body))).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "a {kib} KiB batch");
    let results = answer.json().unwrap()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 1_000, "every op answered");
    assert!(results.iter().all(|result| result["status"] == 404), "no such SKU, each time");

    // Ops written as arrays are refused one by one, like any malformed op,
    // and so is an op naming another op's field, even as `null` (as the
    // endpoint refuses it: `unknown field`).
    let ops = json!({"ops": [
        ["adjust", null, null, null, null, "tee", null, null, -3],
        {"op": "reserve", "id": "a", "lines": [["tee", 1]]},
        {"op": "release", "id": "held", "lines": null},
        {"op": "commit", "id": "held", "ttl_ms": null},
    ]});
    let answer = c.json(Method::POST, "/v1/batch", &ops).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let results = answer.json().unwrap()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 4, "one result per op");
    for (at, result) in results.iter().enumerate() {
        assert_eq!(
            (result["status"].as_u64(), result["body"]["error"].as_str()),
            (Some(422), Some("invalid_body")),
            "op {at}"
        );
    }

    let after = c.send(Method::GET, "/v1/skus/tee", None).await.unwrap().json().unwrap();
    assert_eq!(after, before, "no bad request changed the stock");
    assert_eq!(c.send(Method::GET, "/v1/reservations/a", None).await.unwrap().status, StatusCode::NOT_FOUND);
    let held = c.send(Method::GET, "/v1/reservations/held", None).await.unwrap().json().unwrap();
    assert_eq!(held["state"], "held", "the held cart was not committed or released by a bad body");
    let metrics = String::from_utf8(c.send(Method::GET, "/metrics", None).await.unwrap().body.to_vec()).unwrap();
    assert!(
        !metrics.lines().any(|line| line.starts_with("stockd_http_requests_total") && line.contains("status=\"5")),
        "no 5xx"
    );
}
