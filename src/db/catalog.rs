//! Introspection: the user schemas of a database read into a [`Catalog`] value (tables,
//! columns, keys, constraints with their NOT VALID state, indexes with their INVALID state,
//! foreign keys, views, triggers, functions, enum types), the planner's only view of the
//! database.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};

use crate::db::quote_ident;

/// Schemas never introspected: PostgreSQL's own and zdm's state.
const HIDDEN_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdm') \
                              AND n.nspname NOT LIKE 'pg\\_%'";

/// A schema-qualified name, unquoted (`public`, `orders`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"public"."orders"`: ready for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// `public.orders`, for people.
impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Everything zdm needs to know about a database's user schemas. Lists are sorted, so two
/// catalogs of the same schema compare equal (used to prove a rollback left no trace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub schemas: Vec<Schema>,
    pub tables: Vec<Table>,
    pub views: Vec<View>,
    pub functions: Vec<Function>,
    pub sequences: Vec<QualifiedName>,
    /// Enum types, with their labels in sort order (absent from catalogs stored before
    /// enums were introspected).
    #[serde(default)]
    pub enums: Vec<EnumType>,
    /// The tables whose replica identity is not PostgreSQL's default, by table (absent from
    /// catalogs stored before it was introspected, and when every table has the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_identities: Vec<ReplicaIdentity>,
}

/// A table's replica identity other than the default (`pg_class.relreplident`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaIdentity {
    pub table: QualifiedName,
    /// `full`, `nothing` or `index`.
    pub identity: String,
    /// The index of `identity = "index"` (none if it was dropped since).
    pub index: Option<String>,
}

/// An enum type (`CREATE TYPE ... AS ENUM`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    pub name: QualifiedName,
    /// The labels in their sort order (`pg_enum.enumsortorder`).
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    /// `COMMENT ON SCHEMA`: zdm marks its version schemas with one.
    pub comment: Option<String>,
    /// Roles (or `PUBLIC`) granted USAGE on it, its owner aside: a version schema of this
    /// schema grants the same.
    #[serde(default)]
    pub usage: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: QualifiedName,
    /// In column order.
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub triggers: Vec<Trigger>,
    /// Table privileges granted to roles other than the owner: the version views of the
    /// table grant the same, so the application's role can use them.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// One privilege on a relation granted to a role (or to `PUBLIC`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    /// A role name, or `PUBLIC`.
    pub grantee: String,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, ...
    pub privilege: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// As PostgreSQL prints it (`bigint`, `numeric(12,2)`, `timestamp with time zone`).
    pub data_type: String,
    pub nullable: bool,
    /// The default expression, as PostgreSQL prints it.
    pub default: Option<String>,
    /// `always` or `by default` for identity columns.
    pub identity: Option<String>,
    /// A generated (computed) column.
    pub generated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    Check,
    ForeignKey,
    Exclusion,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    /// The constrained columns, in key order (empty for a check over no column).
    pub columns: Vec<String>,
    /// `pg_get_constraintdef`: `CHECK ((price_cents > 0))`, `FOREIGN KEY ... NOT VALID`.
    pub definition: String,
    /// False for a constraint added NOT VALID and not validated since.
    pub validated: bool,
    /// The index backing a primary key, unique or exclusion constraint.
    pub index: Option<String>,
    /// The referenced table and columns of a foreign key.
    pub references: Option<ForeignKeyTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyTarget {
    pub table: QualifiedName,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    /// Key columns in order; `None` for an expression key.
    pub columns: Vec<Option<String>>,
    pub unique: bool,
    pub primary: bool,
    /// False for an index a failed `CREATE INDEX CONCURRENTLY` left behind.
    pub valid: bool,
    /// `pg_get_indexdef`.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub name: String,
    /// `pg_get_triggerdef`.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub name: QualifiedName,
    pub columns: Vec<String>,
    /// `pg_get_viewdef` for introspected views; the planned SELECT for simulated ones.
    pub definition: String,
    /// A materialized view (absent from catalogs stored before it was introspected).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub materialized: bool,
    /// `reloptions` (`security_barrier=true`, `check_option=local`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Privileges granted to roles other than the owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// The tables and views its query reads (pg_depend of its rule), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<QualifiedName>,
    /// Its owner's role (empty in catalogs stored before it was introspected).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub name: QualifiedName,
    /// `pg_get_function_identity_arguments`.
    pub arguments: String,
}

