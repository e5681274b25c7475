//! One migration of another tool turned into zdm operations: each statement zdm
//! understands becomes its typed operation (planned lock-safely: `CREATE INDEX` becomes a
//! concurrent `create_index`, `ADD CONSTRAINT … FOREIGN KEY` a NOT VALID then VALIDATE
//! `add_foreign_key`, …), the rest stays `raw_sql` as written, with the tool's down script as
//! its rollback. Statements are read with PostgreSQL's own parser and expressions written
//! back with its deparser.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ConstrType, Constraint, Node, ObjectType, RangeVar, TypeName,
};

use crate::migration::operation::{
    AddCheck, AddColumn, AddForeignKey, AddUnique, ChangeType, ColumnDef, CreateIndex, CreateTable,
    DropColumn, DropIndex, DropTable, Operation, RawSql, RawSqlPhase, Reference, RenameColumn,
    RenameTable, SetDefault, SetNotNull,
};
use crate::migration::sql::{last_name, qualified_name};

/// What became of one statement.
// Short-lived, one per imported statement: a Box around the operation would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    /// A typed operation, and the statement it came from.
    Typed { operation: Operation, sql: String },
    /// Kept as SQL: why no typed operation fits.
    Raw { sql: String, why: String },
    /// Left out: what zdm does itself (transaction control, lock_timeout).
    Dropped { sql: String, why: String },
}

/// Column types the history so far has declared, `(table, column)` → type: what an
/// `ALTER COLUMN … TYPE` converts back to for the old version (`change_type`'s `down`).
pub type ColumnTypes = std::collections::HashMap<(String, String), String>;

/// The statements of `sql`, each converted, with the column types declared before it
/// (updated with this text's); `Err` when it does not parse.
pub fn statements(sql: &str, types: &mut ColumnTypes) -> Result<Vec<Converted>, String> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| e.to_string())?
        .protobuf;
    let mut converted = Vec::new();
    for (span, node) in crate::migration::sql::statement_spans(&parsed, sql) {
        let text = format!("{};", sql[span].trim().trim_end_matches(';'));
        let mut statement = convert(node, text.clone(), types);
        if let Converted::Typed { sql, .. } = &mut statement {
            *sql = text;
        }
        converted.push(statement);
    }
    Ok(converted)
}

/// A typed operation (its statement's text is filled in by [`statements`]).
fn typed(operation: Operation) -> Converted {
    Converted::Typed {
        operation,
        sql: String::new(),
    }
}

fn raw(sql: String, why: impl Into<String>) -> Converted {
    Converted::Raw {
        sql,
        why: why.into(),
    }
}

fn convert(node: &NodeEnum, sql: String, types: &mut ColumnTypes) -> Converted {
    let converted = convert_statement(node, sql, types);
    if let Converted::Typed { operation, .. } = &converted {
        remember(operation, types);
    }
    converted
}

/// What a typed operation declares about column types.
fn remember(operation: &Operation, types: &mut ColumnTypes) {
    let key = |table: &str, column: &str| (table.to_lowercase(), column.to_lowercase());
    match operation {
        Operation::CreateTable(create) => {
            for column in &create.columns {
                types.insert(key(&create.table, &column.name), column.data_type.clone());
            }
        }
        Operation::AddColumn(add) => {
            types.insert(
                key(&add.table, &add.column.name),
                add.column.data_type.clone(),
            );
        }
        Operation::ChangeType(change) => {
            types.insert(key(&change.table, &change.column), change.data_type.clone());
        }
        _ => {}
    }
}

