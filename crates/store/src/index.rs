//! The store's index: a SQLite database (`cas/index.db`).
//!
//! It holds one row per image (name, labels, sizes, times, origin, raw
//! manifest), the HTTP cache data of fetched URLs, the rendered trees and
//! which images each is made of, and the informational list of tree lease
//! holders. Rows are written only once what they describe is in place on
//! disk (a blob renamed into `cas/blobs/`, a tree into `tree/`), so a row
//! never names something half-written.
//!
//! Several berth processes use the database at once: WAL mode lets readers
//! run beside one writer, and a busy timeout makes writers wait for each
//! other instead of failing. Multi-statement changes are transactions.
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] lists
//! the steps from each version to the next. Opening an older database
//! migrates it inside one `BEGIN IMMEDIATE` transaction (so two processes
//! never migrate at once), after a backup with `VACUUM INTO`. A database
//! newer than this berth is refused.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Schema steps: `MIGRATIONS[i]` takes a database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: images and their labels.
    "CREATE TABLE images (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        blob_size INTEGER NOT NULL,
        import_time INTEGER NOT NULL,
        last_used INTEGER NOT NULL,
        manifest BLOB NOT NULL
     );
     CREATE INDEX images_by_name ON images(name);
     CREATE TABLE image_labels (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (image_id, name)
     );
     CREATE INDEX image_labels_by_value ON image_labels(name, value);",
    // 2: image kind and origin, HTTP cache, trees, tree leases.
    "ALTER TABLE images ADD COLUMN kind TEXT NOT NULL DEFAULT 'aci';
     ALTER TABLE images ADD COLUMN media_type TEXT;
     ALTER TABLE images ADD COLUMN compression TEXT;
     ALTER TABLE images ADD COLUMN origin TEXT;
     CREATE TABLE http_cache (
        url TEXT PRIMARY KEY NOT NULL,
        image_id TEXT,
        etag TEXT,
        last_modified TEXT,
        max_age_secs INTEGER,
        fetched_at INTEGER NOT NULL
     );
     CREATE TABLE trees (
        key TEXT PRIMARY KEY NOT NULL,
        image_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        rendered_at INTEGER NOT NULL
     );
     CREATE INDEX trees_by_image ON trees(image_id);
     CREATE TABLE tree_layers (
        tree_key TEXT NOT NULL REFERENCES trees(key) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        image_id TEXT NOT NULL,
        PRIMARY KEY (tree_key, position)
     );
     CREATE INDEX tree_layers_by_image ON tree_layers(image_id);
     CREATE TABLE tree_leases (
        tree_key TEXT NOT NULL,
        holder TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (tree_key, holder, pid)
     );",
    // 3: OCI images (named by the sha256 of their manifest), the names they
    // were fetched by, and the blobs (manifest, config, layers) each uses:
    // a blob no image lists is garbage.
    "CREATE TABLE oci_images (
        digest TEXT PRIMARY KEY NOT NULL,
        media_type TEXT NOT NULL,
        config_digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        import_time INTEGER NOT NULL,
        last_used INTEGER NOT NULL,
        origin TEXT,
        platform TEXT
     );
     CREATE TABLE oci_refs (
        reference TEXT PRIMARY KEY NOT NULL,
        image TEXT NOT NULL REFERENCES oci_images(digest) ON DELETE CASCADE,
        updated INTEGER NOT NULL
     );
     CREATE INDEX oci_refs_by_image ON oci_refs(image);
     CREATE TABLE oci_image_blobs (
        image TEXT NOT NULL REFERENCES oci_images(digest) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        role TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        media_type TEXT NOT NULL,
        PRIMARY KEY (image, position)
     );
     CREATE INDEX oci_image_blobs_by_digest ON oci_image_blobs(digest);",
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot open the image index {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the image index {} has schema version {found}, newer than this berth knows ({SCHEMA_VERSION}); use a newer berth",
        path.display()
    )]
    TooNew { path: PathBuf, found: u32 },
    #[error("cannot migrate the image index {} from schema version {from}", path.display())]
    Migrate {
        path: PathBuf,
        from: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error("image index query failed: {what}")]
    Query {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

fn q(what: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError::Query { what, source }
}

/// Milliseconds since the epoch, the unit of every time column.
pub(crate) fn to_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// One image row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub media_type: Option<String>,
    pub compression: Option<String>,
    pub blob_size: u64,
    pub import_time: i64,
    pub last_used: i64,
    pub origin: Option<String>,
    pub manifest: Vec<u8>,
    pub labels: Vec<(String, String)>,
    /// Sum of the sizes of the trees rendered for this image (as the top).
    pub tree_size: u64,
}

