//! The post-trade-ins job: `jobs/post-trade-ins.toml` and a handler over the trade-in service.

use std::sync::Arc;

use serde::Deserialize;

use super::Job;
use super::definitions::{DefinitionError, DefinitionSource, JobDefinition, JobPolicy, Trigger};
use crate::domain::Actor;
use crate::service::tradein::{IntakeError, PostTradeIns};
use crate::service::{JobPayload, Services};
use crate::store::Store;

/// The definition's file, and its compiled-in copy.
pub const SOURCE: DefinitionSource = DefinitionSource {
    file: "post-trade-ins.toml",
    builtin: include_str!("../../jobs/post-trade-ins.toml"),
};

/// The job's `[params]`: none yet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostTradeInsParams {}

/// Loads and checks the definition.
pub fn definition(
    dir: Option<&std::path::Path>,
) -> Result<JobDefinition<PostTradeInsParams>, DefinitionError> {
    let definition: JobDefinition<PostTradeInsParams> = SOURCE.load(dir)?;
    if definition.policy.trigger != Trigger::Queue {
        return Err(SOURCE.invalid(
            "post-trade-ins is queued through the outbox; its trigger must be kind = \"queue\"",
        ));
    }
    Ok(definition)
}

/// The job over `services`.
#[derive(Clone)]
pub struct PostTradeInsJob<S> {
    services: Services<S>,
    definition: Arc<JobDefinition<PostTradeInsParams>>,
}

impl<S> PostTradeInsJob<S> {
    /// The job as `definition` says.
    pub fn new(services: Services<S>, definition: JobDefinition<PostTradeInsParams>) -> Self {
        PostTradeInsJob {
            services,
            definition: Arc::new(definition),
        }
    }
}

impl<S: Store> Job for PostTradeInsJob<S> {
    type Args = PostTradeIns;
    type Error = IntakeError;

    fn policy(&self) -> &JobPolicy {
        &self.definition.policy
    }

    async fn run(&self, args: PostTradeIns) -> Result<(), IntakeError> {
        let actor = Actor::job(PostTradeIns::JOB);
        let run = self.services.trade_ins().post_queued(&actor).await?;
        tracing::info!(file = ?args.file_id, posted = run.posted, held = run.held, "trade-ins posted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_definition_is_valid() {
        let definition = definition(None).unwrap();
        assert_eq!(definition.policy.queue, "tender.post-trade-ins.v1");
    }
}
