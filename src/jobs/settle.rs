//! The settle duty: `jobs/settle.toml` and a run over the settlement service. Only a process
//! that holds the seal key runs it (the reports are signed and the trail sealed with it).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy};
use super::schedule::{Duty, scheduled_definition};
use crate::domain::Actor;
use crate::keys::SealKey;
use crate::service::Services;
use crate::service::settlement::SettleError;
use crate::store::Store;

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "settle.toml",
    builtin: include_str!("../../jobs/settle.toml"),
};

/// The duty's `[params]`: none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleParams {}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<SettleParams>, DefinitionError> {
    scheduled_definition(&SOURCE, dir)
}

/// Where a settle run signs, witnesses and writes.
#[derive(Debug, Clone)]
pub struct SettleOutputs {
    /// The seal key: signs the manifest and the audit seal.
    pub key: Arc<SealKey>,
    /// This host's witness file.
    pub witness: PathBuf,
    /// The report directory.
    pub report_dir: PathBuf,
}

/// The duty over `services`.
#[derive(Clone)]
pub struct SettleDuty<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<SettleParams>>,
    outputs: SettleOutputs,
}

impl<S> SettleDuty<S> {
    /// The duty as `definition` says.
    pub fn new(
        services: Services<S>,
        definition: JobDefinition<SettleParams>,
        outputs: SettleOutputs,
    ) -> Self {
        SettleDuty {
            services,
            definition: Arc::new(definition),
            outputs,
        }
    }
}

impl<S: Store> Duty for SettleDuty<S> {
    type Error = SettleError;

    fn definition(&self) -> (&JobPolicy, &str) {
        (&self.definition.policy, &self.definition.sha)
    }

    /// Closes the latest day closable as of the period's tick; a closed day is rerun, which
    /// must give the same bytes.
    async fn run(&self, as_of: DateTime<Utc>) -> Result<serde_json::Value, SettleError> {
        let settlement = self.services.settlement();
        let Some(date) = settlement.closable_as_of(as_of) else {
            return Ok(serde_json::json!({ "closed": null }));
        };
        let settled = settlement
            .settle(
                date,
                &self.outputs.key,
                &self.outputs.witness,
                &self.outputs.report_dir,
                &Actor::job("settle"),
            )
            .await?;
        Ok(serde_json::json!({
            "business_date": settled.date,
            "closed_now": settled.closed_now,
            "seal_id": settled.seal_id,
            "files": settled.files.len(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CatchUp;

    #[test]
    fn the_builtin_definition_closes_every_missed_day() {
        let definition = definition(None).unwrap();
        let (_, catch_up) = definition.policy.schedule().unwrap();
        assert_eq!(catch_up, CatchUp::Each);
    }
}
