//! The users file: local accounts that may AUTH (PLAIN or LOGIN) to the relay.
//!
//! One account a line, `name:argon2id-hash[:pattern pattern …]`; `#` starts a comment line.
//! The hash is an Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`, the crate's
//! default parameters, OWASP's recommendation). Each pattern is an address
//! (`printer@example.com`) or a whole domain (`*@example.com`); a user with patterns may send
//! only as them (envelope sender and `From:`/`Sender:`), a user without may send as anyone.
//! Patterns match without regard to case.
//!
//! [`add_user`], [`remove_user`] and [`list_users`] are `outbound relay users add|remove|list`.
//! They rewrite the whole file through a temporary file in the same directory, with mode
//! 0600, synced, then renamed over the old one, so a reader sees the old file or the new one.
//! Two edits at the same moment may lose one of them (there is no lock). A running relay
//! notices a changed file at the next AUTH and reads it again.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::Error;

/// A failure reading or writing a users file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    /// The file could not be read or written.
    #[error("users file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A line of the file is not `name:hash[:patterns]`.
    #[error("users file {path}, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A user name that cannot be stored (empty, `:`, spaces, control characters).
    #[error("invalid user name {0:?}: use 1 to 256 characters, none of them `:`, a space or a control character")]
    InvalidName(String),
    /// A sender pattern that is neither an address nor `*@domain`.
    #[error("invalid sender pattern {0:?}: give an address (name@example.com) or a domain (*@example.com)")]
    InvalidPattern(String),
    /// An empty password.
    #[error("the password is empty")]
    EmptyPassword,
    /// Hashing the password failed.
    #[error("could not hash the password: {0}")]
    Hash(String),
}

impl From<UsersError> for Error {
    fn from(e: UsersError) -> Self {
        Error::config(e.to_string()).with_source(e)
    }
}

/// Who may be used as sender by a user: an address, or every address of a domain.
///
/// ```
/// use outbound::relay::SenderPattern;
/// let domain: SenderPattern = "*@Example.com".parse().unwrap();
/// assert!(domain.matches("printer@example.com"));
/// assert!(!domain.matches("printer@example.com.evil.test"));
/// let one: SenderPattern = "cron@example.com".parse().unwrap();
/// assert!(one.matches("CRON@example.com"));
/// assert!(!one.matches("other@example.com"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderPattern {
    /// Exactly this address.
    Address(String),
    /// Any address at this domain.
    Domain(String),
}

impl SenderPattern {
    /// Whether `address` (an envelope sender or a header address) matches.
    pub fn matches(&self, address: &str) -> bool {
        match self {
            SenderPattern::Address(a) => a.eq_ignore_ascii_case(address.trim()),
            SenderPattern::Domain(d) => address
                .trim()
                .rsplit_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.eq_ignore_ascii_case(d)),
        }
    }
}

impl std::str::FromStr for SenderPattern {
    type Err = UsersError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UsersError::InvalidPattern(s.to_string());
        let valid_text = |t: &str| {
            !t.is_empty()
                && !t
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        };
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if !valid_text(local)
            || !valid_text(domain)
            || domain.contains('@')
            || !domain.contains('.') && domain != "localhost"
        {
            return Err(bad());
        }
        if local == "*" {
            Ok(SenderPattern::Domain(domain.to_ascii_lowercase()))
        } else if local.contains('*') {
            Err(bad())
        } else {
            Ok(SenderPattern::Address(s.to_string()))
        }
    }
}

impl fmt::Display for SenderPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderPattern::Address(a) => f.write_str(a),
            SenderPattern::Domain(d) => write!(f, "*@{d}"),
        }
    }
}

/// A user as `users list` shows it: the name and the allowed senders (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The name given to AUTH.
    pub name: String,
    /// The senders the user may use; empty: any.
    pub senders: Vec<SenderPattern>,
}

/// A user who authenticated: the name and the senders it may use (empty: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The name given to AUTH.
    pub name: String,
    /// The senders the user may use; empty: any.
    pub senders: Vec<SenderPattern>,
}

impl AuthenticatedUser {
    /// Whether the user may send as `address` (the null sender only when unrestricted).
    pub fn may_send_as(&self, address: &str) -> bool {
        self.senders.is_empty() || self.senders.iter().any(|p| p.matches(address))
    }
}

#[derive(Clone)]
struct Entry {
    name: String,
    hash: String,
    senders: Vec<SenderPattern>,
}

/// Whether `add_user` made a new user or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new user.
    New,
    /// The user existed: its password and senders were replaced.
    Replaced,
}

