//! The `herald` binary: command line, configuration, logging, signals; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::{CommandLine, Config};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Webhook trigger runtime for applications on SQLite or PostgreSQL"
)]
struct Cli {
    /// The database: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, global = true, env = "HERALD_DB")]
    db: Option<String>,
    /// The folder of scripts (GetWebhookResponseBody_*.rhai, SysNotification_*_ParseForEach.rhai, schema.sql).
    #[arg(long, global = true, env = "HERALD_SCRIPTS")]
    scripts: Option<PathBuf>,
    /// The address the HTTP API listens on.
    #[arg(long, global = true, env = "HERALD_LISTEN")]
    listen: Option<String>,
    /// A TOML file of settings (see README.md).
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs everything: datatracking, triggers, delivery worker and HTTP API.
    Serve,
    /// Compiles every script; prints file:line:col: message per error; exits 1 on any error.
    Check,
    /// Prints the sample payloads perform-list would return for a trigger; delivers nothing.
    Sample {
        /// The trigger whose body script gives the samples.
        trigger: String,
        /// The most samples to print.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Runs the application's schema migration FILE.sql and remakes herald's tracking triggers for
    /// the tables as it leaves them, in one transaction (no change is lost, none blocks it).
    Migrate {
        /// The application's migration: SQL statements, without BEGIN and COMMIT.
        file: std::path::PathBuf,
        /// Changes nothing: prints the SQL a migration tool runs before and after FILE.sql, in
        /// its transaction, to the same effect.
        #[arg(long)]
        print_triggers: bool,
    },
    /// Queues existing rows as events of TRIGGER for one hook (a backfill), and follows its
    /// progress; a running `herald serve` on the same database sends them.
    Backfill {
        /// The hook (`hook_...`) that receives them; it must select the trigger.
        hook_id: String,
        /// The trigger whose body script renders each row.
        trigger: String,
        /// A read-only query whose first column is the row ids, in the order to send them.
        #[arg(long, conflicts_with = "row_ids", required_unless_present = "row_ids")]
        query: Option<String>,
        /// The row ids, comma-separated, in the order to send them.
        #[arg(long, value_delimiter = ',')]
        row_ids: Option<Vec<i64>>,
        /// Starts it and returns at once instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Fires a trigger by hand for one row.
    Fire {
        /// The trigger: the suffix of a GetWebhookResponseBody_<Trigger>.rhai (NewOpportunity).
        trigger: String,
        /// The id of the row the body script builds the payload from (`row_id` in the script).
        row_id: i64,
        /// Prints the payload and delivers nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON lines for log collectors; every field (hook_id, delivery_seq, change_id...) is a key.
    match std::env::var("HERALD_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().flatten_event(true).init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            tracing::warn!("HERALD_LOG_FORMAT={other} is not json or text; writing text");
        }
    }
    let config = match Config::load(&CommandLine {
        db: cli.db,
        scripts: cli.scripts,
        listen: cli.listen,
        config: cli.config,
    }) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let result = match cli.command {
        Command::Serve => serve(config),
        Command::Check => herald::commands::check(&config, &mut stdout).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Fire {
            trigger,
            row_id,
            dry_run,
        } => herald::commands::fire(&config, &trigger, row_id, dry_run, &mut stdout)
            .map(|()| ExitCode::SUCCESS),
        Command::Backfill {
            hook_id,
            trigger,
            query,
            row_ids,
            no_wait,
        } => {
            let rows = match (query, row_ids) {
                (Some(query), _) => herald::backfill::BackfillRows::Query(query),
                (None, ids) => herald::backfill::BackfillRows::Ids(ids.unwrap_or_default()),
            };
            herald::commands::backfill(&config, &hook_id, &trigger, rows, !no_wait, &mut stdout)
                .map(|done| {
                    if done {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                })
        }
        Command::Migrate {
            file,
            print_triggers,
        } => herald::commands::migrate(&config, &file, print_triggers, &mut stdout)
            .map(|()| ExitCode::SUCCESS),
        Command::Sample { trigger, limit } => {
            herald::commands::sample(&config, &trigger, limit, &mut stdout)
                .map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("herald: {e:#}");
        ExitCode::FAILURE
    })
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        herald::serve(config, listener, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
