//! Where apps live when not in the configuration file: a database, chosen by URL. The schema is
//! created and migrated by poxide (`schema`); every change to the apps table bumps a revision
//! (by trigger, so a change made by hand in SQL counts too), which is all a node polls for.

mod postgres;
mod postgres_tls;
mod schema;
mod sqlite;

use std::path::PathBuf;

pub use schema::Row;

/// A parsed store URL.
#[derive(Debug, Clone)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(Box<tokio_postgres::Config>),
}

impl StoreUrl {
    /// `sqlite:///absolute/path.db`, `sqlite://relative.db`, or a `postgres://` (or
    /// `postgresql://`) URL in libpq's form.
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return url
                .parse::<tokio_postgres::Config>()
                .map(|c| StoreUrl::Postgres(Box::new(c)))
                .map_err(|e| e.to_string());
        }
        Err("not a sqlite:// or postgres:// URL".into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("apps database unavailable: {0}")]
    Unavailable(String),
    /// A key or id another app has.
    #[error("another app has this id or key ({0})")]
    Conflict(String),
    #[error("apps database schema version {found} is newer than this poxide knows ({known}): upgrade poxide")]
    Newer { found: i64, known: i64 },
    #[error("{0}")]
    Url(String),
}

fn check_version(found: i64) -> Result<(), StoreError> {
    let known = schema::latest();
    if found > known {
        return Err(StoreError::Newer { found, known });
    }
    Ok(())
}

/// An opened, migrated store.
pub enum Store {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Postgres>),
}

impl Store {
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        match StoreUrl::parse(url).map_err(StoreError::Url)? {
            StoreUrl::Sqlite(path) => sqlite::Sqlite::open(path).await.map(Store::Sqlite),
            StoreUrl::Postgres(config) => postgres::Postgres::open(*config)
                .await
                .map(|p| Store::Postgres(Box::new(p))),
        }
    }

    /// A number that changes whenever any app does.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.revision().await,
            Store::Postgres(p) => p.revision().await,
        }
    }

    pub async fn load(&self) -> Result<Vec<Row>, StoreError> {
        self.rows(None).await
    }

    /// The row with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(Some(id.to_string())).await?.pop())
    }

    async fn rows(&self, id: Option<String>) -> Result<Vec<Row>, StoreError> {
        match self {
            Store::Sqlite(s) => s.rows(id).await,
            Store::Postgres(p) => p.rows(id).await,
        }
    }

    pub async fn insert(&self, row: Row) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert(row).await,
            Store::Postgres(p) => p.insert(row).await,
        }
    }

    /// False when no app has the row's id.
    pub async fn update(&self, row: Row) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.update(row).await,
            Store::Postgres(p) => p.update(row).await,
        }
    }

    /// False when no app has the id.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.remove(id.to_string()).await,
            Store::Postgres(p) => p.remove(id.to_string()).await,
        }
    }
}
