//! Job definitions: the TOML files under `jobs/` that an operator reads and edits. They are
//! compiled in as defaults; `--jobs-dir` points at a folder whose files take their place.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// Largest chunk a generation job may use: bounds the memory one chunk holds.
pub const MAX_CHUNK_CARDS: usize = 100_000;

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

impl DefinitionError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DefinitionError::Io { .. } => "jobs.definition_io",
            DefinitionError::Invalid { .. } => "jobs.definition_invalid",
        }
    }
}

/// What starts a job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A command or another job queues it.
    Queue,
    /// A schedule: six-field cron (seconds first) in an IANA time zone.
    Cron {
        /// For example `0 30 1 * * *` (01:30:00 every day).
        schedule: String,
        /// For example `America/New_York`.
        timezone: String,
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

/// One job definition file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDefinition<P> {
    /// The job's name, which is also its file name.
    pub name: String,
    /// One line for operators.
    pub description: String,
    /// The queue its jobs wait in.
    pub queue: String,
    /// What starts it.
    pub trigger: Trigger,
    /// How it runs.
    pub run: RunPolicy,
    /// How its workers poll.
    pub worker: WorkerPolicy,
    /// The job's own parameters.
    pub params: P,
}

/// Parameters of the batch generation job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBatchParams {
    /// Cards per transaction.
    pub chunk_cards: usize,
}

/// Every job definition tender runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefinitions {
    /// The batch generation job.
    pub generate_batch: JobDefinition<GenerateBatchParams>,
}

const GENERATE_BATCH: (&str, &str) = (
    "generate-batch.toml",
    include_str!("../../jobs/generate-batch.toml"),
);

impl JobDefinitions {
    /// The definitions compiled into the binary.
    pub fn builtin() -> JobDefinitions {
        JobDefinitions::load(None).expect("the compiled-in job definitions are valid")
    }

    /// Loads definitions from `dir` where it has the file, else the compiled-in default.
    pub fn load(dir: Option<&Path>) -> Result<JobDefinitions, DefinitionError> {
        let generate_batch: JobDefinition<GenerateBatchParams> = read(dir, GENERATE_BATCH)?;
        let path = GENERATE_BATCH.0;
        let invalid = |reason: &str| DefinitionError::Invalid {
            path: path.into(),
            reason: reason.into(),
        };
        if !(1..=MAX_CHUNK_CARDS).contains(&generate_batch.params.chunk_cards) {
            return Err(invalid("params.chunk_cards must be from 1 to 100000"));
        }
        if generate_batch.trigger != Trigger::Queue {
            return Err(invalid(
                "generate-batch is queued by batch requests; its trigger must be kind = \"queue\"",
            ));
        }
        Ok(JobDefinitions { generate_batch })
    }

    /// Every queue name, for the runner.
    pub fn queues(&self) -> Vec<String> {
        vec![self.generate_batch.queue.clone()]
    }
}

fn read<P: serde::de::DeserializeOwned>(
    dir: Option<&Path>,
    (file, builtin): (&str, &str),
) -> Result<JobDefinition<P>, DefinitionError> {
    let (text, label) = match dir.map(|d| d.join(file)).filter(|p| p.exists()) {
        Some(path) => (
            std::fs::read_to_string(&path).map_err(|source| DefinitionError::Io {
                path: path.clone(),
                source,
            })?,
            path.display().to_string(),
        ),
        None => (builtin.to_string(), format!("(built-in) {file}")),
    };
    let invalid = |reason: String| DefinitionError::Invalid {
        path: label.clone(),
        reason,
    };
    let definition: JobDefinition<P> =
        toml::from_str(&text).map_err(|e| invalid(e.message().to_string()))?;
    validate_common(&definition).map_err(|reason| invalid(reason.to_string()))?;
    Ok(definition)
}

fn validate_common<P>(d: &JobDefinition<P>) -> Result<(), &'static str> {
    if d.queue.trim().is_empty() {
        return Err("queue must not be empty");
    }
    if d.run.concurrency == 0 || d.run.concurrency > 64 {
        return Err("run.concurrency must be from 1 to 64");
    }
    if d.run.max_attempts == 0 {
        return Err("run.max_attempts must be at least 1");
    }
    if d.run.timeout_secs == 0 {
        return Err("run.timeout_secs must be at least 1");
    }
    if d.run.backoff_min_ms == 0 || d.run.backoff_min_ms > d.run.backoff_max_ms {
        return Err("run.backoff_min_ms must be at least 1 and at most run.backoff_max_ms");
    }
    if d.worker.poll_interval_ms == 0
        || d.worker.heartbeat_secs == 0
        || d.worker.missed_heartbeats == 0
    {
        return Err("worker intervals must be at least 1");
    }
    if let Trigger::Cron { schedule, timezone } = &d.trigger {
        cron::Schedule::from_str(schedule)
            .map_err(|_| "trigger.schedule is not a six-field cron expression (seconds first)")?;
        chrono_tz::Tz::from_str(timezone)
            .map_err(|_| "trigger.timezone is not an IANA time zone")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_definitions_are_valid() {
        let defs = JobDefinitions::builtin();
        assert_eq!(defs.generate_batch.queue, "tender.generate-batch.v1");
        assert_eq!(defs.generate_batch.params.chunk_cards, 50_000);
    }

    #[test]
    fn a_definition_in_the_jobs_dir_takes_the_place_of_the_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let text = GENERATE_BATCH
            .1
            .replace("chunk_cards = 50000", "chunk_cards = 77");
        std::fs::write(dir.path().join(GENERATE_BATCH.0), text).unwrap();
        let defs = JobDefinitions::load(Some(dir.path())).unwrap();
        assert_eq!(defs.generate_batch.params.chunk_cards, 77);
    }

    #[test]
    fn an_unknown_key_or_bad_schedule_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GENERATE_BATCH.0);
        std::fs::write(&path, format!("{}\nsurprise = 1\n", GENERATE_BATCH.1)).unwrap();
        assert!(JobDefinitions::load(Some(dir.path())).is_err());
        let cron = GENERATE_BATCH.1.replace(
            "kind = \"queue\"",
            "kind = \"cron\"\nschedule = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"",
        );
        std::fs::write(&path, cron).unwrap();
        let err = JobDefinitions::load(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("six-field"), "{err}");
    }
}
