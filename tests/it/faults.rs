//! Database faults: a change-log row that cannot be read is recorded and passed over, never a stop
//! for the changes behind it. (SQLite's write lock held by the application is in `sqlite.rs`;
//! PostgreSQL's restarts and cut connections in `postgresql.rs`.)

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_change_is_recorded_and_the_changes_behind_it_go_on() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    let mut app = herald.app();
    // A row written past the triggers (by hand, or by a tool that knows the table but not the
    // log's format), then an ordinary change behind it: on SQLite it names a layout that does not
    // exist, on PostgreSQL an action that does not.
    let (bad_row, reason) = if app.is_postgres() {
        (
            "INSERT INTO herald_changes (table_name, row_id, action, row_json)
                 VALUES ('Deal', 424242, 7, '{\"id\": 424242}')",
            "its action 7 is unknown",
        )
    } else {
        (
            "INSERT INTO herald_changes (table_name, row_id, action, row_json, layout)
                 VALUES ('Deal', 424242, 1, '[424242, \"hand-written\"]', 999999)",
            "layout 999999 is not recorded",
        )
    };
    app.batch(&format!(
        "{bad_row};
         INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('behind the bad row', 1, 1);"
    ));

    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["title"], "behind the bad row");
    let store = herald.store();
    let failure = eventually(Duration::from_secs(5), || {
        store.recent_script_failures(10).unwrap().into_iter().next()
    })
    .await
    .expect("the unreadable change is recorded");
    assert_eq!(failure.script, "SysNotification_Deal_ParseForEach.rhai");
    assert_eq!(failure.table.as_deref(), Some("Deal"));
    assert_eq!(failure.row_id, Some(424242));
    assert!(failure.change_id.is_some());
    assert!(failure.message.contains(reason), "{}", failure.message);
    herald.stop().await;
}
