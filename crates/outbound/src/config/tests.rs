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
    let text = super::limits::unavailable(&super::Origin::Env("MAIL_LIMITS_URL".into()));
    assert_eq!(
        text,
        "MAIL_LIMITS_URL is set, but this build of outbound has no shared limits (cargo \
         feature `shared-limits`)"
    );
}

/// Every key's default is valid by its own parser, and within a kind no two keys share a
/// name, an alias or a variable.
#[test]
fn the_table_is_consistent() {
    let kinds: Vec<(&str, &[super::Key])> = super::registry::KINDS
        .iter()
        .map(|k| (k.name, k.keys))
        .chain([("group", super::table::GROUP)])
        .collect();
    for (kind, keys) in kinds {
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for key in keys {
            if let Some(default) = key.default {
                assert!(
                    key.parse.read(default).is_ok(),
                    "{kind}: the default of `{}` ({default}) is not valid by its own parser",
                    key.name
                );
            }
            for name in std::iter::once(&key.name).chain(key.aliases) {
                assert!(!names.contains(name), "{kind}: `{name}` names two keys");
                names.push(*name);
            }
            for var in key.env {
                assert!(!vars.contains(var), "{kind}: {var} sets two keys");
                vars.push(*var);
            }
            for (value, spelled) in key.spelled_as {
                assert!(key.parse.read(value).is_ok(), "{kind}: `{value}`");
                for (other, v) in *spelled {
                    let other = keys.iter().find(|k| k.name == *other).unwrap();
                    assert!(other.parse.read(v).is_ok(), "{kind}: {}={v}", other.name);
                }
            }
        }
    }
}

/// A value left unset takes the table's default, which must be what the transport would do
/// on its own: `outbound config` shows the table's defaults as the effective values.
#[test]
fn the_tables_defaults_are_the_transports_defaults() {
    use std::time::Duration;

    // SMTP: a transport built from nothing but a server equals the builder's default one,
    // but for the TLS mode (Dify's: SMTP_USE_TLS unset is no TLS; the builder's is STARTTLS).
    let configured = super::Settings::from_map("smtp", [("server", "smtp.example.com")]).unwrap();
    let from_config = super::smtp::transport(&configured).unwrap();
    let from_builder = crate::smtp::SmtpTransport::builder("smtp.example.com")
        .tls(crate::smtp::TlsMode::None)
        .build()
        .unwrap();
    assert_eq!(format!("{from_config:?}"), format!("{from_builder:?}"));
    assert_eq!(
        configured.value::<Duration>("timeout").unwrap(),
        Some(crate::oauth::DEFAULT_TIMEOUT),
        "token requests without SMTP_TIMEOUT take the same 30 s"
    );

    let http = super::Settings::from_map("resend", [("api_key", "re_x")]).unwrap();
    let options = super::http::http_options(&http).unwrap();
    let default = crate::http::HttpOptions::default();
    assert_eq!(options.timeout(), default.timeout());
    assert_eq!(options.connect_timeout(), default.connect_timeout());

    let group = super::Settings::from_dsn("failover(memory:// memory://)").unwrap();
    assert_eq!(
        group.value::<Duration>("cooldown").unwrap(),
        Some(crate::layer::DEFAULT_COOLDOWN)
    );
    let limits_fail = super::table::LIMITS_FAIL.default.unwrap();
    assert_eq!(
        limits_fail,
        crate::limits::FailPolicy::default().to_string()
    );
    let graph = super::Settings::from_map("graph", [("client_id", "x")]).unwrap();
    assert_eq!(
        graph.value::<bool>("save_to_sent_items").unwrap(),
        Some(false)
    );
}

/// Inside `config/`, the modules' `use` paths point one way (the order ARCHITECTURE.md
/// gives); a module above another is the only one that names it. Test modules are left out:
/// they may drive a module through the one above it.
#[test]
fn config_has_no_import_circle() {
    let modules: Vec<(String, String)> = sources()
        .into_iter()
        .map(|(path, text)| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            // The code before the unit tests.
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            (name, code)
        })
        .filter(|(name, _)| name != "tests")
        .collect();
    let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    let mut edges: Vec<(&str, &str)> = Vec::new();
    for (name, code) in &modules {
        for prefix in ["super::", "crate::config::"] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let targets: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|t| t.trim().split("::").next().unwrap_or(""))
                        .collect(),
                    None => vec![rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")],
                };
                for target in targets {
                    // `super::Item` re-exported by mod.rs is a use of mod.rs.
                    let target = if names.contains(&target) {
                        target
                    } else {
                        "mod"
                    };
                    if target != name {
                        let from = names.iter().find(|n| **n == name).unwrap();
                        let to = names.iter().find(|n| **n == target).unwrap();
                        edges.push((from, to));
                    }
                }
            }
        }
    }
    // Depth-first search for a circle.
    fn visit<'a>(
        at: &'a str,
        edges: &[(&'a str, &'a str)],
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        if let Some(i) = path.iter().position(|p| *p == at) {
            return Err(format!("{} -> {at}", path[i..].join(" -> ")));
        }
        if done.contains(&at) {
            return Ok(());
        }
        path.push(at);
        for (_, to) in edges.iter().filter(|(from, _)| *from == at) {
            visit(to, edges, path, done)?;
        }
        path.pop();
        done.push(at);
        Ok(())
    }
    let mut done = Vec::new();
    for name in &names {
        if let Err(circle) = visit(name, &edges, &mut Vec::new(), &mut done) {
            panic!("an import circle inside config/: {circle}");
        }
    }
    assert!(
        !edges
            .iter()
            .any(|(from, to)| *to == "mod" && *from != "mod"),
        "a module below mod.rs names it: {edges:?}"
    );
    // The table is a leaf: only `key` below it.
    let table: Vec<_> = edges.iter().filter(|(from, _)| *from == "table").collect();
    assert!(table.iter().all(|(_, to)| *to == "key"), "{table:?}");
}