/// HTTP cache data of a URL, as kept by the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheRow {
    pub url: String,
    pub image_id: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub max_age_secs: Option<u64>,
    pub fetched_at: i64,
}

/// One rendered tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeRow {
    pub key: String,
    pub image_id: String,
    pub size: u64,
    pub content_hash: String,
    pub rendered_at: i64,
    /// Image IDs, bottom layer first.
    pub layers: Vec<String>,
}

/// One blob an OCI image uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OciBlobRow {
    /// `manifest`, `config` or `layer`.
    pub role: String,
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// One OCI image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OciImageRow {
    pub digest: String,
    pub media_type: String,
    pub config_digest: String,
    pub size: u64,
    pub import_time: i64,
    pub last_used: i64,
    pub origin: Option<String>,
    pub platform: Option<String>,
    /// Names it was fetched by, most recent first.
    pub references: Vec<String>,
    /// Manifest, config, then layers bottom first.
    pub blobs: Vec<OciBlobRow>,
    pub tree_size: u64,
}

/// The index; one connection, shared by the threads of a `Store`.
#[derive(Debug)]
pub(crate) struct Index {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const IMAGE_COLS: &str = "id, name, kind, media_type, compression, blob_size, import_time, \
     last_used, origin, manifest, \
     (SELECT COALESCE(SUM(size), 0) FROM trees WHERE trees.image_id = images.id)";

fn image_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    Ok(ImageRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        media_type: r.get(3)?,
        compression: r.get(4)?,
        blob_size: r.get::<_, i64>(5)? as u64,
        import_time: r.get(6)?,
        last_used: r.get(7)?,
        origin: r.get(8)?,
        manifest: r.get(9)?,
        labels: Vec::new(),
        tree_size: r.get::<_, i64>(10)? as u64,
    })
}

