//! `tender work` and `tender jobs …`

use chrono::SecondsFormat;
use clap::Subcommand;

use super::output::{print_table, progress_bars, show};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::PageRows;
use crate::jobs::{Catalog, RunMode, status};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum JobsCommand {
    /// List jobs with their state and last result.
    List {
        /// Most jobs to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// List scheduled runs, newest first: job, period, status, attempts, start, duration,
    /// totals and error.
    Runs {
        /// Only this job's runs (seal-audit, purge, expire).
        #[arg(long)]
        job: Option<String>,
        /// Most runs to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

/// Runs every job's workers and the outbox relay.
pub(super) async fn work<S: Store>(app: &App<S>, drain: bool) -> Result<(), CliError> {
    let mode = if drain {
        RunMode::Drain
    } else {
        RunMode::UntilSignal
    };
    let catalog = Catalog::load(app.settings().jobs_dir())?;
    catalog.runtime(app, progress_bars()).run(mode).await?;
    Ok(())
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: JobsCommand,
) -> Result<(), CliError> {
    match command {
        JobsCommand::List { limit } => {
            let jobs = status::recent(&app.store().db_pool(), PageRows::new(limit)?).await?;
            show(ctx.format, &jobs, |js| {
                print_table(
                    &["id", "queue", "status", "attempts", "last result"],
                    js.iter().map(|j| {
                        vec![
                            j.id.clone(),
                            j.queue.clone(),
                            j.status.clone(),
                            format!("{}/{}", j.attempts, j.max_attempts),
                            j.last_result.clone().unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
        JobsCommand::Runs { job, limit } => {
            let runs = app
                .services()
                .schedules()
                .runs(job.as_deref(), PageRows::new(limit)?)
                .await?;
            show(ctx.format, &runs, |rs| {
                print_table(
                    &[
                        "job",
                        "period",
                        "status",
                        "attempts",
                        "started",
                        "took",
                        "definition",
                        "totals",
                        "error",
                    ],
                    rs.iter().map(|r| {
                        vec![
                            r.job.clone(),
                            r.period.to_rfc3339_opts(SecondsFormat::Secs, true),
                            r.status.clone(),
                            r.attempts.to_string(),
                            r.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                            r.duration_ms
                                .map(|ms| format!("{ms} ms"))
                                .unwrap_or_default(),
                            r.definition.clone(),
                            r.totals
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            r.error.clone().unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
    }
}
