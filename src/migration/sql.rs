//! The SQL snippets of a migration file, checked with PostgreSQL's own grammar (libpg_query,
//! through the `pg_query` crate) before anything runs: every `up`, `down`, `default` and
//! `check` expression, index predicates and columns, column types, raw_sql's statements
//! and the `[[verify]]` queries. An expression is parsed as one expression (inside
//! `SELECT (…)`, and refused if it is anything more), statements as statements; a
//! syntax error is reported at the snippet's `file:line:col` with the parser's message and
//! the line and column inside the snippet. [`snippets`] lists them with what the database
//! check (`crate::plan::typecheck`) needs to type-check them against the live catalog;
//! `crate::plan::sql_check` uses [`parse`] on a plan's own SQL (`zdm start`, `zdm complete`).

use std::collections::BTreeMap;

use pg_query::protobuf::{node::Node as NodeEnum, Node, ParseResult};

use super::operation::SplitTable;
use super::operation::{ColumnDef, FromTable, Operation};
use super::{Diagnostic, Migration, Severity, SourceMap};

/// What a snippet must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    /// One SQL value expression (`price_cents::numeric / 100`, `now()`).
    Expression,
    /// One or more SQL statements (raw_sql).
    Statements,
    /// One statement that EXPLAIN accepts (a `[[verify]]` query).
    Query,
    /// A type name (`numeric(12,2)`, `text[]`).
    Type,
    /// One element of an index's column list (`email`, `lower(email)`, `placed_at DESC`).
    IndexElement,
}

impl Grammar {
    fn describe(self) -> &'static str {
        match self {
            Grammar::Expression => "a SQL expression",
            Grammar::Statements => "SQL",
            Grammar::Query => "a query EXPLAIN accepts",
            Grammar::Type => "a type",
            Grammar::IndexElement => "an index column or expression",
        }
    }
}

/// The rows an expression is evaluated over, for the database check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows<'m> {
    /// None: a default may not name a column.
    None,
    /// The rows of this table as the database has it now (`up` over the old row, a
    /// `check` or a predicate over existing rows).
    Table(&'m str),
    /// Rows of a shape that does not exist before expand (a new table's or a new column's
    /// check, a `down` over the new type): not type-checked.
    NotYet,
}

/// The type an expression's value must take, for the database check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'m> {
    /// A type as written in the file.
    Type(&'m str),
    /// The current type of a column (table, column).
    ColumnOf(&'m str, &'m str),
    Boolean,
}

/// One SQL snippet of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet<'m> {
    /// Operation index, or `None` for `[[verify]]` entry `verify`.
    pub operation: Option<usize>,
    pub verify: usize,
    /// Where inside the operation (`["column", "default"]`).
    pub path: Vec<String>,
    pub text: &'m str,
    pub grammar: Grammar,
    /// For expressions: over what rows, to what type (the database check).
    pub rows: Rows<'m>,
    pub target: Option<Target<'m>>,
}

impl Snippet<'_> {
    /// The key the snippet is the value of, for messages (`up`, `columns[1]`).
    pub fn key(&self) -> String {
        let mut key = String::new();
        for part in &self.path {
            if part.parse::<usize>().is_ok() {
                key.push_str(&format!("[{part}]"));
            } else {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(part);
            }
        }
        key
    }

    /// Where the snippet is written in the file.
    pub fn position(&self, source: &SourceMap) -> Option<(usize, usize)> {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        match self.operation {
            Some(index) => source.value(index, &path),
            None => source.verify(self.verify, &path),
        }
    }

    /// The prefix of messages about this snippet: the operation (or `[[verify]]`).
    pub fn owner(&self, migration: &Migration) -> String {
        match self
            .operation
            .and_then(|index| migration.operations.get(index))
        {
            Some(operation) => operation.name().to_string(),
            None => format!("[[verify]] #{}", self.verify + 1),
        }
    }
}

/// Every non-empty SQL snippet of `migration`, in file order (empty ones are the offline
/// review's to report).
pub fn snippets(migration: &Migration) -> Vec<Snippet<'_>> {
    let mut found = Collector {
        operation: None,
        verify: 0,
        found: Vec::new(),
    };
    for (index, operation) in migration.operations.iter().enumerate() {
        found.operation = Some(index);
        found.operation_snippets(operation);
    }
    found.operation = None;
    for (index, verify) in migration.verify.iter().enumerate() {
        found.verify = index;
        found.add(&["sql"], &verify.sql, Grammar::Query, Rows::NotYet, None);
    }
    found.found
}

