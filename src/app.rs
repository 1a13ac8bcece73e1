//! The composition root: [`App::open`] builds everything a command, a job runner or (later)
//! an API server needs from [`Settings`], and [`launch`] holds the only match on the database
//! URL's scheme. The CLI, the tests and the benchmarks all start here.

use std::future::Future;
use std::path::PathBuf;

use crate::clock::SharedClock;
use crate::config::{ConfigError, Database, Settings};
use crate::domain::Actor;
use crate::error::{Classify, Kind};
use crate::keys::{KeyError, KeyNeeds, create_private_dir};
use crate::service::Services;
use crate::service::keys::{KeyAdminError, Keychains, Registered};
use crate::store::{PgStore, SqliteStore, Store, StoreError};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The settings cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file is missing or unsafe.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The keys do not match the database's, or could not be registered.
    #[error(transparent)]
    KeyAdmin(#[from] KeyAdminError),
    /// The data directory cannot be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database cannot be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for AppError {
    fn code(&self) -> &'static str {
        match self {
            AppError::Config(e) => e.code(),
            AppError::Keys(e) => e.code(),
            AppError::KeyAdmin(e) => e.code(),
            AppError::DataDir { .. } => "app.data_dir",
            AppError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            AppError::Config(e) => e.kind(),
            AppError::Keys(e) => e.kind(),
            AppError::KeyAdmin(e) => e.kind(),
            AppError::DataDir { .. } => Kind::Internal,
            AppError::Store(e) => e.kind(),
        }
    }
}

/// A running tender: its settings, its store and the use cases over it.
#[derive(Debug, Clone)]
pub struct App<S> {
    settings: Settings,
    services: Services<S>,
}

impl<S: Store> App<S> {
    /// Opens the database the settings name (refusing one whose schema is not this tender's),
    /// loads the key rings `needs` names and no other, checks them against the keys the
    /// database records, and builds the use cases, timed by `clock`. Nothing is written.
    pub async fn open(
        settings: &Settings,
        clock: SharedClock,
        needs: KeyNeeds,
    ) -> Result<App<S>, AppError> {
        let store = S::connect(&settings.database_url()).await?;
        let opened = async {
            store.check_schema().await?;
            let keys = Keychains::load(needs, &settings.key_dir())?;
            let services = Services::new(store.clone(), clock, keys, settings.export_dir())
                .with_approval_over(settings.approval_over)
                .with_redeem_limits(settings.redeem_limits)
                .with_redeem_generic(settings.redeem_generic)
                .with_trade_in_rules(settings.business_time_zone, settings.tradein_daily_amount)
                .with_issuer_state(settings.issuer_state.get().clone())
                .with_public_url(settings.public_url.clone());
            services.keys().check_loaded().await?;
            Ok(services)
        };
        match opened.await {
            Ok(services) => Ok(App {
                settings: settings.clone(),
                services,
            }),
            Err(e) => {
                store.close().await;
                Err(e)
            }
        }
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The use cases.
    pub fn services(&self) -> &Services<S> {
        &self.services
    }

    /// The store.
    pub fn store(&self) -> &S {
        self.services.store()
    }
}

/// Something to run over an [`App`] of either backend: a command, the job runner, a test.
pub trait Launch {
    /// What it yields.
    type Output;
    /// The key rings it needs loaded.
    fn needs(&self) -> KeyNeeds;
    /// Runs over `app`.
    fn run<S: Store>(self, app: App<S>) -> impl Future<Output = Self::Output>;
}

/// Something to run over a store of either backend.
trait OnBackend {
    type Output;
    fn run<S: Store>(self) -> impl Future<Output = Result<Self::Output, AppError>>;
}

/// The one match on the database URL's scheme: runs `task` over the backend it names. An
/// unknown scheme is refused with a sentence naming both.
async fn on_backend<T: OnBackend>(settings: &Settings, task: T) -> Result<T::Output, AppError> {
    match settings.database()? {
        Database::Sqlite => task.run::<SqliteStore>().await,
        Database::Postgres => task.run::<PgStore>().await,
    }
}

/// Opens the app on the backend the database URL names and runs `launch` over it.
pub async fn launch<L: Launch>(
    settings: &Settings,
    clock: SharedClock,
    launch: L,
) -> Result<L::Output, AppError> {
    struct Opened<'a, L> {
        settings: &'a Settings,
        clock: SharedClock,
        launch: L,
    }
    impl<L: Launch> OnBackend for Opened<'_, L> {
        type Output = L::Output;
        async fn run<S: Store>(self) -> Result<L::Output, AppError> {
            let needs = self.launch.needs();
            let app = App::<S>::open(self.settings, self.clock, needs).await?;
            Ok(self.launch.run(app).await)
        }
    }
    on_backend(
        settings,
        Opened {
            settings,
            clock,
            launch,
        },
    )
    .await
}

/// Creates the data directory (mode 0700 where it is new), creates or migrates the database,
/// then registers the keys: for a database that records none, missing key files are created
/// (mode 0600) and every key recorded; for one that does, nothing is created and the local
/// key files must match. `actor` is recorded on the registrations.
pub async fn init(
    settings: &Settings,
    clock: SharedClock,
    actor: &Actor,
) -> Result<Registered, AppError> {
    create_private_dir(&settings.data_dir).map_err(|source| AppError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    struct Init<'a> {
        settings: &'a Settings,
        clock: SharedClock,
        actor: &'a Actor,
    }
    impl OnBackend for Init<'_> {
        type Output = Registered;
        async fn run<S: Store>(self) -> Result<Registered, AppError> {
            let store = S::connect(&self.settings.database_url()).await?;
            let done = async {
                store.migrate().await?;
                let services = Services::new(
                    store.clone(),
                    self.clock,
                    Keychains::default(),
                    self.settings.export_dir(),
                );
                let registered = services
                    .keys()
                    .register(&self.settings.key_dir(), self.actor)
                    .await?;
                let hashed = services.trail().hash_unhashed().await?;
                if hashed > 0 {
                    tracing::info!(hashed, "hashed the audit records written before hashes");
                }
                Ok(registered)
            }
            .await;
            store.close().await;
            done
        }
    }
    on_backend(
        settings,
        Init {
            settings,
            clock,
            actor,
        },
    )
    .await
}
