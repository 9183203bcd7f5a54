//! A durable SQLite store: one file that one process at a time writes, in WAL mode with an
//! `fsync` at every commit, whose format version is checked when it is opened.
//!
//! It names nothing of what is stored, so more than the bulk journal can use it: the relay's
//! spool (a durable queue of accepted messages) is meant to open its file with
//! [`DurableStore::open`] too, with its own tables and versions, and to commit through a
//! [`CommitQueue`](super::group_commit::CommitQueue). What every such file gets here:
//!
//! - **Durability.** WAL (readers never block the writer), `synchronous=FULL` (a commit
//!   survives a power cut, not only the end of the process; [`Durability::Normal`] trades
//!   that for speed), a checkpoint every 256 pages, a 10 s busy timeout.
//! - **One writer.** An exclusive SQLite transaction held on `PATH-lock` while the store is
//!   open ([`StoreLock`]); the operating system releases it when the process ends, even by
//!   `kill -9`, so a crash never leaves a stale lock.
//! - **A format check.** A `meta` table (key, value) whose `schema` row names the format;
//!   a file of a format not in [`Schema::versions`] is refused before anything is read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};

/// The table every store has; its `schema` row ([`SCHEMA_KEY`]) names the file's format.
const META_DDL: &str =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// The `meta` key of the format version.
pub(crate) const SCHEMA_KEY: &str = "schema";

/// What a store holds: its tables and the formats this code opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schema<'a> {
    /// `CREATE TABLE IF NOT EXISTS` statements for the store's own tables, run at every open
    /// (after the `meta` table's).
    pub(crate) tables: &'a str,
    /// The formats this code opens: the one it writes, then older ones its user upgrades.
    /// The caller writes the `schema` row of a new store (with its first commit).
    pub(crate) versions: &'a [&'a str],
}

/// How hard each commit is pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `fsync` at every commit (`synchronous=FULL`, the default): a commit survives a power
    /// cut or an operating-system crash.
    Full,
    /// No `fsync` at commits (`synchronous=NORMAL` in WAL mode): a commit survives the
    /// process being killed, not a power cut.
    Normal,
}