/// Gathers the snippets of one operation (or `[[verify]]` entry) at a time.
struct Collector<'m> {
    operation: Option<usize>,
    verify: usize,
    found: Vec<Snippet<'m>>,
}

impl<'m> Collector<'m> {
    /// The rows an `up`/`down` is over: `rows` alone, or, with `from`, the join of two
    /// tables (not type-checked: no single table's rows); `from.where` is collected too.
    fn rows_with_from(&mut self, from: Option<&'m FromTable>, rows: Rows<'m>) -> Rows<'m> {
        let Some(from) = from else {
            return rows;
        };
        let target = Some(Target::Boolean);
        let grammar = Grammar::Expression;
        self.add(
            &["from", "where"],
            &from.condition,
            grammar,
            Rows::NotYet,
            target,
        );
        Rows::NotYet
    }

    fn add(
        &mut self,
        path: &[&str],
        text: &'m str,
        grammar: Grammar,
        rows: Rows<'m>,
        target: Option<Target<'m>>,
    ) {
        if text.trim().is_empty() {
            return;
        }
        self.found.push(Snippet {
            operation: self.operation,
            verify: self.verify,
            path: path.iter().map(|p| p.to_string()).collect(),
            text,
            grammar,
            rows,
            target,
        });
    }

    /// A constraint operation's per-column `up` (over the old row) and `down` (over the new
    /// row, not type-checked), each of the column's type.
    fn per_column(
        &mut self,
        table: &'m str,
        up: &'m BTreeMap<String, String>,
        down: &'m BTreeMap<String, String>,
    ) {
        for (column, expression) in up {
            let target = Some(Target::ColumnOf(table, column));
            let rows = Rows::Table(table);
            self.add(
                &["up", column],
                expression,
                Grammar::Expression,
                rows,
                target,
            );
        }
        for (column, expression) in down {
            let target = Some(Target::ColumnOf(table, column));
            let rows = Rows::NotYet;
            self.add(
                &["down", column],
                expression,
                Grammar::Expression,
                rows,
                target,
            );
        }
    }

    fn operation_snippets(&mut self, operation: &'m Operation) {
        use Grammar::{Expression, IndexElement, Statements, Type};
        match operation {
            Operation::CreateTable(op) => {
                for (i, column) in op.columns.iter().enumerate() {
                    self.column(&["columns", &i.to_string()], column);
                }
                if let Some(up) = &op.up {
                    self.create_table_up(op, up);
                }
            }
            Operation::AddColumn(op) => {
                self.column(&["column"], &op.column);
                if let Some(up) = &op.up {
                    let target = Some(Target::Type(&op.column.data_type));
                    let rows = self.rows_with_from(op.from.as_ref(), Rows::Table(&op.table));
                    self.add(&["up"], up, Expression, rows, target);
                }
            }
            Operation::DropColumn(op) => {
                if let Some(down) = &op.down {
                    // Over the new row: the table less the column, a subset of today's.
                    let target = Some(Target::ColumnOf(&op.table, &op.column));
                    let rows = self.rows_with_from(op.from.as_ref(), Rows::Table(&op.table));
                    self.add(&["down"], down, Expression, rows, target);
                }
            }
            Operation::ChangeType(op) => {
                self.add(&["type"], &op.data_type, Type, Rows::NotYet, None);
                let target = Some(Target::Type(&op.data_type));
                self.add(&["up"], &op.up, Expression, Rows::Table(&op.table), target);
                // Over the new row, whose column has the new type: not there before expand.
                let target = Some(Target::ColumnOf(&op.table, &op.column));
                self.add(&["down"], &op.down, Expression, Rows::NotYet, target);
            }
            Operation::SetNotNull(op) => {
                if let Some(up) = &op.up {
                    let target = Some(Target::ColumnOf(&op.table, &op.column));
                    self.add(&["up"], up, Expression, Rows::Table(&op.table), target);
                }
            }
            Operation::DropNotNull(op) => {
                if let Some(down) = &op.down {
                    let target = Some(Target::ColumnOf(&op.table, &op.column));
                    self.add(&["down"], down, Expression, Rows::Table(&op.table), target);
                }
            }
            Operation::SetDefault(op) => {
                if let Some(default) = &op.default {
                    let target = Some(Target::ColumnOf(&op.table, &op.column));
                    self.add(&["default"], default, Expression, Rows::None, target);
                }
            }
            Operation::AddCheck(op) => {
                let target = Some(Target::Boolean);
                self.add(
                    &["check"],
                    &op.check,
                    Expression,
                    Rows::Table(&op.table),
                    target,
                );
                self.per_column(&op.table, &op.up, &op.down);
            }
            Operation::AddUnique(op) => self.per_column(&op.table, &op.up, &op.down),
            Operation::AddForeignKey(op) => self.per_column(&op.table, &op.up, &op.down),
            Operation::DropConstraint(op) => self.per_column(&op.table, &op.up, &op.down),
            Operation::CreateIndex(op) => {
                for (i, column) in op.columns.iter().enumerate() {
                    let path = ["columns", &i.to_string()];
                    self.add(&path, column, IndexElement, Rows::NotYet, None);
                }
                if let Some(predicate) = &op.predicate {
                    let rows = Rows::Table(&op.table);
                    let target = Some(Target::Boolean);
                    self.add(&["predicate"], predicate, Expression, rows, target);
                }
            }
            Operation::SplitTable(op) => self.split_table_columns(op),
            Operation::RawSql(op) => {
                self.add(&["up"], &op.up, Statements, Rows::NotYet, None);
                if let Some(down) = &op.down {
                    self.add(&["down"], down, Statements, Rows::NotYet, None);
                }
            }
            Operation::DropTable(_)
            | Operation::RenameTable(_)
            | Operation::RenameColumn(_)
            | Operation::RenameConstraint(_)
            | Operation::DropIndex(_)
            | Operation::CreateEnum(_)
            | Operation::DropEnum(_)
            | Operation::AddEnumValue(_)
            | Operation::RenameEnumValue(_)
            | Operation::SetReplicaIdentity(_)
            | Operation::SetComment(_)
            | Operation::AddPrimaryKey(_) => {}
        }
    }

    /// A new table filled from an existing one: each value and the filter are over the
    /// existing table's rows (typed to the new column's type, and boolean); `where` joins
    /// both tables (not type-checked: no single table's rows).
    fn create_table_up(
        &mut self,
        op: &'m crate::migration::operation::CreateTable,
        up: &'m crate::migration::operation::CreateTableUp,
    ) {
        let rows = Rows::Table(&up.table);
        for (column, value) in &up.values {
            let target = op
                .columns
                .iter()
                .find(|c| &c.name == column)
                .map(|c| Target::Type(&c.data_type));
            self.add(
                &["up", "values", column],
                value,
                Grammar::Expression,
                rows,
                target,
            );
        }
        let boolean = Some(Target::Boolean);
        self.add(
            &["up", "where"],
            &up.condition,
            Grammar::Expression,
            Rows::NotYet,
            boolean,
        );
        if let Some(filter) = &up.filter {
            self.add(
                &["up", "filter"],
                filter,
                Grammar::Expression,
                rows,
                boolean,
            );
        }
    }

    /// split_table's moved columns: each `type`, `up` over the old table's rows, `down`
    /// over the new table's (not there before expand), `default`.
    fn split_table_columns(&mut self, op: &'m SplitTable) {
        for (i, moved) in op.columns.iter().enumerate() {
            let position = i.to_string();
            let at = |key: &'static str| ["columns", position.as_str(), key];
            let new_type = match &moved.data_type {
                Some(data_type) => {
                    self.add(&at("type"), data_type, Grammar::Type, Rows::NotYet, None);
                    Target::Type(data_type)
                }
                None => Target::ColumnOf(&op.table, &moved.column),
            };
            let old_type = Some(Target::ColumnOf(&op.table, &moved.column));
            if let Some(up) = &moved.up {
                let rows = Rows::Table(&op.table);
                self.add(&at("up"), up, Grammar::Expression, rows, Some(new_type));
            }
            if let Some(down) = &moved.down {
                self.add(
                    &at("down"),
                    down,
                    Grammar::Expression,
                    Rows::NotYet,
                    old_type,
                );
            }
            if let Some(default) = &moved.default {
                let target = Some(new_type);
                self.add(
                    &at("default"),
                    default,
                    Grammar::Expression,
                    Rows::None,
                    target,
                );
            }
        }
    }

    /// A declared column's type, default and check (over a row that does not exist yet).
    fn column(&mut self, path: &[&str], column: &'m ColumnDef) {
        let at = |key: &'static str| [path, &[key]].concat();
        let data_type = &column.data_type;
        self.add(&at("type"), data_type, Grammar::Type, Rows::NotYet, None);
        if let Some(default) = &column.default {
            let target = Some(Target::Type(data_type));
            self.add(
                &at("default"),
                default,
                Grammar::Expression,
                Rows::None,
                target,
            );
        }
        if let Some(check) = &column.check {
            let target = Some(Target::Boolean);
            self.add(
                &at("check"),
                check,
                Grammar::Expression,
                Rows::NotYet,
                target,
            );
        }
        if let Some(generated) = &column.generated {
            // Over the new row, which does not exist before expand: parsed, not type-checked.
            let target = Some(Target::Type(data_type));
            self.add(
                &at("generated"),
                generated,
                Grammar::Expression,
                Rows::NotYet,
                target,
            );
        }
    }
}

