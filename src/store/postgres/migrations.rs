//! herald's schema on PostgreSQL: versioned migrations of its tables (in `herald_migrations`), the
//! change-capture function, and the read-only role scripts log in as.
//!
//! Each entry names herald's schema as `{schema}`, replaced by the configured name (a plain
//! lower-case identifier, checked when the configuration is read). Several herald processes may
//! start at once: an advisory lock makes them migrate one after the other.

use postgres::Client;

use super::{changes_channel, describe, quote_ident, quote_literal, Result, Secrets, StoreError};

/// Taken for the duration of a migration (`pg_advisory_xact_lock`): "herald" in ASCII.
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64;

/// Each entry is applied once, in order, inside one transaction. Never edit a released entry: add one.
const MIGRATIONS: &[&str] = &[
    // 1: herald's tables, as on SQLite after its migrations, with PostgreSQL's types. The change
    // log is consumed by deletion (see `changes.rs`), so it needs no position; `leased_by` says
    // which herald process holds a delivery's lease.
    r#"
    CREATE TABLE {schema}.herald_state (
        key text PRIMARY KEY,
        value bigint NOT NULL
    );

    CREATE TABLE {schema}.herald_secrets (
        name text PRIMARY KEY,
        value text NOT NULL
    );

    CREATE TABLE {schema}.herald_changes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name text NOT NULL,
        row_id bigint,
        action smallint NOT NULL,
        row_json jsonb NOT NULL,
        old_row_json jsonb,
        changed_at bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    );

    CREATE TABLE {schema}.herald_hooks (
        id text PRIMARY KEY,
        target_url text NOT NULL,
        secret text NOT NULL,
        "authorization" text,
        description text NOT NULL DEFAULT '',
        company_id bigint,
        project_id bigint,
        origin text NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        previous_secret text,
        previous_secret_until bigint,
        failing_since bigint,
        failures bigint NOT NULL DEFAULT 0,
        failure_warned boolean NOT NULL DEFAULT false,
        disabled_reason text,
        made_by text
    );
    CREATE TABLE {schema}.herald_hook_events (
        hook_id text NOT NULL REFERENCES {schema}.herald_hooks(id) ON DELETE CASCADE,
        event_name text NOT NULL,
        PRIMARY KEY (hook_id, event_name)
    );
    CREATE INDEX herald_hook_events_by_name ON {schema}.herald_hook_events(event_name, hook_id);

    CREATE TABLE {schema}.herald_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        trigger_name text NOT NULL,
        row_id bigint,
        payload text NOT NULL,
        change_id bigint,
        script_hash text,
        resource_name text,
        event_type text,
        company_id bigint,
        project_id bigint,
        created_at bigint NOT NULL
    );
    CREATE INDEX herald_events_by_time ON {schema}.herald_events(created_at);

    CREATE TABLE {schema}.herald_deliveries (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        event_seq bigint NOT NULL REFERENCES {schema}.herald_events(seq) ON DELETE CASCADE,
        hook_id text NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at bigint,
        leased_by text,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
    );
    CREATE INDEX herald_deliveries_waiting ON {schema}.herald_deliveries(hook_id, next_attempt_at)
        WHERE next_attempt_at IS NOT NULL;
    CREATE INDEX herald_deliveries_by_hook ON {schema}.herald_deliveries(hook_id, seq);
    CREATE INDEX herald_deliveries_by_event ON {schema}.herald_deliveries(event_seq);

    CREATE TABLE {schema}.herald_attempts (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_seq bigint NOT NULL REFERENCES {schema}.herald_deliveries(seq) ON DELETE CASCADE,
        attempt integer NOT NULL,
        started_at bigint NOT NULL,
        duration_ms bigint NOT NULL,
        outcome text NOT NULL,
        status_code integer,
        request_headers text NOT NULL,
        response_headers text,
        response_body text,
        error text,
        url text
    );
    CREATE INDEX herald_attempts_by_delivery ON {schema}.herald_attempts(delivery_seq, attempt);

    CREATE TABLE {schema}.herald_script_failures (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        script text NOT NULL,
        line integer,
        col integer,
        message text NOT NULL,
        trigger_name text,
        table_name text,
        row_id bigint,
        change_id bigint,
        created_at bigint NOT NULL
    );
    CREATE INDEX herald_script_failures_by_time ON {schema}.herald_script_failures(created_at);

    -- The capture: one trigger per tracked table calls this for every row inserted, updated or
    -- deleted, inside the writer's transaction. SECURITY DEFINER: it runs as herald's role, so an
    -- application role with no right on herald's schema still has its changes logged; its
    -- search_path is fixed, so nothing the writer's session sets can redirect it. `to_jsonb` of
    -- the whole row names no column, so the application's ALTER TABLE is never blocked and the
    -- next change carries the new columns. The row's id comes from the key column named when the
    -- trigger was made, or the table's primary key as it is now (after a rename); a key that is
    -- not an integer is logged as NULL, reported by the reader and passed over: the trigger never
    -- makes the application's write fail.
    CREATE FUNCTION {schema}.herald_track() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $track$
    DECLARE
        new_row jsonb;
        old_row jsonb;
        key_text text;
        key_column text := TG_ARGV[1];
    BEGIN
        IF TG_OP = 'DELETE' THEN
            new_row := to_jsonb(OLD);
        ELSE
            new_row := to_jsonb(NEW);
            IF TG_OP = 'UPDATE' THEN
                old_row := to_jsonb(OLD);
            END IF;
        END IF;
        key_text := new_row ->> key_column;
        IF key_text IS NULL THEN
            SELECT a.attname INTO key_column
            FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = TG_RELID AND i.indisprimary AND i.indnatts = 1;
            key_text := new_row ->> key_column;
        END IF;
        INSERT INTO {schema}.herald_changes (table_name, row_id, action, row_json, old_row_json)
        VALUES (
            TG_ARGV[0],
            CASE WHEN key_text ~ '^-?[0-9]{1,18}$' THEN key_text::bigint END,
            CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'UPDATE' THEN 2 ELSE 3 END,
            new_row,
            old_row
        );
        PERFORM pg_notify('{channel}', '');
        RETURN NULL;
    END
    $track$;
    "#,
    // 2: the herald processes of the database (each one's heartbeat, script set, whether it
    // consumes the change log), and the leases each holds by hook, so that a hook's deliveries are
    // held by one process at a time (its `max_in_flight_per_hook` then holds for all of them).
    r#"
    CREATE TABLE {schema}.herald_nodes (
        name text PRIMARY KEY,
        started_at bigint NOT NULL,
        heartbeat_at bigint NOT NULL,
        script_set text NOT NULL,
        consumer boolean NOT NULL DEFAULT false,
        version text NOT NULL
    );
    CREATE INDEX herald_deliveries_leased ON {schema}.herald_deliveries(hook_id, leased_by)
        WHERE status = 'delivering';
    "#,
    // 3: the admin pages' sessions (by their cookie's hash) and failed sign-ins by address, shared
    // by the nodes: a session begun on one is used on any, and wrong tokens count on all together.
    r#"
    CREATE TABLE {schema}.herald_sessions (
        id_hash text PRIMARY KEY,
        csrf text NOT NULL,
        created_at bigint NOT NULL,
        last_used_at bigint NOT NULL,
        flash text
    );
    CREATE INDEX herald_sessions_last_used ON {schema}.herald_sessions(last_used_at);
    CREATE TABLE {schema}.herald_sign_in_failures (
        address text PRIMARY KEY,
        restored_at bigint NOT NULL,
        blocked_until bigint NOT NULL
    );
    "#,
    // 4: REST-hooks subscriptions herald removed itself (the target answered 410), so that the
    // integration's later unsubscribe is acknowledged rather than answered 404.
    r#"
    CREATE TABLE {schema}.herald_gone_subscriptions (
        id text PRIMARY KEY,
        made_by text,
        gone_at bigint NOT NULL
    );
    "#,
    // 5: a hook's filter (a rhai expression over the payload) and how many events it kept from
    // the hook; a delivery held because the filter failed on its event, with the error.
    r#"
    ALTER TABLE {schema}.herald_hooks ADD COLUMN filter text;
    ALTER TABLE {schema}.herald_hooks ADD COLUMN filtered_out bigint NOT NULL DEFAULT 0;
    ALTER TABLE {schema}.herald_deliveries ADD COLUMN filter_error text;
    "#,
    // 6: events sent by hand to try a hook (`POST /api/v1/hooks/{id}/test`), marked as tests.
    r#"
    ALTER TABLE {schema}.herald_events ADD COLUMN test boolean NOT NULL DEFAULT false;
    "#,
    // 7: a hook's rate limit: the most deliveries per second its endpoint takes.
    r#"
    ALTER TABLE {schema}.herald_hooks ADD COLUMN rate_limit_per_second double precision;
    "#,
    // 8: backfills (existing rows queued as events for one hook): their rows in order, their
    // position, and the events they queued.
    r#"
    CREATE TABLE {schema}.herald_backfills (
        id text PRIMARY KEY,
        hook_id text NOT NULL,
        event_name text NOT NULL,
        status text NOT NULL,
        total bigint NOT NULL,
        done bigint NOT NULL,
        failed bigint NOT NULL,
        error text,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
    );
    CREATE INDEX herald_backfills_hook ON {schema}.herald_backfills(hook_id, created_at);
    CREATE TABLE {schema}.herald_backfill_rows (
        backfill_id text NOT NULL,
        position bigint NOT NULL,
        row_id bigint NOT NULL,
        PRIMARY KEY (backfill_id, position)
    );
    ALTER TABLE {schema}.herald_events ADD COLUMN backfill_id text;
    "#,
    // 9: the tables the last sync gave a tracking trigger: one found without it lost it behind
    // herald's back (a rebuild: create, copy, drop, rename), and is reported.
    r#"
    CREATE TABLE {schema}.herald_tracked_tables (
        name text PRIMARY KEY
    );
    "#,
    // 10: no foreign keys on the hot path. Each delivery stored and each attempt recorded paid a
    // key check (a query and a row lock on the referenced row, half of the tracker's transaction
    // on the server); herald writes these rows itself, in order, and retention deletes attempts,
    // deliveries and events explicitly, so the keys checked nothing herald could get wrong.
    r#"
    ALTER TABLE {schema}.herald_deliveries DROP CONSTRAINT IF EXISTS herald_deliveries_event_seq_fkey;
    ALTER TABLE {schema}.herald_attempts DROP CONSTRAINT IF EXISTS herald_attempts_delivery_seq_fkey;
    "#,
    // 11: a hook's waiting deliveries indexed in the order claims take them, `seq` breaking ties.
    // On `(hook_id, next_attempt_at)` alone the claim's `ORDER BY next_attempt_at, seq` needed a
    // sort, so the planner fetched every due delivery of the hook (a bitmap scan) to sort them and
    // lease the first few: a claim's cost grew with the hook's backlog, 9 ms for a hundred
    // deliveries out of 200,000. In this order it reads the few it leases. (SQLite's index ends
    // with the rowid, which is `seq`, so it always had this order.)
    r#"
    CREATE INDEX herald_deliveries_due ON {schema}.herald_deliveries(hook_id, next_attempt_at, seq)
        WHERE next_attempt_at IS NOT NULL;
    DROP INDEX {schema}.herald_deliveries_waiting;
    "#,
];

