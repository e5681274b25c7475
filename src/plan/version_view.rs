//! The version schema: created empty first thing at expand, filled by the publish step (one
//! auto-updatable view per table in the new shape, its defaults and grants) last in
//! backfill, its views re-pointed at the final columns at contract, dropped at rollback;
//! the previous migration's version schema is dropped at contract.

use crate::db::catalog::{Catalog, QualifiedName, Schema, View};
use crate::db::quote_ident;
use crate::plan::grants;
use crate::plan::names::{self, do_block, literal};
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

/// One view of a version schema: its columns as `(name, physical column)`, the table it
/// shows, and the columns whose default the view overrides.
pub(crate) struct VersionView {
    pub view: QualifiedName,
    pub columns: Vec<(String, String)>,
    pub source: QualifiedName,
    pub defaults: Vec<String>,
}

/// Which columns a version view reads.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Over {
    /// Where the data lives until contract (shadow columns, old table names).
    Physical,
    /// The names contract gives them.
    Final,
}

/// The views of the new version: one per table of the schema, in the new shape.
pub(crate) fn views(ws: &Workspace, over: Over) -> Vec<VersionView> {
    ws.catalog
        .tables
        .iter()
        .filter(|table| table.name.schema == ws.schema)
        .map(|table| {
            let state = ws.state_of(&table.name);
            let columns: Vec<(String, String)> = table
                .columns
                .iter()
                .map(|column| {
                    let physical = match over {
                        Over::Final => column.name.clone(),
                        Over::Physical => ws.physical_column(&table.name, &column.name),
                    };
                    (column.name.clone(), physical)
                })
                .collect();
            let source = match over {
                Over::Final => table.name.clone(),
                Over::Physical => ws.physical_table(&table.name),
            };
            let defaults = state
                .map(|s| {
                    s.view_defaults
                        .iter()
                        .filter_map(|(id, _)| s.column_name(*id).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            VersionView {
                view: QualifiedName::new(&ws.version_schema, &table.name.name),
                columns,
                source,
                defaults,
            }
        })
        .collect()
}

/// Version schemas of earlier migrations of this schema (found by their comment): dropped
/// at contract.
pub(crate) fn previous_version_schemas<'a>(ws: &Workspace<'a>) -> Vec<&'a Schema> {
    let original: &'a Catalog = ws.original;
    original
        .schemas
        .iter()
        .filter(|schema| schema.name != ws.version_schema)
        .filter(|schema| {
            schema
                .comment
                .as_deref()
                .and_then(names::parse_version_schema_comment)
                .is_some_and(|(base, _)| base == ws.schema)
        })
        .collect()
}

/// Expand, first step: the (empty) version schema, with the comment later plans find it by.
pub(crate) fn create_schema_step(ws: &Workspace) -> Step {
    let version = quote_ident(&ws.version_schema);
    let comment = names::version_schema_comment(&ws.schema, ws.migration);
    Step::sql(
        Phase::Expand,
        format!(
            "create version schema {} (empty until the backfill is done)",
            ws.version_schema
        ),
        do_block(&format!(
            "  CREATE SCHEMA IF NOT EXISTS {version};\n  COMMENT ON SCHEMA {version} IS {};\n",
            literal(&comment)
        )),
        LockLevel::None,
        Vec::new(),
    )
}

/// The one step that makes the new version usable: every view of the version schema,
/// its defaults and its grants, in one transaction, so the new version appears all at
/// once (and, with its views, the sync functions' `down` rules: see
/// `names::new_version_writer`).
pub(crate) fn publish_step(ws: &Workspace, views: &[VersionView]) -> Option<Step> {
    let mut body = String::new();
    for VersionView {
        view,
        columns,
        source,
        defaults,
    } in views
    {
        body.push_str(&format!(
            "  CREATE OR REPLACE VIEW {} AS {};\n",
            view.quoted(),
            select_sql(columns, source)
        ));
        body.push_str(&view_default_sql(ws, view, defaults));
    }
    // The application's views over what changed, over the version views just created.
    let (app_views, notes) = crate::plan::app_views::publish_sql(ws);
    body.push_str(&app_views);
    let names: Vec<&QualifiedName> = views.iter().map(|v| &v.view).collect();
    body.push_str(&grants::grant_sql(ws, &names));
    if body.is_empty() {
        return None;
    }
    let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
    let sources: Vec<String> = views.iter().map(|v| v.source.to_string()).collect();
    Some(Step::sql(
        Phase::Backfill,
        format!(
            "publish the new version: {} view{} in {}, granted like {} (every row is filled by now){notes}",
            views.len(),
            if views.len() == 1 { "" } else { "s" },
            ws.version_schema,
            ws.schema
        ),
        do_block(&body),
        LockLevel::AccessShare,
        sources,
    ))
}

/// The defaults a view sets for the new version (set_default), its latest per column.
fn view_default_sql(ws: &Workspace, view: &QualifiedName, defaults: &[String]) -> String {
    let Some(state) = ws
        .tables
        .iter()
        .find(|t| t.name.schema == ws.schema && t.name.name == view.name)
    else {
        return String::new();
    };
    defaults
        .iter()
        .filter_map(|column| {
            let id = state.column(column)?.id;
            let expression = state
                .view_defaults
                .iter()
                .rev()
                .find(|(candidate, _)| *candidate == id)?
                .1
                .clone();
            Some(format!(
                "  ALTER VIEW {} ALTER COLUMN {} SET DEFAULT {expression};\n",
                view.quoted(),
                quote_ident(column)
            ))
        })
        .collect()
}

/// Contract, first: drop each previous version schema and its views (the old version).
pub(crate) fn drop_previous_steps(ws: &Workspace) -> Vec<Step> {
    previous_version_schemas(ws)
        .into_iter()
        .map(|previous| {
            let previous_views: Vec<&View> = ws
                .original
                .views
                .iter()
                .filter(|v| v.name.schema == previous.name)
                .collect();
            let quoted: Vec<String> = previous_views.iter().map(|v| v.name.quoted()).collect();
            let views: Vec<String> = previous_views.iter().map(|v| v.name.to_string()).collect();
            let mut body = String::new();
            if !quoted.is_empty() {
                body.push_str(&format!("  DROP VIEW IF EXISTS {};\n", quoted.join(", ")));
            }
            body.push_str(&format!(
                "  DROP SCHEMA IF EXISTS {};\n",
                quote_ident(&previous.name)
            ));
            Step::sql(
                Phase::Contract,
                format!("drop the previous version schema {}", previous.name),
                do_block(&body),
                LockLevel::AccessExclusive,
                views,
            )
        })
        .collect()
}

/// Contract, last: each view re-pointed at its table's final columns; the defaults it set
/// are the table's own by now, so the view drops them.
pub(crate) fn repoint_steps(final_views: &[VersionView]) -> Vec<Step> {
    final_views
        .iter()
        .map(
            |VersionView {
                 view,
                 columns,
                 source,
                 defaults,
             }| {
                let drop_defaults: String = defaults
                    .iter()
                    .map(|column| {
                        format!(
                            "  ALTER VIEW {} ALTER COLUMN {} DROP DEFAULT;\n",
                            view.quoted(),
                            quote_ident(column)
                        )
                    })
                    .collect();
                view_step(
                    Phase::Contract,
                    format!("point view {view} at the final columns of {source}"),
                    view,
                    columns,
                    source,
                    &drop_defaults,
                )
            },
        )
        .collect()
}

/// Rollback: the version schema with its views and the trigger functions in it (their
/// triggers are gone by then).
pub(crate) fn rollback_drop_step(
    ws: &Workspace,
    published: &[VersionView],
    functions: &[String],
) -> Step {
    let mut body = String::new();
    // The application's views copied into the version schema read its views: first.
    let copies = crate::plan::app_views::version_copies(ws);
    if !copies.is_empty() {
        let quoted: Vec<String> = copies.iter().map(QualifiedName::quoted).collect();
        body.push_str(&format!("  DROP VIEW IF EXISTS {};\n", quoted.join(", ")));
    }
    let view_names: Vec<String> = published.iter().map(|v| v.view.quoted()).collect();
    if !view_names.is_empty() {
        body.push_str(&format!(
            "  DROP VIEW IF EXISTS {};\n",
            view_names.join(", ")
        ));
    }
    let view_labels: Vec<String> = published.iter().map(|v| v.view.to_string()).collect();
    for function in functions {
        body.push_str(&format!("  DROP FUNCTION IF EXISTS {function};\n"));
    }
    body.push_str(&format!(
        "  DROP SCHEMA IF EXISTS {};\n",
        quote_ident(&ws.version_schema)
    ));
    Step::sql(
        Phase::Rollback,
        format!("drop version schema {}", ws.version_schema),
        do_block(&body),
        LockLevel::AccessExclusive,
        view_labels,
    )
}

/// The simulated catalog once contract is done: the previous versions are gone, this
/// one's schema and views (over the final columns) remain.
pub(crate) fn catalog_after_contract(ws: Workspace, final_views: Vec<VersionView>) -> Catalog {
    let previous: Vec<String> = previous_version_schemas(&ws)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let usage = ws
        .original
        .schema(&ws.schema)
        .map(|s| s.usage.clone())
        .unwrap_or_default();
    let comment = names::version_schema_comment(&ws.schema, ws.migration);
    let version_schema = ws.version_schema.clone();
    let mut app_views = ws.catalog.views.clone();
    crate::plan::app_views::simulate(&ws, &mut app_views);
    let mut catalog = ws.catalog;
    catalog.views = app_views;
    catalog.schemas.retain(|s| !previous.contains(&s.name));
    catalog.views.retain(|v| !previous.contains(&v.name.schema));
    catalog.schemas.push(Schema {
        name: version_schema,
        comment: Some(comment),
        usage,
    });
    for VersionView {
        view,
        columns,
        source,
        ..
    } in final_views
    {
        catalog.views.push(View {
            columns: columns.iter().map(|(name, _)| name.clone()).collect(),
            definition: select_sql(&columns, &source),
            name: view,
            materialized: false,
            options: Vec::new(),
            grants: Vec::new(),
            reads: vec![source],
            owner: String::new(),
        });
    }
    catalog.normalize();
    catalog
}

/// `SELECT "physical" AS "name", ... FROM source` (the text stored for simulated views).
fn select_sql(columns: &[(String, String)], source: &QualifiedName) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|(name, physical)| {
            if name == physical {
                quote_ident(name)
            } else {
                format!("{} AS {}", quote_ident(physical), quote_ident(name))
            }
        })
        .collect();
    format!("SELECT {} FROM {}", list.join(", "), source.quoted())
}

/// A step creating (or replacing) one version view, plus `extra` plpgsql statements.
fn view_step(
    phase: Phase,
    description: String,
    view: &QualifiedName,
    columns: &[(String, String)],
    source: &QualifiedName,
    extra: &str,
) -> Step {
    let create = format!(
        "CREATE OR REPLACE VIEW {} AS {}",
        view.quoted(),
        select_sql(columns, source)
    );
    let sql = if extra.is_empty() {
        create
    } else {
        do_block(&format!("  {create};\n{extra}"))
    };
    Step::sql(
        phase,
        description,
        sql,
        LockLevel::AccessShare,
        vec![source.to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_rename_only_what_differs() {
        let columns = vec![
            ("id".to_string(), "id".to_string()),
            ("price".to_string(), "_zdm_new_price".to_string()),
        ];
        assert_eq!(
            select_sql(&columns, &QualifiedName::new("public", "products")),
            "SELECT \"id\", \"_zdm_new_price\" AS \"price\" FROM \"public\".\"products\""
        );
    }
}