impl Catalog {
    /// Reads every user schema of the connected database (all but PostgreSQL's and `zdm`).
    pub async fn load(conn: &mut PgConnection) -> Result<Catalog, sqlx::Error> {
        let mut catalog = Catalog {
            schemas: load_schemas(conn).await?,
            tables: load_tables(conn).await?,
            views: load_views(conn).await?,
            functions: load_functions(conn).await?,
            sequences: load_sequences(conn).await?,
            enums: load_enums(conn).await?,
            replica_identities: load_replica_identities(conn).await?,
        };
        load_columns(conn, &mut catalog).await?;
        load_constraints(conn, &mut catalog).await?;
        load_indexes(conn, &mut catalog).await?;
        load_triggers(conn, &mut catalog).await?;
        load_grants(conn, &mut catalog).await?;
        Ok(catalog)
    }

    pub fn table(&self, name: &QualifiedName) -> Option<&Table> {
        self.tables.iter().find(|table| &table.name == name)
    }

    pub fn table_mut(&mut self, name: &QualifiedName) -> Option<&mut Table> {
        self.tables.iter_mut().find(|table| &table.name == name)
    }

    pub fn enum_type(&self, name: &QualifiedName) -> Option<&EnumType> {
        self.enums.iter().find(|e| &e.name == name)
    }

    pub fn enum_type_mut(&mut self, name: &QualifiedName) -> Option<&mut EnumType> {
        self.enums.iter_mut().find(|e| &e.name == name)
    }

    pub fn schema(&self, name: &str) -> Option<&Schema> {
        self.schemas.iter().find(|schema| schema.name == name)
    }

    pub fn view(&self, name: &QualifiedName) -> Option<&View> {
        self.views.iter().find(|view| &view.name == name)
    }

    /// Tables and views of one schema, by name: what a relation name may collide with.
    pub fn relation_exists(&self, name: &QualifiedName) -> bool {
        self.table(name).is_some() || self.view(name).is_some()
    }

    /// The table an index of this name belongs to (index names are unique per schema).
    pub fn index_owner(&self, schema: &str, index: &str) -> Option<(&Table, &Index)> {
        self.tables
            .iter()
            .filter(|table| table.name.schema == schema)
            .find_map(|table| {
                table
                    .indexes
                    .iter()
                    .find(|candidate| candidate.name == index)
                    .map(|found| (table, found))
            })
    }

    /// Keeps lists sorted after a change, so that comparisons stay meaningful.
    pub fn normalize(&mut self) {
        self.schemas.sort_by(|a, b| a.name.cmp(&b.name));
        self.tables.sort_by(|a, b| a.name.cmp(&b.name));
        self.views.sort_by(|a, b| a.name.cmp(&b.name));
        self.functions.sort_by(|a, b| a.name.cmp(&b.name));
        self.sequences.sort();
        self.enums.sort_by(|a, b| a.name.cmp(&b.name));
        self.replica_identities.sort();
        for table in &mut self.tables {
            table.constraints.sort_by(|a, b| a.name.cmp(&b.name));
            table.indexes.sort_by(|a, b| a.name.cmp(&b.name));
            table.triggers.sort_by(|a, b| a.name.cmp(&b.name));
            table.grants.sort();
        }
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name == name)
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|column| column.name == name)
    }

    pub fn constraint(&self, name: &str) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.name == name)
    }

    pub fn primary_key(&self) -> Option<&Constraint> {
        self.constraints
            .iter()
            .find(|c| c.kind == ConstraintKind::PrimaryKey)
    }

    /// The key a batched backfill can walk: the primary key, else a unique constraint
    /// over NOT NULL columns.
    pub fn batch_key(&self) -> Option<Vec<String>> {
        if let Some(primary) = self.primary_key() {
            return Some(primary.columns.clone());
        }
        self.constraints
            .iter()
            .filter(|c| c.kind == ConstraintKind::Unique && c.validated)
            .find(|c| {
                c.columns
                    .iter()
                    .all(|name| self.column(name).is_some_and(|column| !column.nullable))
            })
            .map(|c| c.columns.clone())
    }

    /// Names of the indexes and constraints that involve a column (except NOT NULL).
    pub fn dependents_of(&self, column: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .constraints
            .iter()
            .filter(|c| c.columns.iter().any(|name| name == column))
            .map(|c| format!("constraint {}", c.name))
            .collect();
        found.extend(
            self.indexes
                .iter()
                .filter(|index| {
                    index.columns.iter().any(|key| key.as_deref() == Some(column))
                        // An expression key or predicate may use it: judged from the text.
                        || (index.columns.iter().any(Option::is_none)
                            || index.definition.contains(" WHERE "))
                            && index.definition.contains(column)
                })
                .filter(|index| {
                    // An index behind a listed constraint is already named through it.
                    !self
                        .constraints
                        .iter()
                        .any(|c| c.index.as_deref() == Some(index.name.as_str()))
                })
                .map(|index| format!("index {}", index.name)),
        );
        found
    }
}

