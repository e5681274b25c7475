//! The checks: one walk over a text's statements (PostgreSQL's own parse tree, through
//! `pg_query`), keeping what earlier statements did (tables created here, the transaction
//! block, lock_timeout, constraints added NOT VALID, indexes built) so that each statement
//! is judged in its place.

use std::collections::{HashMap, HashSet};

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ColumnDef, ConstrType, Constraint, Node, ObjectType, RangeVar,
    TransactionStmtKind, TypeName,
};

use super::rules::{self, Rule};
use crate::migration::sql::{last_name, qualified_name};

/// Where the SQL runs, which decides what the text itself must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A zdm `raw_sql`: one transaction, under zdm's own lock_timeout with retries.
    RawSql,
    /// A plain `.sql` migration file: autocommit unless it opens a transaction block.
    SqlFile,
}

/// One finding: the rule, where its statement starts (a byte offset of the text), the
/// lock it takes and on what, and what exactly was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static Rule,
    pub offset: usize,
    pub lock: Option<String>,
    pub detail: String,
}

/// Why a text could not be linted: it does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("does not parse: {0}")]
pub struct Unparsable(pub String);

/// The comment that turns rules off: `-- zdm-lint: ignore RULE[, RULE]` before a statement,
/// `-- zdm-lint: ignore-file RULE[, RULE]` anywhere (`all` for every rule).
const MARK: &str = "zdm-lint:";

/// Checks every statement of `sql`.
pub fn check(sql: &str, context: Context) -> Result<Vec<Finding>, Unparsable> {
    let parsed = match pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) {
        Ok(parsed) => parsed.protobuf,
        Err(error) => return Err(Unparsable(error.to_string())),
    };
    let file_ignores = ignores(sql, "ignore-file");
    let mut walk = Walk::new(context);
    let mut previous_end = 0;
    for (span, node) in crate::migration::sql::statement_spans(&parsed, sql) {
        let (start, end) = (span.start, span.end);
        // Comments before the statement are part of its text: the first token is where a
        // person sees it.
        let offset = first_token(sql, start, end);
        let before = &sql[previous_end.min(offset)..offset];
        let statement_ignores = ignores(before, "ignore");
        previous_end = end;
        let found = walk.statement(node);
        for (rule, lock, detail) in found {
            let off = |list: &Vec<String>| list.iter().any(|id| id == rule.id || id == "all");
            if !off(&file_ignores) && !off(&statement_ignores) {
                walk.findings.push(Finding {
                    rule,
                    offset,
                    lock,
                    detail,
                });
            }
        }
    }
    Ok(walk.findings)
}

/// The rule ids of every `zdm-lint: <directive> a, b` comment in `text`.
fn ignores(text: &str, directive: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(MARK) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(list) = rest.strip_prefix(directive) else {
            continue;
        };
        // `ignore` must not match the start of `ignore-file`.
        if list.starts_with('-') {
            continue;
        }
        ids.extend(
            list.split([',', ' '])
                .map(|id| id.trim().trim_end_matches("*/").trim())
                .filter(|id| !id.is_empty())
                .map(str::to_string),
        );
    }
    ids
}

/// The offset of the first token in `sql[start..end]`, past whitespace and comments.
fn first_token(sql: &str, start: usize, end: usize) -> usize {
    let mut at = start;
    loop {
        let rest = &sql[at..end];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if let Some(after) = trimmed.strip_prefix("--") {
            at += 2 + after.find('\n').map_or(after.len(), |i| i + 1);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            at += 2 + after.find("*/").map_or(after.len(), |i| i + 2);
        } else {
            return at.min(end);
        }
    }
}

