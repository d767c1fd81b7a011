//! `kafka-floor BROKERS TOPIC PARTITIONS`: reads every partition of `TOPIC` from its start
//! to its end as it was when the read began, one task per partition, each fetching up to
//! 4 MiB at a time (as Tributary's reader does) with rskafka, which decodes the fetched
//! record batches in the reading task. Prints one JSON line: records, bytes of values,
//! seconds, events/s and this process's CPU time (user + system, `/proc/self/stat`) over
//! the read, per 1M records.

use std::sync::Arc;
use std::time::Instant;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

/// The most one fetch takes of a partition, in bytes.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

/// This process's CPU time so far, in clock ticks (1/100 s).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses: utime is the 14th field
    // of the line, stime the 15th.
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let field = |i: usize| fields[i].parse::<u64>().expect("a tick count");
    field(11) + field(12)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions] = args.as_slice() else {
        eprintln!("usage: kafka-floor BROKERS TOPIC PARTITIONS");
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse().expect("PARTITIONS: a number");
    let client = Arc::new(
        ClientBuilder::new(vec![brokers.clone()])
            .build()
            .await
            .expect("cannot connect"),
    );
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..partitions {
        let (client, topic) = (Arc::clone(&client), topic.clone());
        tasks.push(tokio::spawn(async move {
            let reader = client
                .partition_client(topic, partition, UnknownTopicHandling::Error)
                .await
                .expect("no such partition");
            let end = reader.get_offset(OffsetAt::Latest).await.expect("end offset");
            let (mut next, mut records, mut bytes) = (0_i64, 0_u64, 0_u64);
            while next < end {
                let (fetched, _high_watermark) = reader
                    .fetch_records(next, 1..FETCH_BYTES, 500)
                    .await
                    .expect("fetch");
                for record in &fetched {
                    records += 1;
                    bytes += record.record.value.as_ref().map_or(0, |v| v.len() as u64);
                    next = record.offset + 1;
                }
            }
            (records, bytes)
        }));
    }
    let (mut records, mut bytes) = (0_u64, 0_u64);
    for task in tasks {
        let (r, b) = task.await.expect("a partition's task");
        records += r;
        bytes += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks() - cpu_before) as f64 / 100.0;
    println!(
        "{{\"client\":\"rskafka\",\"records\":{records},\"bytes\":{bytes},\"seconds\":{seconds:.3},\
         \"events_per_sec\":{:.0},\"cpu_s\":{cpu:.2},\"cpu_s_per_million\":{:.2}}}",
        records as f64 / seconds,
        cpu / records as f64 * 1e6
    );
}