/// Why a snippet does not parse: PostgreSQL's message, and where inside the snippet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub message: String,
    /// 1-based line and column (in characters) inside the snippet; `None` when the parser
    /// gave no position (or the error is about the whole snippet).
    pub position: Option<(usize, usize)>,
}

impl SqlError {
    fn whole(message: impl Into<String>) -> SqlError {
        SqlError {
            message: message.into(),
            position: None,
        }
    }

    /// `message (line L, column C of `key`)`.
    pub fn describe(&self, key: &str) -> String {
        match self.position {
            Some((line, column)) => {
                format!("{} (line {line}, column {column} of `{key}`)", self.message)
            }
            None => self.message.clone(),
        }
    }
}

/// Parses `text` as `grammar` requires.
pub fn parse(text: &str, grammar: Grammar) -> Result<(), SqlError> {
    // Each wrapper ends on a new line so that a trailing `-- comment` cannot eat it.
    let (before, after) = match grammar {
        Grammar::Expression => ("SELECT (", "\n)"),
        Grammar::Statements => ("", ""),
        Grammar::Query => ("EXPLAIN ", ""),
        // PostgreSQL's grammar has a mode for exactly a type name.
        Grammar::Type => ("", ""),
        Grammar::IndexElement => ("CREATE INDEX i ON t (", "\n)"),
    };
    let options = match grammar {
        Grammar::Type => pg_query::ParserOptions::TYPE_NAME,
        _ => pg_query::ParserOptions::DEFAULT,
    };
    let wrapped = format!("{before}{text}{after}");
    let parsed = match pg_query::parse(&wrapped, options) {
        Ok(parsed) => parsed.protobuf,
        // PostgreSQL's parser accepted it; only the tree, over 100 levels deep, could not
        // be handed to zdm. Statements are not looked into: they parse.
        Err(pg_query::Error::Decode(_)) if grammar == Grammar::Statements => return Ok(()),
        Err(pg_query::Error::Decode(_)) => {
            return Err(SqlError::whole(
                "is nested too deeply for zdm to check (over 100 levels)",
            ))
        }
        Err(error) => return Err(located(&wrapped, before.len(), text, options, error)),
    };
    let shape = match grammar {
        Grammar::Expression => one_select_target(&parsed).map(|_| ()),
        Grammar::Type => Some(()),
        Grammar::IndexElement => match single(&parsed) {
            Some(NodeEnum::IndexStmt(index)) if index.index_params.len() == 1 => Some(()),
            _ => None,
        },
        Grammar::Query => single(&parsed).map(|_| ()),
        Grammar::Statements if parsed.stmts.is_empty() => {
            return Err(SqlError::whole(
                "has no SQL statement (only comments or semicolons)",
            ))
        }
        Grammar::Statements => Some(()),
    };
    shape.ok_or_else(|| {
        SqlError::whole(match grammar {
            Grammar::Query => "is more than one statement: give one query to EXPLAIN",
            Grammar::Type => "is more than a type name",
            Grammar::IndexElement => "is more than one index column or expression",
            _ => "is more than one expression (a `)` or `;` ends it early?)",
        })
    })
}