/// Adds `name` with `password` (hashed with Argon2id) and its allowed senders, or replaces
/// the password and senders of an existing `name`. Creates the file (mode 0600) if needed.
///
/// ```
/// use outbound::relay::{add_user, list_users, remove_user, Added};
/// let dir = tempfile::tempdir().unwrap();
/// let file = dir.path().join("users");
/// let password = secrecy::SecretString::from("correct horse");
/// let senders = vec!["*@example.com".parse().unwrap()];
/// assert_eq!(add_user(&file, "printer", &password, senders).unwrap(), Added::New);
/// assert_eq!(list_users(&file).unwrap()[0].name, "printer");
/// assert!(remove_user(&file, "printer").unwrap());
/// ```
pub fn add_user(
    path: &Path,
    name: &str,
    password: &SecretString,
    senders: Vec<SenderPattern>,
) -> Result<Added, UsersError> {
    check_name(name)?;
    if password.expose_secret().is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let hash = hash_password(password.expose_secret().as_bytes())?;
    let mut entries = match read_entries(path) {
        Ok(entries) => entries,
        Err(UsersError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let entry = Entry {
        name: name.to_string(),
        hash,
        senders,
    };
    let added = match entries.iter_mut().find(|e| e.name == name) {
        Some(existing) => {
            *existing = entry;
            Added::Replaced
        }
        None => {
            entries.push(entry);
            Added::New
        }
    };
    write_entries(path, &entries)?;
    Ok(added)
}

/// Removes `name`; `Ok(false)` when there was no such user.
pub fn remove_user(path: &Path, name: &str) -> Result<bool, UsersError> {
    let mut entries = read_entries(path)?;
    let before = entries.len();
    entries.retain(|e| e.name != name);
    if entries.len() == before {
        return Ok(false);
    }
    write_entries(path, &entries)?;
    Ok(true)
}

/// The users in the file, in file order, without their hashes.
pub fn list_users(path: &Path) -> Result<Vec<UserSummary>, UsersError> {
    Ok(read_entries(path)?
        .into_iter()
        .map(|e| UserSummary {
            name: e.name,
            senders: e.senders,
        })
        .collect())
}

fn check_name(name: &str) -> Result<(), UsersError> {
    let ok = (1..=256).contains(&name.len())
        && !name
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(UsersError::InvalidName(name.to_string()))
    }
}

fn hash_password(password: &[u8]) -> Result<String, UsersError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> UsersError + '_ {
    move |source| UsersError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_entries(path: &Path) -> Result<Vec<Entry>, UsersError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, UsersError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |reason: String| UsersError::Malformed {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        let mut parts = line.splitn(3, ':');
        let name = parts.next().unwrap_or_default();
        let hash = parts.next().unwrap_or_default();
        check_name(name).map_err(|e| malformed(e.to_string()))?;
        if !hash.starts_with("$argon2id$") || PasswordHash::new(hash).is_err() {
            return Err(malformed(
                "the second field is not an Argon2id hash ($argon2id$…)".into(),
            ));
        }
        let senders = parts
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<SenderPattern>, _>>()
            .map_err(|e| malformed(e.to_string()))?;
        if entries.iter().any(|e| e.name == name) {
            return Err(malformed(format!("user {name:?} appears twice")));
        }
        entries.push(Entry {
            name: name.to_string(),
            hash: hash.to_string(),
            senders,
        });
    }
    Ok(entries)
}

fn write_entries(path: &Path, entries: &[Entry]) -> Result<(), UsersError> {
    let mut text = String::from(
        "# outbound relay users: name:argon2id-hash[:allowed senders]\n\
         # edit with `outbound relay users add|remove|list`\n",
    );
    for e in entries {
        text.push_str(&e.name);
        text.push(':');
        text.push_str(&e.hash);
        if !e.senders.is_empty() {
            text.push(':');
            let senders: Vec<String> = e.senders.iter().map(|s| s.to_string()).collect();
            text.push_str(&senders.join(" "));
        }
        text.push('\n');
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // tempfile creates the file with mode 0600 on Unix.
    let mut tmp = tempfile::Builder::new()
        .prefix(".users.")
        .tempfile_in(&dir)
        .map_err(io_error(path))?;
    tmp.write_all(text.as_bytes()).map_err(io_error(path))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| io_error(path)(e.error))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error(path))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // The rename is durable once the directory is synced.
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The users a running relay checks AUTH against: read at start, read again when the file
/// changes (a failed re-read keeps the previous users and is logged).
pub(crate) struct Users {
    path: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    stamp: Option<Stamp>,
    entries: Vec<Entry>,
}

