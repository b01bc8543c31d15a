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

/// Starts a backfill of `rows` as `trigger` events for hook `hook_id` (see `crate::backfill`) and,
/// with `follow`, prints its progress until it ends: a bar redrawn in place on a terminal, a line
/// every few seconds otherwise. A running `herald serve` does the work. Returns whether it ended
/// done (or, without `follow`, started).
pub fn backfill(
    config: &Config,
    hook_id: &str,
    trigger: &str,
    rows: crate::backfill::BackfillRows,
    follow: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    use std::io::IsTerminal;

    let (store, scripts) = prepare(config)?;
    let hook = store
        .get_hook(hook_id)?
        .with_context(|| format!("no hook with id '{hook_id}'"))?;
    let registry = crate::scripts::ScriptRegistry::new(scripts);
    let backfill = crate::backfill::start(&store, &registry, hook_id, &hook.events, trigger, rows)?;
    writeln!(
        out,
        "backfill {} started: {} rows of {trigger} for {hook_id}",
        backfill.id, backfill.total
    )?;
    if !follow {
        return Ok(true);
    }
    let terminal = std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut last_line = std::time::Instant::now();
    let mut last_done = u64::MAX;
    let mut hinted = false;
    loop {
        let now = store
            .get_backfill(hook_id, &backfill.id)?
            .context("the backfill is gone")?;
        let ended = !matches!(
            now.status,
            crate::store::BackfillStatus::Preparing | crate::store::BackfillStatus::Running
        );
        if terminal {
            let width = 30;
            let filled = (now.done * width / now.total.max(1)) as usize;
            write!(
                out,
                "\r[{}{}] {}/{} rows{}",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                now.done,
                now.total,
                if now.failed > 0 {
                    format!(", {} failed", now.failed)
                } else {
                    String::new()
                }
            )?;
            out.flush()?;
        } else if now.done != last_done && (ended || last_line.elapsed().as_secs() >= 5) {
            writeln!(out, "{}/{} rows", now.done, now.total)?;
            last_line = std::time::Instant::now();
            last_done = now.done;
        }
        if ended {
            if terminal {
                writeln!(out)?;
            }
            return match now.status {
                crate::store::BackfillStatus::Done => {
                    writeln!(
                        out,
                        "done: {} queued, {} failed to render (see the script failures)",
                        now.done - now.failed,
                        now.failed
                    )?;
                    Ok(true)
                }
                crate::store::BackfillStatus::Cancelled => {
                    writeln!(out, "cancelled after {} rows: those stay queued", now.done)?;
                    Ok(false)
                }
                _ => {
                    writeln!(
                        out,
                        "failed: {}",
                        now.error.as_deref().unwrap_or("(no reason recorded)")
                    )?;
                    Ok(false)
                }
            };
        }
        if now.done == 0 && !hinted && started.elapsed().as_secs() >= 10 {
            writeln!(
                out,
                "{}nothing has moved for 10 s: is a herald serve running on this database?",
                if terminal { "\n" } else { "" }
            )?;
            hinted = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
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
