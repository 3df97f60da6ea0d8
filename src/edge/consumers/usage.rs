//! The consumer of `edgeward-usage` and its dead-letter queue `edgeward-usage-dlq` (the same
//! code): each message is one isolate's usage batch; the batches go to D1 in as few
//! transactions as their size allows (`calls::usage::apply`). A message is acked once its rows
//! are in D1, or once D1 shows its batch id applied before (delivery is at least once; the id
//! makes it exact); the others are retried (after 5 retries a message moves to the dead-letter
//! queue, whose consumer is this one).

use crate::edge::calls::usage::{apply, Applied};
use crate::edge::rt::clock::now_ms;
use crate::protocol::usage::UsageBatch;
use crate::store::usage::Applying;
use worker::{console_error, console_log, Env, MessageBatch, MessageExt};

pub async fn consume(batch: MessageBatch<String>, env: Env) {
    let queue = batch.queue();
    let messages = match batch.messages() {
        Ok(m) => m,
        Err(e) => {
            console_error!("usage consumer {queue}: batch unreadable ({e}); retrying it");
            batch.retry_all();
            return;
        }
    };
    let mut decoded = Vec::new();
    let mut undecodable = 0;
    for m in &messages {
        match UsageBatch::decode(m.body()) {
            Some(b) => decoded.push((m, b)),
            None => {
                // Kept for a version that reads it (retried, then the dead-letter queue).
                undecodable += 1;
                m.retry();
            }
        }
    }
    let applying: Vec<Applying<'_>> = decoded
        .iter()
        .map(|(_, b)| Applying {
            batch: &b.batch,
            rows: &b.rows,
        })
        .collect();
    let results = apply(&env, &applying, now_ms()).await;
    let (mut now, mut already, mut failed) = (0, 0, 0);
    for ((m, _), r) in decoded.iter().zip(results) {
        match r {
            Applied::Now => now += 1,
            Applied::Already => already += 1,
            Applied::Failed => failed += 1,
        }
        if r == Applied::Failed {
            m.retry();
        } else {
            m.ack();
        }
    }
    if already + failed + undecodable > 0 || queue.ends_with("-dlq") {
        console_log!(
            "usage consumer {queue}: {now} applied, {already} already applied, {failed} retried, {undecodable} unreadable retried"
        );
    }
}
