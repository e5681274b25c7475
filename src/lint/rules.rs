//! Every lint rule once: its id, severity, why it hurts and the zdm operation that does the
//! same safely. The checks that find them are in `check`; `docs/lint.md` lists this table
//! (a test keeps the two the same).

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A habit that costs later (a type that runs out, a default that surprises).
    Warning,
    /// Blocks the application or breaks the version still running.
    Error,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    /// What the rule finds, in a line.
    pub title: &'static str,
    /// Why it hurts a live database.
    pub why: &'static str,
    /// What to do instead, with zdm.
    pub instead: &'static str,
}

macro_rules! rule {
    ($name:ident, $id:literal, $severity:ident, $title:literal, $why:literal, $instead:literal) => {
        pub const $name: Rule = Rule {
            id: $id,
            severity: Severity::$severity,
            title: $title,
            why: $why,
            instead: $instead,
        };
    };
}

rule!(
    CONCURRENT_INDEX,
    "require-concurrent-index-creation",
    Error,
    "index built without CONCURRENTLY on an existing table",
    "CREATE INDEX holds a SHARE lock for the whole build: every INSERT, UPDATE and DELETE on \
     the table waits until the index is built",
    "the `create_index` operation builds it CONCURRENTLY, outside a transaction, and \
     rebuilds an invalid leftover"
);
rule!(
    CONCURRENT_DROP_INDEX,
    "require-concurrent-index-deletion",
    Error,
    "index dropped without CONCURRENTLY",
    "DROP INDEX takes ACCESS EXCLUSIVE on the index's table: every query on it waits",
    "the `drop_index` operation drops it CONCURRENTLY in the contract phase, after the \
     gates checked nothing uses it"
);
rule!(
    NOT_VALID,
    "constraint-missing-not-valid",
    Error,
    "CHECK or FOREIGN KEY added without NOT VALID on an existing table",
    "the constraint is checked against every row while the lock is held (ACCESS EXCLUSIVE for \
     a CHECK, SHARE ROW EXCLUSIVE on both tables for a foreign key): writes wait for the scan",
    "the `add_check` / `add_foreign_key` operations add it NOT VALID, then VALIDATE it in a \
     transaction of its own (SHARE UPDATE EXCLUSIVE: writes go on)"
);
rule!(
    VALIDATE_SAME_TRANSACTION,
    "validate-in-same-transaction",
    Error,
    "constraint validated in the transaction that added it NOT VALID",
    "the ADD's lock is still held while VALIDATE scans the table, so NOT VALID gained nothing",
    "commit between ADD … NOT VALID and VALIDATE CONSTRAINT; `add_check` and \
     `add_foreign_key` do"
);
rule!(
    SET_NOT_NULL,
    "set-not-null-without-check",
    Error,
    "SET NOT NULL without a validated CHECK (column IS NOT NULL) first",
    "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE, unless a valid CHECK \
     constraint already proves it",
    "the `set_not_null` operation adds the CHECK NOT VALID, validates it, then sets NOT NULL \
     without a scan"
);
rule!(
    NOT_NULL_NO_DEFAULT,
    "adding-not-nullable-field",
    Error,
    "NOT NULL column added without a default to an existing table",
    "it fails on a table with rows, and the old version of the application, which does not \
     know the column, cannot insert",
    "the `add_column` operation with `up` (the value for existing rows) and `nullable = \
     false`: the backfill fills it and NOT NULL is set without a scan"
);
rule!(
    VOLATILE_DEFAULT,
    "adding-field-with-volatile-default",
    Error,
    "column added with a volatile default or as a stored generated column",
    "a volatile default (random(), clock_timestamp(), gen_random_uuid(), nextval()…) or a \
     stored generated column rewrites the whole table under ACCESS EXCLUSIVE",
    "the `add_column` operation with `up`: existing rows are filled by a throttled backfill"
);
rule!(
    CHANGE_TYPE,
    "changing-column-type",
    Error,
    "column type changed in place",
    "ALTER COLUMN TYPE takes ACCESS EXCLUSIVE and, for most changes, rewrites the table and \
     its indexes; the old version of the application keeps reading the old type",
    "the `change_type` operation: a shadow column with `up`/`down`, a backfill, both versions \
     working until contract"
);
rule!(
    UNIQUE_INLINE,
    "disallowed-unique-constraint",
    Error,
    "UNIQUE or PRIMARY KEY constraint built inline instead of USING INDEX",
    "the index behind it is built under ACCESS EXCLUSIVE: every query on the table waits",
    "the `add_unique` operation builds the index CONCURRENTLY, then adds the constraint \
     USING INDEX"
);
rule!(
    RENAME_COLUMN,
    "renaming-column",
    Error,
    "column renamed in place",
    "the old version of the application, still running during the deploy, names the old \
     column and fails at once",
    "the `rename_column` operation: each version sees its own name through its version schema"
);
rule!(
    RENAME_TABLE,
    "renaming-table",
    Error,
    "table renamed in place",
    "the old version of the application, still running during the deploy, names the old \
     table and fails at once",
    "the `rename_table` operation: each version sees its own name through its version schema"
);
rule!(
    DROP_COLUMN,
    "ban-drop-column",
    Error,
    "column dropped while clients may use it",
    "a client that still selects or writes the column fails; the data is gone for good",
    "the `drop_column` operation: the new version stops seeing it at once, the column goes \
     at contract, after the gates checked no session uses it"
);
rule!(
    DROP_TABLE,
    "ban-drop-table",
    Error,
    "table dropped while clients may use it",
    "a client that still uses the table fails; the data is gone for good",
    "the `drop_table` operation: dropped at contract, after the gates checked no session \
     uses it"
);
rule!(
    LOCK_TIMEOUT,
    "require-lock-timeout",
    Error,
    "lock-taking statement without a lock_timeout set before it",
    "a DDL statement that waits for its lock (behind one long transaction) makes every \
     query on the table queue behind it: an outage from a statement that would take \
     milliseconds",
    "`SET lock_timeout = '2s'` first, and retry; zdm runs every step under a short \
     lock_timeout with retries"
);
rule!(
    FK_WITHOUT_INDEX,
    "foreign-key-without-index",
    Warning,
    "foreign key whose referencing columns have no index created here",
    "every DELETE or key UPDATE on the referenced table scans the referencing table (holding \
     its locks meanwhile); only indexes created in the same file are seen",
    "a `create_index` on the referencing columns before the `add_foreign_key`"
);
rule!(
    AFTER_ACCESS_EXCLUSIVE,
    "statements-after-access-exclusive",
    Error,
    "more statements after one that took ACCESS EXCLUSIVE, in the same transaction",
    "the ACCESS EXCLUSIVE lock is held until the transaction commits: every query on that \
     table waits for all the statements after it",
    "commit right after the statement that takes ACCESS EXCLUSIVE; zdm plans each such step \
     as a transaction of its own"
);
rule!(
    CONCURRENTLY_IN_TRANSACTION,
    "concurrently-in-transaction",
    Error,
    "CONCURRENTLY inside a transaction block",
    "CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction block: the migration fails \
     there (a raw_sql of zdm runs in one)",
    "the `create_index` / `drop_index` operations, which zdm runs outside a transaction"
);
rule!(
    PREFER_BIGINT,
    "prefer-bigint-over-int",
    Warning,
    "integer or smallint column",
    "a 32-bit key or counter runs out at 2,147,483,647, and widening it later rewrites the \
     table",
    "bigint"
);
rule!(
    PREFER_TEXT,
    "prefer-text-field",
    Warning,
    "varchar(n) column",
    "changing the limit later takes ACCESS EXCLUSIVE; text with a CHECK on its length can be \
     changed without a lock that blocks reads",
    "text, with a `check` on length(...) if a limit is needed"
);
rule!(
    PREFER_TIMESTAMPTZ,
    "prefer-timestamptz",
    Warning,
    "timestamp without time zone column",
    "values are read back differently by sessions with another TimeZone, and converting the \
     column later rewrites the table",
    "timestamptz"
);
rule!(
    PREFER_IDENTITY,
    "prefer-identity",
    Warning,
    "serial column",
    "serial's sequence is a loose object (its grants and ownership drift from the column's)",
    "bigint GENERATED BY DEFAULT AS IDENTITY"
);

/// Every rule, in the order `docs/lint.md` lists them.
pub const ALL: [&Rule; 21] = [
    &CONCURRENT_INDEX,
    &CONCURRENT_DROP_INDEX,
    &NOT_VALID,
    &VALIDATE_SAME_TRANSACTION,
    &SET_NOT_NULL,
    &NOT_NULL_NO_DEFAULT,
    &VOLATILE_DEFAULT,
    &CHANGE_TYPE,
    &UNIQUE_INLINE,
    &RENAME_COLUMN,
    &RENAME_TABLE,
    &DROP_COLUMN,
    &DROP_TABLE,
    &LOCK_TIMEOUT,
    &FK_WITHOUT_INDEX,
    &AFTER_ACCESS_EXCLUSIVE,
    &CONCURRENTLY_IN_TRANSACTION,
    &PREFER_BIGINT,
    &PREFER_TEXT,
    &PREFER_TIMESTAMPTZ,
    &PREFER_IDENTITY,
];

/// The rule named `id`.
pub fn find(id: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|rule| rule.id == id)
}
