//! Jobs: their definitions (the TOML files under `jobs/`), the outbox relay that queues them,
//! and the runtime (apalis) that runs them. One file per job: its parameters and a handler
//! that calls one service.
//!
//! apalis delivers a job at least once: a job may run again after a crash, a lost heartbeat or
//! a shutdown. Every handler is therefore idempotent through its own database transaction.

pub mod definitions;
pub mod expire;
pub mod generate_batch;
pub mod import_trade_ins;
pub mod post_trade_ins;
pub mod purge;
mod queue;
pub mod relay;
pub mod runtime;
pub mod schedule;
pub mod seal_audit;
pub mod settle;
pub mod status;

pub use queue::{QueueError, Route};
pub use runtime::{RunMode, Runtime, RuntimeError};

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use crate::app::App;
use crate::domain::Batch;
use crate::error::Classify;
use crate::keys::SealKey;
use crate::service::JobPayload;
use crate::store::Store;
use definitions::{DefinitionError, JobDefinition, JobPolicy};
use expire::{ExpireDuty, ExpireParams};
use generate_batch::{GenerateBatchJob, GenerateBatchParams};
use import_trade_ins::{ImportTradeInsJob, ImportTradeInsParams};
use post_trade_ins::{PostTradeInsJob, PostTradeInsParams};
use purge::{PurgeDuty, PurgeParams};
use seal_audit::{SealAuditDuty, SealAuditParams};
use settle::{SettleDuty, SettleOutputs, SettleParams};

/// A job the runtime can run.
pub trait Job: Clone + Send + Sync + 'static {
    /// Its payload; its name ties outbox rows to this job.
    type Args: JobPayload + Clone + Send + Sync + Unpin + 'static;
    /// Why a run fails; a transient failure is retried, any other ends the task.
    type Error: Classify + std::error::Error + Send + Sync + 'static;

    /// Its queue, trigger and policies.
    fn policy(&self) -> &JobPolicy;

    /// Runs one task.
    fn run(&self, args: Self::Args) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Shows a batch's progress (a progress bar on a terminal, nothing elsewhere).
pub type ProgressFn = Arc<dyn Fn(&Batch) + Send + Sync>;

/// Every job tender runs: the one list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Batch generation.
    pub generate_batch: JobDefinition<GenerateBatchParams>,
    /// Trade-in file imports.
    pub import_trade_ins: JobDefinition<ImportTradeInsParams>,
    /// Trade-in postings.
    pub post_trade_ins: JobDefinition<PostTradeInsParams>,
    /// The nightly audit seal.
    pub seal_audit: JobDefinition<SealAuditParams>,
    /// The nightly purge.
    pub purge: JobDefinition<PurgeParams>,
    /// The nightly expiry.
    pub expire: JobDefinition<ExpireParams>,
    /// The nightly settlement.
    pub settle: JobDefinition<SettleParams>,
}

impl Catalog {
    /// Loads every definition from `dir` where it has the file, else the built-in one.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, DefinitionError> {
        Ok(Catalog {
            generate_batch: generate_batch::definition(dir)?,
            import_trade_ins: import_trade_ins::definition(dir)?,
            post_trade_ins: post_trade_ins::definition(dir)?,
            seal_audit: seal_audit::definition(dir)?,
            purge: purge::definition(dir)?,
            expire: expire::definition(dir)?,
            settle: settle::definition(dir)?,
        })
    }

    /// A runtime for `app` running every job and every duty this process can run (the seal
    /// and settlement only where the seal key is), showing generation progress through `progress`.
    pub fn runtime<S: Store>(&self, app: &App<S>, progress: ProgressFn) -> Runtime<S> {
        let services = app.services();
        let settings = app.settings();
        let mut runtime = Runtime::new(services.store().clone(), services.clock().clone())
            .with_job(GenerateBatchJob::new(
                services.clone(),
                self.generate_batch.clone(),
                progress,
            ))
            .with_job(ImportTradeInsJob::new(
                services.clone(),
                self.import_trade_ins.clone(),
            ))
            .with_job(PostTradeInsJob::new(
                services.clone(),
                self.post_trade_ins.clone(),
            ))
            .with_duty(
                services.clone(),
                ExpireDuty::new(services.clone(), self.expire.clone()),
            )
            .with_duty(
                services.clone(),
                PurgeDuty::new(
                    services.clone(),
                    self.purge.clone(),
                    settings.finished_jobs_keep.get(),
                ),
            );
        // Each duty holds its own copy of the key, read from the same place.
        match SealKey::load(&settings.key_dir())
            .and_then(|key| SealKey::load(&settings.key_dir()).map(|again| (key, again)))
        {
            Ok((key, again)) => {
                let settle = SettleDuty::new(
                    services.clone(),
                    self.settle.clone(),
                    SettleOutputs {
                        key: Arc::new(again),
                        witness: settings.witness_file(),
                        report_dir: settings.report_dir(),
                    },
                );
                let duty = SealAuditDuty::new(
                    services.clone(),
                    self.seal_audit.clone(),
                    key,
                    settings.witness_file(),
                );
                runtime = runtime
                    .with_duty(services.clone(), duty)
                    .with_duty(services.clone(), settle);
            }
            Err(error) => tracing::info!(
                code = error.code(),
                "no seal key here: this process never claims seal-audit or settle"
            ),
        }
        runtime
    }
}