/// What tells a changed file: length, modification time and (on Unix) inode.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

impl Users {
    /// Reads the file; a missing or malformed file is an error (the relay does not start).
    pub(crate) fn open(path: &Path) -> Result<Users, UsersError> {
        let stamp = stamp(path);
        let entries = read_entries(path)?;
        warn_if_readable_by_others(path);
        // Made now, so the first unknown name costs no more than a known one.
        dummy_hash();
        Ok(Users {
            path: path.to_path_buf(),
            state: Mutex::new(Loaded { stamp, entries }),
        })
    }

    /// Checks `name` and `password`. Blocking (Argon2id takes tens of milliseconds and about
    /// 19 MiB): call it off the async workers. An unknown name costs as much as a known one.
    pub(crate) fn verify(
        &self,
        name: &str,
        password: &SecretSlice<u8>,
    ) -> Option<AuthenticatedUser> {
        let entry = self.lookup(name);
        let hash = entry
            .as_ref()
            .map(|e| e.hash.as_str())
            .unwrap_or_else(|| dummy_hash());
        let ok = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.expose_secret(), &parsed)
                .is_ok()
        });
        match entry {
            Some(e) if ok => Some(AuthenticatedUser {
                name: e.name,
                senders: e.senders,
            }),
            _ => None,
        }
    }

    fn lookup(&self, name: &str) -> Option<Entry> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.path);
        if now != state.stamp {
            match read_entries(&self.path) {
                Ok(entries) => {
                    tracing::info!(target: "outbound::relay", path = %self.path.display(), users = entries.len(), "users file changed: read again");
                    *state = Loaded {
                        stamp: now,
                        entries,
                    };
                }
                Err(e) => {
                    tracing::warn!(target: "outbound::relay", error = %e, "users file changed but could not be read: keeping the previous users");
                    state.stamp = now;
                }
            }
        }
        state.entries.iter().find(|e| e.name == name).cloned()
    }
}

/// A hash of a random password, checked for unknown names so that they take as long.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut pw = [0u8; 16];
        let _ = getrandom::fill(&mut pw);
        hash_password(&pw).unwrap_or_default()
    })
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(target: "outbound::relay", path = %path.display(), "the users file is readable by other users: make it mode 0600");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_remove_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        let pw = SecretString::from("s3cret pass");
        assert_eq!(add_user(&file, "alice", &pw, vec![]).unwrap(), Added::New);
        let senders = vec![
            "a@example.com".parse().unwrap(),
            "*@example.org".parse().unwrap(),
        ];
        assert_eq!(
            add_user(&file, "bob", &pw, senders.clone()).unwrap(),
            Added::New
        );
        assert_eq!(
            add_user(&file, "alice", &pw, vec![]).unwrap(),
            Added::Replaced
        );
        let users = list_users(&file).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].senders, senders);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("s3cret"));
        assert!(
            text.contains("bob:$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(remove_user(&file, "alice").unwrap());
        assert!(!remove_user(&file, "alice").unwrap());
        assert_eq!(list_users(&file).unwrap().len(), 1);
    }

    #[test]
    fn verify_checks_the_password_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        add_user(&file, "alice", &SecretString::from("right"), vec![]).unwrap();
        let users = Users::open(&file).unwrap();
        let right = SecretSlice::from(b"right".to_vec());
        let wrong = SecretSlice::from(b"wrong".to_vec());
        assert_eq!(users.verify("alice", &right).unwrap().name, "alice");
        assert!(users.verify("alice", &wrong).is_none());
        assert!(users.verify("nobody", &right).is_none());
        add_user(&file, "carol", &SecretString::from("right"), vec![]).unwrap();
        assert!(users.verify("carol", &right).is_some());
    }

    #[test]
    fn malformed_files_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        std::fs::write(&file, "alice:plaintext\n").unwrap();
        let e = list_users(&file).unwrap_err();
        assert!(matches!(e, UsersError::Malformed { line: 1, .. }), "{e}");
        assert!(matches!(
            add_user(&file, "a:b", &SecretString::from("x"), vec![]),
            Err(UsersError::InvalidName(_))
        ));
        assert!("*@".parse::<SenderPattern>().is_err());
        assert!("a*@example.com".parse::<SenderPattern>().is_err());
        assert!("example.com".parse::<SenderPattern>().is_err());
    }
}
