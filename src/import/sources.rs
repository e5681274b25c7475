//! Reading another tool's migrations directory with that tool's own naming, ordering and
//! up/down rules: Flyway (`V2__name.sql`, `U2__name.sql` undo, `R__name.sql` repeatables
//! after the versioned ones), golang-migrate (`NNN_name.up.sql` / `.down.sql`), sqlx
//! (`<version>_name.sql` or `.up.sql` / `.down.sql`), dbmate (`-- migrate:up` and
//! `-- migrate:down` sections), Liquibase formatted SQL (`--changeset author:id` with
//! `--rollback` lines) and Alembic's offline SQL (`alembic upgrade --sql`: `-- Running
//! upgrade a -> b` sections).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A tool whose migrations `zdm import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Flyway,
    GolangMigrate,
    Sqlx,
    Dbmate,
    LiquibaseSql,
    Alembic,
}

impl Tool {
    pub const NAMES: [&'static str; 6] = [
        "flyway",
        "golang-migrate",
        "sqlx",
        "dbmate",
        "liquibase-sql",
        "alembic",
    ];
}

impl FromStr for Tool {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "flyway" => Tool::Flyway,
            "golang-migrate" => Tool::GolangMigrate,
            "sqlx" => Tool::Sqlx,
            "dbmate" => Tool::Dbmate,
            "liquibase-sql" => Tool::LiquibaseSql,
            "alembic" => Tool::Alembic,
            other => {
                return Err(format!(
                    "unknown tool {other:?}: {}",
                    Tool::NAMES.join(", ")
                ))
            }
        })
    }
}

/// One migration of the other tool, in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The tool's version (`2`, `1.1`, `20240101120000`, a changeset or revision id).
    pub version: String,
    /// Its description, from the file name or the changeset.
    pub description: String,
    pub up: String,
    /// The tool's undo, when it has one.
    pub down: Option<String>,
    /// Where it came from, for the report.
    pub origin: PathBuf,
    /// A Flyway repeatable (`R__`): run again by Flyway whenever it changes.
    pub repeatable: bool,
}

/// Why a directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Format { path: PathBuf, why: String },
    #[error("{dir} holds no {tool} migration")]
    Empty { dir: PathBuf, tool: &'static str },
}

/// Every migration `tool` would run from `dir`, in the order it runs them.
pub fn read(tool: Tool, dir: &Path) -> Result<Vec<Source>, Error> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut sources = Vec::new();
    match tool {
        Tool::Flyway => {
            let mut repeatables = Vec::new();
            for path in &files {
                let name = file_name(path);
                if let Some(rest) = name.strip_prefix('V') {
                    let Some((version, description)) = rest.split_once("__") else {
                        continue;
                    };
                    let undo = dir.join(format!("U{version}__{description}"));
                    sources.push(Source {
                        version: version.replace('_', "."),
                        description: strip_sql(description).replace('_', " "),
                        up: read(path)?,
                        down: undo.exists().then(|| read(&undo)).transpose()?,
                        origin: path.clone(),
                        repeatable: false,
                    });
                } else if let Some(description) = name.strip_prefix("R__") {
                    repeatables.push(Source {
                        version: "R".to_string(),
                        description: strip_sql(description).replace('_', " "),
                        up: read(path)?,
                        down: None,
                        origin: path.clone(),
                        repeatable: true,
                    });
                }
            }
            sources.sort_by(|a, b| compare_versions(&a.version, &b.version));
            // Flyway runs repeatables after every versioned migration, by description.
            repeatables.sort_by(|a, b| a.description.cmp(&b.description));
            sources.extend(repeatables);
        }
        Tool::GolangMigrate | Tool::Sqlx => {
            for path in &files {
                let name = file_name(path);
                if name.ends_with(".down.sql") {
                    continue;
                }
                let stem = name
                    .strip_suffix(".up.sql")
                    .or_else(|| name.strip_suffix(".sql"))
                    .unwrap_or(&name);
                let Some((version, description)) = stem.split_once('_') else {
                    continue;
                };
                if !version.chars().all(|c| c.is_ascii_digit()) {
                    continue;
                }
                let down = dir.join(format!("{stem}.down.sql"));
                sources.push(Source {
                    version: version.to_string(),
                    description: description.replace('_', " "),
                    up: read(path)?,
                    down: down.exists().then(|| read(&down)).transpose()?,
                    origin: path.clone(),
                    repeatable: false,
                });
            }
            sources.sort_by(|a, b| compare_versions(&a.version, &b.version));
        }
        Tool::Dbmate => {
            for path in &files {
                let name = file_name(path);
                let stem = strip_sql(&name);
                let Some((version, description)) = stem.split_once('_') else {
                    continue;
                };
                let text = read(path)?;
                let (up, down) = dbmate_sections(&text).ok_or_else(|| Error::Format {
                    path: path.clone(),
                    why: "no `-- migrate:up` section".to_string(),
                })?;
                sources.push(Source {
                    version: version.to_string(),
                    description: description.replace('_', " "),
                    up,
                    down,
                    origin: path.clone(),
                    repeatable: false,
                });
            }
            sources.sort_by(|a, b| compare_versions(&a.version, &b.version));
        }
        Tool::LiquibaseSql => {
            for path in &files {
                let text = read(path)?;
                if !text.trim_start().starts_with("--liquibase formatted sql") {
                    continue;
                }
                sources.extend(changesets(&text, path));
            }
        }
        Tool::Alembic => {
            for path in &files {
                sources.extend(alembic_sections(&read(path)?, path));
            }
        }
    }
    if sources.is_empty() {
        return Err(Error::Empty {
            dir: dir.to_path_buf(),
            tool: Tool::NAMES[tool as usize],
        });
    }
    Ok(sources)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn strip_sql(name: &str) -> String {
    name.strip_suffix(".sql").unwrap_or(name).to_string()
}

