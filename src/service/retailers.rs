//! Retailers: who sells and activates cards, and the commission settlement deducts.

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events;
use crate::domain::{
    Actor, CommissionRate, NewRetailer, PageRows, Retailer, RetailerError, RetailerName,
};
use crate::error::{Classify, Kind};
use crate::store::{AuditRepo, RetailerRepo, Store, StoreError, Tx};

/// Why a retailer was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddRetailerError {
    /// The name or commission was refused.
    #[error(transparent)]
    Invalid(#[from] RetailerError),
    /// Another retailer has this name, or one that looks like it.
    #[error("a retailer named {0}, or one that looks like it, already exists")]
    NameTaken(RetailerName),
    /// The audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for AddRetailerError {
    fn code(&self) -> &'static str {
        match self {
            AddRetailerError::Invalid(e) => e.code(),
            AddRetailerError::NameTaken(_) => "store.duplicate_retailer",
            AddRetailerError::Keys(e) => e.code(),
            AddRetailerError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            AddRetailerError::Invalid(_) => Kind::Invalid,
            AddRetailerError::NameTaken(_) => Kind::Conflict,
            AddRetailerError::Keys(e) => e.kind(),
            AddRetailerError::Store(e) => e.kind(),
        }
    }
}

/// Retailer use cases.
#[derive(Debug)]
pub struct Retailers<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Retailers<'_, S> {
    /// Adds a retailer named `name` with `commission_percent` (such as `2.5`).
    pub async fn add(
        &self,
        name: &str,
        commission_percent: &str,
        actor: &Actor,
    ) -> Result<Retailer, AddRetailerError> {
        let new = NewRetailer {
            name: RetailerName::parse(name)?,
            commission: CommissionRate::parse_percent(commission_percent)?,
        };
        rerun!(self.add_once(&new, actor))
    }

    async fn add_once(
        &self,
        new: &NewRetailer,
        actor: &Actor,
    ) -> Result<Retailer, AddRetailerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let id = tx
            .insert_retailer(new, at)
            .await?
            .ok_or_else(|| AddRetailerError::NameTaken(new.name.clone()))?;
        let retailer = Retailer {
            id,
            name: new.name.clone(),
            commission_bp: new.commission,
            created_at: at,
        };
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::retailer_added(actor, &retailer), at)
            .await?;
        tx.commit().await?;
        Ok(retailer)
    }

    /// Retailers by id, at most `rows`.
    pub async fn list(&self, rows: PageRows) -> Result<Vec<Retailer>, StoreError> {
        self.0.store.read().await?.retailers(rows).await
    }
}
