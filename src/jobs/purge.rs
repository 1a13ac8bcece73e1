//! The purge duty: `jobs/purge.toml` and a run over the idempotency, trade-in and sign-in
//! services and the job runner's own table.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy};
use super::schedule::{Duty, scheduled_definition};
use super::status;
use crate::error::{Classify, Kind};
use crate::service::Services;
use crate::service::idempotency::{IdempotencyError, PurgeAge};
use crate::service::sessions::SessionError;
use crate::service::tradein::IntakeError;
use crate::store::{Store, StoreError};

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "purge.toml",
    builtin: include_str!("../../jobs/purge.toml"),
};

/// The duty's `[params]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeParams {
    /// How old an idempotency record must be to go, as `tender idempotency purge` takes it.
    pub idempotency_older_than: String,
}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<PurgeParams>, DefinitionError> {
    let definition: JobDefinition<PurgeParams> = scheduled_definition(&SOURCE, dir)?;
    PurgeAge::parse(&definition.params.idempotency_older_than)
        .map_err(|e| SOURCE.invalid(format!("params.idempotency_older_than: {e}")))?;
    Ok(definition)
}

/// Why a purge failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// Purging idempotency records failed.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// Purging trade-in uploads failed.
    #[error(transparent)]
    TradeIn(#[from] IntakeError),
    /// Purging sign-in links and sessions failed.
    #[error(transparent)]
    Sessions(#[from] SessionError),
    /// Purging finished jobs failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for PurgeError {
    fn code(&self) -> &'static str {
        match self {
            PurgeError::Idempotency(e) => e.code(),
            PurgeError::TradeIn(e) => e.code(),
            PurgeError::Sessions(e) => e.code(),
            PurgeError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            PurgeError::Idempotency(e) => e.kind(),
            PurgeError::TradeIn(e) => e.kind(),
            PurgeError::Sessions(e) => e.kind(),
            PurgeError::Store(e) => e.kind(),
        }
    }
}

/// The duty over `services`, keeping finished jobs for `keep_jobs`.
#[derive(Clone)]
pub struct PurgeDuty<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<PurgeParams>>,
    keep_jobs: TimeDelta,
}

impl<S> PurgeDuty<S> {
    /// The duty as `definition` says.
    pub fn new(
        services: Services<S>,
        definition: JobDefinition<PurgeParams>,
        keep_jobs: TimeDelta,
    ) -> Self {
        PurgeDuty {
            services,
            definition: Arc::new(definition),
            keep_jobs,
        }
    }
}

impl<S: Store> Duty for PurgeDuty<S> {
    type Error = PurgeError;

    fn definition(&self) -> (&JobPolicy, &str) {
        (&self.definition.policy, &self.definition.sha)
    }

    /// Ages count back from `as_of`.
    async fn run(&self, as_of: DateTime<Utc>) -> Result<serde_json::Value, PurgeError> {
        let age = PurgeAge::parse(&self.definition.params.idempotency_older_than)?;
        let idempotency = self.services.idempotency().purge(age).await?;
        let pool = self.services.store().db_pool();
        let jobs = status::purge_finished(&pool, as_of - self.keep_jobs).await?;
        let files = self.services.trade_ins().purge_files().await?;
        let sign_ins = self.services.sessions().purge(as_of).await?;
        Ok(json!({
            "idempotency_records": idempotency,
            "finished_jobs": jobs,
            "trade_in_files": files,
            "sign_ins": sign_ins,
        }))
    }
}