impl Index {
    /// Open (creating or migrating) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Index, IndexError> {
        let open_err = |source| IndexError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(open_err)?;
        // WAL: readers beside a writer, across processes. FULL sync: a
        // committed row survives a power cut (it names a blob that does).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        let index = Index {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        };
        index.migrate()?;
        Ok(index)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent
        // (an open transaction rolls back on drop).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn migrate(&self) -> Result<(), IndexError> {
        let mut conn = self.conn();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| IndexError::Open {
                path: self.path.clone(),
                source,
            })?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if version > SCHEMA_VERSION {
            return Err(IndexError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        if version > 0 {
            // VACUUM cannot run inside a transaction: back up first (two
            // processes migrating at once both write the same backup).
            let backup = self.path.with_extension(format!("v{version}.bak"));
            let _ = std::fs::remove_file(&backup);
            match conn.execute("VACUUM INTO ?1", params![backup.to_string_lossy()]) {
                Ok(_) => {
                    tracing::info!(backup = %backup.display(), "backed up the image index before migrating")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot back up the image index before migrating")
                }
            }
        }
        let merr = |from, source| IndexError::Migrate {
            path: self.path.clone(),
            from,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| merr(version, e))?;
        // Another process may have migrated while we waited for the lock.
        let version: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| merr(version, e))?;
        if version > SCHEMA_VERSION {
            return Err(IndexError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(step).map_err(|e| merr(i as u32, e))?;
            tracing::debug!(to = i + 1, "migrated the image index");
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| merr(version, e))?;
        tx.commit().map_err(|e| merr(version, e))
    }

    fn labels_of(conn: &Connection, id: &str) -> rusqlite::Result<Vec<(String, String)>> {
        let mut st = conn.prepare_cached(
            "SELECT name, value FROM image_labels WHERE image_id = ?1 ORDER BY rowid",
        )?;
        let rows = st.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    fn fill_labels(conn: &Connection, mut rows: Vec<ImageRow>) -> rusqlite::Result<Vec<ImageRow>> {
        for r in &mut rows {
            r.labels = Index::labels_of(conn, &r.id)?;
        }
        Ok(rows)
    }

    fn images_where(
        &self,
        clause: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ImageRow>, IndexError> {
        let conn = self.conn();
        let sql = format!("SELECT {IMAGE_COLS} FROM images {clause}");
        let rows = (|| {
            let mut st = conn.prepare(&sql)?;
            let rows = st
                .query_map(args, image_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Index::fill_labels(&conn, rows)
        })();
        rows.map_err(q("read images"))
    }

    /// Insert an image with its labels (and the HTTP cache row of its
    /// origin); `false` if it is there already.
    pub(crate) fn insert_image(
        &self,
        row: &ImageRow,
        cache: Option<&CacheRow>,
    ) -> Result<bool, IndexError> {
        let mut conn = self.conn();
        let r = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO images (id, name, kind, media_type, compression, blob_size, \
                 import_time, last_used, origin, manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    row.id,
                    row.name,
                    row.kind,
                    row.media_type,
                    row.compression,
                    row.blob_size as i64,
                    row.import_time,
                    row.last_used,
                    row.origin,
                    row.manifest
                ],
            )?;
            if n == 1 {
                for (k, v) in &row.labels {
                    tx.execute(
                        "INSERT INTO image_labels (image_id, name, value) VALUES (?1, ?2, ?3)",
                        params![row.id, k, v],
                    )?;
                }
            }
            if let Some(c) = cache {
                Index::put_cache(&tx, c)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })();
        r.map_err(q("insert an image"))
    }

    pub(crate) fn image(&self, id: &str) -> Result<Option<ImageRow>, IndexError> {
        Ok(self
            .images_where("WHERE id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    pub(crate) fn has_image(&self, id: &str) -> Result<bool, IndexError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT 1 FROM images WHERE id = ?1",
            params![id],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(q("look up an image"))
    }

    /// IDs starting with `prefix`, sorted.
    pub(crate) fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, IndexError> {
        let conn = self.conn();
        let r = (|| {
            let mut st = conn.prepare(
                "SELECT id FROM images WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id",
            )?;
            let rows = st.query_map(params![prefix], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })();
        r.map_err(q("look up an image ID prefix"))
    }

    /// Images named `name` having every label of `labels`, most recently
    /// imported first.
    pub(crate) fn find(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<Vec<ImageRow>, IndexError> {
        let mut clause = String::from("WHERE name = ?1");
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&name];
        for (i, (k, v)) in labels.iter().enumerate() {
            clause.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM image_labels l WHERE l.image_id = images.id \
                 AND l.name = ?{} AND l.value = ?{})",
                2 * i + 2,
                2 * i + 3
            ));
            args.push(k);
            args.push(v);
        }
        clause.push_str(" ORDER BY import_time DESC, id");
        self.images_where(&clause, &args)
    }

    pub(crate) fn list(&self) -> Result<Vec<ImageRow>, IndexError> {
        self.images_where("ORDER BY import_time, id", &[])
    }

    pub(crate) fn delete_image(&self, id: &str) -> Result<(), IndexError> {
        let conn = self.conn();
        conn.execute("DELETE FROM images WHERE id = ?1", params![id])
            .map(drop)
            .map_err(q("delete an image"))
    }

    pub(crate) fn touch(&self, ids: &[&str], at: i64) -> Result<(), IndexError> {
        let mut conn = self.conn();
        let r = (|| {
            let tx = conn.transaction()?;
            for id in ids {
                tx.execute(
                    "UPDATE images SET last_used = max(last_used, ?2) WHERE id = ?1",
                    params![id, at],
                )?;
            }
            tx.commit()
        })();
        r.map_err(q("update last used"))
    }

    fn put_cache(conn: &Connection, c: &CacheRow) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT OR REPLACE INTO http_cache (url, image_id, etag, last_modified, max_age_secs, fetched_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                c.url,
                c.image_id,
                c.etag,
                c.last_modified,
                c.max_age_secs.map(|s| s as i64),
                c.fetched_at
            ],
        )
        .map(drop)
    }

    pub(crate) fn set_cache(&self, c: &CacheRow) -> Result<(), IndexError> {
        Index::put_cache(&self.conn(), c).map_err(q("write HTTP cache data"))
    }

    pub(crate) fn cache(&self, url: &str) -> Result<Option<CacheRow>, IndexError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT url, image_id, etag, last_modified, max_age_secs, fetched_at FROM http_cache WHERE url = ?1",
            params![url],
            |r| {
                Ok(CacheRow {
                    url: r.get(0)?,
                    image_id: r.get(1)?,
                    etag: r.get(2)?,
                    last_modified: r.get(3)?,
                    max_age_secs: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
                    fetched_at: r.get(5)?,
                })
            },
        )
        .optional()
        .map_err(q("read HTTP cache data"))
    }

    pub(crate) fn insert_tree(&self, t: &TreeRow) -> Result<(), IndexError> {
        let mut conn = self.conn();
        let r = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM trees WHERE key = ?1", params![t.key])?;
            tx.execute(
                "INSERT INTO trees (key, image_id, size, content_hash, rendered_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.key, t.image_id, t.size as i64, t.content_hash, t.rendered_at],
            )?;
            for (i, l) in t.layers.iter().enumerate() {
                tx.execute(
                    "INSERT INTO tree_layers (tree_key, position, image_id) VALUES (?1, ?2, ?3)",
                    params![t.key, i as i64, l],
                )?;
            }
            tx.commit()
        })();
        r.map_err(q("insert a tree"))
    }

    fn trees_where(
        &self,
        clause: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<TreeRow>, IndexError> {
        let conn = self.conn();
        let r = (|| {
            let mut st = conn.prepare(&format!(
                "SELECT key, image_id, size, content_hash, rendered_at FROM trees {clause}"
            ))?;
            let mut rows = st
                .query_map(args, |r| {
                    Ok(TreeRow {
                        key: r.get(0)?,
                        image_id: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        content_hash: r.get(3)?,
                        rendered_at: r.get(4)?,
                        layers: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = conn.prepare_cached(
                "SELECT image_id FROM tree_layers WHERE tree_key = ?1 ORDER BY position",
            )?;
            for t in &mut rows {
                t.layers = st
                    .query_map(params![t.key], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
            }
            Ok(rows)
        })();
        r.map_err(q("read trees"))
    }

    pub(crate) fn tree(&self, key: &str) -> Result<Option<TreeRow>, IndexError> {
        Ok(self
            .trees_where("WHERE key = ?1", &[&key])?
            .into_iter()
            .next())
    }

    pub(crate) fn trees(&self) -> Result<Vec<TreeRow>, IndexError> {
        self.trees_where("ORDER BY key", &[])
    }

    /// Trees that contain `image_id` (as the top image or a dependency).
    pub(crate) fn trees_using(&self, image_id: &str) -> Result<Vec<TreeRow>, IndexError> {
        self.trees_where(
            "WHERE key IN (SELECT tree_key FROM tree_layers WHERE image_id = ?1) OR image_id = ?1 ORDER BY key",
            &[&image_id],
        )
    }

    pub(crate) fn delete_tree(&self, key: &str) -> Result<(), IndexError> {
        let mut conn = self.conn();
        let r = (|| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM trees WHERE key = ?1", params![key])?;
            tx.execute("DELETE FROM tree_leases WHERE tree_key = ?1", params![key])?;
            tx.commit()
        })();
        r.map_err(q("delete a tree"))
    }

    pub(crate) fn add_lease(
        &self,
        key: &str,
        holder: &str,
        pid: u32,
        since: i64,
    ) -> Result<(), IndexError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO tree_leases (tree_key, holder, pid, since) VALUES (?1, ?2, ?3, ?4)",
                params![key, holder, pid, since],
            )
            .map(drop)
            .map_err(q("record a tree lease"))
    }

    pub(crate) fn remove_lease(&self, key: &str, holder: &str, pid: u32) -> Result<(), IndexError> {
        self.conn()
            .execute(
                "DELETE FROM tree_leases WHERE tree_key = ?1 AND holder = ?2 AND pid = ?3",
                params![key, holder, pid],
            )
            .map(drop)
            .map_err(q("forget a tree lease"))
    }

    /// Recorded holders of a tree (some may be gone: the flock decides).
    pub(crate) fn lease_holders(&self, key: &str) -> Result<Vec<(String, u32)>, IndexError> {
        let conn = self.conn();
        let r = (|| {
            let mut st = conn.prepare(
                "SELECT holder, pid FROM tree_leases WHERE tree_key = ?1 ORDER BY since, holder",
            )?;
            let rows = st.query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })();
        r.map_err(q("read tree leases"))
    }
}

impl Index {
    /// Insert (or refresh) an OCI image with its blobs; `reference` (if
    /// any) now names it. Returns whether the image row is new.
    pub(crate) fn insert_oci_image(
        &self,
        row: &OciImageRow,
        reference: Option<&str>,
    ) -> Result<bool, IndexError> {
        let mut conn = self.conn();
        let r = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO oci_images (digest, media_type, config_digest, size, \
                 import_time, last_used, origin, platform) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    row.digest,
                    row.media_type,
                    row.config_digest,
                    row.size as i64,
                    row.import_time,
                    row.last_used,
                    row.origin,
                    row.platform
                ],
            )?;
            if n == 1 {
                for (i, b) in row.blobs.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO oci_image_blobs (image, position, role, digest, size, media_type) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![row.digest, i as i64, b.role, b.digest, b.size as i64, b.media_type],
                    )?;
                }
            } else {
                tx.execute(
                    "UPDATE oci_images SET last_used = max(last_used, ?2) WHERE digest = ?1",
                    params![row.digest, row.last_used],
                )?;
            }
            if let Some(r) = reference {
                tx.execute(
                    "INSERT OR REPLACE INTO oci_refs (reference, image, updated) VALUES (?1, ?2, ?3)",
                    params![r, row.digest, row.last_used],
                )?;
            }
            tx.commit()?;
            Ok(n == 1)
        })();
        r.map_err(q("insert an OCI image"))
    }

    fn oci_where(
        &self,
        clause: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<OciImageRow>, IndexError> {
        let conn = self.conn();
        let r = (|| {
            let mut st = conn.prepare(&format!(
                "SELECT digest, media_type, config_digest, size, import_time, last_used, origin, platform, \
                 (SELECT COALESCE(SUM(size), 0) FROM trees WHERE trees.image_id = oci_images.digest) \
                 FROM oci_images {clause}"
            ))?;
            let mut rows = st
                .query_map(args, |r| {
                    Ok(OciImageRow {
                        digest: r.get(0)?,
                        media_type: r.get(1)?,
                        config_digest: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                        import_time: r.get(4)?,
                        last_used: r.get(5)?,
                        origin: r.get(6)?,
                        platform: r.get(7)?,
                        references: Vec::new(),
                        blobs: Vec::new(),
                        tree_size: r.get::<_, i64>(8)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut refs = conn.prepare_cached(
                "SELECT reference FROM oci_refs WHERE image = ?1 ORDER BY updated DESC, reference",
            )?;
            let mut blobs = conn.prepare_cached(
                "SELECT role, digest, size, media_type FROM oci_image_blobs WHERE image = ?1 ORDER BY position",
            )?;
            for row in &mut rows {
                row.references = refs
                    .query_map(params![row.digest], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                row.blobs = blobs
                    .query_map(params![row.digest], |r| {
                        Ok(OciBlobRow {
                            role: r.get(0)?,
                            digest: r.get(1)?,
                            size: r.get::<_, i64>(2)? as u64,
                            media_type: r.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(rows)
        })();
        r.map_err(q("read OCI images"))
    }

    pub(crate) fn oci_image(&self, digest: &str) -> Result<Option<OciImageRow>, IndexError> {
        Ok(self
            .oci_where("WHERE digest = ?1", &[&digest])?
            .into_iter()
            .next())
    }

    pub(crate) fn oci_images(&self) -> Result<Vec<OciImageRow>, IndexError> {
        self.oci_where("ORDER BY import_time, digest", &[])
    }

    /// Digests of OCI images starting with `prefix`.
    pub(crate) fn oci_with_prefix(&self, prefix: &str) -> Result<Vec<String>, IndexError> {
        let conn = self.conn();
        let r = (|| {
            let mut st = conn.prepare(
                "SELECT digest FROM oci_images WHERE substr(digest, 1, length(?1)) = ?1 ORDER BY digest",
            )?;
            let rows = st.query_map(params![prefix], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })();
        r.map_err(q("look up an OCI image digest prefix"))
    }

    /// The image a reference names.
    pub(crate) fn oci_by_reference(&self, reference: &str) -> Result<Option<String>, IndexError> {
        self.conn()
            .query_row(
                "SELECT image FROM oci_refs WHERE reference = ?1",
                params![reference],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("look up an OCI reference"))
    }

    pub(crate) fn delete_oci_image(&self, digest: &str) -> Result<(), IndexError> {
        self.conn()
            .execute("DELETE FROM oci_images WHERE digest = ?1", params![digest])
            .map(drop)
            .map_err(q("delete an OCI image"))
    }

    /// Every blob digest some OCI image uses.
    pub(crate) fn oci_used_blobs(&self) -> Result<HashSet<String>, IndexError> {
        let conn = self.conn();
        let r = (|| {
            let mut st = conn.prepare("SELECT DISTINCT digest FROM oci_image_blobs")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<HashSet<String>>>()
        })();
        r.map_err(q("list the blobs of OCI images"))
    }

    pub(crate) fn touch_oci(&self, digest: &str, at: i64) -> Result<(), IndexError> {
        self.conn()
            .execute(
                "UPDATE oci_images SET last_used = max(last_used, ?2) WHERE digest = ?1",
                params![digest, at],
            )
            .map(drop)
            .map_err(q("update last used"))
    }
}
