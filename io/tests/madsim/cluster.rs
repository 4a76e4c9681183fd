//! Halyard nodes on madsim hosts: the real Tokio driver (`halyard_io::server`)
//! with journal and lock adapters that talk to the simulator's Kafka model,
//! served from its own simulated host over simulated TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_core::ha::Role;
use halyard_core::journal::group_commit::{GroupCommit, GroupLimits, JournalStep};
use halyard_core::journal::{decode_entry, Entry};
use halyard_core::node::{
    Input, JournalEvent, JournalRequest, LockEvent, LockRequest, Node, NodeConfig,
};
use halyard_io::journal::JournalHandle;
use halyard_io::lock::{LockHandle, LockMsg};
use halyard_io::server::{self, ServerConfig};
use halyard_sim::kafka::{KafkaConfig, KafkaError, KafkaModel, Writer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::wire::{read_frame, write_frame, Records, Req, Resp};

pub const TOPIC: &str = "journal";
pub const GROUP: &str = "lock";
const TXN_ID: &str = "halyard-madsim";
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_500);
pub const SESSION_TIMEOUT_MS: u64 = 3_000;
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Milliseconds of virtual time since the simulation started.
fn now_ms() -> u64 {
    madsim::time::Instant::now()
        .duration_since(epoch())
        .as_millis() as u64
}

fn epoch() -> madsim::time::Instant {
    use std::sync::OnceLock;
    // Each madsim run is a fresh process-level state only per test; store per thread.
    thread_local! {
        static START: OnceLock<madsim::time::Instant> = const { OnceLock::new() };
    }
    START.with(|s| *s.get_or_init(madsim::time::Instant::now))
}

/// Serves the Kafka model on this host until the task is dropped.
pub async fn serve_kafka(addr: SocketAddr) {
    let mut model = KafkaModel::new(KafkaConfig {
        session_timeout_ms: SESSION_TIMEOUT_MS,
        transaction_timeout_ms: 20_000,
        tombstone_retention_ms: 10_000,
    });
    model.create_topic(TOPIC, 1);
    let model = Arc::new(Mutex::new(model));
    let listener = TcpListener::bind(addr).await.expect("bind kafka");
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let model = model.clone();
        tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(sock);
            while let Ok(frame) = read_frame(&mut rd).await {
                let resp = {
                    let mut k = model.lock().expect("model lock");
                    handle(&mut k, Req::decode(frame))
                };
                if write_frame(&mut wr, &resp.encode()).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn handle(k: &mut KafkaModel, req: Req) -> Resp {
    let now = now_ms();
    match req {
        Req::InitPid { txn_id } => {
            let (pid, epoch) = k.init_producer_id(now, &txn_id);
            Resp::Pid { pid, epoch }
        }
        Req::EndOffset => Resp::End {
            offset: k.end_offset_committed(now, TOPIC, 0).unwrap_or(0),
        },
        Req::Fetch { offset } => match k.fetch_committed(now, TOPIC, 0, offset, 500) {
            Ok(f) => Resp::Fetched {
                records: f.records.into_iter().map(|r| (r.key, r.value)).collect(),
                next: f.next_offset,
            },
            Err(e) => Resp::Error(e.to_string()),
        },
        Req::Produce {
            txn_id,
            pid,
            epoch,
            seq,
            records,
            node,
            core_epoch,
        } => {
            let w = Writer {
                node,
                epoch: core_epoch,
            };
            match k.produce(now, &txn_id, pid, epoch, seq, TOPIC, 0, &records, Some(w)) {
                Ok(_) => Resp::Ok,
                Err(KafkaError::ProducerFenced { .. }) => Resp::Fenced,
                Err(e) => Resp::Error(e.to_string()),
            }
        }
        Req::EndTxn { txn_id, pid, epoch } => match k.end_txn(now, &txn_id, pid, epoch, true) {
            Ok(()) => Resp::Ok,
            Err(KafkaError::ProducerFenced { .. }) => Resp::Fenced,
            Err(e) => Resp::Error(e.to_string()),
        },
        Req::Join { member } => Resp::from(k.join_group(now, GROUP, &member)),
        Req::Heartbeat { member } => match k.heartbeat(now, GROUP, &member) {
            Ok(s) => Resp::from(s),
            Err(_) => Resp::UnknownMember,
        },
        Req::Leave { member } => {
            k.leave_group(now, GROUP, &member);
            Resp::Ok
        }
    }
}

/// One connection to the model; dropped (and redialled) on any failure so a
/// late reply can never be taken for the answer to a later request.
struct Rpc {
    kafka: SocketAddr,
    conn: Option<(
        tokio::io::ReadHalf<TcpStream>,
        tokio::io::WriteHalf<TcpStream>,
    )>,
}

impl Rpc {
    fn new(kafka: SocketAddr) -> Rpc {
        Rpc { kafka, conn: None }
    }

    async fn call(&mut self, req: &Req) -> Option<Resp> {
        let r = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.conn.is_none() {
                let s = TcpStream::connect(self.kafka).await.ok()?;
                self.conn = Some(tokio::io::split(s));
            }
            let (rd, wr) = self.conn.as_mut()?;
            write_frame(wr, &req.encode()).await.ok()?;
            let f = read_frame(rd).await.ok()?;
            Some(Resp::decode(f))
        })
        .await
        .ok()
        .flatten();
        if r.is_none() {
            self.conn = None;
        }
        r
    }

    async fn call_retry(&mut self, req: &Req, attempts: u32) -> Option<Resp> {
        for _ in 0..attempts {
            if let Some(r) = self.call(req).await {
                return Some(r);
            }
        }
        None
    }
}

