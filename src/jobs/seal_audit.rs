//! The seal-audit duty: `jobs/seal-audit.toml` and a run over the trail service. Only a process
//! that holds the seal key runs it (the catalog adds it only then), so no other ever claims it.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy};
use super::schedule::{Duty, scheduled_definition};
use crate::keys::SealKey;
use crate::service::Services;
use crate::service::trail::TrailError;
use crate::store::Store;

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "seal-audit.toml",
    builtin: include_str!("../../jobs/seal-audit.toml"),
};

/// The duty's `[params]`: none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealAuditParams {}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<SealAuditParams>, DefinitionError> {
    scheduled_definition(&SOURCE, dir)
}

/// The duty over `services`, sealing under `key` and witnessing in `witness`.
#[derive(Clone)]
pub struct SealAuditDuty<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<SealAuditParams>>,
    key: Arc<SealKey>,
    witness: PathBuf,
}

impl<S> SealAuditDuty<S> {
    /// The duty as `definition` says.
    pub fn new(
        services: Services<S>,
        definition: JobDefinition<SealAuditParams>,
        key: SealKey,
        witness: PathBuf,
    ) -> Self {
        SealAuditDuty {
            services,
            definition: Arc::new(definition),
            key: Arc::new(key),
            witness,
        }
    }
}

impl<S: Store> Duty for SealAuditDuty<S> {
    type Error = TrailError;

    fn definition(&self) -> (&JobPolicy, &str) {
        (&self.definition.policy, &self.definition.sha)
    }

    /// Seals as of now whatever the period: a seal covers every record before it.
    async fn run(&self, _as_of: DateTime<Utc>) -> Result<serde_json::Value, TrailError> {
        let sealed = self.services.trail().seal(&self.key, &self.witness).await?;
        Ok(json!({
            "seal_id": sealed.seal.seal_id,
            "records": sealed.seal.heads.iter().map(|h| h.seq).sum::<i64>(),
            "new_records": sealed.new_records,
        }))
    }
}
