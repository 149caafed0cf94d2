//! The framing relay between QEMU's TPM UART (a TCP client) and swtpm (a TCP server).
//!
//! swtpm does not reassemble commands: it handles whatever one `read()` returns once it has
//! 10 bytes, so the byte-at-a-time stream of a UART desynchronises it. The relay therefore
//! frames each command by its header's `commandSize`, hands it to swtpm in ONE write, keeps one
//! command in flight, reads the whole response by its header size and writes it back.
//!
//! - A header announcing a size below 10 or above [`MAX_FRAME`] is garbage: one byte is dropped
//!   and framing retried from the next byte (resynchronisation), and the drop is logged.
//! - A partial command that stalls longer than [`RelayOptions::stall`] is dropped and logged.
//! - If swtpm is down (connect, write or read fails), the command is NOT answered (the image
//!   must time out on its own), the event is logged, and the relay reconnects on the next one.
//!
//! Thread-based, std only. [`Relay::stop`] (or dropping the [`Relay`]) stops it cleanly.
#![forbid(unsafe_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Size of a TPM command or response header (tag, size, code).
pub const HEADER: usize = 10;
/// The largest command or response the relay accepts (the H_TPM_COMM buffer size).
pub const MAX_FRAME: usize = 4096;

/// How often blocked reads wake up to look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// One command the relay framed, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRecord {
    /// The command code (header bytes 6..10).
    pub command_code: u32,
    /// The command size in bytes.
    pub command_size: usize,
    /// From the command's first byte reaching the relay to its last (the link's transfer time;
    /// approximate for commands that arrived in one burst behind another).
    pub receive_time: Duration,
    /// The response, or `None` if the command was not answered (swtpm down).
    pub response: Option<ResponseInfo>,
}

/// A response the relay delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Response size in bytes.
    pub size: usize,
    /// The TPM response code (header bytes 6..10).
    pub code: u32,
    /// swtpm-side time: from the write of the command to the last response byte.
    pub swtpm_time: Duration,
}

/// A fault the relay injects (for the boot-level fault and power-cut campaigns). Commands
/// are counted from 0 in arrival order; a re-send of the same bytes right after an injected
/// answer keeps its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayFault {
    /// Forward everything.
    #[default]
    None,
    /// Answer command `at` with TPM_RC_TESTING (a 10-byte TPM response, not forwarded),
    /// `times` times (each re-send counts); then forward it.
    Testing {
        /// Which command.
        at: usize,
        /// How many TESTING answers.
        times: usize,
    },
    /// Forward commands 0..`after`, then answer and forward nothing: the power is cut right
    /// after command `after - 1` was answered ([`Relay::power_cut`] turns true; the launcher
    /// then SIGKILLs swtpm and QEMU).
    CutAfter {
        /// How many commands get through.
        after: usize,
    },
}

/// Tunables of a relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// A partial command with no new byte for this long is dropped.
    pub stall: Duration,
    /// How long to wait for swtpm's whole response before declaring it down.
    pub response_timeout: Duration,
    /// Print each log line to stderr as it happens (besides keeping it).
    pub echo_log: bool,
    /// A fault to inject.
    pub fault: RelayFault,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            stall: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
            echo_log: false,
            fault: RelayFault::None,
        }
    }
}

#[derive(Default)]
struct Shared {
    records: Vec<RelayRecord>,
    log: Vec<String>,
    dropped_bytes: usize,
    upstream: Option<SocketAddr>,
    cut: bool,
}

/// A running relay. Dropping it stops the thread.
pub struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// Everything the relay recorded, returned by [`Relay::stop`].
#[derive(Debug, Clone, Default)]
pub struct RelayStats {
    /// One record per framed command, in order.
    pub records: Vec<RelayRecord>,
    /// Log lines: dropped bytes, swtpm down, reconnections.
    pub log: Vec<String>,
    /// Bytes dropped while resynchronising or discarding stalled partial commands.
    pub dropped_bytes: usize,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

use pefbox::tpm::wire::u32_at as be32;

/// What the front of a byte stream holds, framed by the TPM header.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Fewer bytes than a header, or fewer than the header's size: wait for more.
    Incomplete,
    /// The header's size is impossible (< 10 or > [`MAX_FRAME`]): drop a byte and retry.
    Garbage(u32),
    /// A whole frame of this many bytes is at the front.
    Complete(usize),
}

