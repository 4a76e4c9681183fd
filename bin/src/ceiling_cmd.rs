//! `halyard kafka-ceiling`: the throughput ceiling of the Kafka journal's
//! write path on a given Kafka — a plain rdkafka transactional producer
//! writing records of the same shape as Halyard's journal (a `m/` key and an
//! encoded 1 KiB message) in transactions, as fast as it can. With
//! `--tombstones` it writes the same records Halyard writes for a message
//! that is stored and then consumed: the message record and, one
//! transaction later, a tombstone for its key. Halyard's Kafka-journal
//! throughput is reported as a fraction of this.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use halyard_core::ids::Id;
use halyard_core::journal::{encode_entry, Entry, Record, Routing};
use halyard_core::message::{Body, Message};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

#[derive(Args, Debug)]
pub struct CeilingArgs {
    /// Kafka bootstrap servers
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Records to write
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// Message body size in bytes
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Records per transaction (Halyard's group commit puts whatever waits in one)
    #[arg(long, default_value_t = 1000)]
    transaction_records: u64,
    /// Topic to write (created by the broker's defaults if auto-creation is on; else created here)
    #[arg(long)]
    topic: Option<String>,
    /// Also write a tombstone for each message, in the next transaction (the
    /// records Halyard's journal writes for a message stored, then consumed).
    /// --count still counts messages
    #[arg(long)]
    tombstones: bool,
    /// Producer linger.ms (the Kafka journal's default unless --kafka-property sets one)
    #[arg(long, default_value = halyard_io::kafka::LINGER_MS_DEFAULT)]
    linger_ms: String,
}

pub fn run(a: CeilingArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if a.transaction_records == 0 || a.count == 0 {
        return Err("--count and --transaction-records must be at least 1".into());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let topic = a
        .topic
        .unwrap_or_else(|| format!("halyard-ceiling-{stamp}"));
    create_topic(&a.bootstrap, &topic)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("transactional.id", format!("halyard-ceiling-{stamp}"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", &a.linger_ms)
        .create()?;
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout)?;
    let body = bytes::Bytes::from(vec![b'x'; a.size]);
    let start = Instant::now();
    let mut written = 0u64;
    let mut transactions = 0u64;
    let mut records = 0u64;
    // Keys of the previous transaction's messages, tombstoned in this one.
    let mut consumed: Vec<bytes::Bytes> = Vec::new();
    while written < a.count || !consumed.is_empty() {
        producer.begin_transaction()?;
        let n = a.transaction_records.min(a.count - written);
        for k in std::mem::take(&mut consumed) {
            halyard_io::kafka::send_record(&producer, &topic, &k, None)?;
            records += 1;
        }
        for i in 0..n {
            let entry = Entry::Put(Record::MessageStored {
                id: Id::new(1, written + i),
                queues: vec![Id::new(1, 1)],
                message: std::sync::Arc::new(Message::new(
                    "bench",
                    Routing::Anycast,
                    Body::Bytes(body.clone()),
                )),
            });
            let (k, v) = encode_entry(&entry);
            halyard_io::kafka::send_record(&producer, &topic, &k, v.as_deref())?;
            records += 1;
            if a.tombstones {
                consumed.push(k);
            }
        }
        // Serve delivery reports as the Kafka journal does.
        halyard_io::kafka::serve_deliveries(&producer, timeout)?;
        producer.commit_transaction(timeout)?;
        written += n;
        transactions += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "kafka ceiling: messages={written} records={records} transactions={transactions} seconds={secs:.3} msg_per_sec={:.0} records_per_sec={:.0} mb_per_sec={:.2}",
        written as f64 / secs,
        records as f64 / secs,
        written as f64 * a.size as f64 / secs / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn create_topic(bootstrap: &str, topic: &str) -> Result<(), Box<dyn std::error::Error>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let t = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for r in rt.block_on(admin.create_topics([&t], &AdminOptions::new()))? {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, e)) => return Err(format!("cannot create {topic}: {e}").into()),
        }
    }
    Ok(())
}
