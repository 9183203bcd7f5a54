//! The lane's states driven over an in-memory pipe by a scripted server: pipelining behind a
//! final `.`, every way a connection ends, what each message is told, and what is handed back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::{Job, LaneHandle, LaneOptions, Outcome};
use crate::smtp::session::testing::{open, params, Script, EHLO_PIPE};
use crate::ErrorKind;

const EHLO_NO_SIZE: &str = "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
const EHLO_CHUNKING: &str = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n";

/// What a message was told.
#[derive(Debug, PartialEq)]
enum Told {
    Delivered,
    NotStarted,
    /// Its error's kind, and whether it may go once more on another connection.
    Failed(ErrorKind, bool),
}

fn job_with(n: usize, text: &str) -> (Job, oneshot::Receiver<Outcome>) {
    Job::for_test(n, text)
}

fn job(n: usize) -> (Job, oneshot::Receiver<Outcome>) {
    job_with(n, "hello")
}

fn options(max_messages: u32) -> LaneOptions {
    LaneOptions {
        max_messages,
        idle_timeout: Duration::from_secs(30),
    }
}

/// A lane on a session opened against a server offering `ehlo`, and the server's script.
async fn lane(ehlo: &str, opts: LaneOptions) -> (LaneHandle, Script, Arc<Notify>) {
    let (session, script, _) = open(params(true, None, Duration::from_secs(5)), ehlo).await;
    let idle = Arc::new(Notify::new());
    let lane = LaneHandle::spawn(session.unwrap(), opts, idle.clone());
    (lane, script, idle)
}

/// Gives `n` jobs to `lane`, numbered from 1, and returns their outcomes' receivers.
fn give(lane: &LaneHandle, n: usize) -> Vec<oneshot::Receiver<Outcome>> {
    (1..=n)
        .map(|i| {
            let (j, rx) = job(i);
            assert!(lane.give(j).is_ok());
            rx
        })
        .collect()
}

async fn told(rx: oneshot::Receiver<Outcome>) -> Told {
    let outcome = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("every job is answered")
        .expect("answered, not dropped");
    match outcome {
        Outcome::NotStarted => Told::NotStarted,
        Outcome::Done(done) => match done.result {
            Ok(_) => Told::Delivered,
            Err(e) => Told::Failed(e.kind(), done.replaceable),
        },
    }
}

async fn all_told(rxs: Vec<oneshot::Receiver<Outcome>>) -> Vec<Told> {
    let mut out = Vec::new();
    for rx in rxs {
        out.push(told(rx).await);
    }
    out
}

/// Runs the server's side, failing the test instead of hanging when the client does not
/// write what the script waits for.
async fn serve(server: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the client wrote what the server waited for");
}

/// MAIL, RCPT, DATA of one message (written alone or behind the previous `.`).
async fn envelope_lines(script: &mut Script) {
    script.expect("MAIL FROM:<a@example.com>").await;
    script.expect("RCPT TO:<user").await;
    script.expect("DATA").await;
}

/// One `BDAT … LAST` transaction: its lines and its chunk.
async fn bdat_transaction(script: &mut Script, behind_another: bool) {
    if behind_another {
        script.expect("RSET").await;
    }
    script.expect("MAIL FROM").await;
    script.expect("RCPT TO").await;
    let bdat = script.expect("BDAT ").await;
    let size: usize = bdat
        .trim_start_matches("BDAT ")
        .trim_end_matches(" LAST")
        .parse()
        .unwrap();
    script.read_chunk(size).await;
}

#[tokio::test]
async fn the_next_message_goes_out_behind_the_final_dot() {
    let (lane, mut script, _) = lane(EHLO_PIPE, options(100)).await;
    let rxs = give(&lane, 3);
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        // The second message's commands came with the first's end, before any reply to it:
        // the server reads them first (a client that waited for the 250 would hang here).
        envelope_lines(&mut script).await;
        script
            .say("250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            .await;
        script.read_data().await;
        envelope_lines(&mut script).await;
        script
            .say("250 queued 2\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            .await;
        script.read_data().await;
        script.say("250 queued 3\r\n").await;
    })
    .await;
    assert_eq!(
        all_told(rxs).await,
        [Told::Delivered, Told::Delivered, Told::Delivered]
    );
    assert_eq!(lane.load(), 0);
}

