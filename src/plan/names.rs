//! Names zdm gives the objects it creates (version schemas, shadow columns, sync triggers),
//! fitted to PostgreSQL's 63-byte identifier limit, and small SQL text helpers.

use crate::db::catalog::Catalog;
use crate::db::quote_ident;

/// PostgreSQL truncates identifiers longer than this many bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Prefix of a column that holds a column's new shape until contract renames it into place.
pub const SHADOW_PREFIX: &str = "_zdm_new_";

/// `name` if it fits in 63 bytes; otherwise a prefix of it plus `_` and 8 hex digits of a
/// hash of the whole name, so that two long names stay distinct and stable.
pub fn fit_identifier(name: &str) -> String {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name.to_string();
    }
    let suffix = format!("_{:08x}", fnv1a(name.as_bytes()) as u32);
    let mut cut = MAX_IDENTIFIER_BYTES - suffix.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// The schema of views showing a migration's new version: `<schema>_<migration>`.
pub fn version_schema(schema: &str, migration: &str) -> String {
    fit_identifier(&format!("{schema}_{migration}"))
}

/// The comment that marks a version schema, so later plans can find and drop it.
pub fn version_schema_comment(schema: &str, migration: &str) -> String {
    format!("zdm version schema; base={schema}; migration={migration}")
}

/// The base schema and migration a version schema's comment names, if it is zdm's.
pub fn parse_version_schema_comment(comment: &str) -> Option<(&str, &str)> {
    let rest = comment.strip_prefix("zdm version schema; base=")?;
    let (base, migration) = rest.split_once("; migration=")?;
    Some((base, migration))
}

/// The condition (SQL) under which a write to `table` counts as the new version's: the
/// writer's effective search path includes the version schema (`current_schemas(false)` is
/// the path as resolved: quoting, `$user`, missing schemas and schemas without USAGE
/// handled) and the new version is published, i.e. the table's view exists in it. Before
/// publication (expand and backfill) every writer is the old version, so a client that
/// names the version schema too early can never derive old columns from unfilled new ones.
/// CASE keeps `to_regclass` from running for writers without USAGE on the schema; the
/// parentheses keep plpgsql's `IF ... THEN` from ending at the CASE's own THEN.
pub fn new_version_writer(version_schema: &str, table: &str) -> String {
    format!(
        "(CASE WHEN {} = ANY (current_schemas(false)) THEN {} IS NOT NULL ELSE false END)",
        literal(version_schema),
        regclass(&format!(
            "{}.{}",
            quote_ident(version_schema),
            quote_ident(table)
        ))
    )
}

/// A name zdm derives from others (`<table>_<column>_check`, `_key`, `_fkey`, `_pkey`),
/// fitted to 63 bytes and kept distinct (see [`fit_identifier`]): PostgreSQL would
/// truncate it silently, and two long names could then collide.
pub fn derived(parts: &[&str]) -> String {
    fit_identifier(&parts.join("_"))
}

/// Whether a column's type as written or printed (`mood`, `public.mood`, `"Mood"[]`)
/// is the type `name`, for a column of a table in `schema` (an unqualified type name is
/// taken to be in the table's schema or in `public`, where the search path finds it).
pub fn is_type(data_type: &str, name: &crate::db::catalog::QualifiedName, schema: &str) -> bool {
    let mut text = data_type.trim();
    while let Some(inner) = text.strip_suffix("[]") {
        text = inner.trim_end();
    }
    let unquote = |part: &str| {
        let part = part.trim();
        match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => part.to_ascii_lowercase(),
        }
    };
    match text.split_once('.') {
        Some((type_schema, type_name)) => {
            unquote(type_schema) == name.schema && unquote(type_name) == name.name
        }
        None => unquote(text) == name.name && (name.schema == schema || name.schema == "public"),
    }
}

/// The hidden column holding `column`'s new shape during the migration.
pub fn shadow_column(column: &str) -> String {
    fit_identifier(&format!("{SHADOW_PREFIX}{column}"))
}

/// The CHECK (col IS NOT NULL) constraint that makes SET NOT NULL skip its scan.
pub fn not_null_check(table: &str, column: &str) -> String {
    fit_identifier(&format!("_zdm_nn_{table}_{column}"))
}

