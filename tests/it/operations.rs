//! Operations: `/metrics` in the Prometheus text format, without the token.

use std::time::Duration;

use crate::support::*;

/// The value of the sample `name` (with its labels, as written) in a text exposition.
pub(crate) fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `/metrics` (5 s at most) until `check` holds of the text, and returns the last text.
/// No token: scrapers do not carry one.
async fn scrape_until(url: &str, check: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..250 {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        text = response.text().await.unwrap();
        if check(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_work_and_describe_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    std::fs::write(
        scripts.join("SysNotification_Contact_ParseForEach.rhai"),
        "if action_key == \"update\" { throw \"contacts may not change\"; }\n",
    )
    .unwrap();
    let mut config = test_config(dir.path(), &scripts);
    config.delivery.retry_schedule = vec![Duration::from_secs(600)];
    let herald = TestHerald::start(config).await;
    let receiver = TestReceiver::start().await;
    receiver.queue(Answer::status(200));
    receiver.queue(Answer::status(503));
    herald
        .subscribe("NewOpportunity", &receiver.url("/m"))
        .await;
    let url = herald.url("/metrics");
    let mut app = herald.app();
    // One at a time: the 200 recorded before the 503, so that the hook ends failing (a success
    // recorded after a failure would clear it).
    let insert_deal = |app: &mut AppDb, title: &str| {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES (?1, 1, 1)",
            &[Cell::Text(title.into())],
        )
    };
    insert_deal(&mut app, "one");
    scrape_until(&url, |text| {
        sample(text, "herald_delivery_attempts_total{outcome=\"success\"}") == Some(1.0)
    })
    .await;
    insert_deal(&mut app, "two");
    app.execute(
        "UPDATE \"Contact\" SET email = 'x@example.com' WHERE id = 100",
        &[],
    );
    receiver.wait_for(2, Duration::from_secs(10)).await;

    let text = scrape_until(&url, |text| {
        sample(
            text,
            "herald_delivery_attempts_total{outcome=\"http_error\"}",
        ) == Some(1.0)
            && sample(text, "herald_delivery_attempt_duration_seconds_count") == Some(2.0)
            && sample(
                text,
                "herald_script_errors_total{script=\"SysNotification_Contact_ParseForEach.rhai\"}",
            ) == Some(1.0)
            // A scrape reads the outbox's gauges before it counts: the gauges may show the
            // state from just before the 503 was recorded, the counters the state after.
            && sample(text, "herald_hooks{state=\"failing\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&text, "herald_changes_consumed_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "herald_events_fired_total{event=\"NewOpportunity\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "herald_delivery_attempts_total{outcome=\"success\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "herald_delivery_attempts_total{outcome=\"http_error\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "herald_script_errors_total{script=\"SysNotification_Contact_ParseForEach.rhai\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "herald_delivery_attempt_duration_seconds_count"),
        Some(2.0),
        "{text}"
    );
    // The 503 left one delivery waiting for its retry, and its hook failing.
    assert_eq!(
        sample(&text, "herald_deliveries_waiting"),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "herald_oldest_waiting_delivery_age_seconds").unwrap() >= 0.0);
    assert_eq!(
        sample(&text, "herald_hooks{state=\"enabled\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "herald_hooks{state=\"failing\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    herald.stop().await;
}