async fn load_schemas(conn: &mut PgConnection) -> Result<Vec<Schema>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS name, obj_description(n.oid, 'pg_namespace') AS comment,
                ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
                      FROM aclexplode(n.nspacl) AS a
                      WHERE a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
                      ORDER BY 1) AS usage
         FROM pg_namespace n WHERE {HIDDEN_SCHEMAS} ORDER BY 1"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(Schema {
                name: row.try_get("name")?,
                comment: row.try_get("comment")?,
                usage: row.try_get("usage")?,
            })
        })
        .collect()
}

async fn load_tables(conn: &mut PgConnection) -> Result<Vec<Table>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND {HIDDEN_SCHEMAS} ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(Table {
                name: QualifiedName::new(
                    row.try_get::<String, _>("schema")?,
                    row.try_get::<String, _>("name")?,
                ),
                columns: Vec::new(),
                constraints: Vec::new(),
                indexes: Vec::new(),
                triggers: Vec::new(),
                grants: Vec::new(),
            })
        })
        .collect()
}

async fn load_columns(conn: &mut PgConnection, catalog: &mut Catalog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS table_name, a.attname::text AS name,
                format_type(a.atttypid, a.atttypmod) AS data_type, NOT a.attnotnull AS nullable,
                pg_get_expr(d.adbin, d.adrelid) AS default_value,
                CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity,
                a.attgenerated <> '' AS generated
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND {HIDDEN_SCHEMAS}
         ORDER BY 1, 2, a.attnum"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    for row in &rows {
        let table = table_of(row)?;
        let generated: bool = row.try_get("generated")?;
        let column = Column {
            name: row.try_get("name")?,
            data_type: row.try_get("data_type")?,
            nullable: row.try_get("nullable")?,
            // A generated column's expression is not a default a writer can rely on.
            default: if generated {
                None
            } else {
                row.try_get("default_value")?
            },
            identity: row.try_get("identity")?,
            generated,
        };
        if let Some(table) = catalog.table_mut(&table) {
            table.columns.push(column);
        }
    }
    Ok(())
}

async fn load_constraints(
    conn: &mut PgConnection,
    catalog: &mut Catalog,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, t.relname::text AS table_name, c.conname::text AS name,
                c.contype::text AS kind, c.convalidated AS validated,
                pg_get_constraintdef(c.oid) AS definition,
                ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                      ORDER BY k.ord) AS columns,
                fn.nspname::text AS ref_schema, ft.relname::text AS ref_table,
                ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                      ORDER BY k.ord) AS ref_columns,
                ci.relname::text AS index_name
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         LEFT JOIN pg_class ft ON ft.oid = c.confrelid
         LEFT JOIN pg_namespace fn ON fn.oid = ft.relnamespace
         LEFT JOIN pg_class ci ON ci.oid = c.conindid AND c.contype IN ('p', 'u', 'x')
         WHERE t.relkind IN ('r', 'p') AND {HIDDEN_SCHEMAS}
         ORDER BY 1, 2, 3"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    for row in &rows {
        let table = table_of(row)?;
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "p" => ConstraintKind::PrimaryKey,
            "u" => ConstraintKind::Unique,
            "c" => ConstraintKind::Check,
            "f" => ConstraintKind::ForeignKey,
            "x" => ConstraintKind::Exclusion,
            _ => ConstraintKind::Other,
        };
        let references = match (
            row.try_get::<Option<String>, _>("ref_schema")?,
            row.try_get::<Option<String>, _>("ref_table")?,
        ) {
            (Some(schema), Some(name)) if kind == ConstraintKind::ForeignKey => {
                Some(ForeignKeyTarget {
                    table: QualifiedName::new(schema, name),
                    columns: row.try_get("ref_columns")?,
                })
            }
            _ => None,
        };
        let constraint = Constraint {
            name: row.try_get("name")?,
            kind,
            columns: row.try_get("columns")?,
            definition: row.try_get("definition")?,
            validated: row.try_get("validated")?,
            index: row.try_get("index_name")?,
            references,
        };
        if let Some(table) = catalog.table_mut(&table) {
            table.constraints.push(constraint);
        }
    }
    Ok(())
}

