//! The shared Maildir every message to `@example.test` lands in, and reading delivered files.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// CRLF to LF (Maildir files use LF line ends).
pub fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The shared Maildir, indexed by Message-ID. Files are read once; `scan` picks up new ones.
pub struct Maildir {
    root: PathBuf,
    seen: HashSet<PathBuf>,
    by_id: HashMap<String, Vec<PathBuf>>,
}

impl Maildir {
    /// An index of the Maildir at `root` (usually [`TestEnv::maildir`](crate::TestEnv::maildir)),
    /// empty until the first [`scan`](Maildir::scan).
    pub fn new(root: PathBuf) -> Self {
        Maildir {
            root,
            seen: HashSet::new(),
            by_id: HashMap::new(),
        }
    }

    /// Every message file (new/ and cur/).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.root.join(sub)) {
                out.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
        out
    }

    /// How many message files there are now.
    pub fn count_files(&self) -> usize {
        self.files().len()
    }

    /// Reads files not seen yet and indexes them by their Message-ID header.
    pub fn scan(&mut self) {
        for path in self.files() {
            if self.seen.contains(&path) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // moved from new/ to cur/ meanwhile: picked up next scan
            };
            self.seen.insert(path.clone());
            if let Some(id) = header_value(&bytes, "message-id") {
                self.by_id.entry(id).or_default().push(path);
            }
        }
    }

    /// Waits until every id in `ids` has been delivered at least once; returns the files per id.
    pub fn wait_for(&mut self, ids: &[String], timeout: Duration) -> HashMap<String, Vec<PathBuf>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.scan();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| !self.by_id.contains_key(*id))
                .collect();
            if missing.is_empty() {
                return ids
                    .iter()
                    .map(|id| (id.clone(), self.by_id[id].clone()))
                    .collect();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {} messages never reached the Maildir {} (first: {})",
                    missing.len(),
                    ids.len(),
                    self.root.display(),
                    missing[0]
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `id` is in at least `copies` files (one per mailbox for a message to
    /// several local recipients, which Postfix delivers one after the other); returns them.
    pub fn wait_for_copies(&mut self, id: &str, copies: usize, timeout: Duration) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.files_for(id);
            if files.len() >= copies {
                return files;
            }
            if Instant::now() > deadline {
                panic!(
                    "{id} reached the Maildir {} {} times, not {copies}",
                    self.root.display(),
                    files.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The files currently holding `id`.
    pub fn files_for(&mut self, id: &str) -> Vec<PathBuf> {
        self.scan();
        self.by_id.get(id).cloned().unwrap_or_default()
    }
}

/// The first value of header `name` (case-insensitive) in the header section, unfolded.
pub fn header_value(bytes: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                let mut value = v.trim().to_string();
                while let Some(next) = lines.peek() {
                    if next.starts_with([' ', '\t']) {
                        value.push(' ');
                        value.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(value);
            }
        }
    }
    None
}

/// Every `Delivered-To:` header of a delivered file.
pub fn delivered_to(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("Delivered-To:"))
        .map(|v| v.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf_and_lone_cr_stays() {
        assert_eq!(crlf_to_lf(b"a\r\nb\rc\n\r\n"), b"a\nb\rc\n\n");
    }

    #[test]
    fn headers_are_found_case_insensitively_unfolded_and_only_in_the_header_section() {
        let mail = b"Delivered-To: bob@example.test\nMessage-ID:\n <x@example.test>\n\
                     Delivered-To: carol@example.test\n\nSubject: in the body\n";
        let id = header_value(mail, "MESSAGE-ID").unwrap();
        assert_eq!(id.trim(), "<x@example.test>");
        assert_eq!(header_value(mail, "subject"), None);
        assert_eq!(
            delivered_to(mail),
            ["bob@example.test", "carol@example.test"]
        );
    }
}
