//! "Did you mean ...": the closest valid name to a misspelt one, by edit distance.

/// The end of an "unknown X" message: `; did you mean `add_column`? Expected ...` when a
/// valid name is close, else `; expected ...`.
pub(crate) fn hint(given: &str, valid: &[&str], expected: &str) -> String {
    match closest(given, valid) {
        Some(name) => format!("; did you mean `{name}`? Expected {expected}"),
        None => format!("; expected {expected}"),
    }
}

/// The valid name nearest to `given`, if it is near enough to be a plausible typo
/// (at most a third of the longer name's characters changed).
pub(crate) fn closest<'v>(given: &str, valid: &[&'v str]) -> Option<&'v str> {
    valid
        .iter()
        .map(|name| (edit_distance(given, name), *name))
        .filter(|(distance, name)| {
            let longer = given.chars().count().max(name.chars().count());
            *distance > 0 && *distance * 3 <= longer.max(3)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// " (did you mean X?)" or nothing: ready to append to an error message.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    closest(word, &candidates)
        .map(|name| format!(" (did you mean {name}?)"))
        .unwrap_or_default()
}

/// `` `a`, `b` or `c` `` for messages.
pub(crate) fn one_of(valid: &[&str]) -> String {
    match valid {
        [] => "nothing here".to_string(),
        [only] => format!("`{only}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Edit distance over characters where swapping two neighbours counts as one edit
/// (`tabel` → `table`), ASCII case-insensitive (a name wrong only in its case is one edit
/// away, never zero: it is still wrong).
fn edit_distance(a: &str, b: &str) -> usize {
    if a != b && a.eq_ignore_ascii_case(b) {
        return 1;
    }
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // d[i][j]: distance between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_name() {
        let ops = ["add_column", "drop_column", "add_check"];
        assert_eq!(closest("add_colum", &ops), Some("add_column"));
        assert_eq!(closest("Add_Column", &ops), Some("add_column"));
        assert_eq!(closest("drop_colunm", &ops), Some("drop_column"));
        assert_eq!(closest("tabel", &["table", "column"]), Some("table"));
        assert_eq!(closest("truncate", &ops), None);
    }

    #[test]
    fn suffixes_for_messages() {
        let tables = ["orders", "order_items", "customers"];
        assert_eq!(did_you_mean("ordrs", tables), " (did you mean orders?)");
        assert_eq!(
            did_you_mean("customer", tables),
            " (did you mean customers?)"
        );
        assert_eq!(did_you_mean("invoices", tables), "");
        assert_eq!(
            did_you_mean("emial", ["email", "phone"]),
            " (did you mean email?)"
        );
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
