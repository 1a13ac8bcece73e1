//! The import-trade-ins job: `jobs/import-trade-ins.toml` and a handler over the trade-in service.

use std::sync::Arc;

use serde::Deserialize;

use super::Job;
use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy, Trigger};
use crate::domain::Actor;
use crate::service::tradein::{ImportTradeIns, IntakeError};
use crate::service::{JobPayload, Services};
use crate::store::Store;

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "import-trade-ins.toml",
    builtin: include_str!("../../jobs/import-trade-ins.toml"),
};

/// The job's `[params]`: none yet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportTradeInsParams {}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<ImportTradeInsParams>, DefinitionError> {
    let definition: JobDefinition<ImportTradeInsParams> = SOURCE.load(dir)?;
    if definition.policy.trigger != Trigger::Queue {
        return Err(SOURCE.invalid(
            "import-trade-ins is queued through the outbox; its trigger must be kind = \"queue\"",
        ));
    }
    Ok(definition)
}

/// The job over `services`.
#[derive(Clone)]
pub struct ImportTradeInsJob<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<ImportTradeInsParams>>,
}

impl<S> ImportTradeInsJob<S> {
    /// The job as `definition` says.
    pub fn new(services: Services<S>, definition: JobDefinition<ImportTradeInsParams>) -> Self {
        ImportTradeInsJob {
            services,
            definition: Arc::new(definition),
        }
    }
}

impl<S: Store> Job for ImportTradeInsJob<S> {
    type Args = ImportTradeIns;
    type Error = IntakeError;

    fn policy(&self) -> &JobPolicy {
        &self.definition.policy
    }

    async fn run(&self, args: ImportTradeIns) -> Result<(), IntakeError> {
        let actor = Actor::job(ImportTradeIns::JOB);
        let report = self
            .services
            .trade_ins()
            .import_received(args.file_id, &actor)
            .await?;
        let rows = report.file.rows;
        tracing::info!(
            file = args.file_id,
            state = report.file.state.as_str(),
            rows = rows.total,
            rejected = rows.rejected,
            "trade-in file imported"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_definition_is_valid() {
        let definition = definition(None).unwrap();
        assert_eq!(definition.policy.queue, "tender.import-trade-ins.v1");
    }
}