#[tokio::test]
async fn lost_after_a_final_dot_is_ambiguous_for_that_message_only() {
    let (lane, mut script, _) = lane(EHLO_PIPE, options(100)).await;
    let rxs = give(&lane, 4);
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        envelope_lines(&mut script).await;
        script
            .say("250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            .await;
        script.read_data().await;
        // The third message's commands, behind the second's end; then the line goes dead.
        envelope_lines(&mut script).await;
    })
    .await;
    script.hang_up();
    assert_eq!(
        all_told(rxs).await,
        [
            Told::Delivered,
            // The server had its end: it may have been delivered; never resent.
            Told::Failed(ErrorKind::Ambiguous, false),
            // Only its commands went out: safe, and it goes to another connection.
            Told::Failed(ErrorKind::Network, true),
            // Never started: handed back.
            Told::NotStarted,
        ]
    );
}

#[tokio::test]
async fn lost_before_the_final_dot_is_safe_and_the_next_goes_elsewhere() {
    let (lane, mut script, _) = lane(EHLO_NO_SIZE, options(100)).await;
    // Larger than the pipe: the client is still writing it when the server hangs up.
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\n";
    let (big, rx1) = job_with(1, &line.repeat(3000));
    let (small, rx2) = job(2);
    lane.give(big).ok().unwrap();
    lane.give(small).ok().unwrap();
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        for _ in 0..20 {
            script.line().await;
        }
    })
    .await;
    script.hang_up();
    assert_eq!(
        all_told(vec![rx1, rx2]).await,
        [
            // A fresh connection's failure before the end: safe, and the caller's to retry.
            Told::Failed(ErrorKind::Network, false),
            Told::Failed(ErrorKind::Network, true),
        ]
    );
}

#[tokio::test]
async fn a_refused_envelope_is_its_own_and_the_connection_goes_on() {
    let (lane, mut script, _) = lane(EHLO_PIPE, options(100)).await;
    let (j1, rx1) = job(1);
    lane.give(j1).ok().unwrap();
    serve(async {
        envelope_lines(&mut script).await;
        script
            .say("550 5.7.1 sender refused\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n")
            .await;
        script.expect("RSET").await;
        script.say("250 ok\r\n").await;
    })
    .await;
    assert_eq!(told(rx1).await, Told::Failed(ErrorKind::Permanent, false));
    let (j2, rx2) = job(2);
    lane.give(j2).ok().unwrap();
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        script.say("250 queued\r\n").await;
    })
    .await;
    assert_eq!(told(rx2).await, Told::Delivered);
}

#[tokio::test]
async fn a_421_to_the_final_dot_sends_the_carried_message_elsewhere() {
    let (lane, mut script, _) = lane(EHLO_PIPE, options(100)).await;
    let rxs = give(&lane, 2);
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        envelope_lines(&mut script).await;
        script.say("421 4.3.2 shutting down\r\n").await;
    })
    .await;
    assert_eq!(
        all_told(rxs).await,
        [
            // Its own reply: not delivered, temporary.
            Told::Failed(ErrorKind::Transient, false),
            // The server processed nothing after its 421.
            Told::Failed(ErrorKind::Network, true),
        ]
    );
    assert!(!lane.takes_jobs(), "the lane ended");
}

#[tokio::test]
async fn the_message_cap_says_quit_and_hands_back_the_rest() {
    let (lane, mut script, _) = lane(EHLO_PIPE, options(2)).await;
    let rxs = give(&lane, 3);
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        envelope_lines(&mut script).await;
        script
            .say("250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            .await;
        script.read_data().await;
        // The connection's last message: nothing behind its end, then QUIT.
        script.say("250 queued 2\r\n").await;
        script.expect("QUIT").await;
        script.say("221 bye\r\n").await;
    })
    .await;
    script.hang_up();
    assert_eq!(
        all_told(rxs).await,
        [Told::Delivered, Told::Delivered, Told::NotStarted]
    );
}