pub(super) fn migrate(client: &mut Client, schema: &str) -> Result<()> {
    migrate_through(client, schema, MIGRATIONS)
}

fn migrate_through(client: &mut Client, schema: &str, migrations: &[&str]) -> Result<()> {
    let schema_q = quote_ident(schema);
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {schema_q}"))
            .map_err(|e| missing_privilege(schema, &e))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema_q}.herald_migrations (
            version integer PRIMARY KEY,
            applied_at bigint NOT NULL
        )"
    ))
    .map_err(|e| missing_privilege(schema, &e))?;
    let applied: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema_q}.herald_migrations"),
            &[],
        )?
        .get(0);
    if applied as usize > migrations.len() {
        return Err(StoreError::NewerDatabase {
            found: applied.into(),
            known: migrations.len() as i64,
        });
    }
    for (index, sql) in migrations.iter().enumerate() {
        let version = index as i32 + 1;
        if version <= applied {
            continue;
        }
        let sql = sql
            .replace("{schema}", &schema_q)
            .replace("{channel}", &changes_channel(schema));
        tx.batch_execute(&sql).map_err(|e| StoreError::Schema {
            file: format!("herald's migration {version}"),
            message: describe(&e),
        })?;
        tx.execute(
            &format!(
                "INSERT INTO {schema_q}.herald_migrations (version, applied_at) VALUES ($1, $2)"
            ),
            &[&version, &crate::clock::now_ms()],
        )?;
        tracing::info!(version, schema, "applied herald migration");
    }
    tx.commit()?;
    Ok(())
}

