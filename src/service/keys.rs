//! Keys as the database knows them: registering a deployment's keys at `init`, checking every
//! process's rings against them, the two-step rotation (add, copy the file to every host,
//! activate), and the signer and digester each transaction uses.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::Services;
use crate::audit::{AuditSigner, events};
use crate::codegen::{CodeDigest, Digester};
use crate::domain::{Actor, Code};
use crate::error::{Classify, Kind};
use crate::keys::{
    KeyError, KeyFileLock, KeyId, KeyNeeds, KeyPurpose, KeyRing, KeyState, Keychain, RecordedKey,
};
use crate::store::{AuditRepo, KeyRepo, Store, StoreError, Tx};

/// The key rings a process loaded: only those its command needs.
#[derive(Debug, Clone, Default)]
pub struct Keychains {
    /// The audit ring, if loaded.
    pub audit: Option<Arc<Keychain>>,
    /// The lookup ring, if loaded.
    pub lookup: Option<Arc<Keychain>>,
}

impl Keychains {
    /// Loads the rings `needs` names from the environment or `key_dir`.
    pub fn load(needs: KeyNeeds, key_dir: &Path) -> Result<Keychains, KeyError> {
        let load = |purpose| -> Result<Option<Arc<Keychain>>, KeyError> {
            needs
                .needs(purpose)
                .then(|| Keychain::load(purpose, key_dir).map(Arc::new))
                .transpose()
        };
        let audit = match load(KeyPurpose::Audit)? {
            None if needs.audit_if_present => match Keychain::load(KeyPurpose::Audit, key_dir) {
                Ok(chain) => Some(Arc::new(chain)),
                Err(KeyError::Missing { .. }) => None,
                Err(e) => return Err(e),
            },
            loaded => loaded,
        };
        Ok(Keychains {
            audit,
            lookup: load(KeyPurpose::Lookup)?,
        })
    }

    fn get(&self, purpose: KeyPurpose) -> Result<&Arc<Keychain>, KeyUseError> {
        match purpose {
            KeyPurpose::Audit => self.audit.as_ref(),
            KeyPurpose::Lookup => self.lookup.as_ref(),
        }
        .ok_or(KeyUseError::NotLoaded(purpose))
    }
}

/// Why a transaction could not get the key it needs.
#[derive(Debug, thiserror::Error)]
pub enum KeyUseError {
    /// The command did not load this ring: a wiring fault.
    #[error("this command did not load the {0} key")]
    NotLoaded(KeyPurpose),
    /// The database names a key this process's ring lacks even after loading it again.
    #[error(
        "this host has no {purpose} key {id}, which the database now uses; copy the key file from the host that added it"
    )]
    Stale {
        /// Which ring.
        purpose: KeyPurpose,
        /// The key it lacks.
        id: KeyId,
    },
    /// No key of the purpose is active: `tender init` never ran here.
    #[error("this database has no active {0} key; run `tender init`")]
    NoActiveKey(KeyPurpose),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for KeyUseError {
    fn code(&self) -> &'static str {
        match self {
            KeyUseError::NotLoaded(_) => "keys.not_loaded",
            KeyUseError::Stale { .. } => "keys.stale_ring",
            KeyUseError::NoActiveKey(_) => "keys.no_active_key",
            KeyUseError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            // The key file may reach this host in a moment: a retry loads the ring again.
            KeyUseError::Stale { .. } => Kind::Transient,
            KeyUseError::NotLoaded(_) | KeyUseError::NoActiveKey(_) => Kind::Internal,
            KeyUseError::Store(e) => e.kind(),
        }
    }
}

impl<S: Store> Services<S> {
    /// The signer for this transaction: the audit key the database names active, read inside
    /// the transaction, so every host tags with the same key from the moment it is activated.
    pub(crate) async fn signer(&self, tx: &mut S::Tx) -> Result<AuditSigner, KeyUseError> {
        let purpose = KeyPurpose::Audit;
        let chain = self.keys.get(purpose)?;
        let id = tx
            .active_key(purpose)
            .await?
            .ok_or(KeyUseError::NoActiveKey(purpose))?;
        let ring = chain
            .ring_holding(&[id])
            .map_err(|id| KeyUseError::Stale { purpose, id })?;
        Ok(AuditSigner::new(ring, id).expect("the ring holds the key"))
    }