/// A planted bug for the test's self-check: acknowledge appends without
/// writing them to Kafka.
pub static ACK_WITHOUT_WRITING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Bounds one group commit (one Kafka transaction).
const GROUP_LIMITS: GroupLimits = GroupLimits {
    group_appends_max: 256,
    group_bytes_max: 8 * 1024 * 1024,
};

/// The journal adapter: core's group commit (the same as the io drivers'
/// and the simulator's) decides what to write and answers the tickets;
/// this task only talks to the Kafka host.
async fn journal_task(
    name: String,
    kafka: SocketAddr,
    mut requests: mpsc::UnboundedReceiver<JournalRequest>,
    inputs: mpsc::Sender<Input>,
    epoch_of_node: Arc<Mutex<u32>>,
) {
    let mut rpc = Rpc::new(kafka);
    let mut commit = GroupCommit::new(GROUP_LIMITS);
    // The producer id and epoch while the journal is open.
    let mut writer: Option<(u64, u16)> = None;
    let mut sequence = 0u64;
    loop {
        // What queued up during the last step joins the next group.
        while !commit.next_group().sealed {
            match requests.try_recv() {
                Ok(request) => commit.push(request),
                Err(_) => break,
            }
        }
        let step = commit.poll_step();
        if !send_answers(&mut commit, &inputs).await {
            return;
        }
        let Some(step) = step else {
            match requests.recv().await {
                Some(request) => commit.push(request),
                None => return,
            }
            continue;
        };
        match step {
            JournalStep::Open => {
                writer = None;
                match open_journal(&name, &mut rpc, &inputs).await {
                    Ok(Some(producer)) => {
                        writer = Some(producer);
                        sequence = 0;
                        commit.opened();
                    }
                    Ok(None) => return,
                    Err(reason) => commit.open_failed(reason),
                }
            }
            JournalStep::Close => writer = None,
            // These nodes do not page (`journal_reads` is off).
            JournalStep::Read(ids) => commit.read_failed(ids, "no reads here".into()),
            // Only a mirroring link asks for a snapshot; none runs here.
            JournalStep::Snapshot { .. } => {}
            JournalStep::Write(group) => {
                let Some((pid, epoch)) = writer else {
                    unreachable!("the group commit asks for writes only while the journal is open");
                };
                let records: Records = group
                    .batches
                    .into_iter()
                    .flatten()
                    .map(|e| (e.key, e.value))
                    .collect();
                let core_epoch = *epoch_of_node.lock().expect("epoch");
                let produce = Req::Produce {
                    txn_id: TXN_ID.into(),
                    pid,
                    epoch,
                    seq: sequence,
                    records,
                    node: name.clone(),
                    core_epoch,
                };
                sequence += 1;
                let outcome = if ACK_WITHOUT_WRITING.load(std::sync::atomic::Ordering::Relaxed) {
                    Some(Resp::Ok)
                } else {
                    match rpc.call_retry(&produce, 3).await {
                        Some(Resp::Ok) => {
                            rpc.call_retry(
                                &Req::EndTxn {
                                    txn_id: TXN_ID.into(),
                                    pid,
                                    epoch,
                                },
                                3,
                            )
                            .await
                        }
                        other => other,
                    }
                };
                match outcome {
                    Some(Resp::Ok) => commit.written(),
                    Some(Resp::Fenced) => {
                        writer = None;
                        commit.write_fenced(None);
                    }
                    other => {
                        writer = None;
                        commit.write_failed(format!("transaction outcome unknown: {other:?}"));
                    }
                }
            }
        }
    }
}