/// Why a store could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// SQLite failed on `path` (the store or its lock file).
    #[error("{path}: {source}")]
    Sqlite {
        /// The file SQLite failed on.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// Another process holds the store's lock.
    #[error("{path} is in use by another process (its lock {lock} is held)")]
    Busy {
        /// The store.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The file's `schema` row names a format this code does not open.
    #[error("{path} has the format {found}, which this version does not open")]
    Version {
        /// The store.
        path: PathBuf,
        /// The format it names.
        found: String,
    },
}

/// An open store: its connection, held alone (see [`StoreLock`]) until dropped.
#[derive(Debug)]
pub(crate) struct DurableStore {
    conn: Connection,
    /// Dropped after the connection (fields drop in order), so the lock outlives every write.
    _lock: StoreLock,
    path: PathBuf,
    version: Option<String>,
}

impl DurableStore {
    /// Opens (or creates) the store at `path`: takes its lock, sets the pragmas, creates the
    /// `meta` table and `schema.tables` when missing, and checks the recorded format against
    /// `schema.versions` (a new file records none: see [`version`](Self::version)).
    pub(crate) fn open(path: &Path, schema: &Schema<'_>) -> Result<DurableStore, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let lock = StoreLock::take(path)?;
        let conn = Connection::open(path).map_err(sql)?;
        configure(&conn).map_err(sql)?;
        conn.execute_batch(&format!("{META_DDL}\n{}", schema.tables))
            .map_err(sql)?;
        let version = meta(&conn, SCHEMA_KEY).map_err(sql)?;
        if let Some(found) = &version {
            if !schema.versions.contains(&found.as_str()) {
                return Err(StoreError::Version {
                    path: path.to_path_buf(),
                    found: found.clone(),
                });
            }
        }
        Ok(DurableStore {
            conn,
            _lock: lock,
            path: path.to_path_buf(),
            version,
        })
    }

    /// The format the file recorded when it was opened (`None`: a new store, or one whose
    /// first commit never happened).
    pub(crate) fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The store's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The `meta` row `key`.
    pub(crate) fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        meta(&self.conn, key)
    }

    /// The connection (for reads and for writes before a writer thread takes it over).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for transactions.
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Sets how hard commits are pushed to the disk (default [`Durability::Full`]).
    pub(crate) fn set_durability(&self, durability: Durability) -> Result<(), StoreError> {
        let value = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        self.conn
            .pragma_update(None, "synchronous", value)
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL: readers (a state reader, a status command) never block the writer.
    // synchronous=FULL: a commit survives a power cut, not only a crash of this process.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Checkpoint every 256 pages (1 MiB of WAL). The journal writes a line once, in its
    // commit's log row, so checkpoints copy little; and a WAL reset by a checkpoint is written
    // again from its start instead of growing, so a commit's fsync need not also write the
    // file's new size (about a fifth of the journal writer's kernel time, measured).
    conn.pragma_update(None, "wal_autocheckpoint", 256)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(())
}

/// One process per store at a time: an exclusive SQLite transaction held on `PATH-lock` for
/// as long as the store is open. The operating system releases it when the process ends,
/// even by `kill -9`, so a crash never leaves a stale lock.
#[derive(Debug)]
struct StoreLock {
    _conn: Connection,
}

impl StoreLock {
    /// Takes the lock of the store at `path`, or says who holds it ([`StoreError::Busy`]).
    fn take(path: &Path) -> Result<StoreLock, StoreError> {
        let mut lock = path.as_os_str().to_owned();
        lock.push("-lock");
        let lock = PathBuf::from(lock);
        let sql = |source| StoreError::Sqlite {
            path: lock.clone(),
            source,
        };
        let conn = Connection::open(&lock).map_err(sql)?;
        conn.busy_timeout(Duration::ZERO).map_err(sql)?;
        match conn.execute_batch("BEGIN EXCLUSIVE") {
            Ok(()) => Ok(StoreLock { _conn: conn }),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    || e.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                Err(StoreError::Busy {
                    path: path.to_path_buf(),
                    lock,
                })
            }
            Err(e) => Err(sql(e)),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it), for the stores' time columns.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TABLES: &str = "CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY);";

    fn schema() -> Schema<'static> {
        Schema {
            tables: TABLES,
            versions: &["2", "1"],
        }
    }

    /// A new store records no format; one of a listed format opens; any other is refused,
    /// before its tables are touched.
    #[test]
    fn the_format_is_checked_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = DurableStore::open(&path, &schema()).unwrap();
        assert_eq!(store.version(), None);
        let pragma = |name: &str| -> String {
            store
                .conn()
                .query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| match v {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "2", "FULL");
        assert_eq!(pragma("wal_autocheckpoint"), "256");
        store
            .conn()
            .execute("INSERT INTO meta VALUES ('schema', '1')", [])
            .unwrap();
        drop(store);
        let store = DurableStore::open(&path, &schema()).unwrap();
        assert_eq!(store.version(), Some("1"));
        assert_eq!(store.meta(SCHEMA_KEY).unwrap().as_deref(), Some("1"));
        store
            .conn()
            .execute("UPDATE meta SET value = '3' WHERE key = 'schema'", [])
            .unwrap();
        drop(store);
        match DurableStore::open(&path, &schema()) {
            Err(StoreError::Version { found, .. }) => assert_eq!(found, "3"),
            other => panic!("{other:?}"),
        }
    }

    /// One process (here: one open store) at a time; the lock goes with the store.
    #[test]
    fn one_store_open_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let first = DurableStore::open(&path, &schema()).unwrap();
        match DurableStore::open(&path, &schema()) {
            Err(StoreError::Busy { lock, .. }) => {
                assert_eq!(lock, dir.path().join("s.sqlite-lock"))
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(DurableStore::open(&path, &schema()).is_ok());
    }

    #[test]
    fn durability_can_be_relaxed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableStore::open(&dir.path().join("s.sqlite"), &schema()).unwrap();
        store.set_durability(Durability::Normal).unwrap();
        let level: i64 = store
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(level, 1, "NORMAL");
    }
}
