//! Privileges of a version schema and its views, copied from the base schema and its tables
//! (USAGE, and SELECT/INSERT/UPDATE/DELETE to the same grantees): copied, never widened, so
//! an application role that owns nothing can switch its search_path to the new version.

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::plan::workspace::Workspace;

/// The GRANT statements (plpgsql, for the publish step) for the version schema and `views`,
/// each view granted like the table of the same name in the base schema.
pub(crate) fn grant_sql(ws: &Workspace, views: &[&QualifiedName]) -> String {
    let mut body = String::new();
    let usage = ws
        .original
        .schema(&ws.schema)
        .map(|s| s.usage.clone())
        .unwrap_or_default();
    if !usage.is_empty() {
        body.push_str(&format!(
            "  GRANT USAGE ON SCHEMA {} TO {};\n",
            quote_ident(&ws.version_schema),
            grantees(&usage)
        ));
    }
    for view in views {
        let Some(table) = ws
            .catalog
            .table(&QualifiedName::new(&ws.schema, &view.name))
        else {
            continue;
        };
        let mut by_privilege: Vec<(&str, Vec<String>)> = Vec::new();
        for grant in &table.grants {
            if !matches!(
                grant.privilege.as_str(),
                "SELECT" | "INSERT" | "UPDATE" | "DELETE"
            ) {
                continue;
            }
            match by_privilege.iter_mut().find(|(p, _)| *p == grant.privilege) {
                Some((_, roles)) => roles.push(grant.grantee.clone()),
                None => by_privilege.push((&grant.privilege, vec![grant.grantee.clone()])),
            }
        }
        for (privilege, roles) in by_privilege {
            body.push_str(&format!(
                "  GRANT {privilege} ON {} TO {};\n",
                view.quoted(),
                grantees(&roles)
            ));
        }
    }
    body
}

/// Role names for GRANT: quoted, except the keyword PUBLIC.
fn grantees(roles: &[String]) -> String {
    roles
        .iter()
        .map(|role| {
            if role == "PUBLIC" {
                role.clone()
            } else {
                quote_ident(role)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_is_a_keyword_other_roles_are_quoted() {
        assert_eq!(
            grantees(&["PUBLIC".to_string(), "app".to_string()]),
            "PUBLIC, \"app\""
        );
    }
}