/// Sends the group commit's answers to the node, in order and as one input
/// (as the real drivers do); false once the node is gone.
async fn send_answers(commit: &mut GroupCommit, inputs: &mpsc::Sender<Input>) -> bool {
    match commit.poll_answers() {
        Some(input) => inputs.send(input).await.is_ok(),
        None => true,
    }
}

/// Fences older writers and reads the journal to its end, sending `Loaded`
/// inputs: the producer id and epoch, `None` once the node is gone, or why
/// opening failed.
async fn open_journal(
    name: &str,
    rpc: &mut Rpc,
    inputs: &mpsc::Sender<Input>,
) -> Result<Option<(u64, u16)>, String> {
    let init = Req::InitPid {
        txn_id: TXN_ID.into(),
    };
    let Some(Resp::Pid { pid, epoch }) = rpc.call_retry(&init, 3).await else {
        return Err("Kafka unreachable (init)".into());
    };
    let Some(Resp::End { offset: end }) = rpc.call_retry(&Req::EndOffset, 3).await else {
        return Err("Kafka unreachable (end offset)".into());
    };
    let mut offset = 0;
    while offset < end {
        let Some(Resp::Fetched { records, next }) = rpc.call_retry(&Req::Fetch { offset }, 3).await
        else {
            return Err("Kafka unreachable (fetch)".into());
        };
        let mut entries = Vec::with_capacity(records.len());
        for (k, v) in &records {
            match decode_entry(k, v.as_deref()) {
                Ok(e) => entries.push(e),
                Err(e) => panic!("{name}: undecodable journal entry: {e}"),
            }
        }
        if !entries.is_empty()
            && inputs
                .send(Input::Journal(JournalEvent::Loaded { entries }))
                .await
                .is_err()
        {
            return Ok(None);
        }
        offset = next;
    }
    Ok(Some((pid, epoch)))
}

