//! Views the application owns over a table this migration changes (renamed, columns
//! renamed, dropped, added or retyped), and over such views: each is recreated in the new
//! version schema by the publish step, its `pg_get_viewdef` text rewritten with
//! PostgreSQL's parser (the positions of its relation and column references) to read the
//! new version's views under the new names, so the new version sees the view over its own
//! shape while the old version keeps the original. The view's own columns keep their names
//! (a renamed column it showed unaliased gets `AS` its old name): zdm changes where a view
//! reads, never what it shows. At contract a view that reads a column contract drops
//! (change_type replaces it) is dropped before the tables' final shape and recreated over
//! it last, with its options, grants and owner; one over renamed columns or tables only
//! is left to PostgreSQL, which follows renames. A view that reads a column or table this
//! migration drops cannot be rewritten: the publish step's description says so and the
//! dependencies gate names it before contract. Materialized views are never recreated
//! (refreshing one is the application's decision): the plan names them.

use std::collections::BTreeMap;

use pg_query::NodeRef;

use crate::db::catalog::{QualifiedName, View};
use crate::db::quote_ident;
use crate::plan::names::{self, do_block};
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

/// A relation a view reads that the migration changes: where the new version and the
/// final shape have it, and each old column's new name (`None`: dropped).
struct Changed {
    new_version: QualifiedName,
    final_name: QualifiedName,
    columns: BTreeMap<String, Option<String>>,
    /// Columns whose physical column contract drops although the name lives on
    /// (change_type's shadow takes its place).
    replaced: Vec<String>,
    /// The migration drops the table.
    dropped: bool,
}

/// One application view affected by the migration.
pub(crate) struct AppView {
    pub view: View,
    /// It is in the versioned schema, so the new version gets a copy (a view of another
    /// schema is named by its schema: a copy could not take its place).
    pub copied: bool,
    /// Its definition over the new version's views, or why it cannot be rewritten.
    pub new_version: Result<String, String>,
    /// Its definition over the final tables, when contract must recreate it.
    pub recreate: Option<String>,
}

/// The application's views (not in a version schema, not materialized) the migration
/// changes something under, inner views first; and the materialized ones.
pub(crate) fn affected(ws: &Workspace) -> (Vec<AppView>, Vec<QualifiedName>) {
    let mut changed = changed_tables(ws);
    let mut found: Vec<AppView> = Vec::new();
    let mut materialized = Vec::new();
    // Views over views: a pass per level, until no view is added.
    loop {
        let before = found.len();
        for view in ws.original.views.iter().filter(|v| is_application(ws, v)) {
            if found.iter().any(|f| f.view.name == view.name)
                || materialized.contains(&view.name)
                || !view.reads.iter().any(|r| changed.contains_key(r))
            {
                continue;
            }
            if view.materialized {
                materialized.push(view.name.clone());
                continue;
            }
            let copied = view.name.schema == ws.schema;
            let new_version = rewrite(view, &changed, |c| &c.new_version);
            let recreate = match &new_version {
                Ok(_) if reads_replaced(view, &changed) => {
                    rewrite(view, &changed, |c| &c.final_name).ok()
                }
                _ => None,
            };
            if new_version.is_ok() {
                let columns = view.columns.iter().map(|c| (c.clone(), Some(c.clone())));
                changed.insert(
                    view.name.clone(),
                    Changed {
                        new_version: if copied {
                            QualifiedName::new(&ws.version_schema, &view.name.name)
                        } else {
                            view.name.clone()
                        },
                        final_name: view.name.clone(),
                        columns: columns.collect(),
                        replaced: if recreate.is_some() {
                            view.columns.clone()
                        } else {
                            Vec::new()
                        },
                        dropped: false,
                    },
                );
            }
            found.push(AppView {
                view: view.clone(),
                copied,
                new_version,
                recreate,
            });
        }
        if found.len() == before {
            break;
        }
    }
    (found, materialized)
}

/// Not zdm's: outside every version schema.
fn is_application(ws: &Workspace, view: &View) -> bool {
    let versioned = ws
        .original
        .schema(&view.name.schema)
        .and_then(|s| s.comment.as_deref())
        .and_then(names::parse_version_schema_comment)
        .is_some();
    !versioned && view.name.schema != ws.version_schema
}