/// Every herald process of one database shares one key: the first to start leaves a check value
/// (sealed with its key), and a process with another key refuses to start, before it touches
/// anything sealed (the scripts' role's password, hooks' secrets).
pub(super) fn check_key(client: &mut Client, schema: &str, secrets: &Secrets) -> Result<()> {
    let schema_q = quote_ident(schema);
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATION_LOCK + 2)])?;
    let check: Option<String> = tx
        .query_opt(
            &format!("SELECT value FROM {schema_q}.herald_secrets WHERE name = 'key_check'"),
            &[],
        )?
        .map(|r| r.get(0));
    match check {
        Some(check) => secrets.matches_key_check(&check)?,
        None => {
            if let Some(check) = secrets.key_check() {
                tx.execute(
                    &format!(
                        "INSERT INTO {schema_q}.herald_secrets (name, value) VALUES ('key_check', $1)"
                    ),
                    &[&check],
                )?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// `herald_crm_script` for schema `herald` of database `crm`: letters, digits and `_` only, within
/// PostgreSQL's 63 bytes.
pub(super) fn script_role_name(schema: &str, database: &str) -> String {
    let database: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{schema}_{database}");
    name.truncate(63 - "_script".len());
    name.push_str("_script");
    name
}

fn missing_privilege(schema: &str, error: &postgres::Error) -> StoreError {
    StoreError::Connect(format!(
        "cannot create herald's schema {schema}: {} (see README.md, \"PostgreSQL\", for what a \
         DBA grants first)",
        describe(error)
    ))
}

/// The role scripts log in as, `<schema>_<database>_script` (roles belong to the whole server, so
/// two databases' heralds each have their own): it may log in and read what it is granted (the
/// application's tables, see `grant_reads_to_scripts`), and nothing else: no right on herald's
/// schema, no membership of any role (so `SET ROLE` has nowhere to go), read-only transactions by
/// default. Created on first start, with a random password kept sealed in `herald_secrets`;
/// returns how to log in as it (herald's own connection settings with that user and password).
pub(super) fn script_role(
    client: &mut Client,
    herald_login: &postgres::Config,
    schema: &str,
    secrets: &Secrets,
) -> Result<postgres::Config> {
    let schema_q = quote_ident(schema);
    let mut tx = client.transaction()?;
    let database: String = tx.query_one("SELECT current_database()", &[])?.get(0);
    let role = script_role_name(schema, &database);
    let role_q = quote_ident(&role);
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATION_LOCK + 1)])?;
    let stored: Option<String> = tx
        .query_opt(
            &format!(
                "SELECT value FROM {schema_q}.herald_secrets WHERE name = 'script_role_password'"
            ),
            &[],
        )?
        .map(|r| r.get(0));
    let password = match stored.map(|sealed| secrets.open(&sealed)) {
        Some(Ok(password)) => password,
        // A tool without the key (it runs no script): the role stays as it is.
        Some(Err(crate::store::SecretError::NoKey)) => {
            tx.commit()?;
            let mut login = herald_login.clone();
            login.user(&role);
            return Ok(login);
        }
        Some(Err(_)) => return Err(crate::store::SecretError::NotTheDatabasesKey.into()),
        None => {
            let mut bytes = [0u8; 24];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            tx.execute(
                &format!(
                    "INSERT INTO {schema_q}.herald_secrets (name, value) VALUES ('script_role_password', $1)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                ),
                &[&secrets.seal(&password)],
            )?;
            password
        }
    };
    let exists = tx
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    let made = tx.batch_execute(&format!(
        "{verb} ROLE {role_q} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION \
         NOBYPASSRLS PASSWORD {password}; \
         ALTER ROLE {role_q} SET default_transaction_read_only = on; \
         REVOKE ALL ON SCHEMA {schema_q} FROM {role_q}",
        password = quote_literal(&password),
    ));
    if let Err(e) = made {
        return Err(StoreError::Connect(format!(
            "cannot {} the scripts' read-only role {role}: {} (let herald's role create roles, \
             or create the role yourself and set postgres.script_url; see README.md, \"PostgreSQL\")",
            verb.to_lowercase(),
            describe(&e)
        )));
    }
    tx.batch_execute(&format!(
        "GRANT CONNECT ON DATABASE {} TO {role_q}",
        quote_ident(&database)
    ))?;
    tx.commit()?;
    let mut login = herald_login.clone();
    login.user(&role);
    login.password(password.as_bytes());
    login.application_name("herald scripts");
    Ok(login)
}