    /// Digests under lookup key `current` (a batch's), and under every other key codes were
    /// issued under, as the database records them inside this transaction.
    pub(crate) async fn digester(
        &self,
        tx: &mut S::Tx,
        current: KeyId,
    ) -> Result<Digester, KeyUseError> {
        let purpose = KeyPurpose::Lookup;
        let chain = self.keys.get(purpose)?;
        let mut ids: Vec<KeyId> = tx
            .recorded_keys(purpose)
            .await?
            .into_iter()
            .filter(|key| key.state != KeyState::Pending)
            .map(|key| key.id)
            .collect();
        ids.push(current);
        let ring = chain
            .ring_holding(&ids)
            .map_err(|id| KeyUseError::Stale { purpose, id })?;
        Ok(Digester::new(&ring, current, &ids).expect("the ring holds every key"))
    }

    /// `code`'s digests under every lookup key codes may have been issued under (each key the
    /// database records but a pending one), as the database records them in this transaction.
    pub(crate) async fn lookup_digests(
        &self,
        tx: &mut S::Tx,
        code: &Code,
    ) -> Result<Vec<(KeyId, CodeDigest)>, KeyUseError> {
        let purpose = KeyPurpose::Lookup;
        let chain = self.keys.get(purpose)?;
        let ids: Vec<KeyId> = tx
            .recorded_keys(purpose)
            .await?
            .into_iter()
            .filter(|key| key.state != KeyState::Pending)
            .map(|key| key.id)
            .collect();
        let Some(&first) = ids.first() else {
            return Err(KeyUseError::NoActiveKey(purpose));
        };
        let ring = chain
            .ring_holding(&ids)
            .map_err(|id| KeyUseError::Stale { purpose, id })?;
        let digester = Digester::new(&ring, first, &ids).expect("the ring holds every key");
        Ok(ids
            .iter()
            .filter_map(|&id| digester.digest_under(id, code).map(|d| (id, d)))
            .collect())
    }

    /// The lookup ring, holding every key of `ids` (loaded again from its file where this host
    /// lacks one), for MACs kept beside the id of the lookup key they were made under.
    pub(crate) fn lookup_ring_holding(&self, ids: &[KeyId]) -> Result<Arc<KeyRing>, KeyUseError> {
        let purpose = KeyPurpose::Lookup;
        self.keys
            .get(purpose)?
            .ring_holding(ids)
            .map_err(|id| KeyUseError::Stale { purpose, id })
    }

    /// The loaded lookup ring as a whole, for checking codes issued under any of its keys.
    pub(crate) fn lookup_ring(&self) -> Result<Arc<KeyRing>, KeyUseError> {
        Ok(self.keys.get(KeyPurpose::Lookup)?.ring())
    }

    /// Managing keys.
    pub fn keys(&self) -> KeyAdmin<'_, S> {
        KeyAdmin(self)
    }
}

/// Why a key could not be registered, added or activated.
#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    /// A key file or ring is missing, malformed or does not match the database.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The transaction could not get its signing key.
    #[error(transparent)]
    Use(#[from] KeyUseError),
    /// The database records no such key.
    #[error("there is no {purpose} key {id}; `tender keys list` shows the keys")]
    UnknownKey {
        /// Which ring.
        purpose: KeyPurpose,
        /// The id asked for.
        id: KeyId,
    },
    /// A retired key is never active again.
    #[error("{purpose} key {id} was retired; add a new key instead")]
    Retired {
        /// Which ring.
        purpose: KeyPurpose,
        /// The id asked for.
        id: KeyId,
    },
    /// Another process registered or added a key at the same moment.
    #[error(
        "another process recorded {purpose} key {id} at the same moment; run the command again"
    )]
    Raced {
        /// Which ring.
        purpose: KeyPurpose,
        /// The contested id.
        id: KeyId,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for KeyAdminError {
    fn code(&self) -> &'static str {
        match self {
            KeyAdminError::Keys(e) => e.code(),
            KeyAdminError::Use(e) => e.code(),
            KeyAdminError::UnknownKey { .. } => "keys.unknown",
            KeyAdminError::Retired { .. } => "keys.retired",
            KeyAdminError::Raced { .. } => "keys.raced",
            KeyAdminError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            KeyAdminError::Keys(e) => e.kind(),
            KeyAdminError::Use(e) => e.kind(),
            KeyAdminError::UnknownKey { .. } => Kind::NotFound,
            KeyAdminError::Retired { .. } | KeyAdminError::Raced { .. } => Kind::Conflict,
            KeyAdminError::Store(e) => e.kind(),
        }
    }
}