async fn load_indexes(conn: &mut PgConnection, catalog: &mut Catalog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, t.relname::text AS table_name, ic.relname::text AS name,
                i.indisunique AS is_unique, i.indisprimary AS is_primary, i.indisvalid AS valid,
                pg_get_indexdef(i.indexrelid) AS definition,
                ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                      LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                      WHERE k.ord <= i.indnkeyatts
                      ORDER BY k.ord) AS columns
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE t.relkind IN ('r', 'p') AND {HIDDEN_SCHEMAS}
         ORDER BY 1, 2, 3"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    for row in &rows {
        let table = table_of(row)?;
        let index = Index {
            name: row.try_get("name")?,
            columns: row.try_get("columns")?,
            unique: row.try_get("is_unique")?,
            primary: row.try_get("is_primary")?,
            valid: row.try_get("valid")?,
            definition: row.try_get("definition")?,
        };
        if let Some(table) = catalog.table_mut(&table) {
            table.indexes.push(index);
        }
    }
    Ok(())
}

/// The table a catalog row is about (its `schema` and `table_name` columns).
fn table_of(row: &sqlx::postgres::PgRow) -> Result<QualifiedName, sqlx::Error> {
    Ok(QualifiedName::new(
        row.try_get::<String, _>("schema")?,
        row.try_get::<String, _>("table_name")?,
    ))
}

async fn load_triggers(conn: &mut PgConnection, catalog: &mut Catalog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, t.relname::text AS table_name, tg.tgname::text AS name,
                pg_get_triggerdef(tg.oid) AS definition
         FROM pg_trigger tg
         JOIN pg_class t ON t.oid = tg.tgrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE NOT tg.tgisinternal AND t.relkind IN ('r', 'p') AND {HIDDEN_SCHEMAS}
         ORDER BY 1, 2, 3"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    for row in &rows {
        let table = table_of(row)?;
        let trigger = Trigger {
            name: row.try_get("name")?,
            definition: row.try_get("definition")?,
        };
        if let Some(table) = catalog.table_mut(&table) {
            table.triggers.push(trigger);
        }
    }
    Ok(())
}

async fn load_grants(conn: &mut PgConnection, catalog: &mut Catalog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS table_name,
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
                a.privilege_type AS privilege
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL aclexplode(c.relacl) AS a
         WHERE c.relkind IN ('r', 'p') AND a.grantee <> c.relowner AND {HIDDEN_SCHEMAS}
         ORDER BY 1, 2, 3, 4"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    for row in &rows {
        let table = table_of(row)?;
        let grant = Grant {
            grantee: row.try_get("grantee")?,
            privilege: row.try_get("privilege")?,
        };
        if let Some(table) = catalog.table_mut(&table) {
            table.grants.push(grant);
        }
    }
    Ok(())
}

