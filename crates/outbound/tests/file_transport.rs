//! The `file` transport writes atomically and never overwrites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outbound::dev::FileTransport;
use outbound::{ErrorKind, Message, Transport};

#[tokio::test]
async fn the_same_message_twice_makes_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let t = FileTransport::new(dir.path());
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("x")
        .build()
        .unwrap();
    let a = t.send(&msg).await.unwrap().provider_id.unwrap();
    let b = t.send(&msg).await.unwrap().provider_id.unwrap();
    assert_ne!(a, b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(std::fs::read(&a).unwrap(), msg.render(None).unwrap());
}

/// A reader polling the directory must only ever see complete `.eml` files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let body = "0123456789abcdef\n".repeat(64 * 1024); // ~1 MiB
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text(body)
        .build()
        .unwrap();
    let expected = msg.render(None).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let dir = dir.path().to_path_buf();
        let done = done.clone();
        let expected_len = expected.len();
        std::thread::spawn(move || {
            let mut checked = 0usize;
            while !done.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|e| e == "eml") {
                        let len = std::fs::read(&path).unwrap().len();
                        assert_eq!(len, expected_len, "partial file {}", path.display());
                        checked += 1;
                    }
                }
            }
            checked
        })
    };

    let t = FileTransport::new(dir.path());
    for _ in 0..40 {
        t.send(&msg).await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let checked = reader.join().unwrap();
    assert!(checked > 0, "the reader never saw a file");
    let emls = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    assert_eq!(emls, 40);
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0, "temporary files left behind");
}

#[tokio::test]
async fn an_unwritable_directory_is_an_error_not_a_panic() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A path below a regular file can never be a directory.
    let t = FileTransport::new(file.path().join("sub"));
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("x")
        .build()
        .unwrap();
    let err = t.send(&msg).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Config | ErrorKind::Transient),
        "{err:?}"
    );
    assert!(err.to_string().contains("sub"), "{err}");
    assert!(t.verify().await.is_err());
}