/// How long `keys add` waits for another addition on this host to finish.
const KEY_FILE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits (without blocking the runtime) for the key file's lock.
async fn lock_key_file(purpose: KeyPurpose, key_dir: &Path) -> Result<KeyFileLock, KeyError> {
    let deadline = tokio::time::Instant::now() + KEY_FILE_WAIT;
    loop {
        if let Some(lock) = KeyFileLock::try_acquire(purpose, key_dir)? {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(KeyError::Busy {
                purpose: purpose.name(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One recorded key, as `tender keys list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyListing {
    /// Which ring.
    pub purpose: &'static str,
    /// Its id.
    pub id: KeyId,
    /// Where it is in its life.
    pub state: KeyState,
    /// The first 8 bytes of its fingerprint, hex: enough to compare by eye.
    pub fingerprint: String,
}

/// What `tender init` did with the keys.
#[derive(Debug, Clone, Default)]
pub struct Registered {
    /// Key files created on this host.
    pub created_files: Vec<std::path::PathBuf>,
    /// Keys recorded in the database for the first time.
    pub recorded: Vec<(KeyPurpose, KeyId)>,
}

/// Key management use cases.
#[derive(Debug)]
pub struct KeyAdmin<'a, S>(&'a Services<S>);

impl<S: Store> KeyAdmin<'_, S> {
    /// Checks every loaded ring against the keys the database records; the first missing or
    /// different key is refused.
    pub async fn check_loaded(&self) -> Result<(), KeyAdminError> {
        let services = self.0;
        let mut tx = services.store.read().await?;
        for chain in [&services.keys.audit, &services.keys.lookup]
            .into_iter()
            .flatten()
        {
            let recorded = tx.recorded_keys(chain.purpose()).await?;
            chain.ring().check(&recorded)?;
        }
        Ok(())
    }

    /// `tender init`'s key step. For a purpose the database records no key of, creates the key
    /// file if it is missing and records every key of the ring (the newest active). For one it
    /// does record, creates nothing: the local ring must match, or init fails. Key files
    /// created by a run that fails are removed again.
    pub async fn register(
        &self,
        key_dir: &Path,
        actor: &Actor,
    ) -> Result<Registered, KeyAdminError> {
        let mut done = Registered::default();
        let result = self.register_once(key_dir, actor, &mut done).await;
        if result.is_err() {
            for file in &done.created_files {
                let _ = std::fs::remove_file(file);
            }
        }
        result.map(|()| done)
    }

    async fn register_once(
        &self,
        key_dir: &Path,
        actor: &Actor,
        done: &mut Registered,
    ) -> Result<(), KeyAdminError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let mut events = Vec::new();
        let mut audit_ring = None;
        for purpose in KeyPurpose::ALL {
            let recorded = tx.recorded_keys(purpose).await?;
            let ring = match KeyRing::load(purpose, key_dir) {
                Ok(ring) => ring,
                Err(KeyError::Missing { .. }) if recorded.is_empty() => {
                    if KeyRing::create_file_if_missing(purpose, key_dir)? {
                        done.created_files.push(key_dir.join(purpose.file_name()));
                    }
                    KeyRing::load(purpose, key_dir)?
                }
                Err(KeyError::Missing { .. }) => {
                    let active = recorded
                        .iter()
                        .find(|k| k.state == KeyState::Active)
                        .unwrap_or(&recorded[0]);
                    return Err(KeyError::NotInRing {
                        purpose: purpose.name(),
                        id: active.id,
                        file: purpose.file_name(),
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            if recorded.is_empty() {
                let newest = ring.newest().0;
                for (id, _) in ring.iter() {
                    let key = RecordedKey {
                        id,
                        fingerprint: ring.fingerprint(id).expect("the ring holds its ids"),
                        state: if id == newest {
                            KeyState::Active
                        } else {
                            KeyState::Retired
                        },
                    };
                    if !tx.record_key(purpose, &key, at).await? {
                        return Err(KeyAdminError::Raced { purpose, id });
                    }
                    events.push(events::key_recorded(actor, purpose, &key));
                    done.recorded.push((purpose, id));
                }
            } else {
                ring.check(&recorded)?;
            }
            if purpose == KeyPurpose::Audit {
                audit_ring = Some(Arc::new(ring));
            }
        }
        if !events.is_empty() {
            let ring = audit_ring.expect("the audit ring comes first");
            let id = tx
                .active_key(KeyPurpose::Audit)
                .await?
                .ok_or(KeyUseError::NoActiveKey(KeyPurpose::Audit))?;
            let signer = AuditSigner::new(ring, id).ok_or(KeyUseError::Stale {
                purpose: KeyPurpose::Audit,
                id,
            })?;
            tx.set_chain_key(id).await?;
            for event in &events {
                tx.append(&signer, event, at).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Step one of a rotation: adds a fresh key to this host's key file under the next free
    /// id and records it as pending. The operator then copies the key file to every host and
    /// activates it; until then nothing uses it.
    pub async fn add(
        &self,
        purpose: KeyPurpose,
        key_dir: &Path,
        actor: &Actor,
    ) -> Result<KeyId, KeyAdminError> {
        let services = self.0;
        // Held until the new key is written: two additions on this host never lose one.
        let lock = lock_key_file(purpose, key_dir).await?;
        let ring = KeyRing::load_file_only(purpose, &key_dir.join(purpose.file_name()))?;
        let mut tx = services.store.begin().await?;
        let recorded = tx.recorded_keys(purpose).await?;
        ring.check(&recorded)?;
        let highest = recorded
            .iter()
            .map(|k| k.id)
            .chain([ring.newest().0])
            .max()
            .expect("the ring is never empty");
        let id =
            highest
                .get()
                .checked_add(1)
                .and_then(KeyId::new)
                .ok_or(KeyError::IdsExhausted {
                    purpose: purpose.name(),
                })?;
        let ring = KeyRing::add_to_file(&lock, purpose, key_dir, id)?;
        let key = RecordedKey {
            id,
            fingerprint: ring.fingerprint(id).expect("the key was just added"),
            state: KeyState::Pending,
        };
        let at = services.clock.now();
        // Another host's concurrent addition takes the same id: one insert wins, and the key
        // this host wrote under it is never used (the database does not know it).
        if !tx.record_key(purpose, &key, at).await? {
            return Err(KeyAdminError::Raced { purpose, id });
        }
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::key_recorded(actor, purpose, &key), at)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Step two: makes pending key `id` the active one (the one before is retired). This
    /// host's ring must hold it, so the file has reached at least this host.
    pub async fn activate(
        &self,
        purpose: KeyPurpose,
        id: KeyId,
        actor: &Actor,
    ) -> Result<bool, KeyAdminError> {
        rerun!(self.activate_once(purpose, id, actor))
    }

    async fn activate_once(
        &self,
        purpose: KeyPurpose,
        id: KeyId,
        actor: &Actor,
    ) -> Result<bool, KeyAdminError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let recorded = tx.recorded_keys(purpose).await?;
        let key = recorded
            .iter()
            .find(|k| k.id == id)
            .ok_or(KeyAdminError::UnknownKey { purpose, id })?;
        match key.state {
            KeyState::Active => return Ok(false),
            KeyState::Retired => return Err(KeyAdminError::Retired { purpose, id }),
            KeyState::Pending => {}
        }
        let ring = services
            .keys
            .get(purpose)?
            .ring_holding(&[id])
            .map_err(|id| KeyUseError::Stale { purpose, id })?;
        ring.check(&recorded)?;
        let retired = recorded
            .iter()
            .find(|k| k.state == KeyState::Active)
            .map(|k| k.id);
        // An audit key takes office under every chain's head lock, and the activation record
        // names where each chain stood: the verifier refuses a retired key's tag after that
        // point, and no append can slip one in meanwhile.
        let heads = match purpose {
            KeyPurpose::Audit => Some(tx.audit_heads(true).await?),
            KeyPurpose::Lookup => None,
        };
        let at = services.clock.now();
        if !tx.activate_key(purpose, id, at).await? {
            return Err(KeyAdminError::Raced { purpose, id });
        }
        if heads.is_some() {
            tx.set_chain_key(id).await?;
        }
        let signer = services.signer(&mut tx).await?;
        let heads = heads.map(|heads| heads.iter().map(|head| head.seq).collect());
        tx.append(
            &signer,
            &events::key_activated(actor, purpose, id, retired, heads),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every recorded key, by purpose and id. Loads no key.
    pub async fn list(&self) -> Result<Vec<KeyListing>, StoreError> {
        let mut tx = self.0.store.read().await?;
        let mut listing = Vec::new();
        for purpose in KeyPurpose::ALL {
            for key in tx.recorded_keys(purpose).await? {
                listing.push(KeyListing {
                    purpose: purpose.name(),
                    id: key.id,
                    state: key.state,
                    fingerprint: hex::encode(&key.fingerprint[..8]),
                });
            }
        }
        Ok(listing)
    }
}
