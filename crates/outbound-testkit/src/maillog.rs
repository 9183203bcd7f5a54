//! Postfix's maillog: the smtpd sessions (connections) and queue ids a test caused.

use std::collections::HashMap;
use std::path::PathBuf;

/// The part of Postfix's maillog written after `start` was taken.
pub struct Maillog {
    path: PathBuf,
    offset: u64,
}

/// One smtpd session in the maillog.
#[derive(Debug, Clone, Default)]
pub struct SmtpdSession {
    /// The syslog name: `postfix/smtpd` (25), `postfix/submission/smtpd` (587), `postfix/smtps/smtpd` (465).
    pub service: String,
    /// The smtpd process id.
    pub pid: String,
    /// The line (in the window) of `connect from`.
    pub connect_line: usize,
    /// The line of `disconnect from`, if it was logged yet.
    pub disconnect_line: Option<usize>,
    /// The queue ids of the messages the session created.
    pub queue_ids: Vec<String>,
    /// The `disconnect from ...` message with its command counts (`ehlo=1 mail=1 ...`).
    pub disconnect_stats: String,
    /// `SASL ... authentication failed` warnings logged during the session.
    pub auth_failures: usize,
}

impl Maillog {
    /// Starts the window at the log's current end (a missing file counts as empty).
    pub fn start(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Maillog { path, offset }
    }

    /// The lines written since [`start`](Maillog::start).
    pub fn lines(&self) -> Vec<String> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let from = (self.offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `(service, pid, message)` of a Postfix log line, e.g.
    /// `Nov 21 13:51:20 localhost postfix/submission/smtpd[6477]: connect from ...`.
    fn split(line: &str) -> Option<(String, String, String)> {
        let start = line.find("postfix/")?;
        let rest = &line[start..];
        let open = rest.find('[')?;
        let close = rest.find("]: ")?;
        Some((
            rest[..open].to_string(),
            rest[open + 1..close].to_string(),
            rest[close + 3..].to_string(),
        ))
    }

    /// Every smtpd session (connect .. disconnect) in the window, with the queue ids it
    /// created.
    pub fn sessions(&self) -> Vec<SmtpdSession> {
        let mut open: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<SmtpdSession> = Vec::new();
        for (n, line) in self.lines().iter().enumerate() {
            let Some((service, pid, msg)) = Self::split(line) else {
                continue;
            };
            if !service.ends_with("/smtpd") {
                continue;
            }
            let key = (service.clone(), pid.clone());
            if msg.starts_with("connect from ") {
                open.insert(key, out.len());
                out.push(SmtpdSession {
                    service,
                    pid,
                    connect_line: n,
                    ..SmtpdSession::default()
                });
            } else if msg.starts_with("disconnect from ") {
                if let Some(i) = open.remove(&key) {
                    out[i].disconnect_line = Some(n);
                    out[i].disconnect_stats = msg.clone();
                }
            } else if msg.contains("authentication failed") {
                if let Some(&i) = open.get(&key) {
                    out[i].auth_failures += 1;
                }
            } else if let Some((qid, rest)) = msg.split_once(": ") {
                if rest.starts_with("client=") {
                    if let Some(&i) = open.get(&key) {
                        out[i].queue_ids.push(qid.to_string());
                    }
                }
            }
        }
        out
    }

    /// Queue id -> Message-ID, from cleanup's `message-id=<...>` lines.
    pub fn message_ids(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for line in self.lines() {
            let Some((service, _, msg)) = Self::split(&line) else {
                continue;
            };
            if !service.ends_with("/cleanup") {
                continue;
            }
            if let Some((qid, rest)) = msg.split_once(": ") {
                if let Some(id) = rest.strip_prefix("message-id=") {
                    out.insert(qid.to_string(), id.trim().to_string());
                }
            }
        }
        out
    }
}

/// The most sessions open at the same time, by log order (connect +1, disconnect -1).
pub fn max_overlap(sessions: &[&SmtpdSession]) -> usize {
    let mut events: Vec<(usize, i32)> = Vec::new();
    for s in sessions {
        events.push((s.connect_line, 1));
        events.push((s.disconnect_line.unwrap_or(usize::MAX), -1));
    }
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_queue_ids_and_overlap_from_a_log_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        std::fs::write(
            &path,
            "Nov 21 14:00:00 localhost postfix/smtpd[1]: connect from old\n",
        )
        .unwrap();
        let log = Maillog::start(path.clone());
        let lines = [
            "Nov 21 14:05:33 localhost postfix/smtpd[10]: connect from unknown[127.0.0.1]",
            "Nov 21 14:05:33 localhost postfix/submission/smtpd[11]: connect from unknown[127.0.0.1]",
            "Nov 21 14:05:33 localhost postfix/smtpd[10]: 4AbC12: client=unknown[127.0.0.1]",
            "Nov 21 14:05:33 localhost postfix/cleanup[12]: 4AbC12: message-id=<m@example.test>",
            "Nov 21 14:05:33 localhost postfix/smtpd[10]: disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=2/3 data=1 quit=1 commands=6/7",
            "Nov 21 14:05:34 localhost postfix/submission/smtpd[11]: warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: (reason unavailable)",
        ];
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&(lines.join("\n") + "\n"));
        std::fs::write(&path, text).unwrap();

        let sessions = log.sessions();
        assert_eq!(
            sessions.len(),
            2,
            "the line before start() is not in the window"
        );
        assert_eq!(sessions[0].service, "postfix/smtpd");
        assert_eq!(sessions[0].queue_ids, ["4AbC12"]);
        assert!(sessions[0].disconnect_stats.contains("rcpt=2/3"));
        assert_eq!(sessions[1].service, "postfix/submission/smtpd");
        assert_eq!(sessions[1].disconnect_line, None);
        assert_eq!(sessions[1].auth_failures, 1);
        assert_eq!(log.message_ids()["4AbC12"], "<m@example.test>");
        assert_eq!(max_overlap(&sessions.iter().collect::<Vec<_>>()), 2);
    }
}
