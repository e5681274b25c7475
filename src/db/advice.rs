//! What a connection or permission error from the server or the TLS library means, in
//! words a DBA acts on: which certificate option to use, which grant the role lacks. The
//! drivers' texts are matched because their types (rustls's certificate errors inside
//! sqlx's boxed TLS error) are not ours to name; what is not recognised keeps its text.

/// The sentence that replaces `cause` (one line of an error's chain), when it is a known
/// driver text that reads as Rust internals or says what is wrong but not what to do.
pub fn advise(cause: &str) -> Option<String> {
    certificate(cause).or_else(|| permission(cause))
}

/// rustls's `invalid peer certificate: …` and `UnknownIssuer`-style variants.
fn certificate(cause: &str) -> Option<String> {
    const FIX: &str = "give the certificate of the CA that signed the server's certificate \
         with sslrootcert=PATH (URL) or PGSSLROOTCERT, or use sslmode=require to encrypt \
         without verifying the server";
    let what = if cause.contains("CaUsedAsEndEntity") {
        "the server presented a CA certificate as its own certificate (a self-signed CA \
         used as the server's certificate)"
    } else if cause.contains("UnknownIssuer") {
        "the server's certificate is signed by a CA zdm was not told to trust"
    } else if cause.contains("NotValidForName") || cause.contains("NotValidForNameContext") {
        return Some(format!(
            "{}TLS: the server's certificate does not name the host zdm connected to: \
             connect with the host name the certificate was issued for, or use \
             sslmode=verify-ca to verify the CA only",
            driver_prefix(cause)
        ));
    } else if cause.contains("Expired") {
        "the server's certificate has expired (or is not valid yet): check the server's \
         certificate dates and this machine's clock"
    } else if cause.contains("BadSignature") || cause.contains("UnsupportedSignatureAlgorithm") {
        "the server's certificate signature cannot be verified"
    } else if cause.contains("invalid peer certificate") {
        "the server's certificate was refused"
    } else {
        return None;
    };
    Some(format!("{}TLS: {what}; {FIX}", driver_prefix(cause)))
}

/// What zdm said before the driver's own words (`could not connect to URL: `), kept.
fn driver_prefix(cause: &str) -> &str {
    let start = [
        "error communicating with database",
        "invalid peer certificate",
    ]
    .iter()
    .filter_map(|marker| cause.find(marker))
    .min()
    .unwrap_or(0);
    &cause[..start]
}

/// PostgreSQL's `permission denied for …` and `must be owner of …`: the grant to ask for.
fn permission(cause: &str) -> Option<String> {
    if let Some(rest) = after(cause, "permission denied for schema ") {
        let schema = first_word(rest);
        return Some(format!(
            "{cause}: the role needs USAGE and CREATE on schema {schema} to change its tables \
             (GRANT USAGE, CREATE ON SCHEMA {schema} TO the role), or run zdm as the role \
             that owns the tables; a read-only role can run validate, plan, status, gates \
             and audit"
        ));
    }
    if let Some(rest) = after(cause, "permission denied for database ") {
        let database = first_word(rest);
        return Some(format!(
            "{cause}: zdm keeps its state in a schema named zdm, which needs CREATE on the \
             database (GRANT CREATE ON DATABASE {database} TO the role), or create schema \
             zdm once as its owner"
        ));
    }
    if let Some(rest) = after(cause, "permission denied for table ") {
        let table = first_word(rest);
        return Some(format!(
            "{cause}: the role needs SELECT, INSERT, UPDATE and DELETE on {table} (a \
             backfill updates its rows), and its owner's rights for DDL"
        ));
    }
    if let Some(rest) = after(cause, "must be owner of ") {
        return Some(format!(
            "{cause}: only the owner of {} (or a member of the owning role) may change its \
             definition: run zdm as that role",
            rest.trim()
        ));
    }
    None
}

fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

fn first_word(text: &str) -> &str {
    text.split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .next()
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_say_what_is_wrong_and_which_option_to_use() {
        let said = advise(
            "could not connect to postgres://db:5432/shop: error communicating with \
             database: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        )
        .expect("recognised");
        assert!(
            said.starts_with("could not connect to postgres://db:5432/shop: TLS: "),
            "{said}"
        );
        assert!(said.contains("CA certificate as its own"), "{said}");
        assert!(said.contains("sslrootcert"), "{said}");
        assert!(said.contains("sslmode=require"), "{said}");
        assert!(!said.contains("OtherError"), "{said}");
        let unknown = advise("invalid peer certificate: UnknownIssuer").expect("recognised");
        assert!(unknown.contains("not told to trust"), "{unknown}");
        let name = advise("invalid peer certificate: NotValidForName").expect("recognised");
        assert!(name.contains("verify-ca"), "{name}");
    }

    #[test]
    fn permission_errors_name_the_grant() {
        let said = advise("permission denied for schema public").expect("recognised");
        assert!(
            said.contains("GRANT USAGE, CREATE ON SCHEMA public"),
            "{said}"
        );
        let db = advise("error returned from database: permission denied for database shop")
            .expect("recognised");
        assert!(db.contains("GRANT CREATE ON DATABASE shop"), "{db}");
        let owner = advise("must be owner of table orders").expect("recognised");
        assert!(owner.contains("run zdm as that role"), "{owner}");
    }

    #[test]
    fn other_texts_are_left_alone() {
        assert_eq!(
            advise("password authentication failed for user \"app\""),
            None
        );
        assert_eq!(advise("connection refused"), None);
    }
}