fn convert_statement(node: &NodeEnum, sql: String, types: &ColumnTypes) -> Converted {
    match node {
        NodeEnum::TransactionStmt(_) => Converted::Dropped {
            sql,
            why: "zdm runs each step in a transaction of its own".to_string(),
        },
        NodeEnum::VariableSetStmt(set)
            if matches!(set.name.as_str(), "lock_timeout" | "statement_timeout") =>
        {
            Converted::Dropped {
                sql,
                why: "zdm sets its own lock_timeout and statement_timeout on every step"
                    .to_string(),
            }
        }
        NodeEnum::AlterTableStmt(alter) => {
            let (Some(relation), [command]) = (&alter.relation, alter.cmds.as_slice()) else {
                return raw(sql, "an ALTER TABLE of several commands");
            };
            match &command.node {
                Some(NodeEnum::AlterTableCmd(command)) => {
                    alter_table(relation, command, types).map_or_else(|why| raw(sql, why), typed)
                }
                _ => raw(sql, "an ALTER TABLE zdm does not read"),
            }
        }
        NodeEnum::RenameStmt(rename) => {
            let Some(relation) = &rename.relation else {
                return raw(sql, "a rename of something other than a table or column");
            };
            match rename.rename_type() {
                ObjectType::ObjectColumn => typed(Operation::RenameColumn(RenameColumn {
                    table: table_name(relation),
                    column: rename.subname.clone(),
                    to: rename.newname.clone(),
                })),
                ObjectType::ObjectTable => typed(Operation::RenameTable(RenameTable {
                    table: table_name(relation),
                    to: rename.newname.clone(),
                })),
                _ => raw(sql, "a rename of something other than a table or column"),
            }
        }
        NodeEnum::IndexStmt(index) => {
            let Some(relation) = &index.relation else {
                return raw(sql, "an index without a table");
            };
            if index.idxname.is_empty() {
                return raw(sql, "an index without a name (zdm names every index)");
            }
            let mut columns = Vec::new();
            for param in &index.index_params {
                match &param.node {
                    Some(NodeEnum::IndexElem(element))
                        if !element.name.is_empty() && element.opclass.is_empty() =>
                    {
                        columns.push(element.name.clone());
                    }
                    Some(NodeEnum::IndexElem(element)) if element.expr.is_some() => {
                        match element.expr.as_deref().and_then(expression) {
                            Some(text) => columns.push(text),
                            None => return raw(sql, "an index expression zdm cannot write back"),
                        }
                    }
                    _ => return raw(sql, "an index column with an operator class"),
                }
            }
            let method = (!index.access_method.is_empty() && index.access_method != "btree")
                .then(|| index.access_method.clone());
            let predicate = match index.where_clause.as_deref() {
                Some(predicate) => match expression(predicate) {
                    Some(text) => Some(text),
                    None => return raw(sql, "a partial index predicate zdm cannot write back"),
                },
                None => None,
            };
            typed(Operation::CreateIndex(CreateIndex {
                table: table_name(relation),
                name: index.idxname.clone(),
                columns,
                unique: index.unique,
                method,
                predicate,
            }))
        }
        NodeEnum::DropStmt(drop) => {
            let [object] = drop.objects.as_slice() else {
                return raw(sql, "a DROP of several objects");
            };
            let name = qualified_name(object);
            match drop.remove_type() {
                ObjectType::ObjectTable => typed(Operation::DropTable(DropTable { table: name })),
                ObjectType::ObjectIndex => typed(Operation::DropIndex(DropIndex { name })),
                _ => raw(sql, "a DROP of something other than a table or an index"),
            }
        }
        NodeEnum::CreateStmt(create) => {
            create_table(create).map_or_else(|why| raw(sql, why), typed)
        }
        _ => raw(sql, "no typed operation does this"),
    }
}

fn alter_table(
    relation: &RangeVar,
    command: &AlterTableCmd,
    types: &ColumnTypes,
) -> Result<Operation, String> {
    let table = table_name(relation);
    let def = command.def.as_ref().and_then(|d| d.node.as_ref());
    Ok(match command.subtype() {
        AlterTableType::AtAddColumn => {
            let Some(NodeEnum::ColumnDef(column)) = def else {
                return Err("an ADD COLUMN zdm does not read".to_string());
            };
            let column = column_def(column)?;
            if !column.nullable && column.default.is_none() {
                return Err(
                    "a NOT NULL column without a default: give add_column an `up` for the \
                     existing rows by hand"
                        .to_string(),
                );
            }
            Operation::AddColumn(AddColumn {
                table,
                column,
                up: None,
                from: None,
            })
        }
        AlterTableType::AtDropColumn => Operation::DropColumn(DropColumn {
            table,
            column: command.name.clone(),
            down: None,
            from: None,
        }),
        AlterTableType::AtSetNotNull => Operation::SetNotNull(SetNotNull {
            table,
            column: command.name.clone(),
            up: None,
        }),
        AlterTableType::AtColumnDefault => Operation::SetDefault(SetDefault {
            table,
            column: command.name.clone(),
            default: match def {
                Some(_) => Some(
                    command
                        .def
                        .as_deref()
                        .and_then(expression)
                        .ok_or("a default zdm cannot write back")?,
                ),
                None => None,
            },
        }),
        AlterTableType::AtAddConstraint => {
            let Some(NodeEnum::Constraint(constraint)) = def else {
                return Err("an ADD CONSTRAINT zdm does not read".to_string());
            };
            add_constraint(table, constraint)?
        }
        AlterTableType::AtAlterColumnType => {
            let Some(NodeEnum::ColumnDef(def)) = def else {
                return Err("an ALTER COLUMN TYPE zdm does not read".to_string());
            };
            let new = def
                .type_name
                .as_ref()
                .and_then(type_text)
                .ok_or("a type zdm cannot write back")?;
            let column = command.name.clone();
            let Some(old) = types.get(&(table.to_lowercase(), column.to_lowercase())) else {
                return Err(
                    "change_type needs a `down` (the new value converted back for the old \
                     version) and the history does not say the old type: write it by hand"
                        .to_string(),
                );
            };
            let up = match def.raw_default.as_deref() {
                Some(using) => expression(using).ok_or("a USING zdm cannot write back")?,
                None => format!("{column}::{new}"),
            };
            Operation::ChangeType(ChangeType {
                down: format!("{column}::{old}"),
                table,
                column,
                data_type: new,
                up,
            })
        }
        AlterTableType::AtDropNotNull => {
            return Err(
                "drop_not_null needs a `down` (what the old version reads where the new one \
                 writes NULL): write it by hand"
                    .to_string(),
            )
        }
        _ => return Err("an ALTER TABLE command no typed operation does".to_string()),
    })
}