#[tokio::test]
async fn an_idle_lane_says_quit_and_takes_no_more_jobs() {
    let opts = LaneOptions {
        max_messages: 100,
        idle_timeout: Duration::from_millis(100),
    };
    let (lane, mut script, _) = lane(EHLO_PIPE, opts).await;
    serve(async {
        script.expect("QUIT").await;
        script.say("221 bye\r\n").await;
    })
    .await;
    script.hang_up();
    tokio::time::timeout(Duration::from_secs(2), async {
        while lane.takes_jobs() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let (j, _rx) = job(1);
    assert!(lane.give(j).is_err(), "a closed lane gives the job back");
}

#[tokio::test]
async fn a_job_whose_caller_left_is_skipped() {
    let (lane, mut script, _) = lane(EHLO_PIPE, options(100)).await;
    let (gone, rx) = job(1);
    drop(rx);
    lane.give(gone).ok().unwrap();
    let (j2, rx2) = job(2);
    lane.give(j2).ok().unwrap();
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        script.say("250 queued\r\n").await;
    })
    .await;
    assert_eq!(told(rx2).await, Told::Delivered);
    let mails: Vec<_> = script
        .seen
        .iter()
        .filter(|l| l.starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), 1, "{:?}", script.seen);
    assert_eq!(lane.load(), 0);
}

#[tokio::test]
async fn an_idle_connection_found_closed_hands_the_job_back() {
    let (lane, mut script, idle) = lane(EHLO_PIPE, options(100)).await;
    let woken = idle.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let rxs = give(&lane, 1);
    serve(async {
        envelope_lines(&mut script).await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        script.say("250 queued\r\n").await;
    })
    .await;
    assert_eq!(all_told(rxs).await, [Told::Delivered]);
    // The pool hears that the lane has nothing left to do.
    tokio::time::timeout(Duration::from_secs(1), woken)
        .await
        .unwrap();
    script.hang_up();
    let rxs = give(&lane, 1);
    assert_eq!(all_told(rxs).await, [Told::NotStarted]);
}

#[tokio::test]
async fn a_bdat_window_lost_leaves_every_unanswered_transaction_ambiguous() {
    let (lane, mut script, _) = lane(EHLO_CHUNKING, options(100)).await;
    let rxs = give(&lane, 3);
    serve(async {
        // All three are written before any reply.
        bdat_transaction(&mut script, false).await;
        bdat_transaction(&mut script, true).await;
        bdat_transaction(&mut script, true).await;
        script.say("250 ok\r\n250 ok\r\n250 queued 1\r\n").await;
    })
    .await;
    script.hang_up();
    assert_eq!(
        all_told(rxs).await,
        [
            Told::Delivered,
            Told::Failed(ErrorKind::Ambiguous, false),
            Told::Failed(ErrorKind::Ambiguous, false),
        ]
    );
}

#[tokio::test]
async fn after_a_421_in_a_bdat_window_those_behind_go_elsewhere() {
    let (lane, mut script, _) = lane(EHLO_CHUNKING, options(100)).await;
    let rxs = give(&lane, 3);
    serve(async {
        bdat_transaction(&mut script, false).await;
        bdat_transaction(&mut script, true).await;
        bdat_transaction(&mut script, true).await;
        script
            .say("250 ok\r\n250 ok\r\n250 queued 1\r\n250 ok\r\n421 4.3.2 closing\r\n")
            .await;
    })
    .await;
    assert_eq!(
        all_told(rxs).await,
        [
            Told::Delivered,
            Told::Failed(ErrorKind::Transient, false),
            Told::Failed(ErrorKind::Network, true),
        ]
    );
}

#[tokio::test]
async fn a_refused_bdat_transaction_is_its_own_and_rset_starts_clean() {
    let (lane, mut script, _) = lane(EHLO_CHUNKING, options(100)).await;
    let rxs = give(&lane, 2);
    serve(async {
        bdat_transaction(&mut script, false).await;
        bdat_transaction(&mut script, true).await;
        script
            .say("250 ok\r\n250 ok\r\n554 5.7.1 no\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 queued 2\r\n")
            .await;
    })
    .await;
    assert_eq!(
        all_told(rxs).await,
        [Told::Failed(ErrorKind::Permanent, false), Told::Delivered]
    );
    // The window drained with the last answered one accepted: no RSET needed after it.
    let (j3, rx3) = job(3);
    lane.give(j3).ok().unwrap();
    serve(async {
        bdat_transaction(&mut script, false).await;
        script.say("250 ok\r\n250 ok\r\n250 queued 3\r\n").await;
    })
    .await;
    assert_eq!(told(rx3).await, Told::Delivered);
}
