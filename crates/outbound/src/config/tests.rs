//! Tests about `config/` as a whole: its messages and its sources.

use std::path::PathBuf;

/// Every `.rs` file of `config/`, with its text.
fn sources() -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// A string literal continued with `\` but not indented away, or written across a long line,
/// leaves a run of spaces inside a message ("cargo feature                  `shared-limits`").
#[test]
fn no_message_has_a_run_of_spaces() {
    let mut found = Vec::new();
    for (path, text) in sources() {
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            // The odd segments between quotes are inside string literals.
            let inside = code.split('"').skip(1).step_by(2);
            if inside.into_iter().any(|s| s.contains(&" ".repeat(3))) {
                found.push(format!("{}:{}: {code}", path.display(), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "runs of spaces in messages:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_missing_shared_limits_message_reads_as_one_sentence() {
    let text = super::shared_limits_unavailable(&super::Origin::Env("MAIL_LIMITS_URL".into()));
    assert_eq!(
        text,
        "MAIL_LIMITS_URL is set, but this build of outbound has no shared limits (cargo \
         feature `shared-limits`)"
    );
}
