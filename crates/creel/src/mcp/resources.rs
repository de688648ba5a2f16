//! Job output as MCP resources: `creel://jobs/{job_id}/output` (Claude's stream-json) and
//! `creel://jobs/{job_id}/transcript` (the rendered transcript), read whole (up to the engine's
//! largest page, 16 MiB; page with `claude_code_output` beyond that).
//!
//! Subscriptions: a subscribed client gets `notifications/resources/updated` when the job
//! writes output or changes state, through `resources/subscribe` (protocol versions up to
//! 2025-11-25) or `subscriptions/listen` (2026-07-28). A watcher sleeps on the engine's job watch
//! (inotify on the jobs' directories, with a look at least once a second), reads the stored
//! status after each wake-up, and ends once every job it watches is final. A `listen` watches
//! at most [`MAX_LISTENED`] resources.

use std::collections::HashMap;

/// The most resources one `subscriptions/listen` watches (the rest are ignored).
const MAX_LISTENED: usize = 256;

use creel_engine::{JobState, JobWatch, OutputRequest};
use rmcp::model::{
    ListResourceTemplatesResult, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam,
};
use rmcp::service::{Peer, SubscriptionContext};
use rmcp::{ErrorData, RoleServer};

use super::params::resource;
use super::{CreelServer, JobChanges};

/// The two templates.
pub(super) fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new("creel://jobs/{job_id}/output", "job-output")
            .with_title("Claude Code job output (stream-json)")
            .with_description(
                "A job's output so far: Claude's stream-json events, one JSON object per line.",
            )
            .with_mime_type("application/x-ndjson"),
        ResourceTemplate::new("creel://jobs/{job_id}/transcript", "job-transcript")
            .with_title("Claude Code job transcript")
            .with_description(
                "A job's output so far as a readable transcript: messages, tool calls, the result.",
            )
            .with_mime_type("text/plain"),
    ])
}

/// Reads one resource.
pub(super) async fn read(
    server: &CreelServer,
    request: ReadResourceRequestParams,
) -> Result<ReadResourceResponse, ErrorData> {
    let uri = request.uri;
    let Some((job, format, mime)) = resource(&uri) else {
        return Err(ErrorData::resource_not_found(
            format!(
                "no such resource `{uri}`: creel serves creel://jobs/{{job_id}}/output and …/transcript"
            ),
            None,
        ));
    };
    let job = job.to_string();
    let req = OutputRequest {
        offset: 0,
        limit: u64::MAX,
        format,
    };
    match server.blocking(move |e| e.output(&job, req)).await {
        Ok(chunk) => Ok(ReadResourceResult::new(vec![
            ResourceContents::text(chunk.content, uri).with_mime_type(mime),
        ])
        .into()),
        Err(e) => Err(ErrorData::resource_not_found(e.message, None)),
    }
}

/// Calls `notify(uri)` whenever the job behind one of `uris` has written more output or changed
/// state since the previous look. Returns when every watched job is final (or unknown) and that
/// was announced, or when `notify` returns false (the client is gone).
async fn watch<F, Fut>(server: &CreelServer, uris: &[String], mut notify: F)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut seen: HashMap<&str, (u64, JobState, Option<u32>)> = HashMap::new();
    let jobs: Vec<String> = uris
        .iter()
        .filter_map(|u| resource(u).map(|(job, _, _)| job.to_string()))
        .collect();
    // Taken before the first look, so that nothing between a look and the wait is missed.
    let Ok(mut changes) = JobChanges::of(server, jobs).await else {
        return;
    };
    let mut first = true;
    loop {
        if !first {
            changes.wait(JobWatch::RECHECK).await;
        }
        first = false;
        let mut all_final = true;
        for uri in uris {
            let Some((job, _, _)) = resource(uri) else {
                continue;
            };
            let job = job.to_string();
            let Ok(status) = server.blocking(move |e| e.status(&job)).await else {
                continue; // unknown (or cleaned up): nothing more will change
            };
            let now = (
                status.record.output_size,
                status.record.state,
                status.waiting_on.as_ref().map(|r| r.seq),
            );
            all_final &= now.1.is_final();
            if let Some(before) = seen.insert(uri.as_str(), now)
                && before != now
                && !notify(uri.clone()).await
            {
                return;
            }
        }
        if all_final {
            return;
        }
    }
}

impl CreelServer {
    /// `resources/subscribe`: starts a watcher for `uri` on this connection.
    pub(super) fn subscribe(&self, uri: String, peer: Peer<RoleServer>) -> Result<(), ErrorData> {
        if resource(&uri).is_none() {
            return Err(ErrorData::resource_not_found(
                format!("no such resource `{uri}`"),
                None,
            ));
        }
        let server = self.clone();
        let key = uri.clone();
        let task = tokio::spawn(async move {
            let uris = [uri];
            watch(&server, &uris, |uri| {
                let peer = peer.clone();
                async move {
                    peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                        .await
                        .is_ok()
                }
            })
            .await;
        });
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|_, t| !t.is_finished());
        if let Some(old) = subs.insert(key, task.abort_handle()) {
            old.abort();
        }
        Ok(())
    }

    /// `resources/unsubscribe`.
    pub(super) fn unsubscribe(&self, uri: &str) {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = subs.remove(uri) {
            task.abort();
        }
    }

    /// `subscriptions/listen`: watches the accepted resource URIs until the client cancels.
    pub(super) async fn listen(&self, context: SubscriptionContext) {
        let uris: Vec<String> = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|u| resource(u).is_some())
            .take(MAX_LISTENED)
            .collect();
        let sink = context.sink();
        tokio::select! {
            _ = watch(self, &uris, |uri| async move { sink.notify_resource_updated(uri).await.is_ok() }) => {
                context.cancelled().await;
            }
            _ = context.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use creel_engine::OutputFormat;

    #[test]
    fn uris() {
        assert!(matches!(
            resource("creel://jobs/j-1/output"),
            Some(("j-1", OutputFormat::Raw, _))
        ));
        assert!(matches!(
            resource("creel://jobs/j-1/transcript"),
            Some(("j-1", OutputFormat::Text, _))
        ));
        assert!(resource("creel://jobs//output").is_none());
        assert!(resource("creel://jobs/j-1/other").is_none());
        assert!(resource("file:///etc/passwd").is_none());
    }
}
