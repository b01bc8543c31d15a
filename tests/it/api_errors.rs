//! Every bad request gets a 4xx with the contract's JSON error and changes nothing.

use serde_json::{json, Value};
use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_and_a_json_error() {
    let herald = TestHerald::demo(|_| {}).await;
    let client = &herald.client;
    let subscribe = herald.url("/EPT_WebhookSubscribe");

    // Authentication.
    let r = client
        .post(&subscribe)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        401,
        "missing_token",
    );
    let r = client
        .post(&subscribe)
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        401,
        "invalid_token",
    );

    // Bodies.
    let r = client
        .post(&subscribe)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"event\": ")
        .send()
        .await
        .unwrap();
    assert_error(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        400,
        "malformed_json",
    );
    // Nesting past the cap is refused before parsing, whatever the field.
    let deep = format!(
        "{{\"event\": \"NewOpportunity\", \"target_url\": \"http://127.0.0.1:9/x\", \"extra\": {}1{}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let r = client
        .post(&subscribe)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_error(status, &body, 400, "json_too_deep");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("32 levels"));
    let r = client
        .post(&subscribe)
        .bearer_auth(TOKEN)
        .body("event=NewOpportunity")
        .send()
        .await
        .unwrap();
    assert_error(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        415,
        "unsupported_media_type",
    );
    // Refused by its declared length; the connection is not kept for the requests below.
    let r = client
        .post(&subscribe)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("connection", "close")
        .body(format!(
            "{{\"event\": \"{}\"}}",
            "x".repeat(2 * 1024 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_error(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        413,
        "body_too_large",
    );

    let cases = [
        (
            json!({"target_url": "http://127.0.0.1:9/x"}),
            422,
            "missing_field",
        ),
        (json!({"event": "NewOpportunity"}), 422, "missing_field"),
        (
            json!({"event": 42, "target_url": "http://127.0.0.1:9/x"}),
            422,
            "invalid_body",
        ),
        (
            json!({"event": "NoSuchTrigger", "target_url": "http://127.0.0.1:9/x"}),
            404,
            "unknown_trigger",
        ),
        (
            json!({"event": "NewOpportunity", "target_url": "ftp://127.0.0.1/x"}),
            422,
            "invalid_target_url",
        ),
        (
            json!({"event": "NewOpportunity", "targetUrl": "not a url"}),
            422,
            "invalid_target_url",
        ),
        (
            json!({"event": "NewOpportunity", "hookUrl": "http://10.0.0.1/x"}),
            422,
            "refused_target",
        ),
        (
            json!({"event": "NewOpportunity", "target_url": "http://169.254.169.254/latest"}),
            422,
            "refused_target",
        ),
    ];
    for (body, status, code) in cases {
        let (got_status, got) = herald.post("/EPT_WebhookSubscribe", body.clone()).await;
        assert_error(got_status, &got, status, code);
    }

    let (status, body) = herald
        .post("/EPT_WebhookUnsubscribe", json!({"id": "hook_nope"}))
        .await;
    assert_error(status, &body, 404, "unknown_subscription");
    let (status, body) = herald.post("/EPT_WebhookUnsubscribe", json!({})).await;
    assert_error(status, &body, 422, "missing_field");
    let r = client
        .delete(herald.url("/EPT_WebhookSubscribe/hook_nope"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        404,
        "unknown_subscription",
    );

    let (status, body) = herald
        .get("/EPT_WebhookPerformList?event=NoSuchTrigger")
        .await;
    assert_error(status, &body, 404, "unknown_trigger");
    let (status, body) = herald.get("/EPT_WebhookPerformList").await;
    assert_error(status, &body, 422, "missing_field");
    for limit in ["0", "101", "ten"] {
        let (status, body) = herald
            .get(&format!(
                "/EPT_WebhookPerformList?event=NewOpportunity&limit={limit}"
            ))
            .await;
        assert_error(status, &body, 422, "invalid_limit");
    }

    let (status, body) = herald.get("/no/such/route").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = herald.get("/EPT_WebhookSubscribe").await;
    assert_error(status, &body, 405, "method_not_allowed");

    // Nothing was created by any of it.
    let hooks: i64 = herald
        .app()
        .integer("SELECT count(*) FROM herald_hooks", &[]);
    assert_eq!(hooks, 0);

    // Health needs no token.
    let r = client.get(herald.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_token_reaches_the_rest_hooks_endpoints_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut config = test_config(dir.path(), &scripts);
    config.api_tokens = vec![herald::config::ApiToken {
        name: "zapier".into(),
        token: "subscribe-only-token-0123456789".into(),
        role: herald::config::Role::Subscribe,
    }];
    let herald = TestHerald::start(config).await;
    let receiver = TestReceiver::start().await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: &str| {
        client
            .request(method, herald.url(path))
            .bearer_auth(token.to_owned())
    };
    let subscribe_token = "subscribe-only-token-0123456789";

    let r = call(
        reqwest::Method::POST,
        "/EPT_WebhookSubscribe",
        subscribe_token,
    )
    .json(&json!({"event": "NewOpportunity", "target_url": receiver.url("/z")}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = call(
        reqwest::Method::GET,
        "/EPT_WebhookPerformList?event=NewOpportunity",
        subscribe_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    for path in ["/api/v1/hooks", "/api/v1/scripts", "/api/v1/openapi.json"] {
        let r = call(reqwest::Method::GET, path, subscribe_token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_error(status, &r.json().await.unwrap(), 403, "forbidden");
    }
    // The admin token still reaches everything; a near miss reaches nothing.
    let r = call(reqwest::Method::GET, "/api/v1/hooks", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = call(
        reqwest::Method::GET,
        "/api/v1/hooks",
        "subscribe-only-token-012345678",
    )
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    assert_error(status, &r.json().await.unwrap(), 401, "invalid_token");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_other_tokens_go_on() {
    let herald = TestHerald::demo(|config| {
        config.rate_limit = Some(herald::config::RateLimit {
            per_second: 1,
            burst: 5,
        });
        config.api_tokens.push(herald::config::ApiToken {
            name: "zapier".into(),
            token: "zapier-subscribe-token".into(),
            role: herald::config::Role::Subscribe,
        });
    })
    .await;

    // The burst passes; then, well within the time it takes to earn 15 more, one is refused.
    for _ in 0..5 {
        let (status, body) = herald.get("/api/v1/hooks").await;
        assert_eq!(status, 200, "{body}");
    }
    let mut refused = None;
    for _ in 0..15 {
        let r = herald
            .client
            .get(herald.url("/api/v1/hooks"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("a request over the rate is refused");
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After: {wait}");
    let status = refused.status().as_u16();
    assert_error(status, &refused.json().await.unwrap(), 429, "rate_limited");

    // Another token has its own allowance.
    let r = herald
        .client
        .get(herald.url("/EPT_WebhookPerformList?event=NewOpportunity&limit=1"))
        .bearer_auth("zapier-subscribe-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Operators see it, by token name.
    let metrics = herald
        .client
        .get(herald.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_api_rate_limited_total{caller=\"default\"} 1"),
        "{metrics}"
    );
    herald.stop().await;
}

/// A client that writes its whole request before it reads (as most do) gets the 413 and its JSON
/// body, not a reset connection: herald reads a refused body to the end before it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_sent_whole_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let herald = TestHerald::demo(|_| {}).await;
    for round in 0..3 {
        let body = format!("{{\"event\": \"{}\"}}", "x".repeat(15 * 1024 * 1024));
        let mut stream = tokio::net::TcpStream::connect(herald.addr).await.unwrap();
        let head = format!(
            "POST /EPT_WebhookSubscribe HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            herald.addr,
            body.len()
        );
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await
        })
        .await
        .expect("the body is written within 10 s");
        sent.unwrap_or_else(|e| panic!("round {round}: writing the body failed: {e}"));
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the answer comes within 10 s")
            .unwrap_or_else(|e| panic!("round {round}: reading the answer failed: {e}"));
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{answer}"));
        assert_eq!(json["error"]["code"], "body_too_large", "{answer}");
    }
    herald.stop().await;
}