fn add_constraint(table: String, constraint: &Constraint) -> Result<Operation, String> {
    if constraint.conname.is_empty() {
        return Err("a constraint without a name (zdm names every constraint)".to_string());
    }
    let name = constraint.conname.clone();
    Ok(match constraint.contype() {
        ConstrType::ConstrCheck => Operation::AddCheck(AddCheck {
            table,
            name,
            check: constraint
                .raw_expr
                .as_deref()
                .and_then(expression)
                .ok_or("a CHECK zdm cannot write back")?,
            up: Default::default(),
            down: Default::default(),
        }),
        ConstrType::ConstrUnique if constraint.indexname.is_empty() => {
            Operation::AddUnique(AddUnique {
                table,
                name,
                columns: constraint.keys.iter().map(last_name).collect(),
                up: Default::default(),
                down: Default::default(),
            })
        }
        ConstrType::ConstrForeign => Operation::AddForeignKey(AddForeignKey {
            table,
            name,
            columns: constraint.fk_attrs.iter().map(last_name).collect(),
            references: reference(constraint)?,
            up: Default::default(),
            down: Default::default(),
        }),
        _ => return Err("a constraint no typed operation adds".to_string()),
    })
}

fn reference(constraint: &Constraint) -> Result<Reference, String> {
    let table = constraint
        .pktable
        .as_ref()
        .map(table_name)
        .ok_or("a foreign key without its table")?;
    if constraint.pk_attrs.is_empty() {
        return Err(
            "a foreign key that does not name the referenced columns (zdm names them)".to_string(),
        );
    }
    let on_delete = match constraint.fk_del_action.as_str() {
        "r" => Some("restrict"),
        "c" => Some("cascade"),
        "n" => Some("set null"),
        "d" => Some("set default"),
        _ => None,
    };
    Ok(Reference {
        table,
        columns: constraint.pk_attrs.iter().map(last_name).collect(),
        on_delete: on_delete.map(str::to_string),
    })
}

fn create_table(create: &pg_query::protobuf::CreateStmt) -> Result<Operation, String> {
    let relation = create.relation.as_ref().ok_or("a table without a name")?;
    if !create.inh_relations.is_empty() || create.partspec.is_some() || create.of_typename.is_some()
    {
        return Err("an inherited, partitioned or typed table".to_string());
    }
    let mut columns = Vec::new();
    let mut primary_key = None;
    for element in &create.table_elts {
        match &element.node {
            Some(NodeEnum::ColumnDef(column)) => columns.push(column_def(column)?),
            Some(NodeEnum::Constraint(constraint))
                if constraint.contype() == ConstrType::ConstrPrimary =>
            {
                primary_key = Some(constraint.keys.iter().map(last_name).collect::<Vec<_>>());
            }
            _ => return Err("a table-level constraint other than the primary key".to_string()),
        }
    }
    // One key column: said on the column, as zdm's files say it.
    if let Some([key]) = primary_key.as_deref() {
        if let Some(column) = columns.iter_mut().find(|c| &c.name == key) {
            column.primary_key = true;
            primary_key = None;
        }
    }
    Ok(Operation::CreateTable(CreateTable {
        table: table_name(relation),
        columns,
        primary_key,
        up: None,
    }))
}

