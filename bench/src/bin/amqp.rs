//! RabbitMQ benchmark helper (BENCHMARKS.md, `bench/rabbitmq.sh`):
//!
//! - `fill`: publishes `--count` persistent messages of `--size` bytes to `--queue` (declared
//!   durable), with publisher confirms;
//! - `plain`: the baseline — a plain lapin consumer that acknowledges each message the moment it
//!   arrives, timed until `--count` are acknowledged;
//! - `drain`: times an Ember RabbitmqSource (started after this, on a filled queue) emptying the
//!   queue: polls Ember's `/metrics` from its first sent message until its `sent` counter reaches
//!   `--count` (each sent message is durable in the broker and acknowledged).

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[derive(Parser)]
struct Args {
    /// The AMQP URL.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// The queue.
    #[arg(long)]
    queue: String,
    /// Messages.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Publish `count` messages.
    Fill {
        /// Body size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
    },
    /// Consume and ack at once (the baseline).
    Plain {
        /// Prefetch.
        #[arg(long, default_value_t = 64)]
        prefetch: u16,
    },
    /// Time Ember's source draining the queue.
    Drain {
        /// Ember's metrics URL.
        #[arg(long)]
        metrics: String,
        /// The source, `namespace/name`.
        #[arg(long)]
        source: String,
    },
}

async fn sent(client: &str, source: &str) -> u64 {
    let out = tokio::process::Command::new("curl")
        .args(["-s", client])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let key = format!("ember_rabbitmq_messages_total{{source=\"{source}\",outcome=\"sent\"}}");
    text.lines()
        .find(|l| l.starts_with(&key))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let conn = Connection::connect(&args.url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ reachable");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        args.queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    match args.what {
        What::Fill { size } => {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            let body = vec![b'x'; size];
            let start = Instant::now();
            let mut confirms = Vec::new();
            for i in 0..args.count {
                confirms.push(
                    ch.basic_publish(
                        "".into(),
                        args.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_message_id(format!("m-{i}").as_str().into())
                            .with_content_type("application/octet-stream".into()),
                    )
                    .await
                    .unwrap(),
                );
                if confirms.len() >= 1000 {
                    for c in confirms.drain(..) {
                        c.await.unwrap();
                    }
                }
            }
            for c in confirms {
                c.await.unwrap();
            }
            println!(
                "filled {} in {:.2} s",
                args.count,
                start.elapsed().as_secs_f64()
            );
        }
        What::Plain { prefetch } => {
            ch.basic_qos(prefetch, BasicQosOptions::default())
                .await
                .unwrap();
            let mut consumer = ch
                .basic_consume(
                    args.queue.as_str().into(),
                    "bench".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let start = Instant::now();
            let mut n = 0;
            while let Some(Ok(d)) = consumer.next().await {
                d.acker.ack(BasicAckOptions::default()).await.unwrap();
                n += 1;
                if n == args.count {
                    break;
                }
            }
            let s = start.elapsed().as_secs_f64();
            println!(
                "plain consumer, prefetch {prefetch}: {n} in {s:.2} s = {:.0} msg/s",
                n as f64 / s
            );
        }
        What::Drain { metrics, source } => {
            // Timed from the first message sent (Ember starting up is not counted).
            while sent(&metrics, &source).await == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let start = Instant::now();
            while sent(&metrics, &source).await < args.count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let s = start.elapsed().as_secs_f64();
            println!(
                "Ember source: {} in {s:.2} s = {:.0} msg/s",
                args.count,
                args.count as f64 / s
            );
        }
    }
}