/// Each statement of `parsed` (the parse of `sql`) with the byte range of its text in
/// `sql` (comments before it included, as the parser counts them; the last runs to the end).
pub fn statement_spans<'p>(
    parsed: &'p ParseResult,
    sql: &str,
) -> Vec<(std::ops::Range<usize>, &'p NodeEnum)> {
    parsed
        .stmts
        .iter()
        .filter_map(|raw| {
            let start = usize::try_from(raw.stmt_location)
                .unwrap_or(0)
                .min(sql.len());
            let end = match usize::try_from(raw.stmt_len) {
                Ok(0) | Err(_) => sql.len(),
                Ok(len) => (start + len).min(sql.len()),
            };
            Some((start..end, raw.stmt.as_ref()?.node.as_ref()?))
        })
        .collect()
}

/// The last name of a name node (`orders` of `public.orders`, a column reference's
/// column, a string's text): what a rule or a converter calls the object.
pub fn last_name(node: &Node) -> String {
    match node.node.as_ref() {
        Some(NodeEnum::String(text)) => text.sval.clone(),
        Some(NodeEnum::List(list)) => list.items.last().map(last_name).unwrap_or_default(),
        Some(NodeEnum::RangeVar(range)) => range.relname.clone(),
        Some(NodeEnum::ColumnRef(column)) => {
            column.fields.last().map(last_name).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// A column reference's names as written (`["orders", "total"]` of `orders.total`), `*`
/// for a star (`orders.*`).
pub fn column_ref_fields(reference: &pg_query::protobuf::ColumnRef) -> Vec<&str> {
    reference
        .fields
        .iter()
        .map(|field| match &field.node {
            Some(NodeEnum::String(text)) => text.sval.as_str(),
            _ => "*",
        })
        .collect()
}

/// A name node as written, dotted (`public.orders_placed`).
pub fn qualified_name(node: &Node) -> String {
    match node.node.as_ref() {
        Some(NodeEnum::List(list)) => list
            .items
            .iter()
            .map(last_name)
            .collect::<Vec<_>>()
            .join("."),
        _ => last_name(node),
    }
}

/// The only statement of a parse.
fn single(parsed: &ParseResult) -> Option<&NodeEnum> {
    match parsed.stmts.as_slice() {
        [only] => only.stmt.as_ref()?.node.as_ref(),
        _ => None,
    }
}

/// The one target of `SELECT <target>` with nothing else: what a wrapped expression must
/// parse as (`1) FROM t WHERE (x` would parse, but as more).
fn one_select_target(parsed: &ParseResult) -> Option<&NodeEnum> {
    let Some(NodeEnum::SelectStmt(select)) = single(parsed) else {
        return None;
    };
    let plain = select.from_clause.is_empty()
        && select.where_clause.is_none()
        && select.group_clause.is_empty()
        && select.having_clause.is_none()
        && select.window_clause.is_empty()
        && select.sort_clause.is_empty()
        && select.limit_count.is_none()
        && select.limit_offset.is_none()
        && select.locking_clause.is_empty()
        && select.with_clause.is_none()
        && select.distinct_clause.is_empty()
        && select.into_clause.is_none()
        && select.values_lists.is_empty()
        && select.larg.is_none()
        && select.rarg.is_none();
    match select.target_list.as_slice() {
        [Node {
            node: Some(NodeEnum::ResTarget(target)),
        }] if plain && target.name.is_empty() => target.val.as_ref()?.node.as_ref(),
        _ => None,
    }
}

/// A parse error of `wrapped` (which holds `text` from byte `offset`), positioned inside
/// `text`. libpg_query's message names the token it stopped at (`at or near "x"`) but the
/// crate does not pass on its offset: it is found as the first place that token occurs
/// where the text up to it fails with the same message (earlier copies of the token
/// parse, or fail differently, since the parser reads left to right).
fn located(
    wrapped: &str,
    offset: usize,
    text: &str,
    options: pg_query::ParserOptions,
    error: pg_query::Error,
) -> SqlError {
    let message = match error {
        pg_query::Error::Parse(message) => message,
        other => other.to_string(),
    };
    let near = message
        .split_once(" at or near \"")
        .and_then(|(head, near)| Some((head, near.strip_suffix('"')?)));
    let at = if message.ends_with(" at end of input") {
        Some(wrapped.len())
    } else {
        near.and_then(|(_, near)| token_offset(wrapped, near, options, &message))
    };
    let Some(at) = at else {
        return SqlError::whole(message);
    };
    let end = offset + text.len();
    let head = near.map_or(message.trim_end_matches(" at end of input"), |(head, _)| {
        head
    });
    if at >= end {
        // In the wrapper zdm added: the snippet ended too soon.
        return SqlError {
            message: format!("{head} at the end of the snippet"),
            position: Some(crate::position::line_column(text, text.len())),
        };
    }
    let message = match near {
        // The token runs on into the wrapper (an unterminated literal): show the user's part.
        Some((head, near)) if at + near.len() > end => {
            format!("{head} at or near \"{}\"", &wrapped[at..end])
        }
        _ => message,
    };
    SqlError {
        position: Some(crate::position::line_column(
            text,
            at.saturating_sub(offset),
        )),
        message,
    }
}

/// Where in `wrapped` the parser stopped at token `near` (see [`located`]).
fn token_offset(
    wrapped: &str,
    near: &str,
    options: pg_query::ParserOptions,
    message: &str,
) -> Option<usize> {
    if near.is_empty() {
        return None;
    }
    let candidates: Vec<usize> = wrapped
        .match_indices(near)
        .map(|(at, _)| at)
        .take(50)
        .collect();
    candidates
        .iter()
        .copied()
        .find(|&at| {
            let prefix = &wrapped[..at + near.len()];
            matches!(pg_query::parse(prefix, options), Err(pg_query::Error::Parse(m)) if m == message)
        })
        .or_else(|| candidates.first().copied())
}

/// Every snippet of `migration` that does not parse, as errors at its position.
pub(crate) fn check(migration: &Migration, source: &SourceMap) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for snippet in snippets(migration) {
        if let Err(error) = parse(snippet.text, snippet.grammar) {
            let key = snippet.key();
            found.push(Diagnostic {
                path: source.path().to_path_buf(),
                position: snippet.position(source),
                severity: Severity::Error,
                message: format!(
                    "{}: `{key}` does not parse as {}: {}",
                    snippet.owner(migration),
                    snippet.grammar.describe(),
                    error.describe(&key)
                ),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_as_one_expression_and_errors_say_where() {
        assert_eq!(
            parse("price_cents::numeric / 100", Grammar::Expression),
            Ok(())
        );
        assert_eq!(
            parse("coalesce(phone, '') -- fill", Grammar::Expression),
            Ok(())
        );
        let error = parse("INVALID $$$ SYNTAX", Grammar::Expression).expect_err("bad");
        assert_eq!(
            error.message,
            "unterminated dollar-quoted string at or near \"$$$ SYNTAX\""
        );
        assert_eq!(error.position, Some((1, 9)), "{error:?}");
        let error = parse("INVALID SYNTAX", Grammar::Expression).expect_err("bad");
        assert_eq!(error.message, "syntax error at or near \"SYNTAX\"");
        assert_eq!(error.position, Some((1, 9)), "{error:?}");
        // An earlier copy of the failing token is not where it failed.
        let error = parse("a + b\n  + b b", Grammar::Expression).expect_err("bad");
        assert_eq!(error.position, Some((2, 7)), "{error:?}");
        // Ends too soon: the wrapper's `)` is not the user's.
        let error = parse("price *", Grammar::Expression).expect_err("bad");
        assert!(
            error.message.ends_with("at the end of the snippet"),
            "{error:?}"
        );
        // Parses, but as more than one expression.
        let error = parse("1) FROM t WHERE (true", Grammar::Expression).expect_err("bad");
        assert_eq!(error.position, None);
        assert!(parse("1); DROP TABLE t; SELECT (1", Grammar::Expression).is_err());
        let error = parse("'unterminated", Grammar::Expression).expect_err("bad");
        assert!(error.message.contains("unterminated"), "{error:?}");
        assert_eq!(error.position, Some((1, 1)), "{error:?}");
    }

    #[test]
    fn statements_types_queries_and_index_elements() {
        assert_eq!(
            parse("UPDATE t SET a = 1; DELETE FROM t", Grammar::Statements),
            Ok(())
        );
        assert!(parse("-- nothing", Grammar::Statements).is_err());
        let error =
            parse("UPDATE t SET a = 1;\nDELEET FROM t", Grammar::Statements).expect_err("bad");
        assert_eq!(error.position, Some((2, 1)), "{error:?}");
        assert_eq!(parse("numeric(12,2)", Grammar::Type), Ok(()));
        assert_eq!(parse("text[]", Grammar::Type), Ok(()));
        assert!(parse("int) + (1", Grammar::Type).is_err());
        assert!(parse("text text", Grammar::Type).is_err());
        assert_eq!(parse("SELECT 1 FROM t WHERE a = 2", Grammar::Query), Ok(()));
        assert!(parse("SELECT 1; SELECT 2", Grammar::Query).is_err());
        assert!(parse("CREATE TABLE x ()", Grammar::Query).is_err());
        assert_eq!(parse("lower(email)", Grammar::IndexElement), Ok(()));
        assert_eq!(parse("placed_at DESC", Grammar::IndexElement), Ok(()));
        assert!(parse("a, b", Grammar::IndexElement).is_err());
    }
}