fn column_def(column: &pg_query::protobuf::ColumnDef) -> Result<ColumnDef, String> {
    let data_type = column
        .type_name
        .as_ref()
        .and_then(type_text)
        .ok_or("a column type zdm cannot write back")?;
    let mut def = ColumnDef {
        name: column.colname.clone(),
        data_type,
        nullable: true,
        default: None,
        unique: false,
        primary_key: false,
        check: None,
        references: None,
        identity: None,
        sequence: None,
        generated: None,
        comment: None,
    };
    for constraint in &column.constraints {
        let Some(NodeEnum::Constraint(constraint)) = &constraint.node else {
            continue;
        };
        match constraint.contype() {
            ConstrType::ConstrNotnull => def.nullable = false,
            ConstrType::ConstrNull => def.nullable = true,
            ConstrType::ConstrDefault => {
                def.default = Some(
                    constraint
                        .raw_expr
                        .as_deref()
                        .and_then(expression)
                        .ok_or("a default zdm cannot write back")?,
                );
            }
            ConstrType::ConstrUnique => def.unique = true,
            ConstrType::ConstrPrimary => def.primary_key = true,
            ConstrType::ConstrCheck => {
                def.check = Some(
                    constraint
                        .raw_expr
                        .as_deref()
                        .and_then(expression)
                        .ok_or("a CHECK zdm cannot write back")?,
                );
            }
            ConstrType::ConstrForeign => def.references = Some(reference(constraint)?),
            _ => {
                return Err(format!(
                    "column {}: a constraint zdm does not read",
                    column.colname
                ))
            }
        }
    }
    if def.primary_key {
        def.nullable = false;
    }
    Ok(def)
}

/// `schema.table`, or `table`.
fn table_name(relation: &RangeVar) -> String {
    if relation.schemaname.is_empty() {
        relation.relname.clone()
    } else {
        format!("{}.{}", relation.schemaname, relation.relname)
    }
}

/// An expression written back as SQL by PostgreSQL's deparser: put in place of the `1` of
/// a parsed `SELECT 1` (a tree the parser made, so every field the deparser reads is one it
/// accepts).
fn expression(node: &Node) -> Option<String> {
    deparsed("SELECT 1", |target| *target = node.clone())
}

/// A type as SQL (`bigint`, `numeric(12, 2)`, `text[]`), through `SELECT NULL::<type>`.
fn type_text(type_name: &TypeName) -> Option<String> {
    let text = deparsed("SELECT NULL::integer", |target| {
        if let Some(NodeEnum::TypeCast(cast)) = &mut target.node {
            cast.type_name = Some(type_name.clone());
        }
    })?;
    text.strip_prefix("NULL::").map(str::to_string)
}

/// `template` (one `SELECT` of one target) parsed, its target changed by `change`, and
/// deparsed, without the `SELECT `.
fn deparsed(template: &str, change: impl FnOnce(&mut Node)) -> Option<String> {
    let mut parsed = pg_query::parse(template, pg_query::ParserOptions::DEFAULT)
        .ok()?
        .protobuf;
    let statement = parsed.stmts.first_mut()?.stmt.as_mut()?;
    let Some(NodeEnum::SelectStmt(select)) = &mut statement.node else {
        return None;
    };
    let Some(NodeEnum::ResTarget(target)) = &mut select.target_list.first_mut()?.node else {
        return None;
    };
    change(target.val.as_mut()?);
    let text = pg_query::deparse(&parsed, pg_query::DeparseOptions::default()).ok()?;
    text.strip_prefix("SELECT ").map(str::to_string)
}

