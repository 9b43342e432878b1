//! A statement's `$n` placeholders, counted at compile time, so that a statement and
//! the code that binds its values cannot drift apart unnoticed: see the assertions
//! beside `audit::INSERT` and the rotation statements in `sessions`.

/// The largest `$n` in `sql`: how many values a statement whose placeholders are
/// numbered from `$1` binds (a number may appear more than once).
pub(crate) const fn highest(sql: &str) -> usize {
    let mut highest = 0;
    let mut at = 0;
    while let Some((n, next)) = next_placeholder(sql.as_bytes(), at) {
        if n > highest {
            highest = n;
        }
        at = next;
    }
    highest
}

/// `n` when the placeholders of `sql` are exactly `$1`, `$2`, … `$n`, each once and
/// in that order. SQLite numbers parameters by where they first appear, whatever their
/// names, and a binder that goes through its C API binds by that number: for such a
/// statement the two agree.
pub(crate) const fn in_order(sql: &str) -> Option<usize> {
    let mut count = 0;
    let mut at = 0;
    while let Some((n, next)) = next_placeholder(sql.as_bytes(), at) {
        if n != count + 1 {
            return None;
        }
        count = n;
        at = next;
    }
    Some(count)
}

/// The first `$n` in `sql` at or after `at`: its number, and where the text after it
/// starts. A `$` not followed by a digit is not a placeholder.
const fn next_placeholder(sql: &[u8], mut at: usize) -> Option<(usize, usize)> {
    while at < sql.len() {
        if sql[at] == b'$' && at + 1 < sql.len() && sql[at + 1].is_ascii_digit() {
            let mut n = 0;
            at += 1;
            while at < sql.len() && sql[at].is_ascii_digit() {
                n = n * 10 + (sql[at] - b'0') as usize;
                at += 1;
            }
            return Some((n, at));
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_placeholders() {
        assert_eq!(highest("SELECT 1"), 0);
        assert_eq!(highest("UPDATE t SET a = $2, b = $10 WHERE id = $1 AND c = $2"), 10);
        assert_eq!(in_order("INSERT INTO t VALUES ($1, $2, $3)"), Some(3));
        assert_eq!(in_order("SELECT 1"), Some(0));
        assert_eq!(in_order("UPDATE t SET a = $2 WHERE id = $1"), None);
        assert_eq!(in_order("SELECT $1 WHERE a = $1"), None);
        assert_eq!(in_order("INSERT INTO t VALUES ($1, $3)"), None);
        // A `$` that starts no number (PostgreSQL's dollar quoting, say) is not one.
        assert_eq!(in_order("SELECT $tag$x$tag$, $1"), Some(1));
    }
}
