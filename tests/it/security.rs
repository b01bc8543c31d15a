//! Holes found from outside, as an attacker would try them: who may remove what, scripts that
//! would stall herald, and targets that hide a refused address.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const ZAPIER: &str = "zapier-subscribe-token-0123456789";
const OTHER: &str = "other-subscribe-token-0123456789";

fn subscribe_tokens(config: &mut herald::Config) {
    for (name, token) in [("zapier", ZAPIER), ("other", OTHER)] {
        config.api_tokens.push(herald::config::ApiToken {
            name: name.into(),
            token: token.into(),
            role: herald::config::Role::Subscribe,
        });
    }
}

async fn call(
    herald: &TestHerald,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = herald
        .client
        .request(method, herald.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn subscribe_with(herald: &TestHerald, token: &str, target: &str) -> String {
    let (status, body) = call(
        herald,
        reqwest::Method::POST,
        "/EPT_WebhookSubscribe",
        token,
        Some(json!({"event": "NewOpportunity", "target_url": target})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Both ways of unsubscribing, with `token`: the answers of the POST and of the DELETE.
async fn unsubscribe_both_ways(herald: &TestHerald, token: &str, id: &str) -> [(u16, Value); 2] {
    [
        call(
            herald,
            reqwest::Method::POST,
            "/EPT_WebhookUnsubscribe",
            token,
            Some(json!({"id": id})),
        )
        .await,
        call(
            herald,
            reqwest::Method::DELETE,
            &format!("/EPT_WebhookSubscribe/{id}"),
            token,
            None,
        )
        .await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_token_removes_only_the_subscriptions_it_made() {
    let herald = TestHerald::demo(|config| {
        subscribe_tokens(config);
    })
    .await;
    let receiver = TestReceiver::start().await;

    let company_hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/company"),
            "company_id": 2,
            "events": ["Deal.create"],
        }))
        .await;
    let company_hook = company_hook["id"].as_str().unwrap().to_owned();
    let admins_subscription = herald
        .subscribe("NewOpportunity", &receiver.url("/admin"))
        .await;
    let admins_subscription = admins_subscription["id"].as_str().unwrap().to_owned();
    let others = subscribe_with(&herald, OTHER, &receiver.url("/other")).await;
    let own = subscribe_with(&herald, ZAPIER, &receiver.url("/zapier")).await;

    // Not made by this token: 404 both ways, as for an id that does not exist, and nothing goes.
    for id in [&company_hook, &admins_subscription, &others] {
        for (status, body) in unsubscribe_both_ways(&herald, ZAPIER, id).await {
            assert_eq!(status, 404, "{id}: {body}");
            assert_eq!(body["error"]["code"], "unknown_subscription", "{body}");
            assert!(
                !body.to_string().contains("admin"),
                "the answer says nothing of whose it is: {body}"
            );
        }
        let (status, body) = herald.get(&format!("/api/v1/hooks/{id}")).await;
        assert_eq!(status, 200, "{id} is still there: {body}");
    }
    let (_, unknown) = unsubscribe_both_ways(&herald, ZAPIER, "hook_nope").await[0].clone();
    let (_, refused) = unsubscribe_both_ways(&herald, ZAPIER, &company_hook).await[0].clone();
    assert_eq!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .replace("hook_nope", "ID"),
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .replace(company_hook.as_str(), "ID"),
        "a refused id reads exactly like an unknown one"
    );

    // Its own subscription goes.
    let (status, body) = call(
        &herald,
        reqwest::Method::POST,
        "/EPT_WebhookUnsubscribe",
        ZAPIER,
        Some(json!({"id": own})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true);
    let (status, _) = herald.get(&format!("/api/v1/hooks/{own}")).await;
    assert_eq!(status, 404);

    // The other token removes its own by path; the admin token may remove any subscription.
    let (status, body) = call(
        &herald,
        reqwest::Method::DELETE,
        &format!("/EPT_WebhookSubscribe/{others}"),
        OTHER,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = herald
        .post(
            "/EPT_WebhookUnsubscribe",
            json!({"id": admins_subscription}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    herald.stop().await;
}

/// Every address that is not globally reachable, however it is spelt, is refused where a target is
/// saved: an admin hook and a subscription alike, with the reason; `HERALD_ALLOW_TARGETS` opens a
/// range, for the IPv4 address an IPv6 one embeds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_embed_or_hide_a_refused_address_are_refused() {
    let herald = TestHerald::demo(|config| {
        subscribe_tokens(config);
        config
            .delivery
            .allow_targets
            .push("198.51.100.7/32".parse().unwrap());
    })
    .await;
    let refused = [
        "http://[64:ff9b::169.254.169.254]/",
        "http://[64:ff9b::a00:1]/",
        "http://[64:ff9b:1::8.8.8.8]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[2002:c0a8:101::]/",
        "http://[::169.254.169.254]/",
        "http://[::ffff:0:169.254.169.254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fec0::1]/",
        "http://[2001:db8::1]/",
        "http://[2001::1]/",
        "http://[100::1]/",
        "http://198.18.0.1/",
        "http://198.19.255.254/",
        "http://192.0.0.8/",
        "http://192.0.2.1/",
        "http://192.88.99.1/",
        "http://203.0.113.9/",
        "http://198.51.100.9/",
    ];
    for target in refused {
        let (status, body) = call(
            &herald,
            reqwest::Method::POST,
            "/api/v1/hooks",
            TOKEN,
            Some(json!({"target_url": target, "company_id": 1, "events": ["Deal.create"]})),
        )
        .await;
        assert_eq!(status, 422, "{target}: {body}");
        assert_eq!(body["error"]["code"], "refused_target", "{target}: {body}");
        let (status, body) = call(
            &herald,
            reqwest::Method::POST,
            "/EPT_WebhookSubscribe",
            ZAPIER,
            Some(json!({"event": "NewOpportunity", "target_url": target})),
        )
        .await;
        assert_eq!(status, 422, "{target}: {body}");
        assert_eq!(body["error"]["code"], "refused_target", "{target}: {body}");
    }
    let (_, body) = call(
        &herald,
        reqwest::Method::POST,
        "/api/v1/hooks",
        TOKEN,
        Some(json!({"target_url": "http://[64:ff9b::169.254.169.254]/", "company_id": 1})),
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("169.254.169.254"), "{message}");
    assert!(message.contains("link-local"), "{message}");

    // Public addresses pass, in IPv4 and embedded in NAT64 and 6to4; so does an allowed range,
    // in either spelling.
    for target in [
        "http://[64:ff9b::808:808]/",
        "http://[2002:808:808::1]/",
        "http://198.51.100.7/",
        "http://[64:ff9b::198.51.100.7]/",
    ] {
        let (status, body) = call(
            &herald,
            reqwest::Method::POST,
            "/api/v1/hooks",
            TOKEN,
            Some(json!({"target_url": target, "company_id": 1, "events": ["Deal.create"]})),
        )
        .await;
        assert_eq!(status, 201, "{target}: {body}");
    }
    herald.stop().await;
}

/// Credentials in a target URL would be sent as Basic authorization and shown in clear wherever
/// the URL is; a URL of hundreds of KiB fails every attempt. Both are refused with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_with_credentials_or_past_the_length_cap_are_refused() {
    let herald = TestHerald::demo(subscribe_tokens).await;
    let receiver = TestReceiver::start().await;
    let with_credentials = receiver
        .url("/hook")
        .replace("http://", "http://user:s3cr3t-pw@");
    let with_user_only = receiver.url("/hook").replace("http://", "http://user@");
    let too_long = format!("{}?pad={}", receiver.url("/hook"), "a".repeat(900_000));
    for (target, code, says) in [
        (
            &with_credentials,
            "credentials_in_target_url",
            "authorization",
        ),
        (
            &with_user_only,
            "credentials_in_target_url",
            "authorization",
        ),
        (&too_long, "target_url_too_long", "4096"),
    ] {
        for (path, token, body) in [
            (
                "/api/v1/hooks",
                TOKEN,
                json!({"target_url": target, "company_id": 1, "events": ["Deal.create"]}),
            ),
            (
                "/EPT_WebhookSubscribe",
                ZAPIER,
                json!({"event": "NewOpportunity", "target_url": target}),
            ),
        ] {
            let (status, answer) =
                call(&herald, reqwest::Method::POST, path, token, Some(body)).await;
            assert_eq!(status, 422, "{path}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{path}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{message}");
            assert!(
                !message.contains("s3cr3t-pw"),
                "the password is not echoed: {message}"
            );
        }
    }
    // Changing an existing hook to such a target is refused the same way.
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/hook"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap();
    let (status, answer) = call(
        &herald,
        reqwest::Method::PATCH,
        &format!("/api/v1/hooks/{id}"),
        TOKEN,
        Some(json!({"target_url": with_credentials})),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "credentials_in_target_url");
    let (_, stored) = herald.get(&format!("/api/v1/hooks/{id}")).await;
    assert_eq!(stored["target_url"], receiver.url("/hook"));
    let hooks: i64 = herald
        .app()
        .integer("SELECT count(*) FROM herald_hooks", &[]);
    assert_eq!(hooks, 1, "nothing else was stored");
    herald.stop().await;
}

/// An authorization header is shown by its scheme only when the first word is a known scheme;
/// anything else is masked but for its last few characters, so that a token with a space in it does
/// not show its first part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_header_shows_no_more_than_its_known_scheme_and_last_characters() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    for (value, shown) in [
        ("sk_live_abc x", "********bc x"),
        ("sk_live_abcdefghijkl", "********ijkl"),
        ("short", "********"),
        ("Bearer sk_live_abcdef", "Bearer ********"),
        ("token abc123", "token ********"),
        (
            "Basic c3a24b8208ac5199d083d54a1234e94b8864",
            "Basic ********",
        ),
    ] {
        let hook = herald
            .create_hook(json!({
                "target_url": receiver.url("/hook"),
                "company_id": 1,
                "events": ["Deal.create"],
                "authorization": value,
            }))
            .await;
        assert_eq!(hook["authorization"], shown, "{value}");
        let id = hook["id"].as_str().unwrap();
        let (_, listed) = herald.get(&format!("/api/v1/hooks/{id}")).await;
        assert_eq!(listed["authorization"], shown, "{value}");
    }
    herald.stop().await;
}

/// REST hooks as Zapier's example integration writes them: the target as `url`, `limit=-1` for no
/// limit, an unsubscribe after herald removed the subscription on a 410, a connection test, and
/// `limit` reaching the body script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_hooks_work_as_zapier_integrations_call_them() {
    let herald = TestHerald::demo(subscribe_tokens).await;
    let receiver = TestReceiver::start().await;

    // The connection test: any valid token, its name and role.
    let (status, me) = call(
        &herald,
        reqwest::Method::GET,
        "/EPT_WebhookMe",
        ZAPIER,
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"name": "zapier", "role": "subscribe"}));
    let (status, _) = call(
        &herald,
        reqwest::Method::GET,
        "/EPT_WebhookMe",
        "wrong-token-0123456789",
        None,
    )
    .await;
    assert_eq!(status, 401);

    // `url` is the target (Zapier's `{url: bundle.targetUrl}`).
    let (status, subscription) = call(
        &herald,
        reqwest::Method::POST,
        "/EPT_WebhookSubscribe",
        ZAPIER,
        Some(json!({"event": "NewOpportunity", "url": receiver.url("/zap")})),
    )
    .await;
    assert_eq!(status, 201, "{subscription}");
    let id = subscription["id"].as_str().unwrap().to_owned();

    // limit=-1 is "no limit": the most there is; and the script sees `limit`.
    for i in 0..8 {
        herald.insert_deal(Deal {
            is_project: true,
            company_id: Some(1),
            ..Deal::titled(&format!("sample {i}"))
        });
    }
    let (status, samples) = call(
        &herald,
        reqwest::Method::GET,
        "/EPT_WebhookPerformList?event=NewOpportunity&limit=-1",
        ZAPIER,
        None,
    )
    .await;
    assert_eq!(status, 200, "{samples}");
    assert!(
        samples.as_array().unwrap().len() > 3,
        "more than the demo's old 3: {samples}"
    );
    let (status, samples) = call(
        &herald,
        reqwest::Method::POST,
        "/EPT_WebhookPerformList",
        ZAPIER,
        Some(json!({"event": "NewOpportunity", "limit": 5})),
    )
    .await;
    assert_eq!(status, 200, "{samples}");
    assert_eq!(samples.as_array().unwrap().len(), 5);
    let (status, body) = call(
        &herald,
        reqwest::Method::POST,
        "/EPT_WebhookPerformList",
        ZAPIER,
        Some(json!({"event": "NewOpportunity", "limit": -1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for wrong in ["-2", "0", "101"] {
        let (status, _) = call(
            &herald,
            reqwest::Method::GET,
            &format!("/EPT_WebhookPerformList?event=NewOpportunity&limit={wrong}"),
            ZAPIER,
            None,
        )
        .await;
        assert_eq!(status, 422, "limit={wrong}");
    }

    // The target answers 410: herald removes the subscription; Zapier's later unsubscribe still
    // answers 200, once; an id that never existed stays 404.
    receiver.wait_for(8, Duration::from_secs(10)).await;
    receiver.queue(Answer::status(410));
    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled("gone")
    });
    receiver.wait_for(9, Duration::from_secs(10)).await;
    let removed = eventually(Duration::from_secs(10), || {
        (herald
            .app()
            .integer("SELECT count(*) FROM herald_hooks", &[])
            == 0)
            .then_some(())
    })
    .await;
    assert!(removed.is_some(), "the 410 removed the subscription");
    // Another token may not learn that it existed.
    let [(status, _), _] = unsubscribe_both_ways(&herald, OTHER, &id).await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &herald,
        reqwest::Method::POST,
        "/EPT_WebhookUnsubscribe",
        ZAPIER,
        Some(json!({"id": id})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true);
    let (status, _) = call(
        &herald,
        reqwest::Method::DELETE,
        &format!("/EPT_WebhookSubscribe/{id}"),
        ZAPIER,
        None,
    )
    .await;
    assert_eq!(status, 404, "acknowledged once");
    let (status, _) = call(
        &herald,
        reqwest::Method::POST,
        "/EPT_WebhookUnsubscribe",
        ZAPIER,
        Some(json!({"id": "hook_never_was"})),
    )
    .await;
    assert_eq!(status, 404);
    herald.stop().await;
}