/// The operations of a source in order: typed ones, and consecutive raw statements
/// joined into one `raw_sql` (its `down` given by the caller).
pub fn operations(converted: &[Converted], raw_down: Option<String>) -> Vec<Operation> {
    let mut operations = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    let flush = |pending: &mut Vec<&str>, operations: &mut Vec<Operation>| {
        if !pending.is_empty() {
            operations.push(Operation::RawSql(RawSql {
                up: pending.join("\n"),
                down: raw_down.clone(),
                phase: RawSqlPhase::Expand,
            }));
            pending.clear();
        }
    };
    for statement in converted {
        match statement {
            Converted::Typed { operation, .. } => {
                flush(&mut pending, &mut operations);
                operations.push(operation.clone());
            }
            Converted::Raw { sql, .. } => pending.push(sql),
            Converted::Dropped { .. } => {}
        }
    }
    flush(&mut pending, &mut operations);
    operations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(sql: &str) -> Operation {
        match statements(sql, &mut ColumnTypes::new())
            .expect("parses")
            .remove(0)
        {
            Converted::Typed { operation, .. } => operation,
            other => panic!("not typed: {other:?}"),
        }
    }

    #[test]
    fn statements_zdm_understands_become_typed_operations() {
        let Operation::AddColumn(add) =
            typed("ALTER TABLE orders ADD COLUMN status varchar(20) NOT NULL DEFAULT 'new';")
        else {
            panic!("add_column")
        };
        assert_eq!(add.column.data_type, "varchar(20)");
        assert!(!add.column.nullable);
        assert_eq!(add.column.default.as_deref(), Some("'new'"));
        let Operation::CreateIndex(index) =
            typed("CREATE INDEX orders_open ON public.orders (customer_id, lower(status)) WHERE shipped_at IS NULL;")
        else {
            panic!("create_index")
        };
        assert_eq!(index.table, "public.orders");
        assert_eq!(index.columns, ["customer_id", "lower(status)"]);
        assert_eq!(index.predicate.as_deref(), Some("shipped_at IS NULL"));
        let Operation::AddForeignKey(fk) = typed(
            "ALTER TABLE orders ADD CONSTRAINT orders_customer FOREIGN KEY (customer_id) \
             REFERENCES customers (id) ON DELETE CASCADE;",
        ) else {
            panic!("add_foreign_key")
        };
        assert_eq!(fk.references.columns, ["id"]);
        assert_eq!(fk.references.on_delete.as_deref(), Some("cascade"));
        let Operation::CreateTable(table) = typed(
            "CREATE TABLE coupons (id bigint PRIMARY KEY, code text NOT NULL UNIQUE, \
             percent numeric(5,2) CHECK (percent > 0), created_at timestamptz DEFAULT now());",
        ) else {
            panic!("create_table")
        };
        assert!(table.columns[0].primary_key);
        assert_eq!(table.columns[2].data_type, "numeric(5, 2)");
        assert_eq!(table.columns[2].check.as_deref(), Some("percent > 0"));
        assert_eq!(table.columns[3].default.as_deref(), Some("now()"));
        assert!(matches!(
            typed("ALTER TABLE orders RENAME COLUMN note TO notes;"),
            Operation::RenameColumn(_)
        ));
        assert!(matches!(
            typed("DROP INDEX orders_open;"),
            Operation::DropIndex(_)
        ));
    }

    #[test]
    fn a_type_change_converts_back_to_the_type_the_history_declared() {
        let mut types = ColumnTypes::new();
        statements(
            "CREATE TABLE orders (id bigint PRIMARY KEY, total integer);",
            &mut types,
        )
        .expect("parses");
        let converted = statements(
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2) USING total / 100.0;",
            &mut types,
        )
        .expect("parses");
        let [Converted::Typed {
            operation: Operation::ChangeType(change),
            ..
        }] = converted.as_slice()
        else {
            panic!("change_type: {converted:?}")
        };
        assert_eq!(change.data_type, "numeric(12, 2)");
        assert_eq!(change.up, "total / 100.0");
        assert_eq!(change.down, "total::int");
    }

    #[test]
    fn the_rest_stays_raw_with_a_reason_and_transaction_control_is_left_to_zdm() {
        let converted = statements(
            "BEGIN; UPDATE orders SET status = 'new'; \
             ALTER TABLE orders ALTER COLUMN total TYPE numeric; COMMIT;",
            &mut ColumnTypes::new(),
        )
        .expect("parses");
        assert!(matches!(&converted[0], Converted::Dropped { .. }));
        assert!(matches!(&converted[1], Converted::Raw { why, .. } if why.contains("no typed")));
        assert!(matches!(&converted[2], Converted::Raw { why, .. } if why.contains("down")));
        let operations = operations(&converted, None);
        let [Operation::RawSql(raw)] = operations.as_slice() else {
            panic!("one raw_sql: {operations:?}")
        };
        assert_eq!(
            raw.up,
            "UPDATE orders SET status = 'new';\nALTER TABLE orders ALTER COLUMN total TYPE numeric;"
        );
    }
}
