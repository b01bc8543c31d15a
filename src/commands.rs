//! `herald check`, `herald fire` and `herald sample`: the command-line tools beside `serve`, for
//! script authors. Each prints what went wrong with the file, line, column and offending line.
//! `herald migrate`: the application's schema migrations, with herald's tracking triggers remade in
//! the same transaction.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::events::{render_event, sample_payloads};
use crate::scripts::{Sandbox, ScriptSet};
use crate::server::prepare;
use crate::store::known_tables;

/// Compiles every script and checks that each notification script's table exists (in the database
/// or in `schema.sql`). Prints `file:line:col: message` per problem to `out`, followed by the
/// offending line and a caret; returns whether there were none.
pub fn check(config: &Config, out: &mut impl Write) -> anyhow::Result<bool> {
    let scripts = ScriptSet::load(&config.scripts, &config.sandbox)?;
    let mut problems: Vec<String> = scripts.diagnostics.iter().map(|d| d.render()).collect();
    let schema_file = config.db.schema_file();
    match known_tables(&config.db, scripts.schema(schema_file)) {
        Ok(tables) => {
            for table in scripts.tracked_tables() {
                if !tables.contains(&table) {
                    let file = scripts
                        .notification(&table)
                        .map(|s| s.file_name.clone())
                        .unwrap_or_default();
                    problems.push(format!(
                        "{file}: table {table} does not exist in {} or {schema_file}",
                        config.db
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("{schema_file}: {e}")),
    }
    for problem in &problems {
        writeln!(out, "{problem}")?;
    }
    let body = scripts.trigger_names().len();
    let notification = scripts.tracked_tables().len();
    if problems.is_empty() {
        writeln!(
            out,
            "ok: {body} body scripts, {notification} notification scripts in {}",
            config.scripts.display()
        )?;
    }
    Ok(problems.is_empty())
}

/// Fires `trigger` for `row_id` by hand. With `dry_run` prints the payload and stores nothing;
/// otherwise stores the event for every subscribed hook (a running `herald serve` delivers it).
pub fn fire(
    config: &Config,
    trigger: &str,
    row_id: i64,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (store, scripts) = prepare(config)?;
    let sandbox = Sandbox::new(&config.sandbox, store.script_db()?);
    let mut event = render_event(&sandbox, &scripts, trigger, row_id, None)?;
    if dry_run {
        let payload: serde_json::Value = serde_json::from_str(&event.payload)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&payload)?)?;
        return Ok(());
    }
    let rules = store.filter_rules()?;
    crate::filters::Filters::default().judge_batch(
        &sandbox,
        &rules,
        std::slice::from_mut(&mut event),
        &[],
    );
    let deliveries = store.insert_events(std::slice::from_ref(&event))?;
    let plural = if deliveries == 1 {
        "delivery"
    } else {
        "deliveries"
    };
    writeln!(
        out,
        "fired {trigger} for row {row_id}: {deliveries} {plural} queued"
    )?;
    Ok(())
}

/// Prints what perform-list would return for `trigger`: at most `limit` sample payloads, newest
/// first, as a JSON array. Stores nothing.
pub fn sample(
    config: &Config,
    trigger: &str,
    limit: usize,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (store, scripts) = prepare(config)?;
    let sandbox = Sandbox::new(&config.sandbox, store.script_db()?);
    let samples = sample_payloads(&sandbox, &scripts, trigger, limit)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&samples)?)?;
    Ok(())
}

/// Runs the application's migration `file` and remakes herald's tracking triggers for the tables
/// as it leaves them, in one transaction. With `print_triggers` changes nothing (the file is tried
/// in a transaction that is rolled back) and prints what a migration tool that runs the file
/// itself must run before and after it, in the same transaction.
pub fn migrate(
    config: &Config,
    file: &Path,
    print_triggers: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Not `prepare`: the folder's schema script describes the tables before this migration.
    let store = crate::server::open_store(config)?;
    let scripts = ScriptSet::load(&config.scripts, &config.sandbox).with_context(|| {
        format!(
            "cannot read the scripts folder {}",
            config.scripts.display()
        )
    })?;
    let tables = scripts.tracked_tables();
    let named = |e: crate::store::StoreError| {
        let mut message = format!("{}: {e}", file.display());
        if message.contains("within a transaction") {
            message.push_str(
                " (herald runs the file in a transaction of its own: leave BEGIN and COMMIT out)",
            );
        }
        anyhow::anyhow!(message)
    };
    if print_triggers {
        let around = store.tracking_sql_around(&sql, &tables).map_err(named)?;
        writeln!(
            out,
            "-- Run in the migration's transaction, before {}:",
            file.display()
        )?;
        if around.before.is_empty() {
            writeln!(
                out,
                "-- (nothing: herald's triggers here block no migration)"
            )?;
        }
        for statement in &around.before {
            writeln!(out, "{statement}")?;
        }
        writeln!(out, "-- ... the migration ...")?;
        writeln!(out, "-- and after it, before COMMIT:")?;
        for statement in &around.after {
            writeln!(out, "{statement}")?;
        }
        for problem in &around.problems {
            writeln!(
                out,
                "-- cannot track {}: {}",
                problem.table, problem.message
            )?;
        }
        return Ok(());
    }
    let problems = store.migrate_application(&sql, &tables).map_err(named)?;
    for problem in &problems {
        writeln!(out, "cannot track {}: {}", problem.table, problem.message)?;
    }
    writeln!(
        out,
        "migrated: {} applied, tracking triggers made for the tables as it left them",
        file.display()
    )?;
    Ok(())
}
