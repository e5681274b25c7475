//! A migration's SQL expressions checked against the live catalog before expand, changing
//! nothing: each expression over a table's rows is analysed by PostgreSQL as
//! `SELECT (<expr>)::<target type> FROM <table> LIMIT 0` (a default without the FROM, a
//! type as `SELECT NULL::<type>`) inside a READ ONLY transaction that is rolled back,
//! under a short lock_timeout, so an unknown column, function or type, or a value that
//! cannot become the column's type, is found before anything runs. `zdm validate` with a
//! database and `zdm start` (before expand) both use it.
//!
//! What is left out, so that this check never refuses a correct migration: expressions
//! over rows that do not exist before expand (a new table's or new column's `check`, a
//! change_type's `down` over the new type), and every operation on a table that an earlier
//! operation of the pending migrations reshapes (adds, drops, renames, retypes columns;
//! after a raw_sql, everything; after an enum operation, every snippet naming that type or
//! cast to a column's type), since the database does not have that shape yet. The
//! cast is explicit, so an expression it accepts may still be refused by the assignment
//! zdm makes; what it refuses would fail at expand.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{Executor, PgConnection};

use super::workspace::qualify;
use crate::db::catalog::QualifiedName;
use crate::migration::operation::Operation;
use crate::migration::sql::{snippets, Grammar, Rows, Snippet, Target};
use crate::migration::{Checked, Diagnostic, Severity};

/// Type-checks the SQL of `files` (in migration order) against the database of `conn`.
/// Errors are the migrations'; warnings say what could not be checked and why. Fails only
/// when the database cannot be asked at all.
pub async fn check_files(
    conn: &mut PgConnection,
    files: &[&Checked],
    lock_timeout: Duration,
) -> Result<Vec<Diagnostic>, sqlx::Error> {
    let jobs = jobs(files);
    let mut found = Vec::new();
    for job in jobs {
        let Some(problem) = check_snippet(conn, &job, lock_timeout).await? else {
            continue;
        };
        let (severity, message) = match problem {
            Problem::Refused(why) => (
                Severity::Error,
                format!("{}: `{}` does not fit the database: {why}", job.op, job.key),
            ),
            Problem::Unchecked(why) => (
                Severity::Warning,
                format!(
                    "{}: `{}` could not be checked against the database: {why}",
                    job.op, job.key
                ),
            ),
        };
        found.push(Diagnostic {
            path: job.path,
            position: job.position,
            severity,
            message,
        });
    }
    Ok(found)
}

/// One snippet to check, owned, with where to report it.
struct Job {
    path: std::path::PathBuf,
    position: Option<(usize, usize)>,
    op: &'static str,
    key: String,
    text: String,
    grammar: Grammar,
    /// `None`: no FROM (a default).
    table: Option<QualifiedName>,
    target: Option<JobTarget>,
}

enum JobTarget {
    Type(String),
    ColumnOf(QualifiedName, String),
    Boolean,
}

/// The snippets of `files` the database can judge, in order.
fn jobs(files: &[&Checked]) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut reshaped = Reshaped::default();
    for file in files {
        let (Some(migration), Some(source)) = (&file.migration, &file.source) else {
            continue;
        };
        let all = snippets(migration);
        for (index, operation) in migration.operations.iter().enumerate() {
            for snippet in &all {
                if snippet.operation != Some(index) || !reshaped.unchanged(snippet) {
                    continue;
                }
                let checkable = snippet.grammar == Grammar::Type
                    || (snippet.grammar == Grammar::Expression
                        && snippet.target.is_some()
                        && snippet.rows != Rows::NotYet);
                if !checkable {
                    continue;
                }
                jobs.push(Job {
                    path: file.path.clone(),
                    position: snippet.position(source),
                    op: operation.name(),
                    key: snippet.key(),
                    text: snippet.text.to_string(),
                    grammar: snippet.grammar,
                    table: match snippet.rows {
                        Rows::Table(table) => Some(qualify(table)),
                        _ => None,
                    },
                    target: snippet.target.map(|target| match target {
                        Target::Type(text) => JobTarget::Type(text.to_string()),
                        Target::ColumnOf(table, column) => {
                            JobTarget::ColumnOf(qualify(table), column.to_string())
                        }
                        Target::Boolean => JobTarget::Boolean,
                    }),
                });
            }
            reshaped.after(operation);
        }
    }
    jobs
}

