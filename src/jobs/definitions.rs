//! Job definitions: the TOML files under `jobs/` that an operator reads and edits. They are
//! compiled in as defaults; `--jobs-dir` points at a folder whose files take their place. The
//! common policy is typed here; each job types its own `[params]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::domain::{CatchUp, Schedule};
use crate::error::{Classify, Kind};

/// Most jobs of one kind a process runs at once: more only queues on the database's locks.
pub const CONCURRENCY_MAX: usize = 64;

/// Why job definitions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The file could not be read.
    #[error("job definition {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid definition.
    #[error("job definition {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Classify for DefinitionError {
    fn code(&self) -> &'static str {
        match self {
            DefinitionError::Io { .. } => "jobs.definition_io",
            DefinitionError::Invalid { .. } => "jobs.definition_invalid",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// What starts a job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A command or another job queues it.
    Queue,
    /// A schedule: six-field cron (seconds first) on the wall clock of an IANA time zone.
    /// Runners claim each period in the database, so it runs once however many there are.
    Cron {
        /// For example `0 30 1 * * *` (01:30:00 every day).
        schedule: String,
        /// For example `America/New_York`.
        timezone: String,
        /// Periods missed while no runner was up: `each` runs every one, oldest first;
        /// `latest` runs once, as of now.
        catch_up: CatchUp,
    },
}

/// How a job runs: concurrency, attempts, retries and timeout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPolicy {
    /// Jobs of this kind one process runs at once.
    pub concurrency: usize,
    /// Seconds before a run is cancelled.
    pub timeout_secs: u64,
    /// Runs allowed in all, counting restarts after a crash.
    pub max_attempts: u32,
    /// Retries inside one run after a transient failure.
    pub retries: usize,
    /// First wait before a retry, in milliseconds.
    pub backoff_min_ms: u64,
    /// Longest wait before a retry, in milliseconds.
    pub backoff_max_ms: u64,
}

impl JobPolicy {
    /// The schedule and catch-up rule of a cron-triggered job, parsed (load checked them).
    pub fn schedule(&self) -> Option<(Schedule, CatchUp)> {
        match &self.trigger {
            Trigger::Queue => None,
            Trigger::Cron {
                schedule,
                timezone,
                catch_up,
            } => Schedule::parse(schedule, timezone)
                .ok()
                .map(|parsed| (parsed, *catch_up)),
        }
    }
}

impl RunPolicy {
    /// The run timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// How a worker polls and shows it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPolicy {
    /// Milliseconds between polls of an idle worker.
    pub poll_interval_ms: u64,
    /// Seconds between heartbeats.
    pub heartbeat_secs: u64,
    /// Heartbeats missed before a worker is presumed dead.
    pub missed_heartbeats: u32,
}

/// What every job definition says, whatever the job: its name, queue, trigger and policies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPolicy {
    /// The job's name, which is also its file name.
    pub name: String,
    /// One line for operators.
    pub description: String,
    /// The queue its jobs wait in (a queued job's; a scheduled job has none).
    #[serde(default)]
    pub queue: String,
    /// What starts it.
    pub trigger: Trigger,
    /// How it runs.
    pub run: RunPolicy,
    /// How its workers poll.
    pub worker: WorkerPolicy,
}

/// One job definition file: the common policy, and the job's own `[params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefinition<P> {
    /// What every definition says.
    pub policy: JobPolicy,
    /// The job's own parameters, typed by the job that owns them.
    pub params: P,
    /// The hex SHA-256 of the file's bytes: which definition a runner runs, recorded with
    /// each period it claims.
    pub sha: String,
}

/// A definition's source: its file name under the jobs directory, and the built-in text.
#[derive(Debug, Clone, Copy)]
pub struct DefinitionSource {
    /// `<name>.toml`.
    pub file: &'static str,
    /// The compiled-in copy of `jobs/<name>.toml`.
    pub builtin: &'static str,
}

impl DefinitionSource {
    /// Loads the definition from `dir` where it has the file, else the built-in one; checks
    /// the common policy, and leaves `[params]` to the job.
    pub fn load<P: DeserializeOwned>(
        &self,
        dir: Option<&Path>,
    ) -> Result<JobDefinition<P>, DefinitionError> {
        let (text, label) = match dir.map(|d| d.join(self.file)).filter(|p| p.exists()) {
            Some(path) => (
                std::fs::read_to_string(&path).map_err(|source| DefinitionError::Io {
                    path: path.clone(),
                    source,
                })?,
                path.display().to_string(),
            ),
            None => (
                self.builtin.to_string(),
                format!("(built-in) {}", self.file),
            ),
        };
        let invalid = |reason: String| DefinitionError::Invalid {
            path: label.clone(),
            reason,
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| invalid(e.message().to_string()))?;
        let params = table
            .remove("params")
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        let policy: JobPolicy = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_string()))?;
        let params: P = params
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("params: {}", e.message())))?;
        validate(&policy).map_err(invalid)?;
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(JobDefinition {
            policy,
            params,
            sha,
        })
    }

    /// The error for a definition whose `[params]` or trigger its job refuses.
    pub fn invalid(&self, reason: impl Into<String>) -> DefinitionError {
        DefinitionError::Invalid {
            path: self.file.into(),
            reason: reason.into(),
        }
    }
}

fn validate(d: &JobPolicy) -> Result<(), String> {
    match &d.trigger {
        Trigger::Queue if d.queue.trim().is_empty() => {
            return Err("a queued job needs a queue".into());
        }
        Trigger::Cron { .. } if !d.queue.is_empty() => {
            return Err(
                "a scheduled job runs in the scheduler, not from a queue: remove queue".into(),
            );
        }
        _ => {}
    }
    if !(1..=CONCURRENCY_MAX).contains(&d.run.concurrency) {
        return Err(format!(
            "run.concurrency must be from 1 to {CONCURRENCY_MAX}"
        ));
    }
    if d.run.max_attempts == 0 {
        return Err("run.max_attempts must be at least 1".into());
    }
    if d.run.timeout_secs == 0 {
        return Err("run.timeout_secs must be at least 1".into());
    }
    if d.run.backoff_min_ms == 0 || d.run.backoff_min_ms > d.run.backoff_max_ms {
        return Err("run.backoff_min_ms must be at least 1 and at most run.backoff_max_ms".into());
    }
    if d.worker.poll_interval_ms == 0
        || d.worker.heartbeat_secs == 0
        || d.worker.missed_heartbeats == 0
    {
        return Err("worker intervals must be at least 1".into());
    }
    if let Trigger::Cron {
        schedule, timezone, ..
    } = &d.trigger
    {
        Schedule::parse(schedule, timezone).map_err(|e| format!("trigger: {e}"))?;
    }
    Ok(())
}
