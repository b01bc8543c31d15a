//! Durable delivery: retries, 410, a restart with the receiver down, and isolation of slow targets.

use std::time::Duration;

use herald::store::DeliveryStatus;

use crate::support::*;

fn insert_project_deal(herald: &TestHerald, title: &str) {
    herald.insert_deal(Deal {
        is_project: true,
        company_id: Some(1),
        ..Deal::titled(title)
    });
}

/// Project deals titled `deal {n}` for each `n`, in one transaction.
fn insert_project_deals(herald: &TestHerald, numbers: std::ops::Range<usize>) {
    let titles: Vec<String> = numbers.map(|n| format!("deal {n}")).collect();
    herald.insert_deals(
        titles
            .iter()
            .map(|title| Deal {
                is_project: true,
                ..Deal::titled(title)
            })
            .collect(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_and_the_delivery_ends_delivered_with_every_attempt_recorded() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    receiver.queue(Answer {
        status: 500,
        headers: vec![("x-trace", "abc".into())],
        body: "database on fire".into(),
        delay: Duration::ZERO,
    });
    herald
        .subscribe("NewOpportunity", &receiver.url("/flaky"))
        .await;
    insert_project_deal(&herald, "Retry me");

    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body);
    let retry_gap = got[1].at - got[0].at;
    assert!(
        retry_gap >= Duration::from_millis(150),
        "the retry waited the schedule's 200 ms ±20 %: {retry_gap:?}"
    );

    let message_id = got[0].header("webhook-id").to_owned();
    let store = herald.store();
    let status = eventually(Duration::from_secs(5), || {
        store
            .delivery_status(&message_id)
            .unwrap()
            .filter(|s| *s == DeliveryStatus::Delivered)
    })
    .await;
    assert_eq!(status, Some(DeliveryStatus::Delivered));
    let attempts = store.attempts_of(&message_id).unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status_code, Some(500));
    assert_eq!(attempts[0].outcome, "http_error");
    assert_eq!(
        attempts[0].response_body.as_deref(),
        Some("database on fire")
    );
    let headers: serde_json::Value =
        serde_json::from_str(attempts[0].response_headers.as_deref().unwrap()).unwrap();
    assert_eq!(headers["x-trace"], "abc");
    assert_eq!(attempts[1].status_code, Some(200));
    assert_eq!(attempts[1].outcome, "success");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failure_and_the_last_failure_fails_the_delivery() {
    let herald = TestHerald::demo(|config| {
        config.delivery.retry_schedule = vec![Duration::from_millis(100)];
    })
    .await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer {
        status: 302,
        headers: vec![("location", receiver.url("/elsewhere"))],
        body: String::new(),
        delay: Duration::ZERO,
    });
    herald
        .subscribe("NewOpportunity", &receiver.url("/moved"))
        .await;
    insert_project_deal(&herald, "Redirected");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert!(got
        .iter()
        .all(|r| r.header("herald-event") == "NewOpportunity"));
    let message_id = got[0].header("webhook-id").to_owned();
    let store = herald.store();
    let status = eventually(Duration::from_secs(5), || {
        store
            .delivery_status(&message_id)
            .unwrap()
            .filter(|s| *s == DeliveryStatus::Failed)
    })
    .await;
    assert_eq!(status, Some(DeliveryStatus::Failed));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "no attempt after the schedule ran out"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_removes_the_subscription_at_once() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer::status(410));
    let subscription = herald
        .subscribe("NewOpportunity", &receiver.url("/gone"))
        .await;
    insert_project_deal(&herald, "first");
    receiver.wait_for(1, Duration::from_secs(10)).await;

    let id = subscription["id"].as_str().unwrap().to_owned();
    let store = herald.store();
    let removed = eventually(Duration::from_secs(5), || {
        store.get_hook(&id).unwrap().is_none().then_some(())
    })
    .await;
    assert!(removed.is_some(), "the subscription is gone after a 410");
    insert_project_deal(&herald, "second");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a 410 is not retried and nothing more is sent"
    );
    // The integration's unsubscribe that follows is acknowledged (it existed; Zapier's SDK throws
    // on a 404), once; an id that never was stays 404.
    let (status, body) = herald
        .post("/EPT_WebhookUnsubscribe", serde_json::json!({"id": id}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true);
    let (status, body) = herald
        .post("/EPT_WebhookUnsubscribe", serde_json::json!({"id": id}))
        .await;
    assert_eq!(status, 404, "{body}");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_accepted_before_a_restart_is_delivered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut config = test_config(dir.path(), &scripts);
    config.delivery.retry_schedule = vec![Duration::from_millis(300); 5];

    // The receiver's port, reserved and then closed: the receiver is down.
    let port = {
        let probe = TestReceiver::start().await;
        let addr = probe.addr;
        probe.stop();
        addr
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let herald = TestHerald::start(config.clone()).await;
    herald
        .subscribe("NewOpportunity", &format!("http://{port}/later"))
        .await;
    insert_project_deal(&herald, "Survives a restart");
    // Wait until herald has tried and failed at least once, then stop it.
    let tried = eventually(Duration::from_secs(10), || {
        let failed: i64 = herald.app().integer(
            "SELECT count(*) FROM herald_attempts WHERE outcome = 'connection_error'",
            &[],
        );
        (failed > 0).then_some(())
    })
    .await;
    assert!(tried.is_some(), "herald tried while the receiver was down");
    herald.stop().await;

    let receiver = TestReceiver::start_on(port).await;
    let herald = TestHerald::start(config).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["title"], "Survives a restart");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_does_not_hold_up_a_healthy_one() {
    let herald = TestHerald::demo(|config| {
        config.delivery.timeout = Duration::from_secs(7);
        config.delivery.max_in_flight_per_hook = 2;
    })
    .await;
    let hanging = TestReceiver::start().await;
    hanging.answer_always(Answer {
        delay: Duration::from_secs(6),
        ..Answer::status(200)
    });
    let healthy = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &hanging.url("/slow"))
        .await;
    herald
        .subscribe("NewOpportunity", &healthy.url("/fast"))
        .await;

    // In one transaction, so that the window below measures herald, not the machine's commits.
    insert_project_deals(&herald, 0..10);
    // All ten reach the healthy target long before the hanging one answers even its first two.
    let got = healthy.wait_for(10, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 10);
    assert!(
        hanging.received().len() <= 2,
        "the hanging target holds at most its own two slots"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_held_for_a_target_that_turns_slow_go_back_and_are_sent_once() {
    let herald = TestHerald::demo(|config| {
        // One slot. The target answers its first requests at once, so the worker holds many rounds
        // ahead for it; then it takes half the time-out per request, so most of what is held cannot
        // start within a time-out: it goes back to the outbox before its lease could end, and is
        // claimed again (fewer at a time, as the hook is slow now).
        config.delivery.timeout = Duration::from_secs(2);
        config.delivery.max_in_flight_per_hook = 1;
    })
    .await;
    let target = TestReceiver::start().await;
    for _ in 0..3 {
        target.queue(Answer::status(200));
    }
    target.answer_always(Answer {
        delay: Duration::from_secs(1),
        ..Answer::status(200)
    });
    herald
        .subscribe("NewOpportunity", &target.url("/turns-slow"))
        .await;
    insert_project_deals(&herald, 0..3);
    target.wait_for(3, Duration::from_secs(15)).await;
    insert_project_deals(&herald, 3..11);

    target.wait_for(11, Duration::from_secs(60)).await;
    // Nothing more comes: each deal was sent once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = target.received();
    let mut titles: Vec<String> = got
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort_by_key(|t| t[5..].parse::<usize>().unwrap());
    let expected: Vec<String> = (0..11).map(|i| format!("deal {i}")).collect();
    assert_eq!(titles, expected, "each deal once");
    let store = herald.store();
    // The last answer took a second, and its record comes after it.
    eventually(Duration::from_secs(10), || {
        got.iter()
            .all(|r| {
                store.delivery_status(r.header("webhook-id")).unwrap()
                    == Some(DeliveryStatus::Delivered)
            })
            .then_some(())
    })
    .await;
    for received in &got {
        let message_id = received.header("webhook-id");
        assert_eq!(
            store.delivery_status(message_id).unwrap(),
            Some(DeliveryStatus::Delivered)
        );
        let attempts = store.attempts_of(message_id).unwrap();
        assert_eq!(attempts.len(), 1, "handing back is not an attempt");
    }
    let text = reqwest::get(herald.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let handed_back: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("herald_deliveries_handed_back_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no handed-back counter in {text}"));
    assert!(handed_back >= 1, "{text}");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_the_whole_window_is_disabled_and_can_recover() {
    let herald = TestHerald::demo(|config| {
        // A window wide enough that a slow machine's gaps between attempts cannot jump over the
        // warning at its half.
        config.delivery.retry_schedule = vec![Duration::from_millis(150); 80];
        config.delivery.disable_failing_after = Some(Duration::from_secs(3));
    })
    .await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer::status(500));
    let hook = herald
        .create_hook(serde_json::json!({
            "target_url": receiver.url("/down"),
            "company_id": 1,
            "events": ["NewOpportunity"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    insert_project_deal(&herald, "Nobody home");

    let mut disabled = serde_json::Value::Null;
    for _ in 0..750 {
        let (_, got) = herald.get(&format!("/api/v1/hooks/{id}")).await;
        if got["status"] == "disabled" {
            disabled = got;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(disabled["status"], "disabled", "not disabled within 15 s");
    let reason = disabled["disabled_reason"].as_str().unwrap();
    assert!(reason.starts_with("every attempt failed since"), "{reason}");
    assert!(disabled["consecutive_failures"].as_i64().unwrap() >= 3);
    let failing_since = disabled["failing_since"].as_str().unwrap().to_owned();
    let attempts = receiver.received();
    // Disabled once the failures had lasted the whole window, by herald's clock (the receiver's
    // arrivals may end earlier on a slow machine, where recording the last attempt takes a while).
    let failing_for = herald::clock::parse_rfc3339_ms(disabled["updated_at"].as_str().unwrap())
        .unwrap()
        - herald::clock::parse_rfc3339_ms(&failing_since).unwrap();
    assert!(
        failing_for >= 3000,
        "failures spread over the window: {failing_for} ms"
    );
    // Nothing more is sent to it (but the one attempt that may have been in flight).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = receiver.received().len();
    assert!(
        after <= attempts.len() + 1,
        "{after} after {}",
        attempts.len()
    );

    let text = reqwest::get(herald.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("herald_hooks_auto_disabled_total 1"),
        "{text}"
    );
    assert!(
        text.contains("herald_hook_failure_warnings_total 1"),
        "{text}"
    );

    // The endpoint is back: re-enable and recover what it missed.
    receiver.answer_always(Answer::status(200));
    let (status, enabled) = herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{id}"),
            Some(serde_json::json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["disabled_reason"], serde_json::Value::Null);
    assert_eq!(enabled["consecutive_failures"], 0);
    let (status, body) = herald
        .post(
            &format!("/api/v1/hooks/{id}/retry-failed"),
            serde_json::json!({"since": failing_since, "include_discarded": true}),
        )
        .await;
    assert_eq!((status, body["retried"].as_u64()), (202, Some(1)), "{body}");
    let got = receiver.wait_for(after + 1, Duration::from_secs(10)).await;
    assert_eq!(got.last().unwrap().json()["title"], "Nobody home");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_refuses_http_targets_at_subscription_and_at_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let receiver = TestReceiver::start().await;
    // A subscription saved while http was still allowed...
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let subscription = herald
        .subscribe("NewOpportunity", &receiver.url("/plain"))
        .await;
    herald.stop().await;

    let mut config = test_config(dir.path(), &scripts);
    config.delivery.https_only = true;
    config.delivery.retry_schedule = Vec::new();
    let herald = TestHerald::start(config).await;
    let (status, body) = herald
        .post(
            "/EPT_WebhookSubscribe",
            serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/again")}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("https_required"))
    );

    // ...is refused when its delivery comes, and nothing reaches the plain-http target.
    insert_project_deal(&herald, "Not over http");
    let id = subscription["id"].as_str().unwrap();
    let log = loop_until_attempt(&herald, id).await;
    assert_eq!(log["outcome"], "refused", "{log}");
    assert!(log["error"].as_str().unwrap().contains("https"), "{log}");
    assert!(receiver.received().is_empty());
    herald.stop().await;
}

async fn loop_until_attempt(herald: &TestHerald, hook_id: &str) -> serde_json::Value {
    for _ in 0..250 {
        let (_, log) = herald
            .get(&format!("/api/v1/hooks/{hook_id}/deliveries"))
            .await;
        if let Some(first) = log["deliveries"].as_array().and_then(|d| d.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no attempt recorded for {hook_id}");
}

/// A target that accepts each connection, reads the request's first bytes and resets it.
async fn resetting_target() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    (addr, task)
}

async fn attempts_of(herald: &TestHerald, hook_id: &str, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..500 {
        let (_, log) = herald
            .get(&format!("/api/v1/hooks/{hook_id}/deliveries"))
            .await;
        let entries = log["deliveries"].as_array().cloned().unwrap_or_default();
        if entries.len() >= count {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {count} attempts recorded for {hook_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_a_429_with_retry_after_and_a_huge_body_are_each_recorded_as_they_happened() {
    let herald = TestHerald::demo(|_| {}).await;

    let (reset_addr, reset_task) = resetting_target().await;
    let reset = herald
        .subscribe("NewOpportunity", &format!("http://{reset_addr}/reset"))
        .await;
    let busy = TestReceiver::start().await;
    busy.queue(Answer {
        headers: vec![("retry-after", "2".into())],
        body: "slow down".into(),
        ..Answer::status(429)
    });
    let busy_hook = herald.subscribe("NewOpportunity", &busy.url("/busy")).await;
    let chatty = TestReceiver::start().await;
    chatty.answer_always(Answer {
        body: "x".repeat(4 * 1024 * 1024),
        ..Answer::status(200)
    });
    let chatty_hook = herald
        .subscribe("NewOpportunity", &chatty.url("/chatty"))
        .await;

    insert_project_deal(&herald, "Bad targets");

    // The reset: a connection error with the cause in words, retried on the schedule.
    let entries = attempts_of(&herald, reset["id"].as_str().unwrap(), 2).await;
    let first = entries.last().unwrap();
    assert_eq!(first["outcome"], "connection_error", "{first}");
    assert!(first["response_status"].is_null(), "{first}");
    let error = first["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("reset") || error.contains("closed") || error.contains("connection"),
        "{error}"
    );

    // The 429: recorded with its status and body, and the retry waits the 2 s the target asked
    // for instead of the 200 ms schedule.
    let got = busy.wait_for(2, Duration::from_secs(10)).await;
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_millis(1800),
        "the retry came after {waited:?}, before the Retry-After of 2 s"
    );
    let busy_id = busy_hook["id"].as_str().unwrap();
    let entries = attempts_of(&herald, busy_id, 2).await;
    let (newest, oldest) = (&entries[0], &entries[1]);
    assert_eq!(oldest["outcome"], "http_error", "{oldest}");
    assert_eq!(oldest["response_status"], 429, "{oldest}");
    assert_eq!(newest["outcome"], "success", "{newest}");
    let (_, detail) = herald
        .get(&format!(
            "/api/v1/hooks/{busy_id}/deliveries/{}",
            oldest["id"]
        ))
        .await;
    assert_eq!(detail["response"]["body"], "slow down", "{detail}");
    assert_eq!(
        detail["response"]["headers"]["retry-after"], "2",
        "{detail}"
    );

    // The 4 MiB body: a success, the body kept up to the 20 KiB cap, not read to the end.
    let chatty_id = chatty_hook["id"].as_str().unwrap();
    let entries = attempts_of(&herald, chatty_id, 1).await;
    assert_eq!(entries[0]["outcome"], "success", "{}", entries[0]);
    let (_, detail) = herald
        .get(&format!(
            "/api/v1/hooks/{chatty_id}/deliveries/{}",
            entries[0]["id"]
        ))
        .await;
    let body = detail["response"]["body"].as_str().unwrap();
    assert_eq!(body.len(), herald::delivery::RESPONSE_BODY_CAP);
    assert!(body.bytes().all(|b| b == b'x'));
    assert_eq!(chatty.received().len(), 1, "a success is not retried");

    reset_task.abort();
    herald.stop().await;
}
