//! `status`: a read of the store (plus a cheap lock probe), never a runtime call.

use std::io::{Read, Seek, SeekFrom};

use crate::api::{Activity, JobStatus};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::BUSY_CPU_PERCENT;
use crate::job::{JobRecord, now_ms};
use crate::stream::render_text;

/// Output within this many seconds counts as active.
const ACTIVE_SECS: f64 = 10.0;
/// How much raw output the tail is rendered from.
const TAIL_WINDOW: u64 = 32 * 1024;
/// Characters of rendered tail in a status.
const TAIL_CHARS: usize = 500;

impl Engine {
    /// A job's status. If the job is not final and its monitor has died, a new monitor is
    /// started to re-attach (crash recovery), and the status is read as it stands.
    pub fn status(&self, job_id: &str) -> Result<JobStatus> {
        let record = self.load_job(job_id)?;
        self.reconcile(&record)?;
        Ok(self.describe(record))
    }

    pub(crate) fn describe(&self, record: JobRecord) -> JobStatus {
        let now = now_ms();
        let end = record.finished_at_ms.unwrap_or(now);
        let elapsed_seconds = (end - record.created_at_ms).max(0) as f64 / 1000.0;
        let last_output_seconds_ago = record
            .last_output_at_ms
            .map(|t| (now - t).max(0) as f64 / 1000.0);
        let mut requests = if record.spec.steer.is_some() {
            self.store().requests(&record.id, false).unwrap_or_default()
        } else {
            Vec::new()
        };
        let waiting_on = if record.state.is_final() {
            None
        } else {
            requests.iter().find(|r| r.answer.is_none()).cloned()
        };
        if requests.len() > JobStatus::REQUESTS_SHOWN {
            requests.drain(..requests.len() - JobStatus::REQUESTS_SHOWN);
        }
        let activity = match &waiting_on {
            Some(r) if r.ask.kind() == "question" => Activity::NeedsInput,
            Some(_) => Activity::NeedsApproval,
            None => activity(&record, last_output_seconds_ago),
        };
        let tail_output = self.tail_output(&record);
        let budget = self.budget_status(&record.session_id).ok().flatten();
        JobStatus {
            budget,
            record,
            elapsed_seconds,
            last_output_seconds_ago,
            activity,
            tail_output,
            waiting_on,
            requests,
        }
    }

    fn tail_output(&self, record: &JobRecord) -> String {
        let path = self.job_dir(&record.id).join("output.jsonl");
        let Ok(mut f) = std::fs::File::open(&path) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(TAIL_WINDOW);
        if f.seek(SeekFrom::Start(start)).is_err() {
            return String::new();
        }
        let mut buf = Vec::new();
        if f.take(TAIL_WINDOW).read_to_end(&mut buf).is_err() {
            return String::new();
        }
        let buf = if start > 0 {
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => &buf[i + 1..],
                None => &[][..],
            }
        } else {
            &buf[..]
        };
        let text = render_text(buf);
        let text = text.trim_end();
        let chars = text.chars().count();
        if chars <= TAIL_CHARS {
            return text.to_string();
        }
        // Cut at a line's start when the window holds one, else say that it was cut: never
        // in the middle of a word without a mark.
        let tail: String = text.chars().skip(chars - TAIL_CHARS).collect();
        match tail.find('\n') {
            Some(i) if i + 1 < tail.len() => tail[i + 1..].to_string(),
            _ => format!("…{}", tail.trim_start()),
        }
    }
}

fn activity(record: &JobRecord, last_output_ago: Option<f64>) -> Activity {
    if record.state.is_final() {
        return Activity::Idle;
    }
    if last_output_ago.is_some_and(|s| s <= ACTIVE_SECS) {
        return Activity::Active;
    }
    let busy = record
        .metrics
        .as_ref()
        .and_then(|m| m.cpu_percent)
        .is_some_and(|c| c >= BUSY_CPU_PERCENT);
    if busy {
        Activity::Processing
    } else {
        Activity::Idle
    }
}