/// Versions compared part by part as numbers (`1.10` after `1.9`), as the tools do.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u128> {
        v.split(['.', '_'])
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

/// dbmate's `-- migrate:up` and `-- migrate:down` sections.
fn dbmate_sections(text: &str) -> Option<(String, Option<String>)> {
    let up_at = text.find("-- migrate:up")?;
    let after_up = &text[up_at + "-- migrate:up".len()..];
    let after_up = after_up.split_once('\n').map_or("", |(_, rest)| rest);
    match after_up.find("-- migrate:down") {
        Some(down_at) => {
            let down = after_up[down_at + "-- migrate:down".len()..]
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
                .trim()
                .to_string();
            Some((
                after_up[..down_at].trim().to_string(),
                (!down.is_empty()).then_some(down),
            ))
        }
        None => Some((after_up.trim().to_string(), None)),
    }
}

/// Liquibase formatted SQL: `--changeset author:id` starts one, `--rollback SQL` lines
/// are its rollback.
fn changesets(text: &str, path: &Path) -> Vec<Source> {
    let mut found = Vec::new();
    let mut current: Option<(String, String, String)> = None;
    let mut flush = |current: &mut Option<(String, String, String)>| {
        if let Some((id, up, down)) = current.take() {
            let description = id
                .split_once(':')
                .map_or(id.as_str(), |(_, id)| id)
                .to_string();
            found.push(Source {
                version: id.clone(),
                description: description.replace(['-', '_'], " "),
                up: up.trim().to_string(),
                down: (!down.trim().is_empty()).then(|| down.trim().to_string()),
                origin: path.to_path_buf(),
                repeatable: false,
            });
        }
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--changeset") {
            flush(&mut current);
            let id = rest.split_whitespace().next().unwrap_or("").to_string();
            current = Some((id, String::new(), String::new()));
        } else if let Some(rest) = trimmed.strip_prefix("--rollback") {
            if let Some((_, _, down)) = &mut current {
                down.push_str(rest.trim());
                down.push('\n');
            }
        } else if let Some((_, up, _)) = &mut current {
            if !trimmed.starts_with("--liquibase") {
                up.push_str(line);
                up.push('\n');
            }
        }
    }
    flush(&mut current);
    found
}

/// `alembic upgrade --sql` output: a section per `-- Running upgrade a -> b`, its
/// bookkeeping (`alembic_version`, BEGIN/COMMIT) left out.
fn alembic_sections(text: &str, path: &Path) -> Vec<Source> {
    let mut found: Vec<Source> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("-- Running upgrade") {
            let revision = rest.rsplit("->").next().unwrap_or("").trim().to_string();
            found.push(Source {
                version: revision.clone(),
                description: format!("alembic revision {revision}"),
                up: String::new(),
                down: None,
                origin: path.to_path_buf(),
                repeatable: false,
            });
            continue;
        }
        let bookkeeping = trimmed.contains("alembic_version")
            || trimmed.eq_ignore_ascii_case("BEGIN;")
            || trimmed.eq_ignore_ascii_case("COMMIT;");
        if let Some(current) = found.last_mut() {
            if !bookkeeping {
                current.up.push_str(line);
                current.up.push('\n');
            }
        }
    }
    found.retain(|source| !source.up.trim().is_empty());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_reads_its_own_names_in_its_own_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("V10__late.sql", "SELECT 10;");
        write("V2__add_status.sql", "SELECT 2;");
        write("U2__add_status.sql", "SELECT -2;");
        write("R__orders_view.sql", "SELECT 'r';");
        let flyway = read(Tool::Flyway, dir.path()).expect("flyway");
        let order: Vec<&str> = flyway.iter().map(|s| s.version.as_str()).collect();
        assert_eq!(order, ["2", "10", "R"]);
        assert_eq!(flyway[0].down.as_deref(), Some("SELECT -2;"));
        assert_eq!(flyway[0].description, "add status");
        assert!(flyway[2].repeatable);

        let dir = tempfile::tempdir().expect("tempdir");
        let write =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("000002_b.up.sql", "SELECT 2;");
        write("000002_b.down.sql", "SELECT -2;");
        write("000001_a.up.sql", "SELECT 1;");
        let migrate = read(Tool::GolangMigrate, dir.path()).expect("golang-migrate");
        assert_eq!(migrate.len(), 2);
        assert_eq!(migrate[1].down.as_deref(), Some("SELECT -2;"));

        assert_eq!(
            dbmate_sections(
                "-- migrate:up\nCREATE TABLE t ();\n\n-- migrate:down\nDROP TABLE t;\n"
            ),
            Some((
                "CREATE TABLE t ();".to_string(),
                Some("DROP TABLE t;".to_string())
            ))
        );
        let sets = changesets(
            "--liquibase formatted sql\n--changeset ana:1-create\nCREATE TABLE t (id bigint);\n\
             --rollback DROP TABLE t;\n--changeset ana:2\nSELECT 1;\n",
            Path::new("x.sql"),
        );
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].down.as_deref(), Some("DROP TABLE t;"));
        let alembic = alembic_sections(
            "BEGIN;\nCREATE TABLE alembic_version (version_num varchar(32));\n\
             -- Running upgrade  -> 1a\nCREATE TABLE t (id bigint);\n\
             INSERT INTO alembic_version (version_num) VALUES ('1a');\nCOMMIT;\n",
            Path::new("up.sql"),
        );
        assert_eq!(alembic.len(), 1);
        assert_eq!(alembic[0].up.trim(), "CREATE TABLE t (id bigint);");
    }
}