/// The tables the migration reshapes, by their physical (old) name.
fn changed_tables(ws: &Workspace) -> BTreeMap<QualifiedName, Changed> {
    let mut changed = BTreeMap::new();
    for state in ws.tables.iter().filter(|s| !s.created) {
        let Some(original) = ws.original.table(&state.physical) else {
            continue;
        };
        let after = ws.catalog.table(&state.name).filter(|_| !state.dropped);
        let mut columns = BTreeMap::new();
        let mut replaced = Vec::new();
        let mut differs = state.dropped || state.name != state.physical;
        for column in &original.columns {
            let chain = ws
                .shadows
                .iter()
                .find(|c| c.table == state.physical && c.old == column.name);
            let physical = chain.map_or(column.name.as_str(), |c| c.shadow.as_str());
            let new = state
                .columns
                .iter()
                .find(|c| c.physical == physical)
                .map(|c| c.name.clone())
                .filter(|_| after.is_some());
            if chain.is_some() && new.is_some() {
                replaced.push(column.name.clone());
            }
            let retyped = new
                .as_ref()
                .and_then(|n| after?.column(n))
                .is_some_and(|c| c.data_type != column.data_type);
            differs |= new.as_deref() != Some(column.name.as_str()) || retyped;
            columns.insert(column.name.clone(), new);
        }
        differs |= after.is_some_and(|t| t.columns.len() != original.columns.len());
        if differs {
            changed.insert(
                state.physical.clone(),
                Changed {
                    new_version: QualifiedName::new(&ws.version_schema, &state.name.name),
                    final_name: state.name.clone(),
                    columns,
                    replaced,
                    dropped: state.dropped,
                },
            );
        }
    }
    changed
}

/// Whether contract drops a physical column the view reads (so it must be recreated).
fn reads_replaced(view: &View, changed: &BTreeMap<QualifiedName, Changed>) -> bool {
    let Ok(parsed) = pg_query::parse(&view.definition, pg_query::ParserOptions::DEFAULT) else {
        return false;
    };
    let scope = bindings(view, &parsed, changed);
    parsed.protobuf.nodes().iter().any(|(node, ..)| {
        let NodeRef::ColumnRef(column) = node else {
            return false;
        };
        let fields = strings(&column.fields);
        resolve(&fields, &scope).is_some_and(|(target, name)| {
            changed
                .get(target)
                .is_some_and(|c| c.replaced.iter().any(|r| r == name))
        })
    })
}

/// A relation reference of the view's query: the name it is bound to (its alias, else its
/// name), what it is, and where its name is written.
struct Binding {
    bound: String,
    relation: QualifiedName,
    columns: Vec<String>,
}

/// The relations the query names (a CTE's name resolves to nothing and is left alone).
fn bindings(
    view: &View,
    parsed: &pg_query::ParseResult,
    changed: &BTreeMap<QualifiedName, Changed>,
) -> Vec<Binding> {
    let mut found = Vec::new();
    for (node, ..) in parsed.protobuf.nodes() {
        let NodeRef::RangeVar(range) = node else {
            continue;
        };
        let Some(relation) = relation_of(view, &range.schemaname, &range.relname) else {
            continue;
        };
        let bound = range
            .alias
            .as_ref()
            .map_or_else(|| range.relname.clone(), |a| a.aliasname.clone());
        let columns = changed
            .get(&relation)
            .map(|c| c.columns.keys().cloned().collect())
            .unwrap_or_default();
        found.push(Binding {
            bound,
            relation,
            columns,
        });
    }
    found
}

/// A name of the definition as the relation the view reads (unqualified names are those
/// visible when the catalog was read: one of the view's dependencies of that name).
fn relation_of(view: &View, schema: &str, name: &str) -> Option<QualifiedName> {
    let mut candidates = view
        .reads
        .iter()
        .filter(|r| r.name == name && (schema.is_empty() || r.schema == schema));
    let first = candidates.next()?;
    candidates.next().is_none().then(|| first.clone())
}

