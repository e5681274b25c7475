//! Which of a set of names a query text mentions: identifiers as PostgreSQL reads them
//! (unquoted ones folded to lower case, quoted ones exact), outside string literals and
//! comments. Used on query texts from pg_stat_activity and pg_stat_statements, which are
//! the application's, not zdm's: zdm's own plans are never parsed.

/// The names of `names` that `sql` mentions as an identifier, in `names`' order.
pub fn mentioned<'a>(sql: &str, names: &'a [String]) -> Vec<&'a str> {
    let identifiers = identifiers(sql);
    names
        .iter()
        .filter(|name| identifiers.iter().any(|i| i == *name))
        .map(String::as_str)
        .collect()
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
}