/// Frames the front of `buf` by its TPM header's size field.
pub fn frame(buf: &[u8]) -> Frame {
    let Some(size) = be32(buf, 2) else {
        return Frame::Incomplete;
    };
    match usize::try_from(size) {
        Ok(n) if (HEADER..=MAX_FRAME).contains(&n) => {
            if buf.len() >= n {
                Frame::Complete(n)
            } else {
                Frame::Incomplete
            }
        }
        _ => Frame::Garbage(size),
    }
}

impl Relay {
    /// Starts a relay listening on a free loopback port, forwarding to swtpm at `upstream`
    /// (`None`: no TPM yet; every command goes unanswered until [`Relay::set_upstream`]).
    pub fn start(upstream: Option<SocketAddr>, options: RelayOptions) -> io::Result<Relay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared {
            upstream,
            ..Shared::default()
        }));
        let worker = Worker {
            stop: Arc::clone(&stop),
            shared: Arc::clone(&shared),
            options,
            upstream: None,
            distinct: 0,
            last: Vec::new(),
            injected_left: 0,
            armed: false,
            last_warned: false,
        };
        let thread = thread::Builder::new()
            .name("pef-relay".into())
            .spawn(move || worker.run(listener))?;
        Ok(Relay {
            port,
            stop,
            shared,
            thread: Some(thread),
        })
    }

    /// The loopback port QEMU must connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Points the relay at another swtpm address (after a restart on a new port); the relay
    /// connects to it on the next command.
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        lock(&self.shared).upstream = upstream;
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<RelayRecord> {
        lock(&self.shared).records.clone()
    }

    /// A copy of the log so far.
    pub fn log(&self) -> Vec<String> {
        lock(&self.shared).log.clone()
    }

    /// True once a [`RelayFault::CutAfter`] took effect (nothing is forwarded any more).
    pub fn power_cut(&self) -> bool {
        lock(&self.shared).cut
    }

    /// Stops the relay thread, closes its sockets and returns what it recorded.
    pub fn stop(mut self) -> RelayStats {
        self.halt();
        let mut s = lock(&self.shared);
        RelayStats {
            records: std::mem::take(&mut s.records),
            log: std::mem::take(&mut s.log),
            dropped_bytes: s.dropped_bytes,
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                eprintln!("pef: relay thread panicked");
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Worker {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    options: RelayOptions,
    upstream: Option<TcpStream>,
    /// Fault bookkeeping: distinct commands seen, the last command, injected answers left.
    distinct: usize,
    last: Vec<u8>,
    injected_left: usize,
    armed: bool,
    last_warned: bool,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn log(&self, msg: String) {
        if self.options.echo_log {
            eprintln!("pef relay: {msg}");
        }
        lock(&self.shared).log.push(msg);
    }

    fn run(mut self, listener: TcpListener) {
        while !self.stopped() {
            match listener.accept() {
                Ok((conn, _)) => {
                    if let Err(e) = self.serve(conn) {
                        self.log(format!("QEMU connection ended: {e}"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
                Err(e) => {
                    self.log(format!("accept failed: {e}"));
                    thread::sleep(POLL);
                }
            }
        }
    }

    /// Serves one QEMU connection until EOF or stop.
    fn serve(&mut self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(POLL))?;
        conn.set_nodelay(true)?;
        let mut buf: Vec<u8> = Vec::with_capacity(2 * MAX_FRAME);
        let mut chunk = [0u8; MAX_FRAME];
        let mut last_byte = Instant::now();
        let mut first_byte = Instant::now();
        let mut dropping = 0usize;
        while !self.stopped() {
            // Frame everything already buffered.
            loop {
                match frame(&buf) {
                    Frame::Incomplete => break,
                    Frame::Garbage(size) => {
                        if dropping == 0 {
                            self.log(format!(
                                "bad commandSize {size} (valid {HEADER}..={MAX_FRAME}): resynchronising"
                            ));
                        }
                        buf.remove(0);
                        dropping += 1;
                        lock(&self.shared).dropped_bytes += 1;
                    }
                    Frame::Complete(n) => {
                        if dropping > 0 {
                            self.log(format!("resynchronised after dropping {dropping} byte(s)"));
                            dropping = 0;
                        }
                        let command: Vec<u8> = buf.drain(..n).collect();
                        let receive_time = last_byte.saturating_duration_since(first_byte);
                        first_byte = Instant::now();
                        if let Some(response) = self.forward(&command, receive_time) {
                            conn.write_all(&response)?;
                        }
                    }
                }
            }
            match conn.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    last_byte = Instant::now();
                    if buf.is_empty() {
                        first_byte = last_byte;
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if !buf.is_empty() && last_byte.elapsed() >= self.options.stall {
                        self.log(format!(
                            "dropped a stalled partial command of {} byte(s)",
                            buf.len()
                        ));
                        lock(&self.shared).dropped_bytes += buf.len();
                        buf.clear();
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends one whole command to swtpm and reads its whole response. `None`: not answered.
    fn forward(&mut self, command: &[u8], receive_time: Duration) -> Option<Vec<u8>> {
        let code = be32(command, 6).unwrap_or(0);
        // A re-send (the same bytes right after a warning answer) keeps its number.
        if !(self.last_warned && command == self.last.as_slice()) {
            self.distinct += 1;
            self.last = command.to_vec();
        }
        self.last_warned = false;
        let index = self.distinct - 1;
        match self.options.fault {
            RelayFault::CutAfter { after } if index >= after => {
                let mut s = lock(&self.shared);
                if !s.cut {
                    s.cut = true;
                    s.log.push(format!(
                        "power cut after command {after}: command 0x{code:08x} not forwarded"
                    ));
                }
                self.upstream = None;
                return None;
            }
            RelayFault::Testing { at, times } if index == at => {
                if !self.armed {
                    // First arrival of command `at`: arm the injected answers (once).
                    self.armed = true;
                    self.injected_left = times;
                }
                if self.injected_left > 0 {
                    self.injected_left -= 1;
                    self.last_warned = true;
                    let r = [0x80u8, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x0A];
                    lock(&self.shared).records.push(RelayRecord {
                        command_code: code,
                        command_size: command.len(),
                        receive_time,
                        response: Some(ResponseInfo {
                            size: 10,
                            code: 0x90A,
                            swtpm_time: Duration::ZERO,
                        }),
                    });
                    return Some(r.to_vec());
                }
            }
            _ => {}
        }
        let mut record = RelayRecord {
            command_code: code,
            command_size: command.len(),
            receive_time,
            response: None,
        };
        let result = self.exchange(command);
        let out = match result {
            Ok((response, time)) => {
                self.last_warned = matches!(be32(&response, 6), Some(0x922 | 0x908 | 0x90A));
                record.response = Some(ResponseInfo {
                    size: response.len(),
                    code: be32(&response, 6).unwrap_or(0),
                    swtpm_time: time,
                });
                Some(response)
            }
            Err(e) => {
                self.upstream = None;
                self.log(format!(
                    "swtpm down: command 0x{code:08x} ({} bytes) not answered: {e}",
                    command.len()
                ));
                None
            }
        };
        lock(&self.shared).records.push(record);
        out
    }

    fn exchange(&mut self, command: &[u8]) -> io::Result<(Vec<u8>, Duration)> {
        if let Some(up) = &self.upstream {
            if !still_open(up) {
                self.log("swtpm connection was closed: reconnecting".to_string());
                self.upstream = None;
            }
        }
        if self.upstream.is_none() {
            let addr = lock(&self.shared)
                .upstream
                .ok_or_else(|| io::Error::new(ErrorKind::NotConnected, "no swtpm address"))?;
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(POLL))?;
            self.upstream = Some(s);
        }
        let stall = self.options.response_timeout;
        let Some(up) = self.upstream.as_mut() else {
            return Err(io::Error::new(
                ErrorKind::NotConnected,
                "no swtpm connection",
            ));
        };
        let start = Instant::now();
        // One write() call carries the whole command (at most 4096 bytes, loopback TCP).
        let written = up.write(command)?;
        if written != command.len() {
            return Err(io::Error::new(
                ErrorKind::WriteZero,
                format!("short write to swtpm: {written} of {}", command.len()),
            ));
        }
        let mut response = Vec::with_capacity(MAX_FRAME);
        let mut chunk = [0u8; MAX_FRAME];
        loop {
            match frame(&response) {
                Frame::Complete(n) if n == response.len() => {
                    return Ok((response, start.elapsed()));
                }
                Frame::Complete(n) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "swtpm sent {} bytes for a {n}-byte response",
                            response.len()
                        ),
                    ));
                }
                Frame::Garbage(size) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("swtpm response size {size} is invalid"),
                    ));
                }
                Frame::Incomplete => {}
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(io::Error::new(ErrorKind::Interrupted, "relay stopping"));
            }
            if start.elapsed() > stall {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "no whole response in time",
                ));
            }
            // Never read past the announced end: one command in flight, one response.
            let want = match be32(&response, 2).and_then(|s| usize::try_from(s).ok()) {
                Some(n) if n > response.len() => n - response.len(),
                _ => HEADER - response.len(),
            };
            let room = want.min(chunk.len());
            match up.read(chunk.get_mut(..room).unwrap_or_default()) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "swtpm closed")),
                Ok(n) => response.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// True if nothing says the peer closed the connection (no EOF, no error waiting).
