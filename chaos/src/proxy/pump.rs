//! One direction of a proxied connection: a reader that stamps each chunk with its due
//! time, and a writer that delivers it then, paced by the bandwidth cap.
//!
//! The reader keeps reading whatever the link does, so a sender never blocks on a cut
//! link: bytes it may not deliver are counted and thrown away. Between reader and writer
//! chunks wait in a queue bounded by bytes (`IN_FLIGHT_BYTES`), so latency does not
//! limit throughput to one chunk per delay, and a slow writer still pushes back on the
//! sender through TCP flow control.
//!
//! Both halves re-read the connection's `ConnectionControl` for every chunk, so a
//! condition set while the connection lives applies from the next chunk on. Once a
//! direction discarded anything it is dead: it discards everything after, FIN included.
//!
//! Layout:
//! - `Direction`: what both halves share (control, side, counters, dead flag).
//! - `pump`: runs both halves of one direction until end of stream or an ending.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};

use super::fabric::{ConnectionControl, Side};
use super::link::{
    DueClock, Ending, Grant, LinkCondition, LinkCounters, TokenBucket, Verdict, jitter_sample,
    verdict,
};

/// The largest chunk read at once.
const CHUNK_BYTES: usize = 16 * 1024;
/// Bytes read but not yet written, per direction of a connection.
const IN_FLIGHT_BYTES: usize = 1024 * 1024;

/// One direction of one connection, shared by its reader and writer.
pub(crate) struct Direction<'a> {
    control: &'a watch::Receiver<ConnectionControl>,
    side: Side,
    counters: &'a LinkCounters,
    /// Set by whichever half first discards bytes; never cleared.
    dead: AtomicBool,
}

impl<'a> Direction<'a> {
    pub(crate) fn new(
        control: &'a watch::Receiver<ConnectionControl>,
        side: Side,
        counters: &'a LinkCounters,
    ) -> Direction<'a> {
        Direction {
            control,
            side,
            counters,
            dead: AtomicBool::new(false),
        }
    }

    fn condition(&self) -> LinkCondition {
        self.control.borrow().condition(self.side).clone()
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// The verdict on `amount` bytes in hand; discarded bytes are counted and kill the
    /// direction.
    fn judge(&self, condition: &LinkCondition, amount: usize) -> Verdict {
        let verdict = verdict(self.is_dead(), condition.cut);
        if verdict == Verdict::Discard {
            self.dead.store(true, Ordering::Relaxed);
            LinkCounters::add(&self.counters.bytes_discarded, amount);
        }
        verdict
    }
}

/// What the reader hands the writer.
enum Segment {
    Data {
        bytes: Vec<u8>,
        due: Instant,
        /// Returns the bytes to the in-flight budget once written or dropped.
        _budget: OwnedSemaphorePermit,
    },
    /// The sender shut down its side; forwarded as FIN at `due`.
    End { due: Instant },
}

/// Relays `source` to `sink` under `direction` until the source ends (returns `Ok`) or
/// the connection must end (returns the ending: an IO error on either socket resets).
pub(crate) async fn pump<R, W>(source: R, sink: W, direction: &Direction<'_>) -> Result<(), Ending>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (segments, queued) = mpsc::unbounded_channel();
    tokio::try_join!(
        read_side(source, segments, direction),
        write_side(sink, queued, direction)
    )
    .map(|_| ())
}

async fn read_side<R: AsyncRead + Unpin>(
    mut source: R,
    segments: mpsc::UnboundedSender<Segment>,
    direction: &Direction<'_>,
) -> Result<(), Ending> {
    let budget = Arc::new(Semaphore::new(IN_FLIGHT_BYTES));
    let mut clock = DueClock::default();
    let mut buffer = vec![0_u8; CHUNK_BYTES];
    loop {
        let read = source.read(&mut buffer).await.map_err(|_| Ending::Reset)?;
        let condition = direction.condition();
        let delay = jitter_sample(condition.jitter);
        if read == 0 {
            let due = clock.stamp(Instant::now(), condition.latency, delay);
            // A closed queue means the writer already ended; nothing left to tell it.
            let _ = segments.send(Segment::End { due });
            return Ok(());
        }
        match direction.judge(&condition, read) {
            Verdict::Reset => return Err(Ending::Reset),
            Verdict::Discard => continue,
            Verdict::Pass => {}
        }
        let permits = u32::try_from(read).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&budget).acquire_many_owned(permits).await else {
            return Err(Ending::Close);
        };
        let due = clock.stamp(Instant::now(), condition.latency, delay);
        let segment = Segment::Data {
            bytes: buffer[..read].to_vec(),
            due,
            _budget: permit,
        };
        if segments.send(segment).is_err() {
            return Ok(());
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    mut sink: W,
    mut queued: mpsc::UnboundedReceiver<Segment>,
    direction: &Direction<'_>,
) -> Result<(), Ending> {
    let mut bucket = TokenBucket::new(Instant::now());
    while let Some(segment) = queued.recv().await {
        match segment {
            Segment::Data { bytes, due, .. } => {
                wait_until(due).await;
                write_paced(&mut sink, &bytes, &mut bucket, direction).await?;
            }
            Segment::End { due } => {
                wait_until(due).await;
                return match direction.judge(&direction.condition(), 0) {
                    Verdict::Pass => sink.shutdown().await.map_err(|_| Ending::Reset),
                    Verdict::Discard => Ok(()),
                    Verdict::Reset => Err(Ending::Reset),
                };
            }
        }
    }
    // The reader failed; the connection is ending with its error.
    Ok(())
}

async fn wait_until(due: Instant) {
    if due > Instant::now() {
        sleep_until(due).await;
    }
}

/// Writes `bytes` as the bandwidth cap allows, checking the link before every piece so
/// a cut set meanwhile discards the rest.
async fn write_paced<W: AsyncWrite + Unpin>(
    sink: &mut W,
    bytes: &[u8],
    bucket: &mut TokenBucket,
    direction: &Direction<'_>,
) -> Result<(), Ending> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let condition = direction.condition();
        match direction.judge(&condition, rest.len()) {
            Verdict::Reset => return Err(Ending::Reset),
            Verdict::Discard => return Ok(()),
            Verdict::Pass => {}
        }
        match bucket.grant(rest.len(), condition.bandwidth, Instant::now()) {
            Grant::Send(amount) => {
                let (piece, after) = rest.split_at(amount);
                sink.write_all(piece).await.map_err(|_| Ending::Reset)?;
                LinkCounters::add(&direction.counters.bytes_passed, amount);
                rest = after;
            }
            Grant::Wait(wait) => sleep(wait).await,
        }
    }
    Ok(())
}
