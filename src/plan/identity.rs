//! An identity column added to a table with rows (add_column with `identity`), without the
//! rewrite `ADD COLUMN ... GENERATED AS IDENTITY` costs: until contract a plain column filled
//! from a sequence of zdm's (`_zdm_seq_<table>_<column>`, the `sequence` options) by a
//! trigger of its own, backfilled from it, NOT NULL proven by a validated check; at contract,
//! in the table's final-shape step, `SET NOT NULL` (no scan), `ADD GENERATED ... AS IDENTITY`
//! (catalog only) restarted at the next value zdm's sequence would give, which is dropped.
//!
//! Measured on PostgreSQL 15 (relfilenode before/after, `DEBUG1` "rewriting table" /
//! "verifying table", `pg_locks` of the session): `ADD COLUMN ... GENERATED ... AS IDENTITY`
//! and `... GENERATED ALWAYS AS (...) STORED` rewrite the table under ACCESS EXCLUSIVE; a
//! plain `ADD COLUMN`, `SET NOT NULL` with a validated `CHECK (c IS NOT NULL)`, `ADD
//! GENERATED ... AS IDENTITY` on a NOT NULL column without a default and `RESTART WITH`
//! neither rewrite nor scan, each under ACCESS EXCLUSIVE (brief).

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::operation::{IdentityKind, SequenceOptions};
use crate::plan::names::{self, literal, regclass};
use crate::plan::step::{LockLevel, Phase, PromiseKind, Step};
use crate::plan::workspace::{TableState, Workspace};

/// An identity column attached at contract (recorded on its table's state).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    /// The column's id in its table's state (its final name at contract).
    pub column: usize,
    pub kind: IdentityKind,
    /// The `sequence` options, in SQL (`START WITH 1000 ...`), possibly empty.
    pub options: String,
    /// zdm's sequence filling the column until contract.
    pub sequence: QualifiedName,
}

/// The integer types an identity column may have (PostgreSQL refuses any other).
pub(crate) fn is_identity_type(data_type: &str) -> bool {
    matches!(
        data_type.trim().to_ascii_lowercase().as_str(),
        "smallint" | "int2" | "integer" | "int" | "int4" | "bigint" | "int8"
    )
}

/// zdm's sequence of `column` on `table` (physical names), in the table's schema.
pub(crate) fn sequence_name(table: &QualifiedName, column: &str) -> QualifiedName {
    QualifiedName::new(
        &table.schema,
        names::derived(&["_zdm_seq", &table.name, column]),
    )
}

/// The trigger (and its function in the version schema) filling the column.
pub(crate) fn trigger_name(table: &QualifiedName, column: &str) -> String {
    names::derived(&["_zdm_identity", &table.name, column])
}

/// Expand, before the column: zdm's sequence, with the identity's options and type.
pub(crate) fn create_sequence_step(
    sequence: &QualifiedName,
    data_type: &str,
    options: &SequenceOptions,
) -> Step {
    let options = options.sql();
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(" {options}")
    };
    Step::sql(
        Phase::Expand,
        format!("create sequence {sequence}, which fills the new identity column until contract"),
        format!(
            "CREATE SEQUENCE IF NOT EXISTS {} AS {data_type}{options}",
            sequence.quoted()
        ),
        LockLevel::None,
        Vec::new(),
    )
}

/// Rollback, after the column is dropped: zdm's sequence.
pub(crate) fn drop_sequence_step(sequence: &QualifiedName) -> Step {
    Step::sql(
        Phase::Rollback,
        format!("drop sequence {sequence}"),
        format!("DROP SEQUENCE IF EXISTS {}", sequence.quoted()),
        LockLevel::None,
        Vec::new(),
    )
}

/// The trigger function: both versions' INSERTs without a value get the sequence's next
/// one, as PostgreSQL's identity would give. `always`: a value given by an INSERT, or an
/// UPDATE changing a filled value, is refused with PostgreSQL's own error (SQLSTATE 428C9).
/// `by_default`: a value given is kept, and the sequence moved past it, so the identity
/// attached at contract never hands it out again. A row not filled yet (written before the
/// trigger existed) is filled by its next UPDATE or by the backfill. SECURITY DEFINER (the
/// sequence's owner, who ran expand), with a fixed search_path and every name qualified: the
/// application's roles may write the table but have no privilege on zdm's sequence, as they
/// need none on an identity's.
fn function_sql(
    version_schema: &str,
    name: &str,
    column: &str,
    kind: IdentityKind,
    sequence: &QualifiedName,
    descending: bool,
) -> String {
    let target = quote_ident(column);
    let next = format!("nextval({}::regclass)", literal(&sequence.quoted()));
    let past = if descending { "<=" } else { ">=" };
    let advance = format!(
        "IF NEW.{target} {past} (SELECT last_value FROM {seq}) THEN PERFORM setval({lit}::regclass, NEW.{target}); END IF;",
        seq = sequence.quoted(),
        lit = literal(&sequence.quoted())
    );
    let (given_on_insert, changed_on_update) = match kind {
        IdentityKind::Always => (
            format!(
                "RAISE EXCEPTION 'cannot insert a non-DEFAULT value into column \"%\"', {} USING ERRCODE = '428C9', DETAIL = {}, HINT = 'Leave the column out of the INSERT.';",
                literal(column),
                literal(&format!(
                    "Column \"{column}\" is an identity column defined as GENERATED ALWAYS."
                ))
            ),
            format!(
                "RAISE EXCEPTION 'column \"%\" can only be updated to DEFAULT', {} USING ERRCODE = '428C9', DETAIL = {};",
                literal(column),
                literal(&format!(
                    "Column \"{column}\" is an identity column defined as GENERATED ALWAYS."
                ))
            ),
        ),
        IdentityKind::ByDefault => (advance.clone(), advance),
    };
    let body = format!(
        "BEGIN\n  IF TG_OP = 'INSERT' THEN\n    IF NEW.{target} IS NULL THEN\n      NEW.{target} := {next};\n    ELSE\n      {given_on_insert}\n    END IF;\n  ELSIF OLD.{target} IS NULL THEN\n    IF NEW.{target} IS NULL THEN\n      NEW.{target} := {next};\n    END IF;\n  ELSIF NEW.{target} IS DISTINCT FROM OLD.{target} AND NEW.{target} IS NOT NULL THEN\n    {changed_on_update}\n  END IF;\n  RETURN NEW;\nEND\n"
    );
    let tag = names::dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {tag}\n{body}{tag}",
        quote_ident(version_schema),
        quote_ident(name),
    )
}