/// The tables earlier operations reshape: expressions over them are not checked.
#[derive(Default)]
struct Reshaped {
    tables: HashSet<QualifiedName>,
    /// After a raw_sql, nothing is known to be as the database has it now.
    everything: bool,
    /// Enum types earlier operations create or change (bare names): a snippet naming one
    /// would be judged against the type as it is now, or as absent.
    types: Vec<String>,
}

impl Reshaped {
    fn unchanged(&self, snippet: &Snippet<'_>) -> bool {
        let names_changed_type = |text: &str| self.types.iter().any(|t| text.contains(t.as_str()));
        if names_changed_type(snippet.text)
            || matches!(snippet.target, Some(Target::Type(text)) if names_changed_type(text))
            // A column's type is not known here: it may be one of those enums.
            || (!self.types.is_empty() && matches!(snippet.target, Some(Target::ColumnOf(..))))
        {
            return false;
        }
        if let Some(Target::ColumnOf(table, _)) = snippet.target {
            if self.tables.contains(&qualify(table)) {
                return false;
            }
        }
        match snippet.rows {
            Rows::Table(table) => !self.everything && !self.tables.contains(&qualify(table)),
            Rows::None => !self.everything,
            // A type is checked unless a raw_sql before may create it.
            Rows::NotYet => snippet.grammar == Grammar::Type && !self.everything,
        }
    }

    fn after(&mut self, operation: &Operation) {
        let mut add = |name: &str| {
            self.tables.insert(qualify(name));
        };
        match operation {
            Operation::CreateTable(op) => add(&op.table),
            Operation::DropTable(op) => add(&op.table),
            Operation::RenameTable(op) => {
                add(&op.table);
                let schema = qualify(&op.table).schema;
                add(&format!("{schema}.{}", op.to));
                add(&op.to);
            }
            Operation::AddColumn(op) => add(&op.table),
            Operation::DropColumn(op) => add(&op.table),
            Operation::RenameColumn(op) => add(&op.table),
            Operation::ChangeType(op) => add(&op.table),
            Operation::SplitTable(op) => {
                add(&op.table);
                add(&op.new_table);
            }
            Operation::RawSql(_) => self.everything = true,
            Operation::CreateEnum(op) => self.types.push(qualify(&op.name).name),
            Operation::AddEnumValue(op) => self.types.push(qualify(&op.name).name),
            Operation::RenameEnumValue(op) => self.types.push(qualify(&op.name).name),
            Operation::DropEnum(op) => self.types.push(qualify(&op.name).name),
            // Constraints, defaults, NOT NULL and indexes leave columns and types as they are.
            Operation::SetNotNull(_)
            | Operation::DropNotNull(_)
            | Operation::SetDefault(_)
            | Operation::AddCheck(_)
            | Operation::AddUnique(_)
            | Operation::AddForeignKey(_)
            | Operation::DropConstraint(_)
            | Operation::RenameConstraint(_)
            | Operation::CreateIndex(_)
            | Operation::DropIndex(_)
            | Operation::SetReplicaIdentity(_)
            | Operation::SetComment(_)
            | Operation::AddPrimaryKey(_) => {}
        }
    }
}

/// What the database said about one snippet.
enum Problem {
    /// The snippet is wrong for this database.
    Refused(String),
    /// The check itself could not run (a lock held, no privilege): not the file's fault.
    Unchecked(String),
}

