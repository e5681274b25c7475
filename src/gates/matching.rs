//! Which of a set of names a query text mentions: identifiers as PostgreSQL reads them
//! (unquoted ones folded to lower case, quoted ones exact), outside string literals and
//! comments; and, for a column that moves to another table, whether a query's every use
//! of it is of the new home (parsed with PostgreSQL's grammar). Used on query texts from
//! pg_stat_activity and pg_stat_statements, which are the application's, not zdm's: zdm's
//! own plans are never parsed.

use pg_query::NodeRef;

/// The names of `names` that `sql` mentions as an identifier, in `names`' order.
pub fn mentioned<'a>(sql: &str, names: &'a [String]) -> Vec<&'a str> {
    let identifiers = identifiers(sql);
    names
        .iter()
        .filter(|name| identifiers.iter().any(|i| i == *name))
        .map(String::as_str)
        .collect()
}

/// Whether every reference `sql` makes to a column named `column` is to that column in
/// `new_table` (its new home), so none can be to `old_table`'s: a qualifier naming the new
/// table or one of its aliases, an unqualified name in a statement whose only tables with
/// it are the new one, or the column list of an INSERT or UPDATE of the new table. False
/// whenever in doubt (the text does not parse, as a truncated query in pg_stat_activity,
/// or a reference could be the old table's), so the gate then counts the statement.
pub fn only_new_home(sql: &str, column: &str, old_table: &str, new_table: &str) -> bool {
    let Ok(parsed) = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) else {
        return false;
    };
    let nodes = parsed.protobuf.nodes();
    // Every table the statement reads or writes, with its alias.
    let mut relations: Vec<(&str, Option<&str>)> = Vec::new();
    for (node, ..) in &nodes {
        let relation = match node {
            NodeRef::RangeVar(range) => Some(*range),
            NodeRef::InsertStmt(insert) => insert.relation.as_ref(),
            NodeRef::UpdateStmt(update) => update.relation.as_ref(),
            NodeRef::DeleteStmt(delete) => delete.relation.as_ref(),
            _ => None,
        };
        if let Some(range) = relation {
            let alias = range.alias.as_ref().map(|a| a.aliasname.as_str());
            if !relations.contains(&(range.relname.as_str(), alias)) {
                relations.push((range.relname.as_str(), alias));
            }
        }
    }
    let has = |table: &str| relations.iter().any(|(name, _)| *name == table);
    let resolve = |qualifier: &str| {
        relations
            .iter()
            .find(|(_, alias)| *alias == Some(qualifier))
            .or_else(|| {
                relations
                    .iter()
                    .find(|(name, alias)| alias.is_none() && *name == qualifier)
            })
            .map(|(name, _)| *name)
    };
    let is_new = |table: Option<&str>| table == Some(new_table);
    for (node, ..) in &nodes {
        let new_home = match node {
            NodeRef::ColumnRef(reference) => {
                let fields = crate::migration::sql::column_ref_fields(reference);
                match fields.as_slice() {
                    [.., last] if *last != column => continue,
                    [name] if *name == column => !has(old_table) && has(new_table),
                    [.., qualifier, _] => is_new(resolve(qualifier)),
                    _ => continue,
                }
            }
            NodeRef::InsertStmt(insert) => {
                let names_it = insert.cols.iter().any(|col| target_is(col, column));
                if !names_it {
                    continue;
                }
                is_new(insert.relation.as_ref().map(|r| r.relname.as_str()))
            }
            NodeRef::UpdateStmt(update) => {
                let names_it = update.target_list.iter().any(|col| target_is(col, column));
                if !names_it {
                    continue;
                }
                is_new(update.relation.as_ref().map(|r| r.relname.as_str()))
            }
            _ => continue,
        };
        if !new_home {
            return false;
        }
    }
    true
}

/// Whether a target list entry (an INSERT's column or an UPDATE's SET) is `column`.
fn target_is(node: &pg_query::protobuf::Node, column: &str) -> bool {
    matches!(&node.node, Some(pg_query::NodeEnum::ResTarget(target)) if target.name == column)
}

/// Every identifier-like token of `sql`.
pub fn identifiers(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // A string literal ('' inside is an escaped quote).
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let mut name = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        name.push('"');
                        i += 2;
                        continue;
                    }
                    break;
                }
                name.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(name);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect::<String>().to_lowercase());
        } else if c.is_ascii_digit() || c == '$' {
            // Numbers and $1 parameters are not identifiers.
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '$' || chars[i] == '.')
            {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identifiers_are_found_outside_strings_and_comments() {
        let wanted = names(&["notes", "public_0005_x", "Orders"]);
        assert_eq!(
            mentioned("SELECT o.notes FROM orders o WHERE $1 = 'notes'", &wanted),
            vec!["notes"]
        );
        assert_eq!(
            mentioned("select delivery_notes from orders -- notes", &wanted),
            Vec::<&str>::new()
        );
        assert_eq!(
            mentioned("SET search_path TO \"public_0005_x\"", &wanted),
            vec!["public_0005_x"]
        );
        // Unquoted names fold to lower case; a quoted mixed-case name matches exactly.
        assert_eq!(
            mentioned("SELECT * FROM ORDERS", &wanted),
            Vec::<&str>::new()
        );
        assert_eq!(
            mentioned("SELECT * FROM \"Orders\"", &wanted),
            vec!["Orders"]
        );
        assert_eq!(
            mentioned("SELECT NOTES /* x */ FROM t", &wanted),
            vec!["notes"]
        );
    }

    #[test]
    fn a_moved_column_is_the_new_homes_only_when_every_use_points_there() {
        let new_home = |sql| only_new_home(sql, "notes", "books", "book_notes");
        // The new version's own statements on the new table.
        assert!(new_home(
            "INSERT INTO book_notes (id, notes) VALUES ($1, $2)"
        ));
        assert!(new_home(
            "SELECT b.title, n.notes FROM books b JOIN book_notes n ON n.id = b.id WHERE b.id = $1"
        ));
        assert!(new_home("SELECT notes FROM book_notes WHERE id = $1"));
        assert!(new_home("UPDATE book_notes SET notes = $1 WHERE id = $2"));
        assert!(new_home(
            "SELECT book_notes.notes FROM \"public_0002_split\".book_notes"
        ));
        // The old version reading or writing the old table's column.
        assert!(!new_home("SELECT notes FROM books WHERE id = $1"));
        assert!(!new_home("SELECT b.notes FROM books b"));
        assert!(!new_home("UPDATE books SET notes = $1 WHERE id = $2"));
        assert!(!new_home("INSERT INTO books (id, notes) VALUES ($1, $2)"));
        assert!(!new_home(
            "SELECT n.notes, b.notes FROM books b JOIN book_notes n USING (id)"
        ));
        // In doubt (both tables, unqualified; a truncated text): counted.
        assert!(!new_home(
            "SELECT notes FROM books JOIN book_notes USING (id)"
        ));
        assert!(!new_home("SELECT notes FROM book_notes WHERE id ="));
    }
}