type Found = Vec<(&'static Rule, Option<String>, String)>;

/// What the statements so far have done.
struct Walk {
    context: Context,
    findings: Vec<Finding>,
    /// Tables created by this text (lower-case name): nothing uses them yet.
    created: HashSet<String>,
    /// Inside a transaction block (always, for a raw_sql).
    in_transaction: bool,
    lock_timeout: bool,
    /// The table that an earlier statement of this transaction locked ACCESS EXCLUSIVE.
    exclusive: Option<String>,
    /// Constraints added NOT VALID in this transaction.
    not_valid_here: HashSet<String>,
    /// CHECK constraints of the form `column IS NOT NULL`: name → (table, column).
    not_null_checks: HashMap<String, (String, String)>,
    /// (table, column) proved NOT NULL by a validated CHECK.
    proved_not_null: HashSet<(String, String)>,
    /// (table, first column) of every index built here.
    indexed: HashSet<(String, String)>,
}

impl Walk {
    fn new(context: Context) -> Self {
        let zdm = context == Context::RawSql;
        Walk {
            context,
            findings: Vec::new(),
            created: HashSet::new(),
            in_transaction: zdm,
            lock_timeout: zdm,
            exclusive: None,
            not_valid_here: HashSet::new(),
            not_null_checks: HashMap::new(),
            proved_not_null: HashSet::new(),
            indexed: HashSet::new(),
        }
    }

    fn is_new(&self, relation: &RangeVar) -> bool {
        self.created.contains(&relation.relname.to_lowercase())
    }

    /// The findings of one statement, and what it changes for the next.
    fn statement(&mut self, node: &NodeEnum) -> Found {
        let mut found = Found::new();
        // Held since an earlier statement: this one runs while every query on it waits.
        if let Some(table) = &self.exclusive {
            if !matches!(node, NodeEnum::TransactionStmt(_)) {
                found.push((
                    &rules::AFTER_ACCESS_EXCLUSIVE,
                    Some(format!(
                        "ACCESS EXCLUSIVE on {table}, held since an earlier statement"
                    )),
                    "this statement runs while that lock is held".to_string(),
                ));
                // Said once per transaction.
                self.exclusive = None;
            }
        }
        let lock = lock_of(node);
        if let Some((level, table)) = &lock {
            if !self.lock_timeout && !self.created.contains(&table.to_lowercase()) {
                found.push((
                    &rules::LOCK_TIMEOUT,
                    Some(format!("{level} on {table}")),
                    "no `SET lock_timeout` before it (said once: one SET before the first \
                     lock-taking statement covers the ones after it)"
                        .to_string(),
                ));
                // Said once: one SET at the top is the fix for every statement after it.
                self.lock_timeout = true;
            }
        }
        match node {
            NodeEnum::TransactionStmt(transaction) => match transaction.kind() {
                TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
                    self.in_transaction = true;
                }
                TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback => {
                    self.in_transaction = self.context == Context::RawSql;
                    self.exclusive = None;
                    self.not_valid_here.clear();
                }
                _ => {}
            },
            NodeEnum::VariableSetStmt(set) if set.name.eq_ignore_ascii_case("lock_timeout") => {
                self.lock_timeout = true;
            }
            NodeEnum::CreateStmt(create) => {
                if let Some(relation) = &create.relation {
                    self.created.insert(relation.relname.to_lowercase());
                    for element in &create.table_elts {
                        if let Some(NodeEnum::ColumnDef(column)) = &element.node {
                            found.extend(type_advice(column, &relation.relname));
                        }
                    }
                }
            }
            NodeEnum::IndexStmt(index) => {
                let Some(relation) = &index.relation else {
                    return found;
                };
                let table = relation.relname.to_lowercase();
                if let Some(first) = index.index_params.first().and_then(index_column) {
                    self.indexed.insert((table.clone(), first));
                }
                if index.concurrent && self.in_transaction {
                    found.push((
                        &rules::CONCURRENTLY_IN_TRANSACTION,
                        None,
                        format!("CREATE INDEX CONCURRENTLY on {}", relation.relname),
                    ));
                } else if !index.concurrent && !self.is_new(relation) {
                    found.push((
                        &rules::CONCURRENT_INDEX,
                        Some(format!("SHARE on {}", relation.relname)),
                        format!("CREATE INDEX on {} without CONCURRENTLY", relation.relname),
                    ));
                }
            }
            NodeEnum::DropStmt(drop) => match drop.remove_type() {
                ObjectType::ObjectIndex => {
                    if drop.concurrent && self.in_transaction {
                        found.push((
                            &rules::CONCURRENTLY_IN_TRANSACTION,
                            None,
                            "DROP INDEX CONCURRENTLY".to_string(),
                        ));
                    } else if !drop.concurrent {
                        found.push((
                            &rules::CONCURRENT_DROP_INDEX,
                            Some("ACCESS EXCLUSIVE on the index's table".to_string()),
                            format!("DROP INDEX {}", names(&drop.objects)),
                        ));
                    }
                }
                ObjectType::ObjectTable => {
                    let dropped = names(&drop.objects);
                    let all_new = drop
                        .objects
                        .iter()
                        .all(|object| self.created.contains(&last_name(object).to_lowercase()));
                    if !all_new {
                        found.push((
                            &rules::DROP_TABLE,
                            Some(format!("ACCESS EXCLUSIVE on {dropped}")),
                            format!("DROP TABLE {dropped}"),
                        ));
                    }
                }
                _ => {}
            },
            NodeEnum::RenameStmt(rename) => {
                let table = rename
                    .relation
                    .as_ref()
                    .map_or_else(String::new, |r| r.relname.clone());
                let new = rename.relation.as_ref().is_some_and(|r| self.is_new(r));
                match rename.rename_type() {
                    ObjectType::ObjectColumn if !new => found.push((
                        &rules::RENAME_COLUMN,
                        Some(format!("ACCESS EXCLUSIVE on {table}")),
                        format!("{table}.{} renamed to {}", rename.subname, rename.newname),
                    )),
                    ObjectType::ObjectTable if !new => found.push((
                        &rules::RENAME_TABLE,
                        Some(format!("ACCESS EXCLUSIVE on {table}")),
                        format!("{table} renamed to {}", rename.newname),
                    )),
                    _ => {}
                }
            }
            NodeEnum::AlterTableStmt(alter) => {
                if let Some(relation) = &alter.relation {
                    for command in &alter.cmds {
                        if let Some(NodeEnum::AlterTableCmd(command)) = &command.node {
                            found.extend(self.alter(relation, command));
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(("ACCESS EXCLUSIVE", table)) = lock.as_ref().map(|(l, t)| (*l, t.clone())) {
            if self.in_transaction && !self.created.contains(&table.to_lowercase()) {
                self.exclusive = Some(table);
            }
        }
        found
    }

    /// One `ALTER TABLE` command.
    fn alter(&mut self, relation: &RangeVar, command: &AlterTableCmd) -> Found {
        let mut found = Found::new();
        let table = relation.relname.clone();
        let key = table.to_lowercase();
        let new = self.is_new(relation);
        let exclusive = Some(format!("ACCESS EXCLUSIVE on {table}"));
        let def = command.def.as_ref().and_then(|def| def.node.as_ref());
        match command.subtype() {
            AlterTableType::AtAddColumn => {
                let Some(NodeEnum::ColumnDef(column)) = def else {
                    return found;
                };
                found.extend(type_advice(column, &table));
                if new {
                    return found;
                }
                let constraints: Vec<&Constraint> = column
                    .constraints
                    .iter()
                    .filter_map(|c| match &c.node {
                        Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
                        _ => None,
                    })
                    .collect();
                let default = constraints
                    .iter()
                    .find(|c| c.contype() == ConstrType::ConstrDefault);
                let not_null = column.is_not_null
                    || constraints
                        .iter()
                        .any(|c| c.contype() == ConstrType::ConstrNotnull);
                if not_null && default.is_none() {
                    found.push((
                        &rules::NOT_NULL_NO_DEFAULT,
                        exclusive.clone(),
                        format!("{table}.{} NOT NULL without a default", column.colname),
                    ));
                }
                let volatile = default
                    .and_then(|d| d.raw_expr.as_deref())
                    .and_then(volatile_call);
                let stored = constraints
                    .iter()
                    .any(|c| c.contype() == ConstrType::ConstrGenerated);
                if let Some(function) = volatile {
                    found.push((
                        &rules::VOLATILE_DEFAULT,
                        exclusive,
                        format!("{table}.{} DEFAULT {function}(…)", column.colname),
                    ));
                } else if stored {
                    found.push((
                        &rules::VOLATILE_DEFAULT,
                        exclusive,
                        format!("{table}.{} GENERATED ALWAYS AS (…) STORED", column.colname),
                    ));
                }
            }
            AlterTableType::AtAlterColumnType if !new => found.push((
                &rules::CHANGE_TYPE,
                exclusive,
                format!("{table}.{} TYPE changed", command.name),
            )),
            AlterTableType::AtDropColumn if !new => found.push((
                &rules::DROP_COLUMN,
                exclusive,
                format!("{table}.{} dropped", command.name),
            )),
            AlterTableType::AtSetNotNull if !new => {
                let proved = self
                    .proved_not_null
                    .contains(&(key, command.name.to_lowercase()));
                if !proved {
                    found.push((
                        &rules::SET_NOT_NULL,
                        exclusive,
                        format!("{table}.{} SET NOT NULL", command.name),
                    ));
                }
            }
            AlterTableType::AtAddConstraint => {
                let Some(NodeEnum::Constraint(constraint)) = def else {
                    return found;
                };
                found.extend(self.add_constraint(relation, constraint));
            }
            AlterTableType::AtValidateConstraint => {
                let name = command.name.to_lowercase();
                if self.not_valid_here.contains(&name) {
                    found.push((
                        &rules::VALIDATE_SAME_TRANSACTION,
                        exclusive,
                        format!("VALIDATE CONSTRAINT {} on {table}", command.name),
                    ));
                }
                if let Some(proved) = self.not_null_checks.get(&name) {
                    self.proved_not_null.insert(proved.clone());
                }
            }
            _ => {}
        }
        found
    }

    fn add_constraint(&mut self, relation: &RangeVar, constraint: &Constraint) -> Found {
        let mut found = Found::new();
        let table = relation.relname.clone();
        let key = table.to_lowercase();
        let new = self.is_new(relation);
        let name = constraint.conname.to_lowercase();
        match constraint.contype() {
            ConstrType::ConstrCheck | ConstrType::ConstrForeign => {
                let foreign = constraint.contype() == ConstrType::ConstrForeign;
                if let Some(column) = constraint.raw_expr.as_deref().and_then(is_not_null_test) {
                    let proved = (key.clone(), column);
                    if constraint.skip_validation {
                        self.not_null_checks.insert(name.clone(), proved);
                    } else {
                        self.proved_not_null.insert(proved);
                    }
                }
                if constraint.skip_validation {
                    if self.in_transaction {
                        self.not_valid_here.insert(name);
                    }
                } else if !new {
                    let lock = if foreign {
                        let referenced = constraint
                            .pktable
                            .as_ref()
                            .map_or_else(String::new, |t| format!(" and {}", t.relname));
                        format!("SHARE ROW EXCLUSIVE on {table}{referenced}")
                    } else {
                        format!("ACCESS EXCLUSIVE on {table}")
                    };
                    found.push((
                        &rules::NOT_VALID,
                        Some(lock),
                        format!(
                            "{} {} on {table} checked against every row",
                            if foreign { "FOREIGN KEY" } else { "CHECK" },
                            constraint.conname
                        ),
                    ));
                }
                if foreign {
                    let first = constraint
                        .fk_attrs
                        .first()
                        .map(|n| last_name(n).to_lowercase());
                    let indexed = first
                        .as_ref()
                        .is_some_and(|c| self.indexed.contains(&(key.clone(), c.clone())));
                    if !indexed && !new {
                        found.push((
                            &rules::FK_WITHOUT_INDEX,
                            None,
                            format!(
                                "{table}({}) has no index created in this file",
                                names(&constraint.fk_attrs)
                            ),
                        ));
                    }
                }
            }
            ConstrType::ConstrUnique | ConstrType::ConstrPrimary
                if constraint.indexname.is_empty() && !new =>
            {
                found.push((
                    &rules::UNIQUE_INLINE,
                    Some(format!("ACCESS EXCLUSIVE on {table}")),
                    format!(
                        "{} ({}) on {table}",
                        if constraint.contype() == ConstrType::ConstrPrimary {
                            "PRIMARY KEY"
                        } else {
                            "UNIQUE"
                        },
                        names(&constraint.keys)
                    ),
                ));
            }
            _ => {}
        }
        found
    }
}

/// The lock a statement takes and on which table, for the statements that take one a
/// client would queue behind.
fn lock_of(node: &NodeEnum) -> Option<(&'static str, String)> {
    match node {
        NodeEnum::AlterTableStmt(alter) => {
            let table = alter.relation.as_ref()?.relname.clone();
            let weakest_only = alter.cmds.iter().all(|command| {
                matches!(&command.node, Some(NodeEnum::AlterTableCmd(c))
                    if matches!(c.subtype(), AlterTableType::AtValidateConstraint
                        | AlterTableType::AtSetStatistics))
            });
            let level = if weakest_only {
                "SHARE UPDATE EXCLUSIVE"
            } else {
                "ACCESS EXCLUSIVE"
            };
            Some((level, table))
        }
        NodeEnum::IndexStmt(index) if !index.concurrent => {
            Some(("SHARE", index.relation.as_ref()?.relname.clone()))
        }
        NodeEnum::DropStmt(drop)
            if matches!(drop.remove_type(), ObjectType::ObjectTable)
                || (drop.remove_type() == ObjectType::ObjectIndex && !drop.concurrent) =>
        {
            Some(("ACCESS EXCLUSIVE", names(&drop.objects)))
        }
        NodeEnum::RenameStmt(rename) => Some((
            "ACCESS EXCLUSIVE",
            rename.relation.as_ref()?.relname.clone(),
        )),
        NodeEnum::TruncateStmt(truncate) => Some(("ACCESS EXCLUSIVE", names(&truncate.relations))),
        _ => None,
    }
}

/// `prefer-*` advice on a column's type.
fn type_advice(column: &ColumnDef, table: &str) -> Found {
    let Some(type_name) = &column.type_name else {
        return Found::new();
    };
    let name = type_name_last(type_name);
    let found: &[&'static Rule] = match name.as_str() {
        "int4" | "int2" | "integer" | "smallint" | "int" => &[&rules::PREFER_BIGINT],
        "varchar" => &[&rules::PREFER_TEXT],
        "timestamp" => &[&rules::PREFER_TIMESTAMPTZ],
        "bigserial" | "serial8" => &[&rules::PREFER_IDENTITY],
        // A 32-bit (or 16-bit) sequence as well.
        "serial" | "serial4" | "smallserial" | "serial2" => {
            &[&rules::PREFER_IDENTITY, &rules::PREFER_BIGINT]
        }
        _ => &[],
    };
    found
        .iter()
        .map(|rule| (*rule, None, format!("{table}.{} {name}", column.colname)))
        .collect()
}

/// The type's own name (`int4` for `pg_catalog.int4`).
fn type_name_last(type_name: &TypeName) -> String {
    type_name
        .names
        .last()
        .map(last_name)
        .unwrap_or_default()
        .to_lowercase()
}

/// The function a volatile default calls, if it is one of the well-known volatile ones.
fn volatile_call(expr: &Node) -> Option<String> {
    const VOLATILE: [&str; 7] = [
        "random",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuid_generate_v4",
        "uuid_generate_v1",
        "nextval",
    ];
    match expr.node.as_ref()? {
        NodeEnum::FuncCall(call) => {
            let name = call.funcname.last().map(last_name)?.to_lowercase();
            VOLATILE.contains(&name.as_str()).then_some(name)
        }
        NodeEnum::TypeCast(cast) => volatile_call(cast.arg.as_deref()?),
        _ => None,
    }
}

/// The column of a `column IS NOT NULL` test.
fn is_not_null_test(expr: &Node) -> Option<String> {
    match expr.node.as_ref()? {
        NodeEnum::NullTest(test)
            if test.nulltesttype() == pg_query::protobuf::NullTestType::IsNotNull =>
        {
            match test.arg.as_deref()?.node.as_ref()? {
                NodeEnum::ColumnRef(column) => {
                    Some(column.fields.last().map(last_name)?.to_lowercase())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The first column of an index element (`email`, not `lower(email)`).
fn index_column(node: &Node) -> Option<String> {
    match node.node.as_ref()? {
        NodeEnum::IndexElem(element) if !element.name.is_empty() => {
            Some(element.name.to_lowercase())
        }
        _ => None,
    }
}

/// Names as people read them, comma-separated.
fn names(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(qualified_name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(sql: &str, context: Context) -> Vec<&'static str> {
        check(sql, context)
            .expect("parses")
            .iter()
            .map(|finding| finding.rule.id)
            .collect()
    }

    #[test]
    fn each_unsafe_statement_is_found_and_its_safe_rewrite_is_not() {
        let cases: [(&str, &str, &str); 17] = [
            (
                "require-concurrent-index-creation",
                "CREATE INDEX i ON orders (placed_at);",
                "CREATE INDEX CONCURRENTLY i ON orders (placed_at);",
            ),
            (
                "require-concurrent-index-deletion",
                "DROP INDEX i;",
                "DROP INDEX CONCURRENTLY i;",
            ),
            (
                "constraint-missing-not-valid",
                "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0);",
                "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID;",
            ),
            (
                "validate-in-same-transaction",
                "BEGIN; ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID; \
                 ALTER TABLE orders VALIDATE CONSTRAINT c; COMMIT;",
                "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID; \
                 ALTER TABLE orders VALIDATE CONSTRAINT c;",
            ),
            (
                "set-not-null-without-check",
                "ALTER TABLE orders ALTER COLUMN status SET NOT NULL;",
                "ALTER TABLE orders ADD CONSTRAINT s CHECK (status IS NOT NULL) NOT VALID; \
                 ALTER TABLE orders VALIDATE CONSTRAINT s; \
                 ALTER TABLE orders ALTER COLUMN status SET NOT NULL;",
            ),
            (
                "adding-not-nullable-field",
                "ALTER TABLE orders ADD COLUMN note text NOT NULL;",
                "ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT '';",
            ),
            (
                "adding-field-with-volatile-default",
                "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();",
                "ALTER TABLE orders ADD COLUMN token uuid;",
            ),
            (
                "changing-column-type",
                "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);",
                "CREATE TABLE t (total numeric); ALTER TABLE t ALTER COLUMN total TYPE bigint;",
            ),
            (
                "disallowed-unique-constraint",
                "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (code);",
                "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX orders_code;",
            ),
            (
                "renaming-column",
                "ALTER TABLE orders RENAME COLUMN total TO total_cents;",
                "ALTER TABLE orders ADD COLUMN total_cents bigint;",
            ),
            (
                "renaming-table",
                "ALTER TABLE orders RENAME TO purchases;",
                "CREATE TABLE x (id bigint); ALTER TABLE x RENAME TO y;",
            ),
            (
                "ban-drop-column",
                "ALTER TABLE orders DROP COLUMN note;",
                "CREATE TABLE x (id bigint, note text); ALTER TABLE x DROP COLUMN note;",
            ),
            (
                "ban-drop-table",
                "DROP TABLE orders;",
                "CREATE TABLE scratch (id bigint); DROP TABLE scratch;",
            ),
            (
                "foreign-key-without-index",
                "ALTER TABLE items ADD CONSTRAINT f FOREIGN KEY (order_id) REFERENCES orders NOT VALID;",
                "CREATE INDEX CONCURRENTLY items_order ON items (order_id); \
                 ALTER TABLE items ADD CONSTRAINT f FOREIGN KEY (order_id) REFERENCES orders NOT VALID;",
            ),
            (
                "statements-after-access-exclusive",
                "BEGIN; ALTER TABLE orders ADD COLUMN note text; UPDATE orders SET note = ''; COMMIT;",
                "BEGIN; ALTER TABLE orders ADD COLUMN note text; COMMIT; UPDATE orders SET note = '';",
            ),
            (
                "concurrently-in-transaction",
                "BEGIN; CREATE INDEX CONCURRENTLY i ON orders (placed_at); COMMIT;",
                "CREATE INDEX CONCURRENTLY i ON orders (placed_at);",
            ),
            (
                "prefer-bigint-over-int",
                "CREATE TABLE t (id integer PRIMARY KEY);",
                "CREATE TABLE t (id bigint PRIMARY KEY);",
            ),
        ];
        for (rule, unsafe_sql, safe_sql) in cases {
            let sql = format!("SET lock_timeout = '2s';\n{unsafe_sql}");
            assert!(ids(&sql, Context::SqlFile).contains(&rule), "{rule}: {sql}");
            let safe = format!("SET lock_timeout = '2s';\n{safe_sql}");
            assert!(
                !ids(&safe, Context::SqlFile).contains(&rule),
                "{rule} on its safe rewrite: {:?}",
                ids(&safe, Context::SqlFile)
            );
        }
    }

    #[test]
    fn lock_timeout_is_required_in_a_sql_file_and_set_by_zdm_for_raw_sql() {
        let sql = "ALTER TABLE orders ADD COLUMN note text;";
        assert_eq!(ids(sql, Context::SqlFile), vec!["require-lock-timeout"]);
        assert!(ids(sql, Context::RawSql).is_empty());
        let set = "SET lock_timeout = '1s'; ALTER TABLE orders ADD COLUMN note text;";
        assert!(ids(set, Context::SqlFile).is_empty());
        // CONCURRENTLY fails in a raw_sql: zdm runs it in a transaction.
        assert_eq!(
            ids("CREATE INDEX CONCURRENTLY i ON t (a);", Context::RawSql),
            vec!["concurrently-in-transaction"]
        );
    }

    #[test]
    fn findings_point_at_the_statement_and_comments_turn_rules_off() {
        let sql = "SET lock_timeout = '1s';\n\n-- an index\nCREATE INDEX i ON orders (a);\n";
        let found = check(sql, Context::SqlFile).expect("parses");
        assert_eq!(found.len(), 1);
        assert_eq!(&sql[found[0].offset..found[0].offset + 12], "CREATE INDEX");
        assert_eq!(found[0].lock.as_deref(), Some("SHARE on orders"));
        let ignored = "SET lock_timeout = '1s';\n\
                       -- zdm-lint: ignore require-concurrent-index-creation\n\
                       CREATE INDEX i ON orders (a);\nCREATE INDEX j ON orders (b);\n";
        assert_eq!(
            ids(ignored, Context::SqlFile),
            vec!["require-concurrent-index-creation"],
            "only the next statement is ignored"
        );
        let file = "-- zdm-lint: ignore-file require-lock-timeout, ban-drop-table\nDROP TABLE t;";
        assert!(ids(file, Context::SqlFile).is_empty());
    }

    #[test]
    fn sql_that_does_not_parse_is_said_so() {
        assert!(check("ALTER TABLE", Context::SqlFile).is_err());
    }
}