/// No file of `config/` grows past about 800 lines.
#[test]
fn no_file_is_over_800_lines() {
    for (path, text) in sources() {
        let lines = text.lines().count();
        assert!(lines <= 820, "{} has {lines} lines", path.display());
    }
}

// --- README's configuration reference, rendered from the table -----------------------------

use super::key::{Doc, Key};

/// The keys README's table `doc` lists, each once (a key several kinds share is one row).
fn reference_keys(doc: Doc) -> Vec<&'static Key> {
    let all = super::table::SELECTORS
        .iter()
        .chain(super::registry::KINDS.iter().flat_map(|k| k.keys.iter()))
        .chain(super::table::GROUP.iter());
    let mut out: Vec<&'static Key> = Vec::new();
    for key in all.filter(|k| k.doc == doc) {
        let same = |k: &&Key| k.name == key.name && k.env == key.env && k.help == key.help;
        if !out.iter().any(same) {
            out.push(key);
        }
    }
    out
}

/// README's table `doc`, as the settings table says.
fn render(doc: Doc) -> String {
    let mut out = String::from(
        "| variable | key (map, DSN query) | default | meaning |\n|---|---|---|---|\n",
    );
    for key in reference_keys(doc) {
        let variable = if key.env.is_empty() {
            "—".to_string()
        } else {
            key.env
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let mut names = if key.name.is_empty() {
            "—".to_string()
        } else {
            std::iter::once(&key.name)
                .chain(key.aliases)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(part) = key.dsn_part {
            names.push_str(&format!("; DSN: the {part}"));
        }
        let default = key.default.map(|d| format!("`{d}`")).unwrap_or_default();
        out.push_str(&format!(
            "| {variable} | {names} | {default} | {} |\n",
            key.help
        ));
    }
    out
}

const BEGIN: &str = "<!-- settings table: ";
const END: &str = "<!-- end of settings table -->";

/// README with every settings table rendered anew.
fn readme_rendered(readme: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = readme;
    let mut seen = Vec::new();
    while let Some(at) = rest.find(BEGIN) {
        let line_end = rest[at..]
            .find('\n')
            .map(|i| at + i + 1)
            .ok_or("a marker without a line end")?;
        let name = rest[at + BEGIN.len()..line_end]
            .split_whitespace()
            .next()
            .unwrap_or("");
        let (doc, _) = Doc::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .ok_or(format!("README names an unknown settings table `{name}`"))?;
        let end = rest[line_end..]
            .find(END)
            .map(|i| line_end + i)
            .ok_or(format!("settings table `{name}` has no `{END}`"))?;
        out.push_str(&rest[..line_end]);
        out.push_str(&render(*doc));
        seen.push(name);
        rest = &rest[end..];
    }
    out.push_str(rest);
    let missing: Vec<_> = Doc::ALL.iter().filter(|(_, n)| !seen.contains(n)).collect();
    if !missing.is_empty() {
        return Err(format!("README lacks the settings tables {missing:?}"));
    }
    Ok(out)
}

/// README's configuration reference is the settings table: every setting with its
/// variables, names, default and doc. Run with `OUTBOUND_BLESS_README=1` to rewrite it after
/// changing the table.
#[test]
fn readme_reference_is_the_settings_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let rendered = readme_rendered(&readme).unwrap();
    if rendered != readme && std::env::var_os("OUTBOUND_BLESS_README").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    if rendered != readme {
        let (old, new): (Vec<_>, Vec<_>) = (readme.lines().collect(), rendered.lines().collect());
        let diff: Vec<String> = old
            .iter()
            .zip(&new)
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("README: {a}\ntable:  {b}"))
            .collect();
        panic!(
            "README's configuration reference and the settings table disagree (rewrite it \
             with OUTBOUND_BLESS_README=1 cargo test -p outbound --lib readme):\n{}",
            diff.join("\n")
        );
    }
    // Every variable of the table is in README, with its default.
    for (var, key) in super::variables() {
        let row = readme
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{var}`")))
            .unwrap_or_else(|| panic!("README does not document {var}"));
        if let Some(default) = key.default {
            assert!(row.contains(&format!("`{default}`")), "{var}: {row}");
        }
    }
    // README names no variable the table lacks.
    let known: Vec<&str> = super::variables().map(|(v, _)| v).collect();
    for word in readme.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let looks_like_ours = ["MAIL_", "MAILER_", "SMTP_", "RESEND_", "SENDGRID_", "MICROSOFT_"]
            .iter()
            .any(|p| word.starts_with(p))
            && !word.ends_with('_') // `SMTP_*`: a family, not a variable
            && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        assert!(
            !looks_like_ours || known.contains(&word),
            "README names {word}, which the settings table does not have"
        );
    }
}

/// The check above can fail: a table that differs from README is found.
#[test]
fn a_readme_that_differs_from_the_table_is_found() {
    let readme = format!(
        "intro\n{BEGIN}general -->\n| old |\n{END}\n{BEGIN}limits -->\n{END}\n\
         {BEGIN}smtp -->\n{END}\n{BEGIN}smtp-oauth2 -->\n{END}\n{BEGIN}http -->\n{END}\n"
    );
    let rendered = readme_rendered(&readme).unwrap();
    assert_ne!(rendered, readme);
    assert!(
        rendered.contains("| `SMTP_TIMEOUT` | `timeout` | `30` |"),
        "{rendered}"
    );
    assert!(readme_rendered("no tables").is_err());
}