/// The trigger (and its function) keeping old and new columns of a table in step.
pub fn sync_trigger(table: &str) -> String {
    fit_identifier(&format!("_zdm_sync_{table}"))
}

/// An SQL string literal: `it's` → `'it''s'`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `to_regclass('"public"."orders"')`: NULL instead of an error when it does not exist.
pub fn regclass(quoted_relation: &str) -> String {
    format!("to_regclass({})", literal(quoted_relation))
}

/// A dollar-quote tag that does not occur in `body`.
pub fn dollar_tag(body: &str) -> String {
    let mut tag = "$zdm$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$zdm{n}$");
    }
    tag
}

/// Wraps plpgsql statements into one `DO` block (one statement, one transaction).
pub fn do_block(body: &str) -> String {
    let tag = dollar_tag(body);
    format!("DO {tag}\nBEGIN\n{body}END\n{tag}")
}

/// A quoted, comma-separated column list.
pub fn column_list<S: AsRef<str>>(columns: &[S]) -> String {
    columns
        .iter()
        .map(|column| quote_ident(column.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a default expression is a constant PostgreSQL can store once for all existing
/// rows (a fast default, no rewrite): literals, optionally cast. Anything else (a function
/// call such as `now()` or `gen_random_uuid()`) is set after the column exists and filled in
/// by the backfill, which is always safe.
pub fn is_constant_default(expression: &str) -> bool {
    let text = expression.trim();
    let value = text.split("::").next().unwrap_or(text).trim();
    let lower = value.to_ascii_lowercase();
    if matches!(lower.as_str(), "true" | "false" | "null") {
        return true;
    }
    if value.starts_with('\'') && value.ends_with('\'') && value.len() >= 2 {
        // One literal: every inner quote is doubled.
        return !value[1..value.len() - 1].replace("''", "").contains('\'');
    }
    let number = value.strip_prefix('-').unwrap_or(value);
    !number.is_empty()
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E')
        && number.starts_with(|c: char| c.is_ascii_digit())
        && text.split("::").skip(1).all(|cast| {
            cast.trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _(),".contains(c))
        })
}

/// FNV-1a: a tiny stable hash for name suffixes (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// zdm's version schemas in `catalog`, as `(version schema, base schema, migration)`,
/// read from their comments: which migrations started on a database without zdm's state.
pub fn version_schemas(catalog: &Catalog) -> Vec<(String, String, String)> {
    catalog
        .schemas
        .iter()
        .filter_map(|schema| {
            let (base, migration) = parse_version_schema_comment(schema.comment.as_deref()?)?;
            Some((schema.name.clone(), base.to_string(), migration.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_fitted_and_stay_distinct() {
        let short = version_schema("public", "0003_orders_add_status");
        assert_eq!(short, "public_0003_orders_add_status");
        let a = version_schema("public", &"a".repeat(80));
        let b = version_schema("public", &format!("{}b", "a".repeat(79)));
        assert_eq!(a.len(), 63);
        assert_eq!(b.len(), 63);
        assert_ne!(a, b);
        assert!(a.starts_with("public_aaaa"));
        // Multi-byte characters are never cut in half.
        let wide = fit_identifier(&"é".repeat(40));
        assert!(wide.len() <= 63);
    }

    #[test]
    fn version_schema_comments_round_trip() {
        let comment = version_schema_comment("public", "0003_x");
        assert_eq!(
            parse_version_schema_comment(&comment),
            Some(("public", "0003_x"))
        );
        assert_eq!(parse_version_schema_comment("something else"), None);
    }

    #[test]
    fn constants_are_told_from_expressions() {
        for constant in [
            "'new'",
            "0",
            "-1.5",
            "true",
            "'EUR'::text",
            "NULL",
            "'it''s'",
        ] {
            assert!(is_constant_default(constant), "{constant}");
        }
        for expression in ["now()", "gen_random_uuid()", "'a' || 'b'", "random() * 10"] {
            assert!(!is_constant_default(expression), "{expression}");
        }
    }

    #[test]
    fn dollar_tags_avoid_the_body() {
        assert_eq!(dollar_tag("select 1"), "$zdm$");
        assert_eq!(dollar_tag("select '$zdm$'"), "$zdm1$");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
