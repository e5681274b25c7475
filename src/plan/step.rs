//! One planned step: what it does, in which phase, and which lock it takes on what.

use serde::{Deserialize, Serialize};

/// The phases of an expand/contract migration. Rollback undoes expand and backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Additive DDL, triggers, views of the new version; the old version keeps working.
    Expand,
    /// Batched data copy into the new shape.
    Backfill,
    /// Drop the old shape, finalize constraints, drop triggers and old views. Irreversible.
    Contract,
    /// Undo of expand and backfill; possible only before contract.
    Rollback,
}

/// PostgreSQL's table lock modes, weakest first (what a step's DDL acquires).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockLevel {
    /// Takes no table lock (e.g. creating a schema or a function).
    None,
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockLevel {
    /// The level of a `pg_locks.mode` such as `RowExclusiveLock`; None for other lock kinds.
    pub fn from_pg_mode(mode: &str) -> Option<LockLevel> {
        use LockLevel::*;
        Some(match mode {
            "AccessShareLock" => AccessShare,
            "RowShareLock" => RowShare,
            "RowExclusiveLock" => RowExclusive,
            "ShareUpdateExclusiveLock" => ShareUpdateExclusive,
            "ShareLock" => Share,
            "ShareRowExclusiveLock" => ShareRowExclusive,
            "ExclusiveLock" => Exclusive,
            "AccessExclusiveLock" => AccessExclusive,
            _ => return Option::None,
        })
    }

    /// PostgreSQL's table-lock conflict matrix: whether a request for `self` waits for a
    /// lock held at `held` (by another transaction).
    pub fn conflicts_with(self, held: LockLevel) -> bool {
        use LockLevel::*;
        let conflicting: &[LockLevel] = match self {
            None => &[],
            AccessShare => &[AccessExclusive],
            RowShare => &[Exclusive, AccessExclusive],
            RowExclusive => &[Share, ShareRowExclusive, Exclusive, AccessExclusive],
            ShareUpdateExclusive => &[
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Share => &[
                RowExclusive,
                ShareUpdateExclusive,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            ShareRowExclusive => &[
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Exclusive => &[
                RowShare,
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            AccessExclusive => &[
                AccessShare,
                RowShare,
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
        };
        conflicting.contains(&held)
    }

    /// The name PostgreSQL uses (`ACCESS EXCLUSIVE`).
    pub fn sql_name(self) -> &'static str {
        match self {
            LockLevel::None => "none",
            LockLevel::AccessShare => "ACCESS SHARE",
            LockLevel::RowShare => "ROW SHARE",
            LockLevel::RowExclusive => "ROW EXCLUSIVE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::Share => "SHARE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::Exclusive => "EXCLUSIVE",
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Whether a lock of this level blocks ordinary reads (SELECT) while held or queued.
    pub fn blocks_reads(self) -> bool {
        self == LockLevel::AccessExclusive
    }

    /// Whether it blocks INSERT/UPDATE/DELETE while held.
    pub fn blocks_writes(self) -> bool {
        self >= LockLevel::Share
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepAction {
    /// SQL run under `lock_timeout` with retries. `transactional = false` for statements
    /// that cannot run in a transaction block (CREATE INDEX CONCURRENTLY).
    Sql { sql: String, transactional: bool },
    /// A batched copy of data within one table.
    Backfill(Backfill),
}

/// A batched update: for every row (in key order), `SET column = expression` where needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// Schema-qualified physical table, quoted.
    pub table: String,
    /// The key batches are cut on (primary key or a unique NOT NULL key), in order.
    /// Plain column names, not quoted: the engine quotes them.
    pub key_columns: Vec<String>,
    /// `(column, SQL expression over the row)` pairs to assign. The column is a plain name
    /// (the engine quotes it); the expression is SQL whose own identifiers the planner quotes.
    pub assignments: Vec<(String, String)>,
    /// Only rows matching this predicate need the update (e.g. `new_col IS NULL`). It only
    /// skips rows: the backfill is one pass in key order, never "repeat until no row
    /// matches" (an `up` expression may legitimately yield NULL).
    pub predicate: Option<String>,
}

/// An object a step leaves behind, which the engine checks exists (and, for an index, is
/// valid) once the step's phase is done: PostgreSQL truncating a long name, an `IF NOT
/// EXISTS` matching the wrong object or a failed concurrent build would otherwise pass
/// silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    pub kind: PromiseKind,
    /// The table it belongs to, schema-qualified and quoted (its name until contract).
    pub table: String,
    /// The table's schema: where to look for it should contract rename the table.
    pub schema: String,
    /// Its exact name.
    pub name: String,
    /// Whether it is still there after contract (a NOT NULL proof, a sync trigger or a
    /// temporary name are gone by then).
    pub kept: bool,
}

/// What kind of object a [`Promise`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromiseKind {
    Constraint,
    Index,
    Trigger,
}

impl std::fmt::Display for Promise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            PromiseKind::Constraint => "constraint",
            PromiseKind::Index => "index",
            PromiseKind::Trigger => "trigger",
        };
        write!(f, "{kind} {} on {}", self.name, self.table)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub phase: Phase,
    /// One line for a person: "add column orders.status (nullable, hidden from the old version)".
    pub description: String,
    pub action: StepAction,
    /// The strongest lock the step takes.
    pub lock: LockLevel,
    /// What the lock is taken on (schema-qualified relation names).
    pub locked: Vec<String>,
    /// Whether the step rewrites a table (never under a lock that blocks the application).
    pub rewrites: bool,
    /// Whether the step reads a whole table (a scan: slow on big tables, but not blocking).
    pub scans: bool,
    /// Raw SQL zdm cannot reason about: shown as unsafe in the plan.
    pub unchecked: bool,
    /// What the step leaves behind, checked after its phase (absent from plans stored
    /// before promises existed: those promise nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<Promise>,
}

impl Step {
    /// A transactional SQL step taking `lock` on `locked`, neither scanning nor rewriting.
    pub fn sql(
        phase: Phase,
        description: impl Into<String>,
        sql: impl Into<String>,
        lock: LockLevel,
        locked: Vec<String>,
    ) -> Step {
        Step {
            phase,
            description: description.into(),
            action: StepAction::Sql {
                sql: sql.into(),
                transactional: true,
            },
            lock,
            locked,
            rewrites: false,
            scans: false,
            unchecked: false,
            creates: Vec::new(),
        }
    }

    /// The same step, promising `kind` `name` on `table` once its phase is done; `kept`:
    /// still there after contract.
    pub fn creating(
        mut self,
        kind: PromiseKind,
        table: &crate::db::catalog::QualifiedName,
        name: &str,
        kept: bool,
    ) -> Step {
        self.creates.push(Promise {
            kind,
            table: table.quoted(),
            schema: table.schema.clone(),
            name: name.to_string(),
            kept,
        });
        self
    }

    /// The same step, run outside a transaction block (CREATE INDEX CONCURRENTLY).
    pub fn outside_transaction(mut self) -> Step {
        if let StepAction::Sql { transactional, .. } = &mut self.action {
            *transactional = false;
        }
        self
    }

    /// The same step, marked as reading the whole table.
    pub fn scanning(mut self) -> Step {
        self.scans = true;
        self
    }

    /// The index this step builds with `CREATE INDEX CONCURRENTLY`: the index promised by a
    /// step that runs outside a transaction block (the planner writes no other such step).
    /// Before each try the engine drops an INVALID index of this name on its table, left by
    /// an interrupted build, so that `IF NOT EXISTS` never takes it for a built one; it reads
    /// this, never the step's SQL.
    pub fn concurrent_index(&self) -> Option<&Promise> {
        match &self.action {
            StepAction::Sql {
                transactional: false,
                ..
            } => self
                .creates
                .iter()
                .find(|promise| promise.kind == PromiseKind::Index),
            _ => None,
        }
    }

    /// The SQL of a SQL step.
    pub fn sql_text(&self) -> Option<&str> {
        match &self.action {
            StepAction::Sql { sql, .. } => Some(sql),
            StepAction::Backfill(_) => None,
        }
    }
}