/// The String fields of a column reference (`["o", "amount"]`); a `*` ends it.
fn strings(fields: &[pg_query::protobuf::Node]) -> Vec<String> {
    fields
        .iter()
        .map_while(|f| match &f.node {
            Some(pg_query::NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// The changed relation and column a column reference means, if it means one.
fn resolve<'s>(fields: &'s [String], scope: &'s [Binding]) -> Option<(&'s QualifiedName, &'s str)> {
    let (column, qualifier) = fields.split_last()?;
    let candidates: Vec<&Binding> = match qualifier {
        [] => scope
            .iter()
            .filter(|b| b.columns.contains(column))
            .collect(),
        [.., table] => scope.iter().filter(|b| &b.bound == table).collect(),
    };
    match candidates.as_slice() {
        [one] if one.columns.contains(column) => Some((&one.relation, column.as_str())),
        _ => None,
    }
}

/// The definition with every reference to a changed relation pointed at `target(changed)`
/// and its columns renamed, the view's own column names kept.
fn rewrite(
    view: &View,
    changed: &BTreeMap<QualifiedName, Changed>,
    target: impl Fn(&Changed) -> &QualifiedName,
) -> Result<String, String> {
    let text = view.definition.trim_end().trim_end_matches(';');
    let parsed = pg_query::parse(text, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| format!("its definition does not parse: {e}"))?;
    let tokens = pg_query::scan(text)
        .map_err(|e| format!("its definition does not scan: {e}"))?
        .tokens;
    let token_at = |location: i32| tokens.iter().position(|t| t.start == location);
    let scope = bindings(view, &parsed, changed);
    // (start, end, replacement), applied from the end.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut unaliased: Vec<i32> = Vec::new();
    for (node, ..) in parsed.protobuf.nodes() {
        if let NodeRef::ResTarget(target) = node {
            if target.name.is_empty() {
                if let Some(pg_query::NodeEnum::ColumnRef(column)) =
                    target.val.as_ref().and_then(|v| v.node.as_ref())
                {
                    unaliased.push(column.location);
                }
            }
        }
    }
    for (node, ..) in parsed.protobuf.nodes() {
        match node {
            NodeRef::RangeVar(range) => {
                let Some(relation) = relation_of(view, &range.schemaname, &range.relname) else {
                    continue;
                };
                let Some(change) = changed.get(&relation) else {
                    continue;
                };
                if change.dropped {
                    return Err(format!("it reads {relation}, which this migration drops"));
                }
                let Some(first) = token_at(range.location) else {
                    return Err(format!("cannot place {relation} in its definition"));
                };
                let last = first + if range.schemaname.is_empty() { 0 } else { 2 };
                let span = span(&tokens, first, last)?;
                let alias = if range.alias.is_none() {
                    format!(" AS {}", quote_ident(&range.relname))
                } else {
                    String::new()
                };
                edits.push((
                    span.0,
                    span.1,
                    format!("{}{alias}", target(change).quoted()),
                ));
            }
            NodeRef::ColumnRef(column) => {
                let fields = strings(&column.fields);
                let Some((relation, name)) = resolve(&fields, &scope) else {
                    if fields.len() == 1
                        && scope
                            .iter()
                            .filter(|b| b.columns.contains(&fields[0]))
                            .count()
                            > 1
                    {
                        return Err(format!(
                            "cannot tell which table its column {} belongs to",
                            fields[0]
                        ));
                    }
                    continue;
                };
                let Some(change) = changed.get(relation) else {
                    continue;
                };
                let new = change.columns.get(name).cloned().flatten().ok_or_else(|| {
                    format!("it reads {relation}.{name}, which this migration drops")
                })?;
                if new == name {
                    continue;
                }
                let Some(first) = token_at(column.location) else {
                    return Err(format!("cannot place {relation}.{name} in its definition"));
                };
                let span = span(&tokens, first, first + 2 * (fields.len() - 1))?;
                // Keep the qualifiers as written; rename the column, keep the shown name.
                let qualifiers =
                    &text[span.0..tokens[first + 2 * (fields.len() - 1)].start as usize];
                let keep = if unaliased.contains(&column.location) {
                    format!(" AS {}", quote_ident(name))
                } else {
                    String::new()
                };
                edits.push((
                    span.0,
                    span.1,
                    format!("{qualifiers}{}{keep}", quote_ident(&new)),
                ));
            }
            _ => {}
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    // The rewrite must still be one query PostgreSQL's grammar accepts.
    pg_query::parse(&out, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| format!("its rewritten definition does not parse: {e}"))?;
    Ok(out)
}

/// The byte range from token `first` to token `last`, both included.
fn span(
    tokens: &[pg_query::protobuf::ScanToken],
    first: usize,
    last: usize,
) -> Result<(usize, usize), String> {
    match (tokens.get(first), tokens.get(last)) {
        (Some(a), Some(b)) => Ok((a.start as usize, b.end as usize)),
        _ => Err("its definition ends early".to_string()),
    }
}

/// `CREATE OR REPLACE VIEW name [WITH (options)] AS definition` (a re-run replaces it by
/// the same), its grants and (`owner`) its owner.
fn create_sql(view: &View, name: &QualifiedName, definition: &str, owner: bool) -> String {
    let options = if view.options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", view.options.join(", "))
    };
    let mut sql = format!(
        "  CREATE OR REPLACE VIEW {}{options} AS {definition};\n",
        name.quoted()
    );
    if owner && !view.owner.is_empty() {
        sql.push_str(&format!(
            "  ALTER VIEW {} OWNER TO {};\n",
            name.quoted(),
            quote_ident(&view.owner)
        ));
    }
    for grant in &view.grants {
        let grantee = if grant.grantee == "PUBLIC" {
            "PUBLIC".to_string()
        } else {
            quote_ident(&grant.grantee)
        };
        sql.push_str(&format!(
            "  GRANT {} ON {} TO {grantee};\n",
            grant.privilege,
            name.quoted()
        ));
    }
    sql
}

/// For the publish step: each rewritable view created in the version schema (after the
/// version views it reads), and what the plan must say about the others.
pub(crate) fn publish_sql(ws: &Workspace) -> (String, Vec<String>) {
    let (views, materialized) = affected(ws);
    let mut body = String::new();
    let mut notes = Vec::new();
    for app in &views {
        match &app.new_version {
            Ok(_) if !app.copied => notes.push(format!(
                "view {} is not recreated in the new version: schema {} is not versioned (it keeps the old shape)",
                app.view.name, app.view.name.schema
            )),
            Ok(definition) => {
                let name = QualifiedName::new(&ws.version_schema, &app.view.name.name);
                body.push_str(&create_sql(&app.view, &name, definition, false));
            }
            Err(why) => notes.push(format!(
                "view {} is not recreated in the new version: {why} (the dependencies gate names it before contract)",
                app.view.name
            )),
        }
    }
    for name in materialized {
        notes.push(format!(
            "materialized view {name} is not recreated in the new version (it shows the old shape; the dependencies gate names it if contract would break it)"
        ));
    }
    (body, notes)
}

/// The version schema's copies, for rollback (dependents first).
pub(crate) fn version_copies(ws: &Workspace) -> Vec<QualifiedName> {
    affected(ws)
        .0
        .iter()
        .rev()
        .filter(|a| a.copied && a.new_version.is_ok())
        .map(|a| QualifiedName::new(&ws.version_schema, &a.view.name.name))
        .collect()
}

/// The views contract drops before the tables' final shape and recreates after it.
pub(crate) fn recreated(ws: &Workspace) -> Vec<QualifiedName> {
    affected(ws)
        .0
        .into_iter()
        .filter(|a| a.recreate.is_some())
        .map(|a| a.view.name)
        .collect()
}

/// Contract, before the final shape: the views that read a column it drops.
pub(crate) fn contract_drop_step(ws: &Workspace) -> Option<Step> {
    let views: Vec<QualifiedName> = recreated(ws).into_iter().rev().collect();
    if views.is_empty() {
        return None;
    }
    let quoted: Vec<String> = views.iter().map(|v| v.quoted()).collect();
    Some(Step::sql(
        Phase::Contract,
        format!(
            "drop application view{} {} (recreated over the final shape at the end of contract)",
            if views.len() == 1 { "" } else { "s" },
            views
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("DROP VIEW IF EXISTS {}", quoted.join(", ")),
        LockLevel::AccessExclusive,
        views.iter().map(ToString::to_string).collect(),
    ))
}

/// Contract, last: those views over the final shape, with their options, owner and grants.
pub(crate) fn contract_create_step(ws: &Workspace) -> Option<Step> {
    let views: Vec<AppView> = affected(ws)
        .0
        .into_iter()
        .filter(|a| a.recreate.is_some())
        .collect();
    let mut body = String::new();
    for app in &views {
        if let Some(definition) = &app.recreate {
            body.push_str(&format!(
                "  IF to_regclass({}) IS NULL THEN\n",
                names::literal(&app.view.name.quoted())
            ));
            body.push_str(&create_sql(&app.view, &app.view.name, definition, true));
            body.push_str("  END IF;\n");
        }
    }
    if body.is_empty() {
        return None;
    }
    Some(Step::sql(
        Phase::Contract,
        format!(
            "recreate application view{} {} over the final shape",
            if views.len() == 1 { "" } else { "s" },
            views
                .iter()
                .map(|a| a.view.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        do_block(&body),
        LockLevel::AccessExclusive,
        views.iter().map(|a| a.view.name.to_string()).collect(),
    ))
}

/// The simulated catalog after contract: each rewritten view's copy in the version
/// schema, each base view reading the final names (and, recreated, its final definition).
pub(crate) fn simulate(ws: &Workspace, catalog: &mut Vec<View>) {
    let changed = changed_tables(ws);
    let final_of = |r: &QualifiedName| {
        changed
            .get(r)
            .map_or_else(|| r.clone(), |c| c.final_name.clone())
    };
    let (views, _) = affected(ws);
    let copied: Vec<QualifiedName> = views
        .iter()
        .filter(|a| a.copied && a.new_version.is_ok())
        .map(|a| a.view.name.clone())
        .collect();
    for app in views {
        if let Some(base) = catalog.iter_mut().find(|v| v.name == app.view.name) {
            base.reads = base.reads.iter().map(final_of).collect();
            base.reads.sort();
            if let Some(recreated) = &app.recreate {
                base.definition = recreated.clone();
            }
        }
        let Ok(definition) = &app.new_version else {
            continue;
        };
        if !app.copied {
            continue;
        }
        let copy_reads = app
            .view
            .reads
            .iter()
            .map(|r| match changed.get(r) {
                Some(c) => c.new_version.clone(),
                None if copied.contains(r) => QualifiedName::new(&ws.version_schema, &r.name),
                None => r.clone(),
            })
            .collect();
        catalog.push(View {
            name: QualifiedName::new(&ws.version_schema, &app.view.name.name),
            definition: definition.clone(),
            reads: copy_reads,
            owner: String::new(),
            ..app.view.clone()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(definition: &str) -> View {
        View {
            name: QualifiedName::new("public", "order_totals"),
            columns: vec!["id".into(), "amount".into()],
            definition: definition.into(),
            materialized: false,
            options: Vec::new(),
            grants: Vec::new(),
            reads: vec![
                QualifiedName::new("public", "orders"),
                QualifiedName::new("public", "customers"),
            ],
            owner: String::new(),
        }
    }

    fn changed() -> BTreeMap<QualifiedName, Changed> {
        let mut columns = BTreeMap::new();
        columns.insert("id".to_string(), Some("id".to_string()));
        columns.insert("amount".to_string(), Some("total".to_string()));
        columns.insert("legacy".to_string(), None);
        columns.insert("customer_id".to_string(), Some("customer_id".to_string()));
        let mut map = BTreeMap::new();
        map.insert(
            QualifiedName::new("public", "orders"),
            Changed {
                new_version: QualifiedName::new("public_0002", "purchases"),
                final_name: QualifiedName::new("public", "purchases"),
                columns,
                replaced: Vec::new(),
                dropped: false,
            },
        );
        map
    }

    #[test]
    fn references_follow_the_renames_and_the_views_columns_keep_their_names() {
        let out = rewrite(
            &view(" SELECT id,\n    amount\n   FROM orders\n  WHERE amount > 10;"),
            &changed(),
            |c| &c.new_version,
        )
        .expect("rewrites");
        assert_eq!(
            out,
            " SELECT id,\n    \"total\" AS \"amount\"\n   FROM \"public_0002\".\"purchases\" AS \"orders\"\n  WHERE \"total\" > 10"
        );
    }

    #[test]
    fn qualified_and_aliased_references_and_other_tables_are_kept() {
        let out = rewrite(
            &view(" SELECT o.id, o.amount AS a, c.name FROM public.orders o JOIN customers c ON c.id = o.customer_id;"),
            &changed(),
            |c| &c.final_name,
        )
        .expect("rewrites");
        assert_eq!(
            out,
            " SELECT o.id, o.\"total\" AS a, c.name FROM \"public\".\"purchases\" o JOIN customers c ON c.id = o.customer_id"
        );
    }

    #[test]
    fn a_dropped_column_cannot_be_rewritten() {
        let why = rewrite(&view(" SELECT id, legacy FROM orders;"), &changed(), |c| {
            &c.new_version
        })
        .expect_err("refused");
        assert!(
            why.contains("public.orders.legacy, which this migration drops"),
            "{why}"
        );
    }
}