/// Between commands swtpm sends nothing, so any readable state means it went away.
fn still_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let open = matches!(s.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).is_ok() && open
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A TPM command header with `size` in its size field and a body to match.
    fn command(code: u32, size: u32) -> Vec<u8> {
        let mut c = vec![0x80, 0x01];
        c.extend_from_slice(&size.to_be_bytes());
        c.extend_from_slice(&code.to_be_bytes());
        c.resize(size as usize, 0xA5);
        c
    }

    #[test]
    fn framing_by_header_size() {
        assert_eq!(frame(&[]), Frame::Incomplete);
        assert_eq!(frame(&[0x80, 0x01, 0, 0, 0]), Frame::Incomplete);
        let c = command(0x144, 12);
        assert_eq!(frame(&c[..11]), Frame::Incomplete);
        assert_eq!(frame(&c), Frame::Complete(12));
        let mut two = c.clone();
        two.extend_from_slice(&c);
        assert_eq!(frame(&two), Frame::Complete(12));
        assert_eq!(frame(&command(1, 9)[..]), Frame::Garbage(9));
        let mut big = command(1, 10);
        big[2..6].copy_from_slice(&4097u32.to_be_bytes());
        assert_eq!(frame(&big), Frame::Garbage(4097));
        assert_eq!(frame(&command(1, 4096)), Frame::Complete(4096));
    }

    /// A fake swtpm: accepts one connection at a time, and for each `read()` it gets, reports
    /// the bytes it saw and answers with a 10-byte response whose code echoes the command code
    /// (or, like real swtpm, TPM_RC_COMMAND_SIZE if one read was not one whole command).
    struct FakeSwtpm {
        addr: SocketAddr,
        reads: mpsc::Receiver<Vec<u8>>,
    }

    impl FakeSwtpm {
        fn start() -> FakeSwtpm {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let addr = l.local_addr().unwrap();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for conn in l.incoming() {
                    let Ok(mut conn) = conn else { return };
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let got = buf[..n].to_vec();
                        let whole = matches!(frame(&got), Frame::Complete(k) if k == n);
                        let rc = if whole { be32(&got, 6).unwrap() } else { 0x142 };
                        if tx.send(got).is_err() {
                            return;
                        }
                        let mut rsp = vec![0x80, 0x01, 0, 0, 0, 10];
                        rsp.extend_from_slice(&rc.to_be_bytes());
                        // Answer in two pieces to exercise response reassembly.
                        if conn.write_all(&rsp[..3]).is_err() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(2));
                        if conn.write_all(&rsp[3..]).is_err() {
                            break;
                        }
                    }
                }
            });
            FakeSwtpm { addr, reads: rx }
        }
    }

    /// A fake swtpm and a relay in front of it.
    fn relay_to_fake(options: RelayOptions) -> (FakeSwtpm, Relay) {
        let tpm = FakeSwtpm::start();
        let relay = Relay::start(Some(tpm.addr), options).unwrap();
        (tpm, relay)
    }

    /// A connection to `relay`, as QEMU's.
    fn peer(relay: &Relay) -> TcpStream {
        TcpStream::connect((Ipv4Addr::LOCALHOST, relay.port())).unwrap()
    }

    /// Whether the relay's log has a line holding `needle`.
    fn logged(stats: &RelayStats, needle: &str) -> bool {
        stats.log.iter().any(|l| l.contains(needle))
    }

    /// The next command the fake swtpm read (waiting up to 5 s).
    fn next_read(tpm: &FakeSwtpm) -> Vec<u8> {
        tpm.reads.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    fn read_response(q: &mut TcpStream) -> Vec<u8> {
        let mut rsp = [0u8; 10];
        q.read_exact(&mut rsp).unwrap();
        rsp.to_vec()
    }

    #[test]
    fn byte_by_byte_commands_reach_the_fake_swtpm_whole() {
        let (tpm, relay) = relay_to_fake(RelayOptions::default());
        let mut q = peer(&relay);
        q.set_nodelay(true).unwrap();
        for (code, size) in [(0x17a_u32, 22_u32), (0x144, 12), (0x159, 600)] {
            let c = command(code, size);
            for b in &c {
                q.write_all(&[*b]).unwrap();
            }
            let got = next_read(&tpm);
            assert_eq!(got, c, "one read at swtpm = the whole command");
            let rsp = read_response(&mut q);
            assert_eq!(be32(&rsp, 6), Some(code));
        }
        let stats = relay.stop();
        let codes: Vec<u32> = stats.records.iter().map(|r| r.command_code).collect();
        assert_eq!(codes, vec![0x17a, 0x144, 0x159]);
        assert_eq!(stats.records[2].command_size, 600);
        assert!(stats.records[2].receive_time > Duration::ZERO);
        let r = stats.records[0].response.unwrap();
        assert_eq!((r.size, r.code), (10, 0x17a));
        assert!(
            r.swtpm_time >= Duration::from_millis(2),
            "{:?}",
            r.swtpm_time
        );
        assert_eq!(stats.dropped_bytes, 0);
    }

    #[test]
    fn back_to_back_commands_in_one_write_are_split() {
        let (tpm, relay) = relay_to_fake(RelayOptions::default());
        let mut q = peer(&relay);
        let mut both = command(0x144, 12);
        both.extend_from_slice(&command(0x17b, 30));
        q.write_all(&both).unwrap();
        assert_eq!(next_read(&tpm).len(), 12);
        assert_eq!(next_read(&tpm).len(), 30);
        assert_eq!(be32(&read_response(&mut q), 6), Some(0x144));
        assert_eq!(be32(&read_response(&mut q), 6), Some(0x17b));
    }

    #[test]
    fn garbage_is_dropped_and_framing_resynchronises() {
        let (tpm, relay) = relay_to_fake(RelayOptions::default());
        let mut q = peer(&relay);
        // Every window over the 0xFF run reads an impossible size (> 4096): each garbage
        // byte goes, then framing finds the real command.
        let mut stream = vec![0xFF; 13];
        let c = command(0x17e, 14);
        stream.extend_from_slice(&c);
        q.write_all(&stream).unwrap();
        assert_eq!(next_read(&tpm), c);
        assert_eq!(be32(&read_response(&mut q), 6), Some(0x17e));
        let stats = relay.stop();
        assert_eq!(stats.dropped_bytes, 13);
        assert_eq!(stats.records.len(), 1);
        assert!(logged(&stats, "resynchronised after dropping 13"));
    }

    #[test]
    fn a_stalled_partial_command_is_dropped() {
        let (tpm, relay) = relay_to_fake(RelayOptions {
            stall: Duration::from_millis(100),
            ..RelayOptions::default()
        });
        let mut q = peer(&relay);
        q.write_all(&command(0x144, 100)[..40]).unwrap();
        thread::sleep(Duration::from_millis(400));
        let c = command(0x144, 12);
        q.write_all(&c).unwrap();
        assert_eq!(next_read(&tpm), c);
        let stats = relay.stop();
        assert_eq!(stats.dropped_bytes, 40);
    }

    #[test]
    fn swtpm_down_means_no_answer_then_reconnect() {
        let relay = Relay::start(None, RelayOptions::default()).unwrap();
        let mut q = peer(&relay);
        q.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        q.write_all(&command(0x144, 12)).unwrap();
        let mut b = [0u8; 1];
        let e = q.read(&mut b).unwrap_err();
        assert!(matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        // swtpm comes up: the next command is relayed.
        let tpm = FakeSwtpm::start();
        relay.set_upstream(Some(tpm.addr));
        q.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        q.write_all(&command(0x17a, 22)).unwrap();
        assert_eq!(be32(&read_response(&mut q), 6), Some(0x17a));
        let stats = relay.stop();
        assert_eq!(stats.records.len(), 2);
        assert_eq!(stats.records[0].response, None);
        assert!(stats.records[1].response.is_some());
        assert!(logged(&stats, "swtpm down: command 0x00000144"));
    }

    #[test]
    fn stop_returns_promptly_with_a_connected_idle_peer() {
        let relay = Relay::start(None, RelayOptions::default()).unwrap();
        let _q = peer(&relay);
        thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        relay.stop();
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
