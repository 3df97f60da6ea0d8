//! The audit queue's consumer (and its dead-letter queue's: the same code). Each message is one
//! `AuditMessage` from a buffer shard; its events are archived in R2 under keys derived from
//! their content, so a redelivered message overwrites what it wrote before. A message is acked
//! once all its objects are stored and retried otherwise: after `max_retries` it moves to the
//! dead-letter queue, whose consumer keeps trying (wrangler.toml).

use crate::edge::calls::audit;
use crate::store::audit::AuditMessage;
use worker::{console_error, console_log, Env, MessageBatch, MessageExt};

pub async fn consume(batch: MessageBatch<String>, env: Env) {
    let queue = batch.queue();
    let messages = match batch.messages() {
        Ok(m) => m,
        Err(e) => {
            console_error!("{queue}: batch unreadable, retrying it: {e}");
            batch.retry_all();
            return;
        }
    };
    let (mut stored, mut retried) = (0u32, 0u32);
    for message in messages {
        let parsed: Result<AuditMessage, _> = serde_json::from_str(message.body());
        let events = match parsed {
            Ok(m) => m.events,
            Err(e) => {
                // Not ours (every producer sends an AuditMessage): no retry can store it.
                console_error!(
                    "{queue}: message {} is not an audit message, dropped: {e}",
                    message.id()
                );
                message.ack();
                continue;
            }
        };
        match audit::archive(&env, events).await {
            Ok(_) => {
                message.ack();
                stored += 1;
            }
            Err(e) => {
                console_error!(
                    "{queue}: message {} not archived, retrying: {}",
                    message.id(),
                    e.cause.unwrap_or(e.description)
                );
                message.retry();
                retried += 1;
            }
        }
    }
    console_log!("{queue}: {stored} messages archived, {retried} retried");
}