/// Checks one snippet; `None` when it fits, or when it is not checked against the
/// database (the planner reports a missing table or column).
async fn check_snippet(
    conn: &mut PgConnection,
    job: &Job,
    lock_timeout: Duration,
) -> Result<Option<Problem>, sqlx::Error> {
    let (sql, prefix) = if job.grammar == Grammar::Type {
        (format!("SELECT NULL::{}", job.text), "SELECT NULL::")
    } else {
        let (table, column) = match &job.target {
            Some(JobTarget::ColumnOf(table, column)) => (table.quoted(), column.clone()),
            _ => (String::new(), String::new()),
        };
        let target = match &job.target {
            Some(JobTarget::Type(text)) => text.clone(),
            Some(JobTarget::Boolean) => "boolean".to_string(),
            Some(JobTarget::ColumnOf(..)) => {
                let found = column_type(conn, table, column).await?;
                let Some(found) = found else {
                    return Ok(None);
                };
                found
            }
            None => return Ok(None),
        };
        let from = job
            .table
            .as_ref()
            .map(|table| format!(" FROM {} LIMIT 0", table.quoted()));
        if let Some(table) = &job.table {
            let found = exists(conn, table.quoted()).await?;
            if !found {
                return Ok(None);
            }
        }
        let from = from.unwrap_or_default();
        // The new line keeps a trailing `-- comment` from eating the cast.
        (
            format!("SELECT ({}\n)::{target}{from}", job.text),
            "SELECT (",
        )
    };
    analyse(conn, &sql, prefix.chars().count(), job, lock_timeout).await
}

/// Runs `sql` in a READ ONLY transaction that is rolled back; the database's refusal, at
/// its position inside the snippet (which starts after `prefix` characters).
async fn analyse(
    conn: &mut PgConnection,
    sql: &str,
    prefix: usize,
    job: &Job,
    lock_timeout: Duration,
) -> Result<Option<Problem>, sqlx::Error> {
    // Executor's own `execute` (not the query's): the query's form defeats the compiler's
    // proof that callers' futures are Send.
    (&mut *conn)
        .execute(sqlx::raw_sql("BEGIN READ ONLY"))
        .await?;
    let timeout = lock_timeout.as_millis().max(1);
    let settings = format!(
        "SET LOCAL lock_timeout = '{timeout}ms'; SET LOCAL statement_timeout = '{}ms'",
        timeout * 4
    );
    let mut outcome = (&mut *conn)
        .execute(sqlx::raw_sql(&settings))
        .await
        .map(|_| ());
    if outcome.is_ok() {
        // One statement, extended protocol: a snippet can never add another.
        outcome = (&mut *conn).execute(sqlx::query(sql)).await.map(|_| ());
    }
    (&mut *conn).execute(sqlx::raw_sql("ROLLBACK")).await?;
    let Err(error) = outcome else {
        return Ok(None);
    };
    let Some(database) = error.as_database_error() else {
        return Err(error);
    };
    let code = database.code().map(|c| c.to_string()).unwrap_or_default();
    let message = database.message().to_string();
    let postgres = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
    let position = postgres.and_then(|e| match e.position() {
        Some(sqlx::postgres::PgErrorPosition::Original(at)) => Some(at),
        _ => None,
    });
    let text = job.text.as_str();
    let inside = position
        .and_then(|at| at.checked_sub(prefix + 1))
        .filter(|&at| at < text.chars().count())
        .map(|at| {
            let offset = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
            let (line, column) = crate::position::line_column(text, offset);
            format!(" (line {line}, column {column} of `{}`)", job.key)
        })
        .unwrap_or_default();
    // Class 42 (unknown names, type mismatches) and 22 (a constant that is no value of the
    // type) are the snippet's; a lock or a missing privilege is the circumstances'.
    let refused = (code.starts_with("42") && code != "42501") || code.starts_with("22");
    Ok(Some(if refused {
        Problem::Refused(format!("{message}{inside}"))
    } else {
        Problem::Unchecked(format!("{message} (SQLSTATE {code})"))
    }))
}

async fn exists(conn: &mut PgConnection, table: String) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await
}

/// The type of `table.column` as PostgreSQL writes it (`numeric(12,2)`), if it exists.
async fn column_type(
    conn: &mut PgConnection,
    table: String,
    column: String,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
          WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
            AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(table)
    .bind(column)
    .fetch_optional(&mut *conn)
    .await
}