/// Expand, after the column exists: the function and the trigger filling it, recorded so
/// the table's final-shape step and a rollback drop the trigger, and contract the function.
pub(crate) fn install(
    ws: &mut Workspace,
    table: &QualifiedName,
    physical_table: &QualifiedName,
    column: &str,
    kind: IdentityKind,
    sequence: &QualifiedName,
    descending: bool,
) -> Result<(), crate::plan::Problem> {
    let name = trigger_name(physical_table, column);
    ws.push_expand(Step::sql(
        Phase::Expand,
        format!("create the function filling {physical_table}.{column} from {sequence}"),
        function_sql(
            &ws.version_schema,
            &name,
            column,
            kind,
            sequence,
            descending,
        ),
        LockLevel::None,
        Vec::new(),
    ));
    ws.push_expand(
        Step::sql(
            Phase::Expand,
            format!("install the trigger filling {physical_table}.{column} on every INSERT"),
            format!(
                "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}.{}()",
                quote_ident(&name),
                physical_table.quoted(),
                quote_ident(&ws.version_schema),
                quote_ident(&name)
            ),
            LockLevel::ShareRowExclusive,
            vec![Workspace::label(physical_table)],
        )
        .creating(PromiseKind::Trigger, physical_table, &name, false),
    );
    ws.extra_functions.push(name.clone());
    ws.state(table)?
        .extra_triggers
        .push((physical_table.clone(), name));
    Ok(())
}

/// Contract: the statements of the table's final-shape step (`table` quoted) that make each
/// recorded column an identity, after its trigger is dropped and SET NOT NULL (both earlier
/// in the same step): `ADD GENERATED` (catalog only), restarted at the next value zdm's
/// sequence would give (every value handed out, and with `by_default` every value given,
/// is behind it; nothing else writes the table under this step's ACCESS EXCLUSIVE), then
/// zdm's sequence dropped. Guarded: a re-run finds the identity and skips it.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    let mut body = String::new();
    for identity in &state.identities {
        let Some(column) = state.column_name(identity.column) else {
            continue;
        };
        let kind = match identity.kind {
            IdentityKind::Always => "ALWAYS",
            IdentityKind::ByDefault => "BY DEFAULT",
        };
        let options = if identity.options.is_empty() {
            String::new()
        } else {
            format!(" ({})", identity.options)
        };
        let sequence = identity.sequence.quoted();
        body.push_str(&format!(
            "  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {} AND attname = {} AND attidentity <> '') THEN\n    ALTER TABLE {table} ALTER COLUMN {} ADD GENERATED {kind} AS IDENTITY{options};\n    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I RESTART WITH %s', {}, {}, nextval({}::regclass));\n  END IF;\n  DROP SEQUENCE IF EXISTS {sequence};\n",
            regclass(table),
            literal(column),
            quote_ident(column),
            literal(table),
            literal(column),
            literal(&sequence),
        ));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integer_types_are_identities() {
        assert!(is_identity_type("bigint"));
        assert!(is_identity_type(" INTEGER"));
        assert!(!is_identity_type("numeric"));
        assert!(!is_identity_type("text"));
    }

    #[test]
    fn always_refuses_a_given_value_and_by_default_moves_the_sequence_past_it() {
        let table = QualifiedName::new("public", "orders");
        let sequence = sequence_name(&table, "number");
        let always = function_sql(
            "public_v2",
            "f",
            "number",
            IdentityKind::Always,
            &sequence,
            false,
        );
        assert!(always.contains("'428C9'"), "{always}");
        assert!(
            always.contains(
                "NEW.\"number\" := nextval('\"public\".\"_zdm_seq_orders_number\"'::regclass)"
            ),
            "{always}"
        );
        assert!(!always.contains("setval"), "{always}");
        let by_default = function_sql(
            "public_v2",
            "f",
            "number",
            IdentityKind::ByDefault,
            &sequence,
            true,
        );
        assert!(!by_default.contains("428C9"), "{by_default}");
        assert!(
            by_default.contains("IF NEW.\"number\" <= (SELECT last_value FROM \"public\".\"_zdm_seq_orders_number\")"),
            "{by_default}"
        );
    }
}