async fn lock_task(
    member: String,
    role: Role,
    allow_failback: bool,
    kafka: SocketAddr,
    mut cmds: mpsc::UnboundedReceiver<LockMsg>,
    inputs: mpsc::Sender<Input>,
) {
    let mut rpc = Rpc::new(kafka);
    let (mut want, mut joined, mut held, mut announced, mut handed_back) =
        (false, false, false, false, false);
    let mut last_ok = now_ms();
    let send = |ev| {
        let inputs = inputs.clone();
        async move { inputs.send(Input::Lock(ev)).await.is_ok() }
    };
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some((LockRequest::Acquire, _)) => {
                    want = true;
                    announced = false;
                    handed_back = false;
                }
                Some((LockRequest::Release, done)) => {
                    want = false;
                    held = false;
                    if joined {
                        joined = false;
                        let _ = rpc.call(&Req::Leave { member: member.clone() }).await;
                    }
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                    continue;
                }
            },
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        if !want {
            continue;
        }
        let req = if joined {
            Req::Heartbeat {
                member: member.clone(),
            }
        } else {
            Req::Join {
                member: member.clone(),
            }
        };
        let resp = rpc.call(&req).await;
        tracing::debug!(?req, ?resp, "lock rpc");
        match resp {
            Some(Resp::Group { holder, members }) => {
                joined = true;
                last_ok = now_ms();
                let mine = holder.as_deref() == Some(member.as_str());
                if mine && !held {
                    held = true;
                    if !send(LockEvent::Acquired).await {
                        return;
                    }
                } else if !mine && held {
                    held = false;
                    if !send(LockEvent::Lost {
                        reason: "lock reassigned".into(),
                    })
                    .await
                    {
                        return;
                    }
                } else if !mine && !announced {
                    announced = true;
                    if !send(LockEvent::Standby).await {
                        return;
                    }
                }
                if mine
                    && allow_failback
                    && role == Role::Backup
                    && !handed_back
                    && members.iter().any(|m| m.starts_with("0-"))
                {
                    handed_back = true;
                    if !send(LockEvent::HandBack).await {
                        return;
                    }
                }
            }
            Some(Resp::UnknownMember) => {
                joined = false;
                if held {
                    held = false;
                    if !send(LockEvent::Lost {
                        reason: "expelled from the lock group".into(),
                    })
                    .await
                    {
                        return;
                    }
                }
            }
            _ => {
                if held && now_ms() > last_ok + SESSION_TIMEOUT_MS {
                    held = false;
                    joined = false;
                    if !send(LockEvent::Lost {
                        reason: "no heartbeat answer for a session".into(),
                    })
                    .await
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// Runs one Halyard node (the real Tokio driver) on this host until killed.
pub async fn run_node(
    name: String,
    role: Role,
    allow_failback: bool,
    listen: SocketAddr,
    kafka: SocketAddr,
) {
    let config = NodeConfig {
        node_id: name.clone(),
        role,
        allow_failback,
        heartbeat_ms: 2_000,
        activation_retry_ms: 500,
        ..NodeConfig::default()
    };
    let (inputs_tx, inputs_rx) = server::input_channel();
    let (jtx, jrx) = mpsc::unbounded_channel();
    let (ltx, lrx) = mpsc::unbounded_channel();
    let epoch = Arc::new(Mutex::new(0u32));
    // The journal adapter learns the node's epoch from the activation record it writes.
    let (etx, mut erx) = mpsc::unbounded_channel::<JournalRequest>();
    {
        let epoch = epoch.clone();
        tokio::spawn(async move {
            while let Some(cmd) = erx.recv().await {
                if let JournalRequest::Append { entries, .. } = &cmd {
                    for e in entries.iter() {
                        if let Entry::Put(halyard_core::journal::Record::Activation {
                            epoch: ep,
                            ..
                        }) = e
                        {
                            *epoch.lock().expect("epoch") = *ep;
                        }
                    }
                }
                if jtx.send(cmd).is_err() {
                    return;
                }
            }
        });
    }
    tokio::spawn(journal_task(
        name.clone(),
        kafka,
        jrx,
        inputs_tx.clone(),
        epoch,
    ));
    let rank = if role == Role::Primary { 0 } else { 1 };
    tokio::spawn(lock_task(
        format!("{rank}-{name}"),
        role,
        allow_failback,
        kafka,
        lrx,
        inputs_tx.clone(),
    ));
    let (_stop_tx, stop_rx) = mpsc::unbounded_channel();
    let node = Node::new(config);
    // No one asks the madsim nodes for stats.
    let (_queries_tx, queries_rx) = server::query_channel();
    let _ = server::run(
        node,
        ServerConfig {
            listen,
            counters: Default::default(),
            // The madsim nodes run without a Kafka bridge.
            bridge: halyard_io::bridge::BridgeHandle::none(),
            // Nor a peer port (fenced preemption is the simulator's).
            live_epoch: None,
        },
        JournalHandle::new(etx),
        LockHandle::new(ltx),
        inputs_rx,
        stop_rx,
        queries_rx,
    )
    .await;
    // Keep the stop sender alive for the node's lifetime.
    drop(_stop_tx);
}
