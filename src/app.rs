//! The composition root: [`App::open`] builds everything a command, a job runner or (later)
//! an API server needs from [`Settings`], and [`launch`] holds the only match on the database
//! URL's scheme. The CLI, the tests and the benchmarks all start here.

use std::future::Future;
use std::path::PathBuf;

use crate::audit::AuditSigner;
use crate::clock::SharedClock;
use crate::codegen::Digester;
use crate::config::{ConfigError, Database, Settings};
use crate::error::{Classify, Kind};
use crate::keys::{KeyError, KeyPurpose, KeyRing, Keys};
use crate::service::Services;
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
            AppError::DataDir { .. } => "app.data_dir",
            AppError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            AppError::Config(e) => e.kind(),
            AppError::Keys(e) => e.kind(),
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
    /// Opens the database the settings name, brings its schema up to date, loads the keys and
    /// builds the use cases, timed by `clock`.
    pub async fn open(settings: &Settings, clock: SharedClock) -> Result<App<S>, AppError> {
        let keys = Keys::load(&settings.key_dir())?;
        let store = S::connect(&settings.database_url()).await?;
        store.migrate().await?;
        let services = Services::new(
            store,
            clock,
            AuditSigner::new(keys.audit.clone()),
            Digester::new(&keys.lookup),
            settings.export_dir(),
        );
        Ok(App {
            settings: settings.clone(),
            services,
        })
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
    /// Runs over `app`.
    fn run<S: Store>(self, app: App<S>) -> impl Future<Output = Self::Output>;
}

/// Opens the app on the backend the database URL names and runs `launch` over it. The one
/// match on the URL's scheme: an unknown scheme is refused with a sentence naming both.
pub async fn launch<L: Launch>(
    settings: &Settings,
    clock: SharedClock,
    launch: L,
) -> Result<L::Output, AppError> {
    Ok(match settings.database()? {
        Database::Sqlite => {
            launch
                .run(App::<SqliteStore>::open(settings, clock).await?)
                .await
        }
        Database::Postgres => {
            launch
                .run(App::<PgStore>::open(settings, clock).await?)
                .await
        }
    })
}

/// What `init` created.
#[derive(Debug, Clone, Default)]
pub struct Initialised {
    /// Key files that did not exist before.
    pub created_keys: Vec<PathBuf>,
}

/// Creates the data directory and missing key files (mode 0600), then creates or migrates the
/// database.
pub async fn init(settings: &Settings, clock: SharedClock) -> Result<Initialised, AppError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| AppError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let key_dir = settings.key_dir();
    let mut created_keys = Vec::new();
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        if std::env::var_os(purpose.env_var()).is_none()
            && KeyRing::create_file_if_missing(purpose, &key_dir)?
        {
            created_keys.push(key_dir.join(purpose.file_name()));
        }
    }
    struct Close;
    impl Launch for Close {
        type Output = ();
        async fn run<S: Store>(self, app: App<S>) {
            app.store().close().await;
        }
    }
    launch(settings, clock, Close).await?;
    Ok(Initialised { created_keys })
}
