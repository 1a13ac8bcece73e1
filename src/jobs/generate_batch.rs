//! The generation job: `jobs/generate-batch.toml` and a handler over the generation service.

use std::sync::Arc;

use serde::Deserialize;

use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy, Trigger};
use super::{Job, ProgressFn};
use crate::codegen::CodeGenerator;
use crate::domain::{Actor, BatchId};
use crate::service::generation::{GenerateBatch, GenerateError};
use crate::service::{JobPayload, Services};
use crate::store::Store;

/// Largest chunk a generation job may use: bounds the memory one chunk holds.
pub const CHUNK_CARDS_MAX: usize = 100_000;

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "generate-batch.toml",
    builtin: include_str!("../../jobs/generate-batch.toml"),
};

/// The job's `[params]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBatchParams {
    /// Cards per transaction.
    pub chunk_cards: usize,
}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<GenerateBatchParams>, DefinitionError> {
    let definition: JobDefinition<GenerateBatchParams> = SOURCE.load(dir)?;
    if !(1..=CHUNK_CARDS_MAX).contains(&definition.params.chunk_cards) {
        return Err(SOURCE.invalid(format!(
            "params.chunk_cards must be from 1 to {CHUNK_CARDS_MAX}"
        )));
    }
    if definition.policy.trigger != Trigger::Queue {
        return Err(SOURCE.invalid(
            "generate-batch is queued by batch requests; its trigger must be kind = \"queue\"",
        ));
    }
    Ok(definition)
}

/// The generation job over `services`.
#[derive(Clone)]
pub struct GenerateBatchJob<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<GenerateBatchParams>>,
    progress: ProgressFn,
}

impl<S> GenerateBatchJob<S> {
    /// The job as `definition` says, showing progress through `progress`.
    pub fn new(
        services: Services<S>,
        definition: JobDefinition<GenerateBatchParams>,
        progress: ProgressFn,
    ) -> Self {
        GenerateBatchJob {
            services,
            definition: Arc::new(definition),
            progress,
        }
    }
}

impl<S: Store> Job for GenerateBatchJob<S> {
    type Args = GenerateBatch;
    type Error = GenerateError;

    fn policy(&self) -> &JobPolicy {
        &self.definition.policy
    }

    async fn run(&self, args: GenerateBatch) -> Result<(), GenerateError> {
        let id = BatchId(args.batch_id);
        tracing::info!(batch = %id, "generating batch");
        let mut source = CodeGenerator::from_os_rng();
        let batch = self
            .services
            .generation()
            .generate(
                id,
                &mut source,
                self.definition.params.chunk_cards,
                // The job's own name, so the trail says `job:generate-batch`.
                &Actor::job(GenerateBatch::JOB),
                &*self.progress,
            )
            .await?;
        tracing::info!(batch = %id, cards = batch.generated, collisions = batch.collisions, "batch completed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_definition_is_valid() {
        let definition = definition(None).unwrap();
        assert_eq!(definition.policy.queue, "tender.generate-batch.v1");
        assert_eq!(definition.params.chunk_cards, 50_000);
    }

    #[test]
    fn a_definition_in_the_jobs_dir_takes_the_place_of_the_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let text = SOURCE
            .builtin
            .replace("chunk_cards = 50000", "chunk_cards = 77");
        std::fs::write(dir.path().join(SOURCE.file), text).unwrap();
        assert_eq!(definition(Some(dir.path())).unwrap().params.chunk_cards, 77);
    }

    #[test]
    fn an_unknown_key_bad_params_or_a_bad_schedule_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOURCE.file);
        let load = |text: String| {
            std::fs::write(&path, text).unwrap();
            definition(Some(dir.path())).unwrap_err().to_string()
        };
        assert!(load(format!("surprise = 1\n{}", SOURCE.builtin)).contains("surprise"));
        assert!(
            load(
                SOURCE
                    .builtin
                    .replace("chunk_cards = 50000", "chunk_cards = 0")
            )
            .contains("chunk_cards must be from 1 to 100000")
        );
        assert!(
            load(
                SOURCE
                    .builtin
                    .replace("chunk_cards = 50000", "chunk_cards = 1\nextra = 2")
            )
            .contains("params")
        );
        let cron = |schedule: &str| {
            SOURCE
                .builtin
                .replace("queue = \"tender.generate-batch.v1\"", "")
                .replace(
                    "kind = \"queue\"",
                    &format!(
                        "kind = \"cron\"\nschedule = \"{schedule}\"\ntimezone = \"Europe/Berlin\"\ncatch_up = \"latest\""
                    ),
                )
        };
        assert!(load(cron("0 2 * * *")).contains("six fields"));
        let with_queue = format!("queue = \"q.v1\"\n{}", cron("0 0 2 * * *"));
        assert!(load(with_queue).contains("remove queue"));
        let cron = cron("0 0 2 * * *");
        assert!(load(cron).contains("its trigger must be kind = \"queue\""));
    }
}
