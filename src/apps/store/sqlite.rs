//! The SQLite store: a file, no server. Each operation opens the file on a blocking thread
//! (cheap next to how rarely apps are read), so a slow disk never stalls the runtime.

use std::path::PathBuf;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    schema::{Row, MIGRATIONS},
    StoreError,
};

pub struct Sqlite {
    path: PathBuf,
}

/// Writers wait this long for one another (several nodes, or the admin CLI) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Sqlite {
    /// Opens (creating it when missing) and migrates the database.
    pub async fn open(path: PathBuf) -> Result<Sqlite, StoreError> {
        let store = Sqlite { path };
        let found = store.run(migrate).await?;
        super::check_version(found)?;
        Ok(store)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Conflict(e.to_string())
            }
            e => StoreError::Unavailable(e.to_string()),
        })
    }

    pub async fn revision(&self) -> Result<i64, StoreError> {
        self.run(|c| {
            c.query_row("SELECT revision FROM poxide_apps_revision", [], |r| {
                r.get(0)
            })
        })
        .await
    }

    /// Every row, or the one with `id`.
    pub async fn rows(&self, id: Option<String>) -> Result<Vec<Row>, StoreError> {
        self.run(move |c| {
            let mut query = c.prepare(
                "SELECT id, key, secret, enabled, settings FROM poxide_apps \
                 WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
            )?;
            let rows = query.query_map(params![id], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    secret: r.get(2)?,
                    enabled: r.get(3)?,
                    settings: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn insert(&self, row: Row) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO poxide_apps (id, key, secret, enabled, settings) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row.id, row.key, row.secret, row.enabled, row.settings],
            )
            .map(drop)
        })
        .await
    }

    pub async fn update(&self, row: Row) -> Result<bool, StoreError> {
        self.run(move |c| {
            c.execute(
                "UPDATE poxide_apps SET key = ?2, secret = ?3, enabled = ?4, settings = ?5 WHERE id = ?1",
                params![row.id, row.key, row.secret, row.enabled, row.settings],
            )
            .map(|n| n > 0)
        })
        .await
    }

    pub async fn remove(&self, id: String) -> Result<bool, StoreError> {
        self.run(move |c| {
            c.execute("DELETE FROM poxide_apps WHERE id = ?1", params![id])
                .map(|n| n > 0)
        })
        .await
    }
}

/// Applies the migrations this database lacks, in one write transaction, so two processes
/// starting together do not both apply one; the version it had.
fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS poxide_schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
        )",
    )?;
    let current: i64 = tx
        .query_row(
            "SELECT MAX(version) FROM poxide_schema_migrations",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten()
        .unwrap_or(0);
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO poxide_schema_migrations (version) VALUES (?1)",
            params![m.version],
        )?;
    }
    tx.commit()?;
    Ok(current)
}
