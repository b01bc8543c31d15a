//! Rate limits per target (#22): a hook's `rate_limit_per_second` caps its deliveries; the others
//! wait, delayed, not failed, and other hooks are not slowed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// The most arrivals within any window of `window` among sorted instants.
fn most_within(arrivals: &[Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..arrivals.len() {
        while arrivals[end].duration_since(arrivals[start]) >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_limited_to_20_a_second_gets_at_most_that_while_an_unlimited_one_is_not_slowed() {
    let herald = TestHerald::demo(|_| {}).await;
    let slow = TestReceiver::start().await;
    let fast = TestReceiver::start().await;
    let limited = herald
        .create_hook(json!({"target_url": slow.url("/limited"), "company_id": 1,
                            "events": ["Deal.create"], "rate_limit_per_second": 20}))
        .await;
    assert_eq!(limited["rate_limit_per_second"], 20.0);
    let limited_id = limited["id"].as_str().unwrap().to_owned();
    herald
        .create_hook(json!({"target_url": fast.url("/free"), "company_id": 1,
                            "events": ["Deal.create"]}))
        .await;

    // All at once, so that what paces the unlimited hook is herald, not how fast the test can
    // open connections (on a loaded PostgreSQL that alone took longer than the limited hook's
    // first half).
    const DEALS: usize = 60;
    let titles: Vec<String> = (0..DEALS).map(|n| format!("Deal {n}")).collect();
    herald.insert_deals(
        titles
            .iter()
            .map(|title| Deal {
                company_id: Some(1),
                ..Deal::titled(title)
            })
            .collect(),
    );
    let free = fast.wait_for(DEALS, Duration::from_secs(20)).await;
    // While the limited hook is behind, its overview says by how much.
    let (_, summary) = herald
        .get(&format!("/api/v1/hooks/{limited_id}/summary"))
        .await;
    assert_eq!(summary["rate_limit_per_second"], 20.0);
    let limited_got = slow.wait_for(DEALS, Duration::from_secs(30)).await;
    let arrivals: Vec<Instant> = limited_got.iter().map(|r| r.at).collect();
    let most = most_within(&arrivals, Duration::from_secs(1));
    // 20 a second, one lease every 50 ms: a window of one second holds 20, 21 with one at each
    // end, and one more where a delivery left late (the receiver sees sends, not leases).
    assert!(most <= 22, "{most} deliveries within one second");
    // And over the whole run: 59 intervals of 50 ms, less what the first one's send may lag.
    let span = arrivals[DEALS - 1].duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_millis(2600),
        "60 deliveries within {span:?}"
    );
    // Delayed, not failed: every one arrived, each once.
    let mut titles: Vec<String> = limited_got
        .iter()
        .map(|r| r.json()["row"]["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    titles.dedup();
    assert_eq!(titles.len(), DEALS);
    // The unlimited hook had them all before the limited one had half: it was not held up.
    let last_free = free.iter().map(|r| r.at).max().unwrap();
    assert!(
        last_free < arrivals[DEALS / 2],
        "the unlimited hook was slowed down"
    );
    assert!(
        summary["pending"].as_u64().unwrap() > 0
            && summary["oldest_waiting_seconds"].as_f64().is_some(),
        "the overview shows the delay: {summary}"
    );

    // Removed: the next ones go as fast as the endpoint takes them.
    let (status, hook) = herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{limited_id}"),
            Some(json!({"rate_limit_per_second": null})),
        )
        .await;
    assert_eq!(status, 200, "{hook}");
    assert_eq!(hook["rate_limit_per_second"], serde_json::Value::Null);
    slow.stop();
    fast.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_out_of_range_is_refused() {
    let herald = TestHerald::demo(|_| {}).await;
    for bad in [json!(0), json!(-1), json!(1e9), json!("fast")] {
        let (status, body) = herald
            .post(
                "/api/v1/hooks",
                json!({"target_url": "http://127.0.0.1:9/x", "company_id": 1,
                       "rate_limit_per_second": bad}),
            )
            .await;
        assert!(status == 422, "{bad}: {status} {body}");
    }
    let (status, body) = herald
        .post(
            "/EPT_WebhookSubscribe",
            json!({"event": "NewOpportunity", "target_url": "http://127.0.0.1:9/x",
                   "rate_limit_per_second": 0.5}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, hook) = herald
        .get(&format!("/api/v1/hooks/{}", body["id"].as_str().unwrap()))
        .await;
    assert_eq!(hook["rate_limit_per_second"], 0.5);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_form_sets_and_clears_the_rate_limit() {
    use crate::admin_pages::{csrf_of, page, post_form, session_cookie};
    let herald = TestHerald::demo(|_| {}).await;
    let hook = herald
        .create_hook(json!({"target_url": "http://127.0.0.1:9/x", "company_id": 1}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let cookie = session_cookie(&herald).await;
    let path = format!("/admin/hooks/{id}");
    let csrf = csrf_of(&page(&herald, &cookie, &path).await.1);
    let save = |limit: &'static str| {
        let (herald, cookie, csrf, path) = (&herald, &cookie, &csrf, &path);
        async move {
            post_form(
                herald,
                cookie,
                csrf,
                path,
                &[
                    ("target_url", "http://127.0.0.1:9/x"),
                    ("rate_limit", limit),
                ],
            )
            .await
        }
    };
    assert_eq!(save("2,5").await.status(), 303);
    assert_eq!(
        herald.get(&path.replace("/admin", "/api/v1")).await.1["rate_limit_per_second"],
        2.5
    );
    let (_, shown) = page(&herald, &cookie, &path).await;
    assert!(
        shown.contains("2.5 deliveries per second"),
        "the overview says it"
    );
    let refused = save("fast").await;
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("rate_limit_per_second must be more than 0"),
        "says what is wrong"
    );
    assert_eq!(save("").await.status(), 303);
    assert_eq!(
        herald.get(&path.replace("/admin", "/api/v1")).await.1["rate_limit_per_second"],
        serde_json::Value::Null
    );
    herald.stop().await;
}