async fn load_views(conn: &mut PgConnection) -> Result<Vec<View>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS name,
                pg_get_viewdef(c.oid) AS definition,
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                      ORDER BY a.attnum) AS columns,
                c.relkind = 'm' AS materialized,
                pg_get_userbyid(c.relowner)::text AS owner,
                ARRAY(SELECT o FROM unnest(coalesce(c.reloptions, '{{}}')) AS o ORDER BY o) AS options,
                ARRAY(SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                  ELSE pg_get_userbyid(g.grantee)::text END
                             || ' ' || g.privilege_type
                        FROM aclexplode(c.relacl) AS g
                       WHERE g.grantee <> c.relowner ORDER BY 1) AS grants,
                ARRAY(SELECT rn.nspname::text
                        FROM pg_rewrite w
                        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                                        AND d.refclassid = 'pg_class'::regclass
                        JOIN pg_class r ON r.oid = d.refobjid AND r.oid <> c.oid
                        JOIN pg_namespace rn ON rn.oid = r.relnamespace
                       WHERE w.ev_class = c.oid
                       GROUP BY rn.nspname, r.relname ORDER BY rn.nspname || '.' || r.relname) AS read_schemas,
                ARRAY(SELECT r.relname::text
                        FROM pg_rewrite w
                        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                                        AND d.refclassid = 'pg_class'::regclass
                        JOIN pg_class r ON r.oid = d.refobjid AND r.oid <> c.oid
                        JOIN pg_namespace rn ON rn.oid = r.relnamespace
                       WHERE w.ev_class = c.oid
                       GROUP BY rn.nspname, r.relname ORDER BY rn.nspname || '.' || r.relname) AS read_names
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND {HIDDEN_SCHEMAS} ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            let schemas: Vec<String> = row.try_get("read_schemas")?;
            let names: Vec<String> = row.try_get("read_names")?;
            let grants: Vec<String> = row.try_get("grants")?;
            Ok(View {
                name: QualifiedName::new(
                    row.try_get::<String, _>("schema")?,
                    row.try_get::<String, _>("name")?,
                ),
                columns: row.try_get("columns")?,
                definition: row.try_get("definition")?,
                materialized: row.try_get("materialized")?,
                owner: row.try_get("owner")?,
                options: row.try_get("options")?,
                grants: grants
                    .iter()
                    .filter_map(|g| g.rsplit_once(' '))
                    .map(|(grantee, privilege)| Grant {
                        grantee: grantee.to_string(),
                        privilege: privilege.to_string(),
                    })
                    .collect(),
                reads: schemas
                    .into_iter()
                    .zip(names)
                    .map(|(schema, name)| QualifiedName::new(schema, name))
                    .collect(),
            })
        })
        .collect()
}

async fn load_functions(conn: &mut PgConnection) -> Result<Vec<Function>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, p.proname::text AS name,
                pg_get_function_identity_arguments(p.oid) AS arguments
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {HIDDEN_SCHEMAS}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.objid = p.oid AND d.deptype = 'e')
         ORDER BY 1, 2, 3"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(Function {
                name: QualifiedName::new(
                    row.try_get::<String, _>("schema")?,
                    row.try_get::<String, _>("name")?,
                ),
                arguments: row.try_get("arguments")?,
            })
        })
        .collect()
}

async fn load_sequences(conn: &mut PgConnection) -> Result<Vec<QualifiedName>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'S' AND {HIDDEN_SCHEMAS} ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(QualifiedName::new(
                row.try_get::<String, _>("schema")?,
                row.try_get::<String, _>("name")?,
            ))
        })
        .collect()
}

async fn load_enums(conn: &mut PgConnection) -> Result<Vec<EnumType>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, t.typname::text AS name,
                ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
                      ORDER BY e.enumsortorder) AS labels
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE t.typtype = 'e' AND {HIDDEN_SCHEMAS} ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(EnumType {
                name: QualifiedName::new(
                    row.try_get::<String, _>("schema")?,
                    row.try_get::<String, _>("name")?,
                ),
                values: row.try_get("labels")?,
            })
        })
        .collect()
}

async fn load_replica_identities(
    conn: &mut PgConnection,
) -> Result<Vec<ReplicaIdentity>, sqlx::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS name,
                CASE c.relreplident WHEN 'f' THEN 'full' WHEN 'n' THEN 'nothing' ELSE 'index' END AS identity,
                (SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 WHERE x.indrelid = c.oid AND x.indisreplident) AS index
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND c.relreplident <> 'd' AND {HIDDEN_SCHEMAS} ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(ReplicaIdentity {
                table: QualifiedName::new(
                    row.try_get::<String, _>("schema")?,
                    row.try_get::<String, _>("name")?,
                ),
                identity: row.try_get("identity")?,
                index: row.try_get("index")?,
            })
        })
        .collect()
}
