//! Holes found from outside, as an attacker would try them: who may remove what, and scripts that
//! would stall herald.

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
