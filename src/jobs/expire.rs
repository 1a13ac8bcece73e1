//! The expire duty: `jobs/expire.toml` and a run over the expiry service.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy};
use super::schedule::{Duty, scheduled_definition};
use crate::domain::Actor;
use crate::service::Services;
use crate::service::expiry::{EXPIRY_CHUNK_MAX, ExpiryError};
use crate::store::Store;

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "expire.toml",
    builtin: include_str!("../../jobs/expire.toml"),
};

/// The duty's `[params]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireParams {
    /// Cards per transaction.
    pub chunk_cards: usize,
}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<ExpireParams>, DefinitionError> {
    let definition: JobDefinition<ExpireParams> = scheduled_definition(&SOURCE, dir)?;
    if !(1..=EXPIRY_CHUNK_MAX).contains(&definition.params.chunk_cards) {
        return Err(SOURCE.invalid(format!(
            "params.chunk_cards must be from 1 to {EXPIRY_CHUNK_MAX}"
        )));
    }
    Ok(definition)
}

/// The duty over `services`.
#[derive(Clone)]
pub struct ExpireDuty<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<ExpireParams>>,
}

impl<S> ExpireDuty<S> {
    /// The duty as `definition` says.
    pub fn new(services: Services<S>, definition: JobDefinition<ExpireParams>) -> Self {
        ExpireDuty {
            services,
            definition: Arc::new(definition),
        }
    }
}

impl<S: Store> Duty for ExpireDuty<S> {
    type Error = ExpiryError;

    fn definition(&self) -> (&JobPolicy, &str) {
        (&self.definition.policy, &self.definition.sha)
    }

    async fn run(&self, as_of: DateTime<Utc>) -> Result<serde_json::Value, ExpiryError> {
        let actor = Actor::job("expire");
        let report = self
            .services
            .expiry()
            .run(as_of, self.definition.params.chunk_cards, &actor)
            .await?;
        Ok(serde_json::to_value(report).expect("reports serialise to JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CatchUp;

    #[test]
    fn the_builtin_definition_is_a_nightly_schedule_that_catches_up_once() {
        let definition = definition(None).unwrap();
        let (_, catch_up) = definition.policy.schedule().unwrap();
        assert_eq!(catch_up, CatchUp::Latest);
        assert_eq!(definition.sha.len(), 64);
    }
}
